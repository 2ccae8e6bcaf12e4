"""The data layer a worker calls: claim, stage, progress, store results, fail; all by
compare-and-set, so that a redelivered task or a cancel never corrupts an audit.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from sqlalchemy import func, select, update

from app.db.enums import AuditStatus
from app.db.tables import Audit, ResultRow, StoredFile
from app.services import lifecycle
from app.services.state import compare_and_set
from imaging.errors import ErrorCode
from imaging.formats import read_image, read_mask
from models.config import AuditConfig
from tests.app.conftest import engine_outputs, load_dataset, submit


@pytest.fixture
def queued(api, hc18):
    loaded = load_dataset(api, *hc18)
    return submit(api, loaded, epochs=4)["id"]


def test_only_one_worker_claims_an_audit(api, queued):
    with api.sessions() as session:
        audit = lifecycle.claim_audit(session, queued, task_id="t-1")
        assert audit is not None and audit.status == "running" and audit.attempts == 1
        assert lifecycle.claim_audit(session, queued) is None  # a duplicate delivery
        assert (
            lifecycle.claim_audit(session, queued, stale_after_s=60) is None
        )  # heartbeat is fresh
        old = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        session.execute(update(Audit).where(Audit.id == queued).values(heartbeat_at=old))
        session.commit()
        again = lifecycle.claim_audit(session, queued, task_id="t-2", stale_after_s=60)
        assert again is not None and again.attempts == 2 and again.task_id == "t-2"
        assert AuditConfig.from_dict(again.parameters).epochs == 4


def test_transitions_outside_the_machine_are_refused(api, queued):
    with api.sessions() as session:
        with pytest.raises(ValueError, match="no transition"):
            compare_and_set(session, queued, expect=[AuditStatus.succeeded], to=AuditStatus.running)
        assert not lifecycle.report_progress(session, queued, phase="train")  # not running yet
        assert lifecycle.fail_audit(
            session, queued, code=ErrorCode.TOO_FEW_CASES, message="8 needed"
        )
        assert not lifecycle.fail_audit(
            session, queued, code=ErrorCode.WORKER_ERROR, message="twice"
        )
        assert lifecycle.claim_audit(session, queued) is None
        audit = session.get(Audit, queued, populate_existing=True)
        assert (audit.status, audit.error_code) == ("failed", "too_few_cases")


def test_release_puts_an_audit_back_in_the_queue(api, queued):
    with api.sessions() as session:
        lifecycle.claim_audit(session, queued)
        assert lifecycle.release_audit(session, queued, message="CUDA out of memory")
        assert lifecycle.claim_audit(session, queued).attempts == 2


def test_stage_inputs_lays_out_the_cases_for_the_engine(api, queued, hc18, tmp_path):
    images, masks = hc18
    with api.sessions() as session:
        staged_images, staged_masks = lifecycle.stage_inputs(
            session, api.store, queued, tmp_path / "in"
        )
    assert sorted(p.name for p in staged_images.iterdir()) == [p.name for p in images]
    assert sorted(p.name for p in staged_masks.iterdir()) == [p.name for p in masks]
    image = read_image(staged_images / images[0].name, case=images[0].stem).array
    assert np.array_equal(image, read_image(images[0], case="x").array)
    mask = read_mask(staged_masks / masks[0].name, case=masks[0].stem).array
    assert np.array_equal(mask, read_mask(masks[0], case="x").array)


def test_complete_stores_results_once_and_reruns_overwrite(api, queued, hc18, tmp_path):
    _, masks = hc18
    scores = [i / 10 for i in range(len(masks))]
    with api.sessions() as session:
        lifecycle.claim_audit(session, queued)
        out = engine_outputs(tmp_path / "out", masks, scores)
        assert lifecycle.complete_audit(session, api.store, queued, *out)
        audit = session.get(Audit, queued, populate_existing=True)
        assert audit.status == "succeeded" and audit.percent == 100.0
        summary = audit.summary
        assert summary["cases"] == 9 and summary["flagged"] == 3
        assert summary["mean_noise_score"] == pytest.approx(0.4)
        assert summary["durations"]["train_s"] == 20.0 and summary["durations"]["run_s"] >= 0
        count = session.scalar(select(func.count()).select_from(ResultRow))
        assert count == 9

        # A rerun of the same audit overwrites its rows: still one per case.
        session.execute(update(Audit).where(Audit.id == queued).values(status="running"))
        session.commit()
        rescored = engine_outputs(tmp_path / "out2", masks, [1 - s for s in scores])
        assert lifecycle.complete_audit(session, api.store, queued, *rescored)
        assert session.scalar(select(func.count()).select_from(ResultRow)) == 9
        top = session.scalar(select(ResultRow).where(ResultRow.rank == 1))
        assert top.noise_score == pytest.approx(1.0) and top.flagged


def test_nothing_is_stored_for_a_cancelled_audit(api, queued, hc18, tmp_path):
    _, masks = hc18
    with api.sessions() as session:
        lifecycle.claim_audit(session, queued)
        blobs = {p.name for p in api.store.blobs.rglob("*") if p.is_file()}
        files = session.scalar(select(func.count()).select_from(StoredFile))
    assert api.post(f"/v1/audits/{queued}/cancel").status_code == 200
    with api.sessions() as session:
        out = engine_outputs(tmp_path / "out", masks, [0.5] * len(masks))
        assert not lifecycle.complete_audit(session, api.store, queued, *out)
        assert session.scalar(select(func.count()).select_from(ResultRow)) == 0
        assert session.scalar(select(func.count()).select_from(StoredFile)) == files
    assert {p.name for p in api.store.blobs.rglob("*") if p.is_file()} == blobs


def test_a_cancel_during_the_write_keeps_nothing(api, queued, hc18, tmp_path, monkeypatch):
    _, masks = hc18
    save_results = lifecycle.save_results

    def cancelled_meanwhile(*args):
        # The cancel lands after the worker's first check, while it stores the results.
        assert api.post(f"/v1/audits/{queued}/cancel").status_code == 200
        return save_results(*args)

    monkeypatch.setattr(lifecycle, "save_results", cancelled_meanwhile)
    with api.sessions() as session:
        lifecycle.claim_audit(session, queued)
        files = session.scalar(select(func.count()).select_from(StoredFile))
        out = engine_outputs(tmp_path / "out", masks, [0.9] * len(masks))
        assert not lifecycle.complete_audit(session, api.store, queued, *out)
    with api.sessions() as session:
        assert session.scalar(select(func.count()).select_from(ResultRow)) == 0
        assert session.scalar(select(func.count()).select_from(StoredFile)) == files
        assert session.get(Audit, queued).status == "cancelled"
    blob_names = {p.name for p in api.store.blobs.rglob("*") if p.is_file()}
    assert len(blob_names) == files  # only the uploads: the outputs' blobs were removed again
