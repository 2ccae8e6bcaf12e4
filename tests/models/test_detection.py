"""End to end: a short audit of 40 real hc18 cases, 16 with injected noise, must find them.

The thresholds are out of reach of a broken filter: chance gives AUROC 0.5, average precision
and flag precision 0.4 (the noisy share); a filter that flags nothing, or the clean cases,
fails the flag checks; cleansing that does nothing fails the repair check.
"""

from __future__ import annotations

import csv

import pytest

from bench.evaluate import evaluate_audit
from bench.noise import corrupt_folder
from models.audit import run_audit
from models.config import AuditConfig
from tests.conftest import copy_hc18

SHORT = AuditConfig(size=64, epochs=30, batch_size=4, seed=0)


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    root = tmp_path_factory.mktemp("detection")
    images, masks = copy_hc18(root, 40)
    records = corrupt_folder(masks, root / "noisy", fraction=0.4, protocol="mixed", seed=0)
    with (root / "truth.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["case", "kind", "detail"])
        w.writerows((r.case, r.kind, r.detail) for r in records)
    run_audit(images, root / "noisy", root / "out", SHORT, device="cpu")
    return evaluate_audit(root / "out", root / "truth.csv", masks, root / "noisy")


def test_corrupted_cases_rank_clearly_above_chance(audited):
    d = audited["detection"]
    assert d["noisy"] == 16 and d["cases"] == 40
    assert d["auroc"] >= 0.75, d
    assert d["average_precision"] >= 0.65, d


def test_flags_mostly_corrupted_cases(audited):
    d = audited["detection"]
    assert d["flagged"] >= 3, d
    assert d["precision"] >= 0.6, d


def test_cleansed_masks_are_closer_to_the_truth(audited):
    r = audited["repair"]
    assert r["cleansed_dice_noisy"] > r["given_dice_noisy"] + 0.01, r
    assert r["cleansed_dice_clean"] >= 0.98, r
