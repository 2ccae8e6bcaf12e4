"""models/dicom/ stays in the pure layer: importing all of it pulls in no service code."""

import subprocess
import sys
from pathlib import Path

SERVICE = ("fastapi", "celery", "sqlalchemy", "redis", "app", "worker")


def test_dicom_modules_import_no_service_code():
    folder = Path(__file__).resolve().parents[3] / "models" / "dicom"
    modules = sorted(f"models.dicom.{p.stem}" for p in folder.glob("*.py") if p.stem != "__init__")
    assert "models.dicom.web" in modules and "models.dicom.cli" in modules
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        f"print(','.join(s for s in {SERVICE!r} if s in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
