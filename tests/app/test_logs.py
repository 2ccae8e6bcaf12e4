"""One log format with a request id: each API request gets its own id, in the X-Request-ID
header and in the lines logged while it is handled (in the route's thread too); a worker's task
lines carry the task's id; highdicom's empty-frame note is said once, not once per case.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator

import numpy as np
import pytest
from celery import signals

from app import logs
from imaging import layout
from imaging.dicom.cases import find_pairs
from imaging.write import write_array
from tests.imaging.dicom.builders import write_cases


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    """What the configured log handler writes, for the test's length."""
    root = logging.getLogger()
    level = root.level
    handler = logs.configure("INFO")
    buffer = io.StringIO()
    stream = handler.setStream(buffer)  # type: ignore[attr-defined]
    try:
        yield buffer
    finally:
        handler.setStream(stream)  # type: ignore[attr-defined]
        root.removeHandler(handler)
        root.setLevel(level)
        logging.captureWarnings(False)


def test_each_request_has_its_own_id_in_the_header_and_the_log(api, lines):
    app = api.client.app

    @app.get("/test-logs")
    def logged() -> dict[str, str]:  # a sync route: it runs in a thread of the pool
        logging.getLogger("segaudit.test").info("inside the route")
        return {}

    first, second = api.client.get("/test-logs"), api.client.get("/test-logs")
    ids = [r.headers["x-request-id"] for r in (first, second)]
    assert ids[0] != ids[1] and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    text = lines.getvalue()
    for rid in ids:
        assert re.search(rf"INFO segaudit\.test \[{rid}\] inside the route", text), text
        assert re.search(rf"INFO segaudit\.api \[{rid}\] GET /test-logs 200 ", text), text

    kept = api.client.get("/healthz", headers={"X-Request-ID": "lb-7f3a.1"})
    assert kept.headers["x-request-id"] == "lb-7f3a.1" and "[lb-7f3a.1] GET /healthz" in (
        lines.getvalue()
    )
    odd = api.client.get("/healthz", headers={"X-Request-ID": "x" * 65})
    assert re.fullmatch(r"[0-9a-f]{32}", odd.headers["x-request-id"])
    refused = api.client.get("/v1/datasets")  # no key: the refusal carries an id too
    assert refused.status_code == 401 and refused.headers["x-request-id"]


def test_a_task_s_lines_carry_its_id(lines):
    import worker.celery_app  # noqa: F401  its signal receivers

    signals.task_prerun.send(sender=None, task_id="task-42")
    logging.getLogger("worker.pipeline").info("audit 1: training")
    signals.task_postrun.send(sender=None, task_id="task-42")
    logging.getLogger("worker.reconcile").info("idle")
    text = lines.getvalue()
    assert "INFO worker.pipeline [task-42] audit 1: training" in text
    assert "INFO worker.reconcile [-] idle" in text


def test_highdicom_s_empty_frame_note_is_said_once(tmp_path, built, lines):
    pairs, _ = find_pairs(*write_cases(built[:3], tmp_path / "images", tmp_path / "masks"))
    for pair in pairs:  # three all-background SEGs: highdicom notes each one
        mask = pair.read_mask()
        empty = np.zeros_like(mask.array)
        write_array(
            tmp_path / "out" / f"{pair.case_id}.dcm", empty, mask.geometry, kind=layout.PSEUDO
        )
    notes = [line for line in lines.getvalue().splitlines() if "empty image" in line]
    assert len(notes) == 1, lines.getvalue()
    assert notes[0].split()[2].startswith("WARNING") or "WARNING" in notes[0]
