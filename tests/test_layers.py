"""models/ is pure: importing all of it pulls in no service layer."""

import subprocess
import sys
from pathlib import Path

SERVICE = ("fastapi", "celery", "sqlalchemy", "redis", "app", "worker")


def test_models_import_no_service_code():
    modules = sorted(p.stem for p in (Path(__file__).parents[1] / "models").glob("*.py"))
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module('models.' + m if m != '__init__' else 'models')\n"
        f"print(','.join(s for s in {SERVICE!r} if s in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


def test_app_imports_neither_torch_nor_monai_nor_the_worker():
    root = Path(__file__).parents[1]
    modules = sorted(
        ".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        for p in (root / "app").rglob("*.py")
    )
    assert "app.main" in modules and "app.services.runs" in modules
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "print(','.join(s for s in ('torch', 'monai', 'worker') if s in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert done.stdout.strip() == ""
