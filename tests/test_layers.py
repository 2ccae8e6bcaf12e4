"""The layers, one direction: each package imports only what the house style allows.

imaging  nothing of ours; no torch, no MONAI, no service code
models   imaging
bench    imaging, models (bench.api_load, the API's load benchmark, also app)
app      imaging, models' torch-free records; never torch, MONAI or the worker
worker   app, imaging, models
cli      anything (each command is imported only when it runs)
"""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from tests.layering import ROOT, cycles, graph, imports_of, third_party

OURS = ("imaging", "models", "bench", "app", "worker", "cli")
MAY_IMPORT: dict[str, set[str]] = {
    "imaging": set(),
    "models": {"imaging"},
    "bench": {"imaging", "models"},
    "app": {"imaging", "models"},
    "worker": {"app", "imaging", "models"},
    "cli": set(OURS),
}
# Single modules allowed more than their package: the API's load benchmark writes its data
# through the service's data layer and starts the service (it never imports torch).
MODULE_MAY_IMPORT: dict[str, set[str]] = {"bench.api_load": {"app"}}
NEVER: dict[str, set[str]] = {
    "imaging": {"torch", "monai", "fastapi", "sqlalchemy", "celery", "redis"},
    "models": {"fastapi", "sqlalchemy", "celery", "redis"},
    "app": {"torch", "monai"},  # it sends tasks by name with a Celery client, never the tasks
}
SERVICE = ("fastapi", "celery", "sqlalchemy", "redis", "app", "worker")


def violations(edges: dict[str, set[str]], libraries: dict[str, set[str]]) -> list[str]:
    """Every import that breaks ``MAY_IMPORT`` or ``NEVER``, as ``module -> imported``."""
    found = []
    for module, targets in sorted(edges.items()):
        package = module.split(".")[0]
        allowed = MAY_IMPORT[package] | {package} | MODULE_MAY_IMPORT.get(module, set())
        found += [f"{module} -> {t}" for t in sorted(targets) if t.split(".")[0] not in allowed]
    for module, names in sorted(libraries.items()):
        banned = NEVER.get(module.split(".")[0], set())
        found += [f"{module} -> {n}" for n in sorted(names & banned)]
    return found


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_each_package_imports_only_what_its_layer_allows(package):
    edges = {m: t for m, t in graph().items() if m.split(".")[0] == package}
    libraries = {m: n for m, n in third_party().items() if m.split(".")[0] == package}
    assert edges, f"no modules found in {package}/"
    assert violations(edges, libraries) == []


@pytest.mark.parametrize(
    ("module", "source", "bad"),
    [
        ("models.x", "from app.db import tables", "models.x -> app.db.tables"),
        ("imaging.x", "def f():\n    import torch\n", "imaging.x -> torch"),
        ("app.x", "import torch", "app.x -> torch"),
        ("app.x", "from worker.tasks import run", "app.x -> worker.tasks"),
        ("imaging.x", "from models.config import AuditConfig", "imaging.x -> models.config"),
        ("bench.x", "from app.db import tables", "bench.x -> app.db.tables"),
    ],
)
def test_the_rules_catch_a_forbidden_import(module, source, bad):
    named = imports_of(source, module)
    ours = {n for n in named if n.split(".")[0] in OURS}
    edges = {module: ours}
    libraries = {module: {n.split(".")[0] for n in named}}
    assert bad in violations(edges, libraries)


def test_no_import_cycles_between_packages_or_inside_imaging_dicom():
    edges = graph()
    found = []
    for component in cycles(edges):
        packages = {m.split(".")[0] for m in component}
        if len(packages) > 1 or any(m.startswith("imaging.dicom") for m in component):
            found.append(component)
    assert found == []


def test_cycles_are_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _imported_at_run_time(modules: list[str], watch: tuple[str, ...]) -> list[str]:
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        f"print(','.join(s for s in {watch!r} if s in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return [s for s in done.stdout.strip().split(",") if s]


def test_importing_all_of_imaging_loads_no_torch_and_no_service():
    modules = sorted(m for m in graph() if m.split(".")[0] == "imaging")
    assert "imaging.dicom.web" in modules
    assert _imported_at_run_time(modules, ("torch", "monai", "models", *SERVICE)) == []


def test_importing_all_of_models_loads_no_service():
    modules = sorted(m for m in graph() if m.split(".")[0] == "models")
    assert _imported_at_run_time(modules, SERVICE) == []


def test_importing_all_of_app_loads_neither_torch_nor_monai_nor_the_worker():
    modules = sorted(m for m in graph() if m.split(".")[0] == "app")
    assert "app.main" in modules and "app.services.lifecycle" in modules
    assert _imported_at_run_time(modules, ("torch", "monai", "worker")) == []


def test_no_package_imports_another_ones_private_names():
    found = []
    for package in OURS:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    other = node.module.split(".")[0]
                    if other in OURS and other != package:
                        private = [
                            a.name
                            for a in node.names
                            if a.name.startswith("_") and not a.name.endswith("__")
                        ]
                        found += [f"{path.relative_to(ROOT)}: {node.module}.{n}" for n in private]
    assert found == []
