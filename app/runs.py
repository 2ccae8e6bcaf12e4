"""An audit's run folder in storage, ``<storage>/runs/<id>/``: where a worker stages the
audit's inputs and the engine writes; after a success it keeps the trained network and the
run's record (``out/model.pt``, ``out/run.json``) until the audit is deleted.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from app.storage import Store


def run_folder(store: Store, audit_id: int) -> Path:
    """The audit's working folder: ``inputs/`` (links into the store) and ``out/``."""
    return store.root / "runs" / str(audit_id)


def remove_run_folders(store: Store, audit_ids: Iterable[int]) -> None:
    """Remove the run folders of deleted audits (those that have one)."""
    for audit_id in audit_ids:
        shutil.rmtree(run_folder(store, audit_id), ignore_errors=True)
