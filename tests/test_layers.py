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
