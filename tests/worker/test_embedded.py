"""The embedded mode that ``make demo`` uses: ``segaudit serve --embedded`` on SQLite and the
SQLAlchemy broker (no PostgreSQL, no Redis), fed by ``segaudit submit --wait``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import httpx

from tests.worker.conftest import SOURCE_PATH, TINY, Proc, wait_until


def test_serve_embedded_runs_a_submitted_audit_with_no_servers(hc18_cases, tmp_path):
    images, masks = hc18_cases
    env = {
        **os.environ,
        "SEGAUDIT_DATA_DIR": str(tmp_path / "var"),
        "SEGAUDIT_PROGRESS_INTERVAL_S": "0.2",
        "OMP_NUM_THREADS": "1",
        **SOURCE_PATH,
    }
    for name in list(env):  # the embedded defaults, whatever this shell has set
        if name in ("SEGAUDIT_DATABASE_URL", "SEGAUDIT_BROKER_URL", "SEGAUDIT_STORAGE_DIR"):
            del env[name]
    segaudit = [sys.executable, "-m", "cli"]
    subprocess.run([*segaudit, "db", "upgrade"], env=env, check=True, capture_output=True)
    key = subprocess.run(
        [*segaudit, "keys", "create", "--project", "demo", "--role", "annotator"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    log = tmp_path / "serve.log"
    url_file = tmp_path / "url"
    server = Proc(
        "serve",
        subprocess.Popen(
            [*segaudit, "serve", "--embedded", "--port", "0", "--url-file", str(url_file)],
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        ),
        log,
    )
    try:
        wait_until(url_file.exists, 30, "the server's URL", server)
        url = url_file.read_text().strip()
        done = subprocess.run(
            [*segaudit, "submit", "--server", url, "--api-key", key, "--wait", "--poll", "0.2"]
            + ["--images", str(images[0].parent), "--masks", str(masks[0].parent)]
            + ["--parameters", json.dumps(TINY), "--out", str(tmp_path / "export")],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{server.tail()}"
        assert "succeeded: 8 cases" in done.stdout
        assert len(list((tmp_path / "export" / "cleansed").iterdir())) == 8
        assert (tmp_path / "var" / "broker.db").is_file()  # the SQLite broker carried the task
        audits = httpx.get(f"{url}/v1/audits", headers={"X-API-Key": key}).json()["items"]
        assert [a["status"] for a in audits] == ["succeeded"]
    finally:
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(60)
    assert server.process.returncode == 0
    pids = [int(part.split(")")[0]) for part in server.text().split("worker started (pid ")[1:]]
    assert len(pids) == 1  # it never had to be restarted
    wait_until(lambda: not _alive(pids[0]), 10, "the embedded worker to stop")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
