"""The case listing of a succeeded audit from memory (``app.services.listing``): the same pages
as the database's ``ORDER BY``, ``OFFSET`` and ``count`` give, on SQLite and PostgreSQL, with
tied scores and names that sort differently by byte and by collation; and what is kept stays
within its bounds and never outlives the audit.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.session import make_engine
from app.db.tables import ApiKey, Audit, Case, Dataset, ResultRow
from app.schemas import Page, ResultOut
from app.services import keys, listing, results
from app.services.kept import Kept
from app.storage import Store
from bench.api_load import SORTS, dashboard_query, seed

CASES = 240
# Names whose byte order and a locale's collation disagree (case, accents, punctuation).
ODD_NAMES = ["apple", "Apple", "_b", "b-2", "B_1", "émile", "Zed", "zed", "a b", "a_b"]


@pytest.fixture
def audit_db(db_url: str, tmp_path: Path):
    engine = make_engine(db_url)
    seeded = seed(engine, CASES, Store(tmp_path / "storage"), rng_seed=3)
    with Session(engine) as session:
        audit = session.get(Audit, seeded.audit_id)
        assert audit is not None and listing.is_settled(audit)
        cases = session.scalars(
            select(Case).where(Case.dataset_id == audit.dataset_id).order_by(Case.id)
        ).all()
        for case, name in zip(cases, ODD_NAMES, strict=False):
            case.name = name
        rows = session.scalars(
            select(ResultRow).where(ResultRow.audit_id == audit.id).order_by(ResultRow.id)
        ).all()
        for row in rows[::7]:  # ties on every sort but the name
            row.noise_score, row.dice_gap = 0.5, 0.25
        session.commit()
    listing.forget()
    yield engine, seeded.audit_id
    listing.forget()
    engine.dispose()


def _query(params: dict[str, str]) -> listing.Query:
    flagged = params.get("flagged")
    return listing.Query(
        sort=params["sort"],
        flagged=None if flagged is None else flagged == "true",
        min_score=float(params["min_score"]) if "min_score" in params else None,
        max_score=float(params["max_score"]) if "max_score" in params else None,
        limit=int(params["limit"]),
        offset=int(params["offset"]),
    )


def _row(result: results.ListedResult) -> bytes:
    return repr(result).encode()


def test_memory_pages_are_the_databases_pages(audit_db):
    engine, audit_id = audit_db
    rng = random.Random(5)
    queries = [listing.Query(sort=s, limit=CASES) for s in SORTS]  # each whole order
    queries += [listing.Query(sort=s, offset=CASES - 3, limit=10) for s in SORTS]  # the end
    queries += [listing.Query(sort="-noise_score", min_score=0.5, max_score=0.5)]  # the ties
    queries += [_query(dashboard_query(rng, CASES) | {"limit": "20"}) for _ in range(80)]
    with Session(engine) as session:
        audit = session.get(Audit, audit_id)
        assert audit is not None
        for query in queries:
            sql = results.sql_page(session, audit, query)
            memory = results.rendered_page(session, audit, query, _row)
            assert memory == ([_row(r) for r in sql.items], sql.total), query
            database = listing.database_of(session)
            settled = listing.settled(audit, {})
            assert settled is not None
            assert listing.page_in_memory(database, settled, query) == memory  # now all kept
        by_case = results.sql_page(session, audit, listing.Query(sort="case", limit=CASES))
        by_score = results.sql_page(session, audit, queries[0])
    names = [r.case_name for r in by_case.items]
    assert set(ODD_NAMES) <= set(names) and len(set(names)) == CASES
    scores = [r.noise_score for r in by_score.items]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) < CASES  # ties


def test_a_settled_audits_order_is_read_once_and_its_rows_kept(audit_db):
    engine, audit_id = audit_db
    with Session(engine) as session:
        audit = session.get(Audit, audit_id)
        assert audit is not None
        database = listing.database_of(session)
        settled = listing.settled(audit, {})
        assert settled is not None
        assert listing.page_in_memory(database, settled, listing.Query()) is None
        first = listing.order_of(session, audit, results.SORTS)
        assert listing.order_of(session, settled, results.SORTS) is first
        rendered: list[int] = []

        def render(result: results.ListedResult) -> bytes:
            rendered.append(result.case_id)
            return _row(result)

        one = results.rendered_page(session, settled, listing.Query(limit=10), render)
        two = results.rendered_page(session, settled, listing.Query(limit=10), render)
        assert one == two and len(rendered) == 10  # the second page came from memory
        results.rendered_page(session, settled, listing.Query(limit=15), render)
        assert len(rendered) == 15  # only the five rows not listed before


def test_an_unsettled_audit_is_listed_by_sql_and_nothing_kept(audit_db):
    engine, audit_id = audit_db
    with Session(engine) as session:
        session.execute(update(Audit).where(Audit.id == audit_id).values(finished_at=None))
        session.commit()
        audit = session.get(Audit, audit_id)
        assert audit is not None and not listing.is_settled(audit)
        assert listing.settled(audit, {}) is None
        rendered: list[int] = []

        def render(result: results.ListedResult) -> bytes:
            rendered.append(result.case_id)
            return _row(result)

        for _ in range(2):
            rows, total = results.rendered_page(session, audit, listing.Query(limit=10), render)
            assert total == CASES and len(rows) == 10
        assert len(rendered) == 20
        assert listing.kept_order(listing.database_of(session), audit) is None


def test_a_page_from_memory_is_the_documented_page_byte_for_byte(api_factory):
    api = api_factory()
    audit_id = _own_audit(api, 30)
    url = f"/v1/audits/{audit_id}/cases"
    params = {"sort": "case", "limit": "7", "offset": "3"}
    first, again = api.get(url, params=params), api.get(url, params=params)
    assert first.status_code == again.status_code == 200
    assert first.content == again.content  # the second from memory
    engine = make_engine(api.settings.database_url)
    with Session(engine) as session:
        audit = session.get(Audit, audit_id)
        assert audit is not None
        sql = results.sql_page(session, audit, listing.Query(sort="case", limit=7, offset=3))
        items = [ResultOut.of(r, results.class_names_of(audit)) for r in sql.items]
    engine.dispose()
    documented = Page[ResultOut](items=items, total=sql.total, limit=7, offset=3)
    assert again.content == documented.model_dump_json().encode()


def test_kept_values_stay_within_the_budget_most_recent_first():
    kept: Kept[str, bytes] = Kept(10, len)
    kept.put("a", b"1234")
    kept.put("b", b"1234")
    assert kept.get("a") == b"1234"  # now the most recent
    kept.put("c", b"1234")  # 12 > 10: the least recent ("b") goes
    assert kept.get("b") is None and kept.get("a") and kept.get("c")
    assert kept.used == 8
    kept.put("big", b"x" * 11)  # larger than the whole budget: not kept, nothing dropped
    assert kept.get("big") is None and len(kept) == 2
    kept.put("a", b"12")  # replaced, weighed anew
    assert kept.used == 6


def test_a_deleted_audit_is_not_served_from_memory(api_factory):
    api = api_factory(access_cache_s=60.0)
    audit_id = _own_audit(api, 30)
    url = f"/v1/audits/{audit_id}/cases"
    first = api.get(url)
    assert first.status_code == 200 and first.json()["total"] == 30
    assert api.get(url).content == first.content
    removed = api.client.delete(f"/v1/audits/{audit_id}", headers=api.headers["admin"])
    assert removed.status_code == 200, removed.text
    assert api.get(url).status_code == 404


def test_kept_values_expire_after_their_time_to_live():
    now = [100.0]
    kept: Kept[str, int] = Kept(10, ttl=5.0, clock=lambda: now[0])
    kept.put("a", 1)
    now[0] += 4.9
    assert kept.get("a") == 1
    now[0] += 0.1
    assert kept.get("a") is None and len(kept) == 0
    never: Kept[str, int] = Kept(10, ttl=0)
    never.put("a", 1)
    assert never.get("a") is None


def _own_audit(api, cases: int = 12) -> int:
    """A seeded succeeded audit in the API's project "alpha"."""
    engine = make_engine(api.settings.database_url)
    with Session(engine) as session:
        project_id = keys.get_or_create_project(session, "alpha").id
    seeded = seed(engine, cases, Store(api.settings.storage))
    with Session(engine) as session:
        audit = session.get(Audit, seeded.audit_id)
        assert audit is not None
        session.execute(
            update(Dataset).where(Dataset.id == audit.dataset_id).values(project_id=project_id)
        )
        session.commit()
    engine.dispose()
    return seeded.audit_id


def _revoke_elsewhere(api, role: str) -> None:
    """Revoke the key of ``role`` as another server process (or the CLI) would: in the
    database, unseen by this process."""
    engine = make_engine(api.settings.database_url)
    with Session(engine) as session:
        key = session.scalar(
            select(ApiKey).where(ApiKey.key_hash == keys.hash_key(api.headers[role]["X-API-Key"]))
        )
        assert key is not None
        key.revoked_at = utcnow()
        session.commit()
    engine.dispose()


@pytest.mark.parametrize("ttl", [0.0, 60.0])
def test_a_key_revoked_elsewhere_stops_working_within_the_access_cache_time(api_factory, ttl):
    api = api_factory(access_cache_s=ttl)
    url = f"/v1/audits/{_own_audit(api)}/cases"
    assert api.get(url, role="viewer").status_code == 200
    _revoke_elsewhere(api, "viewer")
    # Remembered for access_cache_s by this process (the listing and every other route).
    expected = 401 if ttl == 0 else 200
    assert api.get(url, role="viewer").status_code == expected
    assert api.get("/v1/datasets", role="viewer").status_code == expected


def test_a_key_revoked_through_this_process_stops_working_at_once(api_factory):
    api = api_factory(access_cache_s=60.0)
    url = f"/v1/audits/{_own_audit(api)}/cases"
    assert api.get(url, role="viewer").status_code == 200
    listed = api.get("/v1/keys", role="admin").json()
    viewer = next(k for k in listed if k["name"] == "alpha-viewer")
    assert api.post(f"/v1/keys/{viewer['id']}/revoke", role="admin").status_code == 200
    refused = api.get(url, role="viewer")
    assert refused.status_code == 401 and refused.json()["code"] == "invalid_key"
