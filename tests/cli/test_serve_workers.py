"""``segaudit serve --workers N``: several server processes on one port, each logging in the
service's one format, all stopped by one SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from app.db import migrate
from app.db.session import make_engine
from app.storage import Store
from bench.api_load import process_tree, seed

ROOT = Path(__file__).resolve().parents[2]


def test_several_processes_serve_the_listing_and_stop_together(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'segaudit.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    seeded = seed(engine, 20, Store(tmp_path / "var" / "storage"))
    engine.dispose()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SEGAUDIT_DATABASE_URL": url,
        "SEGAUDIT_DATA_DIR": str(tmp_path / "var"),
    }
    url_file = tmp_path / "url"
    log = tmp_path / "serve.log"
    command = [sys.executable, "-m", "cli", "serve", "--port", "0", "--workers", "2"]
    with log.open("wb") as out:
        server = subprocess.Popen(
            [*command, "--url-file", str(url_file)], env=env, stdout=out, stderr=out, cwd=ROOT
        )
    try:
        deadline = time.monotonic() + 60
        while not url_file.exists() and server.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        base = url_file.read_text().strip()
        headers = {"X-API-Key": seeded.key}
        answers = []
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            while time.monotonic() < deadline and len(answers) < 20:
                try:
                    answers.append(client.get(f"/v1/audits/{seeded.audit_id}/cases"))
                except httpx.TransportError:
                    time.sleep(0.2)  # the workers are still starting
        assert [a.status_code for a in answers] == [200] * 20
        assert all(a.json()["total"] == 20 for a in answers)
        tree = {p: Path(f"/proc/{p}/cmdline").read_text() for p in process_tree(server.pid)}
        spawned = [c for c in tree.values() if "multiprocessing.spawn" in c]
        assert len(spawned) == 2, tree
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(60)
    assert code == 0
    deadline = time.monotonic() + 15  # multiprocessing's resource tracker goes last
    while (left := [p for p in tree if _running(p)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, [tree[p] for p in left]
    text = log.read_text()
    assert "in 2 processes" in text
    # The access lines come from the workers, in the service's format with request ids.
    assert text.count("segaudit.api [") >= 20 and f"/v1/audits/{seeded.audit_id}/cases 200" in text


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("workers", ["0", "65", "two"])
def test_a_number_of_workers_outside_the_range_is_refused(workers: str):
    done = subprocess.run(
        [sys.executable, "-m", "cli", "serve", "--port", "0", "--workers", workers],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert done.returncode == 2
    assert "--workers" in done.stderr
