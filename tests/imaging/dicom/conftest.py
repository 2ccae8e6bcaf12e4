"""Fixtures for the DICOM tests: built MR series and SEGs, external tools, shared real data."""

from __future__ import annotations

import copy
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from tests.conftest import SAMPLE, SHARED_DATA
from tests.imaging.dicom.builders import BuiltCase, pacs_export, slab_cases

RTUTILS = SAMPLE / "dicom" / "rtutils_phantom"
SHARED_DICOM = SHARED_DATA / "dicom"


def missing(message: str) -> NoReturn:
    """Skip a test that needs a service, with the reason; in CI (where it must be) fail."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def require_tool(name: str) -> str:
    """The path of an external tool, or skip (fail in CI) without it."""
    path = shutil.which(name)
    if not path:
        missing(f"{name} is not installed (scripts/install-test-services.sh installs it)")
    return path


def dciodvfy_errors(path: Path) -> list[str]:
    """The errors that dicom3tools' validator finds in a DICOM file (warnings are allowed)."""
    done = subprocess.run(
        [require_tool("dciodvfy"), str(path)], capture_output=True, text=True, check=False
    )
    lines = (done.stdout + done.stderr).splitlines()
    assert lines, "dciodvfy printed nothing"
    return [line for line in lines if line.startswith("Error")]


def shared(*parts: str) -> Path:
    """A path in ../shared/data/dicom; the test is skipped where that data is absent."""
    path = SHARED_DICOM.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not present (only in the project's shared data)")
    return path


@pytest.fixture(scope="session")
def _built() -> list[BuiltCase]:
    return slab_cases()


TINY = ("--size", "32", "--epochs", "2", "--seed", "0", "--device", "cpu", "--quiet")


def audit(images: Path, masks: Path, out: Path) -> int:
    """``segaudit audit`` in-process, with the tiniest network and two epochs."""
    from cli.engine import main

    return main(["audit", "--images", str(images), "--masks", str(masks), "--out", str(out), *TINY])


@pytest.fixture(scope="session")
def seg_audit(_built, tmp_path_factory) -> tuple[Path, Path]:
    """A PACS-style zip of the nine slab cases and the output folder of its audit."""
    root = tmp_path_factory.mktemp("pacs")
    archive = pacs_export(root, _built)
    out = root / "out"
    assert audit(archive, archive, out) == 0
    return archive, out


@pytest.fixture
def built(_built) -> list[BuiltCase]:
    """The nine MR slab cases (series + SEG), deep-copied so that a test may change them."""
    return copy.deepcopy(_built)


ORTHANC_PLUGINS = (Path("/usr/share/orthanc/plugins"), Path("/usr/lib/orthanc"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory) -> Iterator[str]:
    """A real Orthanc with its DICOMweb plugin on loopback; yields its DICOMweb root URL."""
    binary = require_tool("Orthanc")
    plugin = next(
        (
            d / "libOrthancDicomWeb.so"
            for d in ORTHANC_PLUGINS
            if (d / "libOrthancDicomWeb.so").exists()
        ),
        None,
    )
    if plugin is None:
        missing("Orthanc's DICOMweb plugin is not installed (package orthanc-dicomweb)")
    root = tmp_path_factory.mktemp("orthanc")
    port = _free_port()
    config = {
        "Name": "segaudit-test",
        "HttpPort": port,
        "DicomServerEnabled": False,
        "DicomPort": _free_port(),
        "StorageDirectory": str(root / "storage"),
        "IndexDirectory": str(root / "storage"),
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [str(plugin)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }
    (root / "orthanc.json").write_text(json.dumps(config))
    log = (root / "orthanc.log").open("w")
    process = subprocess.Popen([binary, str(root / "orthanc.json")], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/dicom-web/studies", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                missing(f"Orthanc did not start: {(root / 'orthanc.log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield f"{url}/dicom-web"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
