"""The load script's pieces (``bench/api_load.py``): its numbers, its requests and its data.
Not timed: ``make bench-api`` measures; these check that what it measures is right.
"""

from __future__ import annotations

import asyncio
import math
import random
import typing
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.api.routes.results import Sort
from app.db.session import make_engine
from app.db.tables import ResultRow
from app.main import create_app
from app.storage import Store
from bench import api_load
from tests.app.conftest import db_url, make_settings, migrated, pg_server  # noqa: F401  fixtures


@pytest.mark.parametrize("q", [0, 1, 25, 50, 90, 95, 99, 99.9, 100])
def test_the_percentile_is_numpy_s_linear_one(q):
    values = [random.Random(k).expovariate(0.02) for k in range(1001)]
    assert api_load.percentile(values, q) == pytest.approx(np.percentile(values, q), rel=1e-12)


def test_the_percentile_of_few_values_and_of_none():
    assert api_load.percentile([7.0], 99) == 7.0
    assert api_load.percentile([1.0, 2.0], 50) == 1.5
    assert api_load.percentile([3.0, 1.0, 2.0], 100) == 3.0  # unsorted input
    assert math.isnan(api_load.percentile([], 50))
    with pytest.raises(ValueError, match="0..100"):
        api_load.percentile([1.0], 101)


def test_the_summary_counts_only_200_as_served_and_the_rest_as_errors():
    latencies = [0.010] * 97 + [0.5, 2.0, 0.02]
    statuses = ["200"] * 97 + ["503", "ReadTimeout", "200"]
    summary = api_load.summarise(latencies, statuses, seconds=10.0)
    assert summary.requests == 100
    assert summary.errors == 2
    assert summary.per_second == 9.8
    assert summary.p50_ms == 10.0
    assert summary.max_ms == 2000.0
    assert summary.statuses == {"200": 98, "503": 1, "ReadTimeout": 1}
    with pytest.raises(ValueError):
        api_load.summarise([0.1], [], seconds=1.0)


def test_the_dashboard_asks_only_what_the_route_accepts_and_every_sort_and_depth():
    rng = random.Random(0)
    queries = [api_load.dashboard_query(rng, 10_000) for _ in range(3000)]
    assert {q["sort"] for q in queries} == set(typing.get_args(Sort))
    offsets = [int(q["offset"]) for q in queries]
    assert all(o % api_load.PAGE == 0 and 0 <= o < 10_000 for o in offsets)
    assert 0.4 < offsets.count(0) / len(offsets) < 0.6  # mostly the first page...
    assert max(offsets) >= 9000  # ...and sometimes the last ones
    assert {q.get("flagged") for q in queries} == {None, "true", "false"}
    bands = [(float(q["min_score"]), float(q["max_score"])) for q in queries if "min_score" in q]
    assert bands and all(0 <= lo < hi <= 1 for lo, hi in bands)
    assert all(api_load.dashboard_query(rng, 3)["offset"] == "0" for _ in range(50))


def test_seeding_writes_the_audit_that_the_listing_then_serves(tmp_path: Path, db_url: str):  # noqa: F811
    engine = make_engine(db_url)
    try:
        seeded = api_load.seed(engine, 30, Store(tmp_path / "storage"), rng_seed=3)
        with engine.connect() as conn:
            ranks = conn.scalars(
                select(ResultRow.rank).where(ResultRow.audit_id == seeded.audit_id)
            ).all()
            n = conn.scalar(select(func.count()).select_from(ResultRow))
    finally:
        engine.dispose()
    assert sorted(ranks) == list(range(1, 31)) and n == 30
    app = create_app(make_settings(tmp_path, db_url))
    with TestClient(app) as client:
        url = f"/v1/audits/{seeded.audit_id}/cases"
        headers = {"X-API-Key": seeded.key}
        page = client.get(url, params={"sort": "rank", "limit": 30}, headers=headers).json()
        assert page["total"] == 30
        shown = [(r["rank"], r["case"]) for r in page["items"]]
        assert [rank for rank, _ in shown] == list(range(1, 31))
        # Ranked as the engine ranks (CaseResult.sort_key): the highest evidence, which grows
        # with the score, first.
        scores = [r["noise_score"] for r in page["items"]]
        assert scores == sorted(scores, reverse=True)
        assert all(r["disagreement_kind"] for r in page["items"])  # figures a real audit has
        flagged = client.get(url, params={"flagged": "true"}, headers=headers).json()
        assert flagged["total"] == sum(s > 0.8 for s in scores)
        # A dashboard's requests all succeed on it.
        rng = random.Random(1)
        for _ in range(40):
            params = api_load.dashboard_query(rng, 30)
            assert client.get(url, params=params, headers=headers).status_code == 200


def test_cpu_is_summed_by_part_over_the_backends_seen_at_both_ends():
    used = {"client": 1.0, "server": 4.5, "postgres 11": 0.25, "postgres 12": 0.5}
    assert api_load.by_part(used) == {"client": 1.0, "server": 4.5, "postgres": 0.75}


def test_this_process_s_cpu_is_read_from_proc():
    import os

    spent = api_load.cpu_seconds([os.getpid()])
    sum(i * i for i in range(2_000_000))  # some CPU
    assert api_load.cpu_seconds([os.getpid()]) > spent
    assert api_load.cpu_seconds([2**22 + 12345]) == 0  # no such process
    assert os.getpid() in api_load.process_tree(os.getppid())


def test_the_raw_client_reads_sized_and_chunked_answers_on_one_connection():
    """``RawClient`` against a real socket: a Content-Length answer, a chunked one, the same
    connection kept, and a server that closes mid-answer reported as an error."""
    answers = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello",
        b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",  # then the server closes
    ]
    seen: list[bytes] = []
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        for answer in answers:
            seen.append(await reader.readuntil(b"\r\n\r\n"))
            writer.write(answer)
            await writer.drain()
        writer.close()

    async def run() -> list[object]:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = api_load.RawClient(f"http://127.0.0.1:{port}", {"X-API-Key": "k"}, 5.0)
        got: list[object] = [
            await client.get("/v1/x", {"sort": "-rank", "limit": "50"}),
            await client.get("/v1/y", {}),
        ]
        try:
            await client.get("/v1/z", {})
        except asyncio.IncompleteReadError as exc:
            got.append(type(exc).__name__)
        await client.close()
        server.close()
        await server.wait_closed()
        return got

    got = asyncio.run(run())
    assert got == [(200, b"hello"), (404, b"abcde"), "IncompleteReadError"]
    assert connections == 1
    assert seen[0].startswith(b"GET /v1/x?sort=-rank&limit=50 HTTP/1.1\r\n")
    assert b"\r\nX-API-Key: k\r\n" in seen[0] and seen[1].startswith(b"GET /v1/y HTTP/1.1\r\n")
