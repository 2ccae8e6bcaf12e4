"""Throwaway servers and disks for the fault tests: a PostgreSQL cluster, a Redis server and a
small file system of their own, which a test may stop, restart or fill without touching the
shared servers (5432, 6379) or the machine's disks.

Each is started by its fixture. A server the machine cannot start (no PostgreSQL binaries, no
``postgres`` user) goes through ``tests.app.conftest.unavailable``: a failure under ``CI``, a
skip with the reason elsewhere. A disk that cannot be mounted (not root) is skipped with the
reason, also under ``CI``: an injected ``ENOSPC`` stands in for it.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise RuntimeError(f"gave up after {timeout:.0f} s waiting for {what}")


@dataclass
class Postgres:
    """A PostgreSQL cluster in ``folder`` on ``port``, run as the ``postgres`` user when this
    process is root (``initdb`` refuses root).
    """

    folder: Path
    port: int
    bindir: Path

    @classmethod
    def create(cls) -> Postgres:
        """A new cluster in a temporary folder of its own (``remove`` deletes it)."""
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            raise FileNotFoundError("no /usr/lib/postgresql/*/bin/initdb")
        folder = Path(tempfile.mkdtemp(prefix="segaudit-pg-"))  # in /tmp: postgres reaches it
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(folder, user.pw_uid, user.pw_gid)
        server = cls(folder, free_port(), Path(found[-1]).parent)
        server._run("initdb", "-D", str(server.data), "-A", "trust", "-U", "postgres", "--no-sync")
        return server

    def remove(self) -> None:
        if self.running():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bindir / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.folder / "server.log")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")

    def stop(self) -> None:
        """Stop at once (``-m fast``: open connections are cut, as in a restart or failover)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def create_database(self, name: str) -> str:
        conninfo = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@dataclass
class Redis:
    """A Redis server on ``port`` that keeps nothing on disk: a restart loses every message."""

    folder: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redis

        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.folder)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)

        def pings() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        _wait(pings, 20, "a throwaway Redis")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None


@dataclass
class SmallDisk:
    """A tmpfs of ``size`` bytes mounted at ``path``, that ``fill`` leaves with only a little
    space (a ballast file) and ``free`` empties again.
    """

    path: Path

    @property
    def ballast(self) -> Path:
        return self.path / "ballast"

    def available(self) -> int:
        stat = os.statvfs(self.path)
        return stat.f_bavail * stat.f_frsize

    def inodes_available(self) -> int:
        return os.statvfs(self.path).f_favail

    def fill(self, leave: int) -> None:
        """Write ballast until only about ``leave`` bytes are left."""
        block = b"\0" * 1024 * 1024
        with self.ballast.open("ab") as f:
            while (more := self.available() - leave) > 0:
                f.write(block[:more])
                f.flush()

    def fill_inodes(self, leave: int) -> None:
        """Create empty ballast files until only ``leave`` files or folders can be made."""
        folder = self.path / "ballast.d"
        folder.mkdir(exist_ok=True)
        while self.inodes_available() > leave:
            (folder / str(self.inodes_available())).touch()

    def free(self) -> None:
        self.ballast.unlink(missing_ok=True)
        shutil.rmtree(self.path / "ballast.d", ignore_errors=True)


def mount_tmpfs(path: Path, size: int, inodes: int = 4096) -> SmallDisk:
    """Mount a tmpfs of ``size`` bytes and ``inodes`` files and folders at ``path`` (root, or
    a user allowed to mount).
    """
    if shutil.which("mount") is None:
        raise FileNotFoundError("no mount command")
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "mount",
            "-t",
            "tmpfs",
            "-o",
            f"size={size},nr_inodes={inodes}",
            "segaudit-test",
            str(path),
        ],
        check=True,
        capture_output=True,
        timeout=10,
    )
    return SmallDisk(path)


def unmount(disk: SmallDisk) -> None:
    subprocess.run(["umount", "-l", str(disk.path)], capture_output=True, timeout=10)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    """A 64 MB tmpfs for the test's storage folder (an audit of 8 hc18 cases needs about 30).

    Without the right to mount, the test is skipped (under CI too): the fallback,
    ``tests/app/test_faults.py::test_a_full_disk_met_by_the_publish_itself_keeps_nothing``,
    injects ENOSPC into the storage layer and runs everywhere.
    """
    try:
        disk = mount_tmpfs(tmp_path / "disk", 64 * 1024 * 1024)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"a tmpfs cannot be mounted here ({exc}); the injected-ENOSPC test runs")
    yield disk
    unmount(disk)
