"""What ships: the Docker image copies every package that `segaudit --help` lists commands from,
and the installed distribution includes every top-level package.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

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


# A wheel built from the tree, installed into a folder of its own and used from elsewhere.

SOURCES = (*PACKAGES, "migrations")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel of a copy of the tree (no build/ or egg-info left in the repository),
    installed with --target into a folder of its own; returns that folder.
    """
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "results")
    for name in SOURCES:
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", str(src), "-w", str(root / "dist")],
        check=True,
        capture_output=True,
        cwd=root,
    )
    [wheel] = (root / "dist").glob("segaudit-*.whl")
    site = root / "site"
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
    )
    with zipfile.ZipFile(wheel) as zf:
        (root / "names.txt").write_text("\n".join(zf.namelist()))
    return site


def test_the_wheel_ships_the_migrations(installed):
    names = set((installed.parent / "names.txt").read_text().splitlines())
    versions = sorted(p.name for p in (ROOT / "migrations" / "versions").glob("*.py"))
    assert {"migrations/env.py", "migrations/script.py.mako"} <= names
    assert {f"migrations/versions/{v}" for v in versions} <= names
    assert "app/db/migrate.py" in names and "app/docs_assets.py" in names


def test_the_wheel_ships_the_dashboard_files(installed):
    """/ui works offline from a plain install: its templates, script and style are in the wheel."""
    names = set((installed.parent / "names.txt").read_text().splitlines())
    ui = ROOT / "app" / "ui"
    shipped = {
        str(p.relative_to(ROOT)) for p in ui.rglob("*") if p.suffix in (".html", ".js", ".css")
    }
    assert shipped and shipped <= names, sorted(shipped - names)


def test_the_installed_package_migrates_from_another_folder(installed, tmp_path):
    script = (
        "import json, sys\n"
        "from app.db import migrate\n"
        "from app.db.session import make_engine\n"
        "engine = make_engine(sys.argv[1])\n"
        "migrate.upgrade(engine)\n"
        "print(json.dumps([migrate.__file__, str(migrate.migrations_folder()),"
        " migrate.current(engine), migrate.head()]))\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    url = f"sqlite:///{tmp_path / 'db' / 'segaudit.db'}"
    done = subprocess.run(
        [sys.executable, "-c", script, url],
        cwd=elsewhere,
        env={**os.environ, "PYTHONPATH": str(installed)},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    module, folder, at, head = json.loads(done.stdout.splitlines()[-1])
    assert Path(module).is_relative_to(installed)  # the wheel's code, not the source tree's
    assert Path(folder) == installed / "migrations"
    assert at == head and head is not None


def _requirement(config: dict, name: str) -> list[str]:
    found = []
    groups = {"": config["project"]["dependencies"], **config["project"]["optional-dependencies"]}
    for group, requirements in groups.items():
        found += [f"{group}:{r}" for r in requirements if re.match(rf"{name}\b", r)]
    return found


def test_torch_is_a_range_in_an_extra_and_exact_in_the_lock():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    [torch] = _requirement(config, "torch")
    group, spec = torch.split(":", 1)
    assert group == "engine"
    specifier = SpecifierSet(spec.removeprefix("torch"))
    assert "2.13.0" in specifier and "==" not in spec
    assert _requirement(config, "monai")[0].startswith("engine:")
    lock = (ROOT / "requirements.lock").read_text().splitlines()
    assert "torch==2.13.0" in lock


def test_the_api_and_its_commands_run_without_the_engine_extra():
    """With torch, MONAI and scikit-learn made unimportable, the API starts and the service's
    commands load.
    """
    script = (
        "import importlib.abc, sys\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'monai', 'sklearn'):\n"
        "            raise ImportError(f'{name} is not installed')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from app.main import create_app\n"
        "import cli.admin, cli.submit, cli.serve, imaging.cases, imaging.write\n"
        "from fastapi.testclient import TestClient\n"
        "with TestClient(create_app()) as client:\n"
        "    assert client.get('/healthz').status_code == 200\n"
        "    assert client.get('/docs').status_code == 200\n"
        "print('ok')\n"
    )
    with tempfile.TemporaryDirectory() as data:
        env = {**os.environ, "SEGAUDIT_DATA_DIR": data}
        env.pop("SEGAUDIT_DATABASE_URL", None)
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def _image_requirements(*extras: str) -> list[str]:
    """What the Dockerfile installs for an image: scripts/image_requirements.py's output."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "image_requirements.py"), *extras],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.split("\n")


def _pulled_in(lines: list[str]) -> dict[str, str]:
    """Every distribution that ``lines`` need, transitively, as this environment resolved
    them (markers and extras evaluated): canonical name -> installed version."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    found: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [Requirement(line) for line in lines if line.strip()]
    while todo:
        requirement = todo.pop()
        key = (canonicalize_name(requirement.name), frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        found[key[0]] = metadata.version(requirement.name)
        extras = [{"extra": e} for e in requirement.extras] or [{"extra": ""}]
        for line in metadata.requires(requirement.name) or []:
            needed = Requirement(line)
            if needed.marker is None or any(needed.marker.evaluate(e) for e in extras):
                todo.append(needed)
    return found


def _locked() -> dict[str, str]:
    from packaging.utils import canonicalize_name

    lines = (ROOT / "requirements.lock").read_text().splitlines()
    pins = [line.split("==") for line in lines if "==" in line and not line.startswith("#")]
    return {canonicalize_name(name): version for name, version in pins}


ENGINE = {"torch", "monai", "scikit-learn"}
NOT_IN_AN_IMAGE = {"pytest", "ruff", "mypy", "schemathesis", "hypothesis", "cleanlab"}


def test_each_image_installs_only_what_its_part_needs_at_the_locked_versions():
    """The API image's set (pyproject's base) has no torch, MONAI or scikit-learn and no dev
    tool; the workers' adds the engine; every package either pulls in is pinned in the lock,
    so ``pip install -c requirements.lock`` fixes the whole image."""
    api = _pulled_in(_image_requirements())
    engine = _pulled_in(_image_requirements("engine"))
    locked = _locked()
    assert not (ENGINE | NOT_IN_AN_IMAGE) & set(api), sorted((ENGINE | NOT_IN_AN_IMAGE) & set(api))
    assert not [n for n in api if n.startswith("nvidia-") or n == "triton"]
    assert set(engine) >= ENGINE and not NOT_IN_AN_IMAGE & set(engine)
    assert set(api) < set(engine)
    unpinned = sorted(n for n in engine if n not in locked)
    assert unpinned == [], unpinned
    # The lock is what runs (torch's local label, +cpu or +cu128, names its wheel index).
    assert {n: v for n, v in engine.items() if locked[n] != Version(v).public} == {}
    assert "segaudit[engine]" not in _image_requirements("bench")  # an extra of ours, expanded
    assert "cleanlab>=2.7" in _image_requirements("bench")


def test_a_command_that_needs_the_engine_says_so_where_it_is_not_installed():
    script = (
        "import importlib.abc, sys\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'monai', 'sklearn'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from cli.main import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    for command in ("audit", "bench", "worker"):
        done = subprocess.run(
            [sys.executable, "-c", script, command, "--help"],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert done.returncode == 2, done.stderr
        assert f"segaudit {command} needs the audit engine (no torch)" in done.stderr.replace(
            ", which is not installed here", ""
        )
        assert "segaudit[engine]" in done.stderr and "Traceback" not in done.stderr
    keys = subprocess.run(
        [sys.executable, "-c", script, "keys", "--help"], capture_output=True, text=True, cwd=ROOT
    )
    assert keys.returncode == 0 and "engine" not in keys.stderr
