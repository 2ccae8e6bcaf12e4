"""``segaudit serve``: the API under uvicorn; ``--embedded`` adds a local worker.

Embedded mode is for one machine with no database server and no Redis (``make demo``): the
database is migrated first, then one ``segaudit worker`` process is started beside the API, on
the same settings (by default SQLite and kombu's SQLAlchemy transport on a SQLite file under
``SEGAUDIT_DATA_DIR``). It runs the same task code as a production worker, is started again if
it dies, and is stopped with the server. The API never imports the worker: it is a separate
process, started by command.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import Multiprocess

from app import logs
from app.db import migrate
from app.db.session import make_engine
from app.main import create_app
from app.settings import Settings, get_settings

log = logging.getLogger("segaudit.serve")
MAX_WORKERS = 64
LOG_LEVEL_ENV = "SEGAUDIT_SERVE_LOG_LEVEL"  # the parent's --log-level, for its worker processes


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segaudit serve", description="Serve the REST API (settings: SEGAUDIT_* environment)."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port (0: any free one)")
    parser.add_argument(
        "--embedded",
        action="store_true",
        help="also migrate the database and run one local worker on all queues",
    )
    parser.add_argument(
        "--url-file", type=Path, help="write the server's URL to this file once it listens"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes sharing the port (uvicorn's workers; about one per CPU core "
        "serves the most requests)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="uvicorn's log level",
    )
    return parser


def main(argv: Sequence[str]) -> int:
    """``argv[0]`` is the command (``serve``), the rest its options."""
    parser = _parser()
    args = parser.parse_args(list(argv[1:]))
    if not 1 <= args.workers <= MAX_WORKERS:
        parser.error(f"--workers must be within 1..{MAX_WORKERS}, not {args.workers}")
    logs.configure(args.log_level)  # one format, with request ids; uvicorn logs through it
    settings = get_settings()
    # uvicorn stops on SIGINT/SIGTERM, then raises the signal again: end with a clean exit
    # instead, so that the embedded worker is stopped below.
    for sig, code in ((signal.SIGTERM, 0), (signal.SIGINT, 130)):
        signal.signal(sig, lambda *_, code=code: sys.exit(code))
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(2048)  # connections wait in the backlog until uvicorn accepts them
    host, port = sock.getsockname()[:2]
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    worker = None
    if args.embedded:
        engine = make_engine(settings.database_url)
        migrate.upgrade(engine)
        engine.dispose()
        worker = EmbeddedWorker(settings, args.log_level)
        worker.start()
    try:
        # uvicorn's own logging config and access log would replace ours: app.logs logs each
        # request with its id.
        options: dict[str, Any] = {
            "log_level": args.log_level,
            "log_config": None,
            "access_log": False,
        }
        app = create_app(settings) if args.workers == 1 else None
        if args.url_file:  # written whole, then renamed: a reader never sees half of it
            partial = args.url_file.with_name(f".{args.url_file.name}.tmp")
            partial.write_text(url + "\n")
            partial.replace(args.url_file)
        shown = f" in {args.workers} processes" * (args.workers > 1)
        log.info(
            "serving %s%s (API docs at %s/docs)%s",
            url,
            shown,
            url,
            " with a worker" * bool(worker),
        )
        if app is not None:
            uvicorn.Server(uvicorn.Config(app, **options)).run(sockets=[sock])
        else:
            # Each process imports the app by name (they are spawned, not forked) and reads
            # the same settings from the environment; the log level travels there too.
            os.environ[LOG_LEVEL_ENV] = args.log_level
            config = uvicorn.Config(
                "cli.serve:worker_app", factory=True, workers=args.workers, **options
            )
            Multiprocess(config, sockets=[sock]).run()
    finally:
        if worker is not None:
            worker.stop()
    return 0


def worker_app() -> FastAPI:
    """The app of one of ``--workers`` server processes, logging as the parent does."""
    logs.configure(os.environ.get(LOG_LEVEL_ENV, "info"))
    return create_app()


class EmbeddedWorker:
    """A ``segaudit worker`` child process on the server's settings, started again if it dies."""

    def __init__(self, settings: Settings, log_level: str) -> None:
        self.command = [sys.executable, "-m", "cli", "worker", f"--loglevel={log_level}"]
        # The worker reads the same settings: pass the resolved ones, so that a relative
        # SEGAUDIT_DATA_DIR means the same folder whatever the child's working directory.
        self.env = {
            **os.environ,
            "SEGAUDIT_DATA_DIR": str(settings.data_dir),
            "SEGAUDIT_DATABASE_URL": settings.database_url,
            "SEGAUDIT_STORAGE_DIR": str(settings.storage),
            "SEGAUDIT_BROKER_URL": settings.broker_url,
        }
        self.process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # no new process once stop() has begun
        self._thread = threading.Thread(target=self._supervise, name="embedded-worker", daemon=True)

    def start(self) -> None:
        self._spawn()
        self._thread.start()

    def _spawn(self) -> subprocess.Popen[bytes] | None:
        with self._lock:
            if self._stopping.is_set():
                return None
            self.process = subprocess.Popen(self.command, env=self.env)
            log.info("embedded worker started (pid %s)", self.process.pid)
            return self.process

    def _supervise(self) -> None:
        delay = 1.0
        process = self.process
        while process is not None:
            code = process.wait()
            if self._stopping.is_set():
                return
            log.warning("embedded worker exited with %s; starting another in %.0f s", code, delay)
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, 30.0)
            process = self._spawn()

    def stop(self, timeout: float = 30.0) -> None:
        """Warm shutdown (a running audit goes back to the queue at its next step), then kill."""
        with self._lock:
            self._stopping.set()
            process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("embedded worker did not stop in %.0f s; killing it", timeout)
            process.kill()
            process.wait()
