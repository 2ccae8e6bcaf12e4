"""Print the requirements of segaudit's base install plus the named extras, from pyproject.toml.

The Dockerfile installs them with ``pip install -c requirements.lock -r -``: pip resolves only
what these need, each at its locked version, so an image holds no dev tools and the API image
no torch. An extra that names ``segaudit[...]`` (as ``bench`` does) brings that extra's in.

    python scripts/image_requirements.py             # the API, migrations, keys, submit
    python scripts/image_requirements.py engine      # + torch, MONAI, scikit-learn (workers)

Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

SELF = re.compile(r"^segaudit\[([^\]]+)\]$")


def requirements(pyproject: Path, extras: list[str]) -> list[str]:
    """The base dependencies, then each extra's (recursively through ``segaudit[...]``)."""
    project = tomllib.loads(pyproject.read_text())["project"]
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    out = list(project["dependencies"])
    seen: set[str] = set()
    todo = list(extras)
    while todo:
        extra = todo.pop(0)
        if extra in seen:
            continue
        if extra not in optional:
            raise SystemExit(f"image_requirements: no extra {extra!r} (have {sorted(optional)})")
        seen.add(extra)
        for requirement in optional[extra]:
            nested = SELF.match(requirement.replace(" ", ""))
            if nested:
                todo += nested.group(1).split(",")
            elif requirement not in out:
                out.append(requirement)
    return out


def main(argv: list[str]) -> int:
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    sys.stdout.write("".join(f"{line}\n" for line in requirements(pyproject, argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
