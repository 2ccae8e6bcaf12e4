"""The case listing of a succeeded audit, served from each process's memory.

A succeeded audit's results never change: the worker writes them with the audit's success and
nothing rewrites them (a new run is a new audit; an id that comes back after a delete on SQLite
comes back with another finish time). So the first page asked of such an audit reads its
results' sort keys once (``AuditOrder``: ids, scores, ranks, Dice gaps, flags, and each case
name's place in the database's own collation), and every later page is picked in memory: each
sort's order is computed once, a filter is a boolean mask over it. Each result, once written as
the listing sends it, is kept too, so a page whose rows were all listed before needs no
database at all; the others read only their missing rows, by primary key.

Both are kept per process, the most recently used first, within bounds (``ORDERS_KEPT``
audits, ``ROW_BYTES_KEPT`` bytes of rows). An audit that has not succeeded is listed by SQL
(``app.services.results.sql_page``), page by page. The API remembers which audits are settled
(``audit_memory``, with the keys' principals: ``Settings.access_cache_s``).
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.enums import AuditStatus
from app.db.tables import Audit, Case, ResultRow
from app.services.kept import Kept

AUDITS_KEPT = 4096  # settled audits the API remembers (``audit_memory``)
ORDERS_KEPT = 64  # audits whose sort keys a process keeps (about 40 bytes per result each)
ROW_BYTES_KEPT = 64 * 1024 * 1024  # bytes of listed rows a process keeps (~1.5 KB a row)


@dataclass(frozen=True)
class Query:
    """One listing request: the sort (a key of ``results.SORTS``, ``-`` first for
    descending), the filters, and the page."""

    sort: str = "-noise_score"
    flagged: bool | None = None
    min_score: float | None = None
    max_score: float | None = None
    limit: int = 50
    offset: int = 0


@dataclass
class AuditOrder:
    """A succeeded audit's results by their sort keys, one entry per result (in any order)."""

    ids: np.ndarray  # int64 result ids
    columns: dict[str, np.ndarray]  # sort name -> key: noise_score, rank, dice_gap, ...
    name_place: np.ndarray  # each case name's place among the audit's names, in SQL's order
    flagged: np.ndarray  # bool
    noise_score: np.ndarray  # float64
    _orders: dict[str, np.ndarray] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def order(self, sort: str) -> np.ndarray:
        """Positions in ``sort``'s order; ties (and the ``case`` sort) by case name, always
        ascending, as the SQL listing orders them."""
        with self._lock:
            known = self._orders.get(sort)
        if known is not None:
            return known
        key = self.columns[sort.removeprefix("-")]
        if sort.startswith("-"):  # descending on the key, ascending on the name
            key = -key
        found = np.lexsort((self.name_place, key))
        with self._lock:
            self._orders[sort] = found
        return found

    def page(self, query: Query) -> tuple[list[int], int]:
        """The ids of ``query``'s page, in order, and how many results match its filters."""
        order = self.order(query.sort)
        keep = np.ones(len(self.ids), dtype=bool)
        if query.flagged is not None:
            keep &= self.flagged == query.flagged
        if query.min_score is not None:
            keep &= self.noise_score >= query.min_score
        if query.max_score is not None:
            keep &= self.noise_score <= query.max_score
        picked = order if keep.all() else order[keep[order]]
        window = picked[query.offset : query.offset + query.limit]
        return [int(i) for i in self.ids[window]], len(picked)


def load_order(session: Session, audit: Audit | SettledAudit, sorts: dict[str, Any]) -> AuditOrder:
    """Read the sort keys of ``audit``'s results: one query, the names placed by the database's
    own ``ORDER BY`` (its collation), so that memory and SQL agree on every page."""
    place = func.row_number().over(order_by=Case.name)
    columns = [c for name, c in sorts.items() if name != "case"]
    rows = session.execute(
        select(ResultRow.id, ResultRow.flagged, ResultRow.noise_score, place, *columns)
        .join(Case, Case.id == ResultRow.case_id)
        .where(ResultRow.audit_id == audit.id)
    ).all()
    table = list(zip(*rows, strict=True)) if rows else [()] * (4 + len(columns))
    names = [n for n in sorts if n != "case"]
    keys = {n: np.asarray(table[4 + i], dtype=np.float64) for i, n in enumerate(names)}
    name_place = np.asarray(table[3], dtype=np.int64)
    keys["case"] = name_place.astype(np.float64)
    return AuditOrder(
        ids=np.asarray(table[0], dtype=np.int64),
        columns=keys,
        name_place=name_place,
        flagged=np.asarray(table[1], dtype=bool),
        noise_score=np.asarray(table[2], dtype=np.float64),
    )


_orders: Kept[tuple[str, int, Any], AuditOrder] = Kept(ORDERS_KEPT)
_rows: Kept[tuple[str, int, Any, int], bytes] = Kept(ROW_BYTES_KEPT, len)
_loading = threading.Lock()


def database_of(session: Session) -> str:
    """Which database ``session`` reads (a process may serve more than one: tests)."""
    bind = session.get_bind()
    return str(bind.engine.url)


def is_settled(audit: Audit | SettledAudit) -> bool:
    """Whether ``audit``'s results can no longer change (it succeeded, at a known time)."""
    if isinstance(audit, SettledAudit):
        return True
    return audit.status == AuditStatus.succeeded and audit.finished_at is not None


@dataclass(frozen=True)
class SettledAudit:
    """What the listing needs of a settled audit, to remember between requests (the API keeps
    them, by project and id, for ``Settings.access_cache_s``)."""

    id: int
    finished_at: dt.datetime
    class_names: dict[int, str]


def settled(audit: Audit, class_names: dict[int, str]) -> SettledAudit | None:
    """``audit`` as a ``SettledAudit``, or None while its results may still change."""
    if not is_settled(audit) or audit.finished_at is None:
        return None
    return SettledAudit(audit.id, audit.finished_at, dict(class_names))


def audit_memory(ttl: float) -> Kept[tuple[int, int], SettledAudit]:
    """Where the API remembers settled audits by ``(project id, audit id)`` for ``ttl`` s."""
    return Kept(AUDITS_KEPT, ttl=ttl)


def kept_order(database: str, audit: Audit | SettledAudit) -> AuditOrder | None:
    """``audit``'s ``AuditOrder`` if this process has read it, without asking the database."""
    return _orders.get((database, audit.id, audit.finished_at))


def order_of(session: Session, audit: Audit | SettledAudit, sorts: dict[str, Any]) -> AuditOrder:
    """``audit``'s ``AuditOrder`` (a settled audit's), read once per process."""
    database = database_of(session)
    found = kept_order(database, audit)
    if found is None:
        with _loading:  # one read at a time: the threads that wait then find it read
            found = kept_order(database, audit)
            if found is None:
                found = load_order(session, audit, sorts)
                _orders.put((database, audit.id, audit.finished_at), found)
    return found


def kept_rows(database: str, audit: Audit | SettledAudit, ids: list[int]) -> list[bytes | None]:
    """The rows ``keep_row`` kept of ``audit``'s results ``ids`` (None where not kept)."""
    return [_rows.get((database, audit.id, audit.finished_at, i)) for i in ids]


def keep_row(database: str, audit: Audit | SettledAudit, result_id: int, data: bytes) -> None:
    """Keep one result of a settled ``audit`` as the listing writes it."""
    if is_settled(audit):
        _rows.put((database, audit.id, audit.finished_at, result_id), data)


def page_in_memory(
    database: str, audit: SettledAudit, query: Query
) -> tuple[list[bytes], int] | None:
    """``query``'s rows (as kept) and how many results match, where this process has read the
    audit's order and kept every row of the page; else None."""
    order = kept_order(database, audit)
    if order is None:
        return None
    ids, total = order.page(query)
    rows = kept_rows(database, audit, ids)
    if any(r is None for r in rows):
        return None
    return [r for r in rows if r is not None], total


def forget() -> None:
    """Drop what this process keeps (tests; an operator's reset)."""
    _orders.clear()
    _rows.clear()
