"""What ships: the Docker image copies every package that `segaudit --help` lists commands from,
and the installed distribution includes every top-level package.
"""

from __future__ import annotations

import re
import tomllib

from cli.main import COMMANDS
from tests.layering import PACKAGES, ROOT


def _copied() -> set[str]:
    text = (ROOT / "Dockerfile").read_text()
    return set(re.findall(r"^COPY (\w+) \1$", text, re.M))


def test_the_image_copies_every_package_a_command_needs():
    copied = _copied()
    assert set(PACKAGES) <= copied, sorted(set(PACKAGES) - copied)
    for command, (module, _) in COMMANDS.items():
        assert module.split(".")[0] in copied, command
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert all(f"!{p}/" in ignored for p in PACKAGES)


def test_the_distribution_includes_every_package():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    assert all(f"{p}*" in include for p in PACKAGES)
