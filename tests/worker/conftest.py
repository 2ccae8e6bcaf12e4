"""Fixtures for the workers: a fresh PostgreSQL database and queues of its own per test, a real
Redis broker, real ``segaudit worker`` (and ``segaudit serve``) processes, real hc18 images.

PostgreSQL and Redis are reached as in ``tests/app`` (``SEGAUDIT_TEST_POSTGRES``,
``SEGAUDIT_TEST_REDIS``): unreachable, the tests fail under ``CI`` and are skipped otherwise.
Audits are tiny (32 px, a U-Net of 8 and 16 channels, 8 cases), so each takes seconds on a CPU.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.db import migrate
from app.db.enums import Role
from app.db.session import make_engine, make_sessions
from app.db.tables import Audit, ResultRow
from app.main import create_app
from app.services import keys
from app.settings import Settings
from tests.app.conftest import RUN, Api, PgServer, pg_server, redis_url  # noqa: F401
from tests.conftest import copy_hc18

ROOT = Path(__file__).resolve().parents[2]
# Subprocesses import this checkout's packages, even where an older editable install of it
# predates worker/.
SOURCE_PATH = {
    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
}
# A few seconds per audit on a CPU; enough epochs to be caught mid-training where needed.
TINY: dict[str, Any] = {"size": 32, "channels": [8, 16], "epochs": 4, "batch_size": 4}


@dataclass
class Proc:
    """A ``segaudit`` subprocess with its output in a log file."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.text().splitlines()[-lines:])

    def wait_for_log(self, needle: str, timeout: float = 60) -> None:
        wait_until(lambda: needle in self.text(), timeout, f"{self.name} to log {needle!r}", self)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)


def wait_until(
    check: Callable[[], Any], timeout: float, what: str, proc: Proc | None = None
) -> Any:
    """Poll ``check`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if proc is not None and proc.process.poll() is not None:
            pytest.fail(
                f"{proc.name} exited ({proc.process.returncode}) waiting for {what}:\n{proc.tail()}"
            )
        time.sleep(0.1)
    log = f"\n{proc.name} said:\n{proc.tail()}" if proc is not None else ""
    pytest.fail(f"gave up after {timeout:.0f} s waiting for {what}{log}")


@dataclass
class Service:
    """One test's service: settings, the environment its processes get, an in-process API."""

    settings: Settings
    env: dict[str, str]
    api: Api
    tmp: Path
    procs: list[Proc] = field(default_factory=list)

    def spawn(self, name: str, *args: str, env: dict[str, str] | None = None) -> Proc:
        log = self.tmp / f"{name}-{len(self.procs)}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", *args],
            env={**self.env, **(env or {})},
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            cwd=self.tmp,
        )
        proc = Proc(name, process, log)
        self.procs.append(proc)
        return proc

    def worker(self, **env: str) -> Proc:
        """A ``segaudit worker`` process, once it is ready for tasks."""
        proc = self.spawn("worker", "worker", "--loglevel=info", env=env)
        proc.wait_for_log(" ready.", timeout=90)
        return proc

    def audit(self, audit_id: int) -> Audit:
        with self.api.sessions() as session:
            audit = session.get(Audit, audit_id)
            assert audit is not None
            return audit

    def wait_status(self, audit_id: int, status: str, proc: Proc, timeout: float = 90) -> Audit:
        def reached() -> Audit | None:
            audit = self.audit(audit_id)
            if audit.status != status and audit.status in ("succeeded", "failed", "cancelled"):
                pytest.fail(
                    f"audit {audit_id} ended {audit.status}, not {status}: "
                    f"{audit.error_code} {audit.error_message}\n{proc.tail()}"
                )
            return audit if audit.status == status else None

        return wait_until(reached, timeout, f"audit {audit_id} to be {status}", proc)

    def result_counts(self, audit_id: int) -> tuple[int, int]:
        """(result rows, distinct cases) of an audit."""
        with self.api.sessions() as session:
            query = select(func.count(), func.count(ResultRow.case_id.distinct())).where(
                ResultRow.audit_id == audit_id
            )
            rows, cases = session.execute(query).one()
            return int(rows), int(cases)


@pytest.fixture
def hc18_cases(tmp_path: Path) -> tuple[list[Path], list[Path]]:
    """Eight real hc18 cases (PNG 800x540, masks 0/1): the fewest an audit takes."""
    images, masks = copy_hc18(tmp_path / "hc18", 8, step=7)
    return sorted(images.iterdir()), sorted(masks.iterdir())


@pytest.fixture
def make_service(
    tmp_path: Path,
    pg_server: PgServer,  # noqa: F811
    redis_url: str,  # noqa: F811
) -> Iterator[Callable[..., Service]]:
    """Build a service on a fresh PostgreSQL database with queues of its own; the broker is
    the test Redis unless ``broker_url`` says otherwise. Processes are stopped afterwards.
    """
    made: list[tuple[Service, TestClient, str | None]] = []

    def build(**overrides: Any) -> Service:
        tag = uuid.uuid4().hex[:6]
        # A database of the test's own (a throwaway server) is the caller's; else a new one.
        name = None if "database_url" in overrides else f"segaudit_worker_{RUN}_{tag}"
        url = overrides["database_url"] if name is None else pg_server.create(name)
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        values: dict[str, Any] = {
            "data_dir": tmp_path / "var",
            "database_url": url,
            "storage_dir": tmp_path / "storage",
            "broker_url": redis_url,
            "audit_queue": f"test-{RUN}-{tag}-gpu",
            "cpu_queue": f"test-{RUN}-{tag}-cpu",
            "device": "cpu",
            "heartbeat_timeout_s": 3,
            "reconcile_interval_s": 1,
            "progress_interval_s": 0.2,
        }
        values.update(overrides)
        settings = Settings(**values)
        env = {
            **os.environ,
            **{f"SEGAUDIT_{k.upper()}": str(v) for k, v in values.items()},
            "OMP_NUM_THREADS": "1",  # two cores, shared: one thread each
            "PYTHONUNBUFFERED": "1",
            **SOURCE_PATH,
        }
        app = create_app(settings)
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        headers = {}
        sessions = make_sessions(app.state.engine)
        with sessions() as session:
            project = keys.get_or_create_project(session, "alpha")
            for role in (Role.viewer, Role.annotator):
                _, secret = keys.create_key(session, project, role, role.value)
                headers[role.value] = {"X-API-Key": secret}
        service = Service(settings, env, Api(client, settings, sessions, headers), tmp_path)
        made.append((service, client, name))
        return service

    yield build
    for service, client, name in made:
        for proc in service.procs:
            proc.kill()  # the test is over: no need to wait for a warm shutdown
        client.__exit__(None, None, None)
        if name is not None:
            pg_server.drop(name)
        _forget_queues(service.settings)


def _forget_queues(settings: Settings) -> None:
    if not settings.broker_url.startswith("redis://"):
        return
    try:
        client = redis.Redis.from_url(settings.broker_url, socket_connect_timeout=2)
        for queue in (settings.audit_queue, settings.cpu_queue):
            client.delete(queue, *client.keys(f"_kombu.binding*{queue}*"))
    except redis.RedisError:
        pass  # a throwaway Redis that is gone already


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Train in this process on one thread, as the worker processes do (two shared cores)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
