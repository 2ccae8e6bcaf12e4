"""Storing an audit's results: the engine's ``CaseResult`` records, handed over in memory, become
rows of ``case_results`` with their masks in the store.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import statistics
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.tables import Audit, AuditMask, Case, Mask, ResultRow
from app.errors import NotFound
from app.services.files import AddFile
from app.storage import Store, copy_stream
from imaging.errors import ErrorCode
from models.results import CaseResult

UPSERT_BATCH = 500


def save_results(
    session: Session,
    store: Store,
    audit_id: int,
    results: Sequence[CaseResult],
    out_dir: Path,
    add_file: AddFile,
) -> None:
    """Insert or overwrite the audit's per-case results, keyed on (audit, case); flushes only.

    ``results`` are in rank order; their masks' paths are relative to ``out_dir``. ``add_file``
    comes from ``publishing``, which commits the rows with their files.
    """
    case_ids = dict(
        session.execute(
            select(Case.name, Case.id)
            .join(Mask, Mask.case_id == Case.id)
            .join(AuditMask, AuditMask.mask_id == Mask.id)
            .where(AuditMask.audit_id == audit_id)
        ).all()
    )
    rows = []
    with store.staging() as folder:
        for rank, result in enumerate(results, start=1):
            if result.case not in case_ids:
                raise NotFound(ErrorCode.NOT_FOUND, f"audit {audit_id} has no case '{result.case}'")
            row: dict[str, Any] = {
                "audit_id": audit_id,
                "case_id": case_ids[result.case],
                "rank": rank,
                "noise_score": result.noise_score,
                "flagged": result.flagged,
                "ce": result.ce,
                "dice_gap": result.dice_gap,
                "dice": list(result.dice),
                "changed_fraction": result.changed_fraction,
                "issue_fraction": result.issue_fraction,
                "slices": [dataclasses.asdict(s) for s in result.slices] or None,
                "figures": {k: v for k, v in result.figures.items() if math.isfinite(v)},
                "model_uncertain": result.model_uncertain,
                "updated_at": utcnow(),
            }
            for column, path in (
                ("cleansed_file_id", result.cleansed),
                ("pseudo_label_file_id", result.pseudo_label),
                ("issue_map_file_id", result.issue_map),
            ):
                row[column] = (
                    None if path is None else _store_file(session, add_file, folder, out_dir / path)
                )
            rows.append(row)
        for start in range(0, len(rows), UPSERT_BATCH):
            _upsert(session, rows[start : start + UPSERT_BATCH])


def _store_file(session: Session, add_file: AddFile, folder: Path, path: Path) -> int:
    target = folder / uuid.uuid4().hex
    with path.open("rb") as stream:
        written = copy_stream(stream, target)
    row = add_file(written, path.name)
    session.flush()  # for the file's id
    return row.id


def _upsert(session: Session, rows: list[dict[str, Any]]) -> None:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        statement: Any = pg_insert(ResultRow).values(rows)
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        statement = sqlite_insert(ResultRow).values(rows)
    else:  # pragma: no cover - the two databases the service supports
        raise NotImplementedError(f"no upsert for {dialect}")
    keep = {"audit_id", "case_id"}
    statement = statement.on_conflict_do_update(
        index_elements=["audit_id", "case_id"],
        set_={k: statement.excluded[k] for k in rows[0] if k not in keep},
    )
    session.execute(statement)


RUN_KEY = "run"  # the summary's copy of run.json, served as the history and in the export
SUMMARY = "summary.json"  # the export's file of the audit's id, dates, version and counts
_WORKER_PATHS = ("images", "masks")  # run.json's inputs that name the worker's own folders


def summarise(
    results: Sequence[CaseResult], audit: Audit, finished: dt.datetime, run: dict[str, Any]
) -> dict[str, Any]:
    """Counts and durations (no AUROC: production has no ground truth), the engine's version,
    and run.json's record under ``RUN_KEY`` (``public_summary`` leaves it out).
    """
    scores = [r.noise_score for r in results]
    started = audit.started_at or finished
    engine = run.get("summary", {})
    inputs = {k: v for k, v in run.get("inputs", {}).items() if k not in _WORKER_PATHS}
    return {
        "engine_version": run.get("versions", {}).get("segaudit"),
        "classes": inputs.get("classes") or audit.parameters.get("classes") or {},
        RUN_KEY: {**run, "inputs": inputs} if run.get("inputs") else dict(run),
        "cases": len(results),
        "flagged": sum(r.flagged for r in results),
        "mean_noise_score": round(statistics.fmean(scores), 6) if scores else None,
        "max_noise_score": round(max(scores), 6) if scores else None,
        "filter_degenerate": engine.get("filter_degenerate"),
        "filter_reason": engine.get("filter_reason"),
        # The flag's mixture on the evidence (models.flagging): the clean component's centre and
        # spread and the noisy share; None for audits run before it existed.
        "mixture": engine.get("mixture"),
        "model_uncertain": sum(bool(r.model_uncertain) for r in results),
        "durations": {
            "queued_s": round((started - audit.created_at).total_seconds(), 3),
            "run_s": round((finished - started).total_seconds(), 3),
            **{k: v for k, v in run.get("timings", {}).items() if k.endswith("_s")},
        },
    }


def public_summary(summary: dict[str, Any] | None) -> dict[str, Any]:
    """The audit's summary as the API shows it: without the run's record (``RUN_KEY``)."""
    return {k: v for k, v in (summary or {}).items() if k != RUN_KEY}
