"""Load on the case listing (``make bench-api``): ``GET /v1/audits/{id}/cases`` on loopback.

    python -m bench.api_load [--cases 10000] [--clients 50] [--duration 20] [--warmup 3]
                             [--workers N] [--client raw|httpx] [--postgres URL]
                             [--json FILE]

Bounded and self-contained: it makes a PostgreSQL database of its own (dropped at the end),
migrates it, inserts one finished audit with ``--cases`` results through the service's data
layer (``save_results``, the worker's own writer; no audit is run), starts the API as the
deployment does (``segaudit serve``, with ``--workers`` processes), then runs ``--clients``
concurrent keep-alive clients (``RawClient``, or httpx) for ``--duration`` seconds after
``--warmup``, each asking what a dashboard asks (a sort, sometimes a filter, mostly the first
pages, sometimes a deep one). It prints requests/s, latency percentiles, errors and the
machine it ran on.

The API is the one part of the service a benchmark drives from outside, so this module (alone
in ``bench/``) imports ``app`` (tests/test_layers.py names it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import psycopg
from sqlalchemy import Engine, insert, make_url
from sqlalchemy.orm import Session

from app.db import migrate
from app.db.base import utcnow
from app.db.enums import AuditStatus, Role
from app.db.session import make_engine
from app.db.tables import AnnotationSet, Audit, AuditMask, Case, Dataset, Mask, StoredFile
from app.services import keys
from app.services.result_rows import save_results
from app.storage import Store
from models.config import AuditConfig
from models.figure_names import CASE_FIGURES, CLASS_FIGURES
from models.results import CaseResult

POSTGRES = os.environ.get(
    "SEGAUDIT_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
# What a dashboard asks for: the route's sorts, each way round.
SORTS = ("-noise_score", "noise_score", "rank", "-rank", "case", "-case", "-dice_gap", "dice_gap")
PAGE = 50


# The numbers.


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``values`` by linear interpolation between the two
    nearest ranks (numpy's default); NaN for no values."""
    if not 0 <= q <= 100:
        raise ValueError(f"q must be within 0..100, not {q}")
    ordered = sorted(values)
    if not ordered:
        return math.nan
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class Summary:
    """What a run measured: requests answered 200 per second of the measured window, their
    latency percentiles in ms, and the requests that failed (another status or no answer).
    """

    requests: int
    errors: int
    seconds: float
    per_second: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    statuses: dict[str, int] = field(default_factory=dict)


def summarise(latencies_s: Sequence[float], statuses: Sequence[str], seconds: float) -> Summary:
    """``latencies_s`` and ``statuses`` (``"200"``, ``"503"``, or an exception's name) are one
    entry per request finished inside the measured window of ``seconds``."""
    if len(latencies_s) != len(statuses):
        raise ValueError("one status per latency")
    counts: dict[str, int] = {}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    ok = counts.get("200", 0)
    ms = [1000 * t for t in latencies_s]
    return Summary(
        requests=len(ms),
        errors=len(ms) - ok,
        seconds=round(seconds, 3),
        per_second=round(ok / seconds, 1) if seconds > 0 else math.nan,
        p50_ms=round(percentile(ms, 50), 1),
        p95_ms=round(percentile(ms, 95), 1),
        p99_ms=round(percentile(ms, 99), 1),
        max_ms=round(max(ms, default=math.nan), 1),
        statuses=dict(sorted(counts.items())),
    )


def dashboard_query(rng: random.Random, cases: int) -> dict[str, str]:
    """One listing request as a dashboard makes it: any sort; a filter one time in three
    (flagged or not, or a score band); the first page half the time, one of the next nine a
    third of the time, else any page up to the last.
    """
    params = {"sort": rng.choice(SORTS), "limit": str(PAGE)}
    pages = max(1, math.ceil(cases / PAGE))
    draw = rng.random()
    page = (
        0 if draw < 0.5 else rng.randrange(min(10, pages)) if draw < 0.83 else rng.randrange(pages)
    )
    params["offset"] = str(page * PAGE)
    kind = rng.randrange(6)
    if kind == 0:
        params["flagged"] = rng.choice(("true", "false"))
    elif kind == 1:
        low = round(rng.uniform(0, 0.8), 2)
        params["min_score"], params["max_score"] = str(low), str(round(low + 0.2, 2))
    return params


# The data.


@dataclass(frozen=True)
class Seeded:
    audit_id: int
    key: str  # a viewer's API key


def fake_result(rng: random.Random, name: str) -> CaseResult:
    """A plausible one-class result with every figure a real 2D audit stores."""
    score = rng.random()
    figures = {f: rng.random() for f in (*CASE_FIGURES, *CLASS_FIGURES)}
    figures |= {f"{f}_class_1": v for f, v in figures.items() if f in CLASS_FIGURES}
    figures["missing_objects"] = float(rng.random() < 0.05)
    figures["extra_objects"] = float(rng.random() < 0.05)
    figures |= {
        "evidence": math.log(score / (1 - score)) if 0 < score < 1 else 0.0,
        "given_pixels": float(rng.randrange(1000, 90000)),
        "predicted_pixels": float(rng.randrange(1000, 90000)),
    }
    return CaseResult(
        case=name,
        noise_score=score,
        flagged=score > 0.8,
        ce=figures["ce"],
        dice_gap=figures["dice_gap"],
        dice=(1 - figures["dice_gap"],),
        changed_fraction=rng.random() / 5,
        issue_fraction=rng.random() / 5,
        figures=figures,
        model_uncertain=rng.random() < 0.1,
    )


def seed(engine: Engine, cases: int, store: Store, *, rng_seed: int = 0) -> Seeded:
    """One project, a viewer key and a succeeded audit of ``cases`` results, in rank order,
    written by ``save_results`` as the worker writes them. The cases share one image row.
    """
    rng = random.Random(rng_seed)
    names = [f"{i:05d}_HC" for i in range(cases)]
    results = sorted((fake_result(rng, n) for n in names), key=CaseResult.sort_key)
    with Session(engine) as session:
        project = keys.get_or_create_project(session, "load")
        _, secret = keys.create_key(session, project, Role.viewer, "load")
        dataset = Dataset(project_id=project.id, name="load")
        image = StoredFile(sha256="0" * 64, size_bytes=1, name="image.png", format="png")
        session.add_all([dataset, image])
        session.flush()
        labels = AnnotationSet(dataset_id=dataset.id, name="load")
        session.add(labels)
        session.flush()
        geometry = {"shape": [540, 800], "spacing": [0.1, 0.1], "channels": 1}
        affine = [[0.1, 0, 0, 0], [0, 0.1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
        case_ids = session.scalars(
            insert(Case).returning(Case.id),
            [
                {"dataset_id": dataset.id, "name": n, "image_file_id": image.id, "affine": affine}
                | geometry
                for n in names
            ],
        ).all()
        mask_ids = session.scalars(
            insert(Mask).returning(Mask.id),
            [
                {"annotation_set_id": labels.id, "case_id": c, "file_id": image.id, "max_label": 1}
                for c in case_ids
            ],
        ).all()
        audit = Audit(
            dataset_id=dataset.id,
            annotation_set_id=labels.id,
            parameters=AuditConfig().to_dict(),
            status=AuditStatus.succeeded,
            finished_at=utcnow(),
            summary={"cases": cases, "flagged": sum(r.flagged for r in results)},
        )
        session.add(audit)
        session.flush()
        session.execute(insert(AuditMask), [{"audit_id": audit.id, "mask_id": m} for m in mask_ids])

        def no_files(*_: Any) -> Any:
            raise AssertionError("the seeded results have no masks to store")

        save_results(session, store, audit.id, results, store.root, no_files)
        session.commit()
        seeded = Seeded(audit.id, secret)
    if engine.dialect.name == "postgresql":  # what autovacuum does within a minute of the insert
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM ANALYZE")
    return seeded


@contextlib.contextmanager
def scratch_database(admin_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database on ``admin_url``'s server; dropped afterwards."""
    url = make_url(admin_url)
    name = f"segaudit_load_{uuid.uuid4().hex[:8]}"
    conninfo = url.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False
    )
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# The server and the clients.


@contextlib.contextmanager
def serving(database_url: str, data_dir: Path, workers: int) -> Iterator[tuple[str, int]]:
    """``segaudit serve`` on a free loopback port, on ``database_url``: its base URL and pid."""
    url_file = data_dir / "url"
    command = [sys.executable, "-m", "cli", "serve", "--port", "0", "--url-file", str(url_file)]
    if workers > 1:
        command += ["--workers", str(workers)]
    env = {
        **os.environ,
        "SEGAUDIT_DATABASE_URL": database_url,
        "SEGAUDIT_DATA_DIR": str(data_dir),
    }
    log = (data_dir / "serve.log").open("wb")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = _wait_until_ready(server, url_file, data_dir / "serve.log")
        yield base, server.pid
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def _wait_until_ready(server: subprocess.Popen[bytes], url_file: Path, log: Path) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(
                f"segaudit serve exited with {server.returncode}:\n{log.read_text()}"
            )
        if url_file.exists():
            base = url_file.read_text().strip()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    return base
        time.sleep(0.2)
    raise RuntimeError(f"segaudit serve did not answer within 60 s:\n{log.read_text()}")


class RawClient:
    """One keep-alive HTTP/1.1 connection that sends GETs and reads whole answers, as a load
    generator (wrk, ab) does: a status line, headers and a ``Content-Length`` or chunked body,
    nothing more. A tenth of httpx's CPU per request, so that on a machine whose cores the
    server shares, the clients take less of them (``--client httpx`` measures with httpx).
    """

    def __init__(self, base: str, headers: dict[str, str], timeout: float) -> None:
        url = httpx.URL(base)
        self.host, self.port = url.host, url.port or 80
        self.timeout = timeout
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.head = f"Host: {self.host}:{self.port}\r\n{extra}\r\n".encode()
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def get(self, path: str, params: dict[str, str]) -> tuple[int, bytes]:
        """``(status, body)`` of ``GET path?params``; raises ``OSError``/``ValueError`` (and
        drops the connection) when the answer does not come or cannot be read."""
        target = f"{path}?{urlencode(params)}" if params else path
        try:
            return await asyncio.wait_for(self._get(target), self.timeout)
        except (OSError, ValueError, asyncio.IncompleteReadError, TimeoutError):
            await self.close()
            raise

    async def _get(self, target: str) -> tuple[int, bytes]:
        if self.streams is None:
            self.streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.streams
        writer.write(b"GET " + target.encode() + b" HTTP/1.1\r\n" + self.head)
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        fields = {
            k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines if x)
        }
        if "content-length" in fields:
            body = await reader.readexactly(int(fields["content-length"]))
        elif fields.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                parts.append(await reader.readexactly(size))
                await reader.readexactly(2)
            await reader.readuntil(b"\r\n")
            body = b"".join(parts)
        else:
            raise ValueError("an answer with neither Content-Length nor chunks")
        if fields.get("connection", "").lower() == "close":
            await self.close()
        return status, body

    async def close(self) -> None:
        if self.streams is not None:
            writer = self.streams[1]
            self.streams = None
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def drive(
    base: str,
    seeded: Seeded,
    *,
    cases: int,
    clients: int,
    duration: float,
    warmup: float,
    rng_seed: int,
    cpu: Callable[[], dict[str, float]] = dict,
    client_kind: str = "raw",
) -> tuple[list[float], list[str], float, dict[str, float]]:
    """Run ``clients`` concurrent clients, one request after another each, for ``warmup`` +
    ``duration`` s; the latencies and statuses of the requests that started after the warm-up
    and finished inside the window, the window's length, and how much each of ``cpu()``'s
    CPU-second counters grew in it. ``client_kind`` is ``raw`` (``RawClient``, a connection
    each) or ``httpx`` (one ``httpx.AsyncClient`` pool).
    """
    if client_kind not in ("raw", "httpx"):
        raise ValueError(f"client_kind must be raw or httpx, not {client_kind!r}")
    path = f"/v1/audits/{seeded.audit_id}/cases"
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    latencies: list[float] = []
    statuses: list[str] = []
    loop = asyncio.get_running_loop()
    start = loop.time() + warmup
    stop = start + duration
    marks: list[dict[str, float]] = []
    for edge in (start, stop):
        loop.call_at(edge, lambda: marks.append(cpu()))

    async def client(k: int, get: Callable[[dict[str, str]], Awaitable[int]]) -> None:
        rng = random.Random(rng_seed * 1000 + k)
        while (sent := loop.time()) < stop:
            try:
                status = str(await get(dashboard_query(rng, cases)))
            except (httpx.HTTPError, OSError, ValueError, asyncio.IncompleteReadError) as exc:
                status = type(exc).__name__
            done = loop.time()
            if sent >= start and done <= stop:
                latencies.append(done - sent)
                statuses.append(status)

    headers = {"X-API-Key": seeded.key}
    if client_kind == "raw":
        raws = [RawClient(base, headers, 30.0) for _ in range(clients)]

        def raw_get(raw: RawClient) -> Callable[[dict[str, str]], Awaitable[int]]:
            async def get(params: dict[str, str]) -> int:
                return (await raw.get(path, params))[0]

            return get

        try:
            await asyncio.gather(*(client(k, raw_get(raws[k])) for k in range(clients)))
        finally:
            for raw in raws:
                await raw.close()
    else:
        timeout = httpx.Timeout(30.0)
        async with httpx.AsyncClient(
            base_url=base, headers=headers, limits=limits, timeout=timeout
        ) as http:

            async def httpx_get(params: dict[str, str]) -> int:
                response = await http.get(path, params=params)
                await response.aread()
                return response.status_code

            await asyncio.gather(*(client(k, httpx_get) for k in range(clients)))
    used = {k: marks[1][k] - marks[0][k] for k in marks[0] if k in marks[1]}
    return latencies, statuses, duration, used


def cpu_seconds(pids: Iterable[int]) -> float:
    """User and system CPU seconds of ``pids`` so far (from /proc; 0 for a pid that is gone)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime: the stat's 14th, 15th
    return total / os.sysconf("SC_CLK_TCK")


def process_tree(root: int) -> list[int]:
    """``root`` and its descendants (the server's worker processes)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def postgres_backends(database_url: str) -> list[int]:
    """The server processes of PostgreSQL serving ``database_url``'s database now."""
    conninfo = make_url(database_url).set(drivername="postgresql")
    with psycopg.connect(conninfo.render_as_string(hide_password=False)) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        ).fetchall()
    return [int(r[0]) for r in rows]


class CpuMeter:
    """CPU seconds so far of this process (the clients), the server's processes, and each
    PostgreSQL backend of the database (``postgres <pid>``: a backend counts where it served
    through the whole window; the pool's spare connections come and go, so their sum is a
    lower bound).
    """

    def __init__(self, server: int, database_url: str) -> None:
        self.server, self.database_url = server, database_url

    def __call__(self) -> dict[str, float]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "client": usage.ru_utime + usage.ru_stime,
            "server": cpu_seconds(process_tree(self.server)),
            **{f"postgres {p}": cpu_seconds([p]) for p in postgres_backends(self.database_url)},
        }


def by_part(used: dict[str, float]) -> dict[str, float]:
    """``CpuMeter``'s counters summed by part: client, server, postgres."""
    parts: dict[str, float] = {}
    for name, seconds in used.items():
        part = name.split()[0]
        parts[part] = round(parts.get(part, 0.0) + seconds, 2)
    return parts


def machine() -> dict[str, Any]:
    """Where the figures come from, and how busy the machine was."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model or platform.processor(),
        "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.api_load", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--cases", type=int, default=10_000, help="results in the audit")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
    parser.add_argument("--workers", type=int, default=1, help="server processes")
    parser.add_argument("--seed", type=int, default=0, help="the data's and the clients' seed")
    parser.add_argument("--postgres", default=POSTGRES, help="a PostgreSQL server to use")
    parser.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="the load clients: raw keep-alive HTTP/1.1 (cheap, as wrk) or httpx",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    for name in ("cases", "clients", "workers"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name} must be at least 1")
    if not (0 < args.duration <= 600 and 0 <= args.warmup <= 60):
        raise SystemExit("--duration must be within (0, 600] s and --warmup within [0, 60] s")
    with (
        tempfile.TemporaryDirectory(prefix="segaudit-load-") as tmp,
        scratch_database(args.postgres) as db,
    ):
        engine = make_engine(db)
        migrate.upgrade(engine)
        started = time.perf_counter()
        seeded = seed(engine, args.cases, Store(Path(tmp) / "storage"), rng_seed=args.seed)
        seeded_s = time.perf_counter() - started
        engine.dispose()
        with serving(db, Path(tmp), args.workers) as (base, pid):
            before = machine()
            latencies, statuses, seconds, cpu = asyncio.run(
                drive(
                    base,
                    seeded,
                    cases=args.cases,
                    clients=args.clients,
                    duration=args.duration,
                    warmup=args.warmup,
                    rng_seed=args.seed,
                    cpu=CpuMeter(pid, db),
                    client_kind=args.client,
                )
            )
    summary = summarise(latencies, statuses, seconds)
    cpu = by_part(cpu)
    per_request = {k: round(1000 * v / max(summary.requests, 1), 2) for k, v in cpu.items()}
    postgres = (
        f"{per_request['postgres']} (at least)"
        if "postgres" in per_request
        else "not measured (every connection was replaced during the window)"
    )
    report = {
        "summary": asdict(summary),
        "setup": {
            k: getattr(args, k)
            for k in ("cases", "clients", "duration", "warmup", "workers", "seed", "client")
        },
        "seeded_s": round(seeded_s, 1),
        "cpu_s": cpu,
        "cpu_ms_per_request": per_request,
        "machine": before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    print(
        f"GET /v1/audits/{{id}}/cases over {args.cases} results, {args.clients} clients, "
        f"{args.workers} server process(es), {args.client} clients, "
        f"{summary.seconds:.0f} s measured\n"
        f"  {summary.per_second:.1f} requests/s answered 200; {summary.requests} requests, "
        f"{summary.errors} errors {summary.statuses}\n"
        f"  latency ms: p50 {summary.p50_ms}  p95 {summary.p95_ms}  p99 {summary.p99_ms}  "
        f"max {summary.max_ms}\n"
        f"  CPU ms per request: server {per_request.get('server')}, PostgreSQL {postgres}, "
        f"load clients {per_request.get('client')}; "
        f"seeded in {seeded_s:.1f} s\n"
        f"  machine: {before['cpu']}, {before['cores']} cores, load average "
        f"{before['load_average']} before, {report['load_average_after']} after; "
        f"Python {before['python']}"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if summary.requests and not summary.errors else 1


if __name__ == "__main__":
    raise SystemExit(main())
