"""How well an audit did, against known truth: detection of noisy cases and repair of masks.

These are the figures method.md judges the audit by; the demo and the benchmark both use them.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from imaging.cases import index_folder
from imaging.formats import read_mask
from imaging.layout import CLEANSED, SCORES
from models.disagreement import dice_per_class


def read_scores(path: Path) -> list[dict[str, str]]:
    """The rows of an audit's scores.csv, as a person (or the benchmark) reads them."""
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@dataclass(frozen=True)
class Detection:
    cases: int
    noisy: int
    flagged: int
    auroc: float | None  # None when only one class of case exists
    average_precision: float | None
    precision: float | None  # None when nothing was flagged
    recall: float | None


@dataclass(frozen=True)
class Repair:
    """Mean foreground Dice against the true masks, before (given) and after (cleansed)."""

    noisy_cases: int
    clean_cases: int
    given_dice_noisy: float | None
    cleansed_dice_noisy: float | None
    given_dice_clean: float | None
    cleansed_dice_clean: float | None


def read_truth(path: Path) -> dict[str, bool]:
    """``case,kind`` CSV (kind ``none`` = clean) -> case -> corrupted?"""
    with Path(path).open(newline="") as f:
        return {row["case"]: row["kind"] != "none" for row in csv.DictReader(f)}


def detection(ranking: list[str], flagged: dict[str, bool], truth: dict[str, bool]) -> Detection:
    """Detection figures of a ranking (most suspect first, as scores.csv lists the cases).

    AUROC and average precision judge the order a reviewer works through: by ``noise_score``,
    ties broken by the disagreement figures.
    """
    position = {case: i for i, case in enumerate(ranking)}
    missing = sorted(set(truth) - set(position))
    if missing:
        raise ValueError(f"{len(missing)} cases of the truth have no score, e.g. {missing[0]}")
    cases = sorted(truth)
    y = np.array([truth[c] for c in cases], bool)
    s = -np.array([position[c] for c in cases], float)
    f = np.array([flagged[c] for c in cases], bool)
    both = 0 < y.sum() < len(y)
    true_pos = int((f & y).sum())
    return Detection(
        cases=len(cases),
        noisy=int(y.sum()),
        flagged=int(f.sum()),
        auroc=float(roc_auc_score(y, s)) if both else None,
        average_precision=float(average_precision_score(y, s)) if both else None,
        precision=true_pos / int(f.sum()) if f.any() else None,
        recall=true_pos / int(y.sum()) if y.any() else None,
    )


def mask_dice(a: np.ndarray, b: np.ndarray) -> float:
    """Mean foreground Dice of two label arrays (both empty = 1)."""
    k = int(max(a.max(initial=0), b.max(initial=0))) + 1
    return float(
        dice_per_class(a[None].astype(np.int64), b[None].astype(np.int64), max(k, 2))[0].mean()
    )


def repair(true_dir: Path, given_dir: Path, cleansed_dir: Path, truth: dict[str, bool]) -> Repair:
    true_masks, given, cleansed = (
        index_folder(Path(d), "mask") for d in (true_dir, given_dir, cleansed_dir)
    )
    before: dict[bool, list[float]] = {True: [], False: []}
    after: dict[bool, list[float]] = {True: [], False: []}
    for case, noisy in sorted(truth.items()):
        ref = read_mask(true_masks[case], case=case).array
        before[noisy].append(mask_dice(read_mask(given[case], case=case).array, ref))
        after[noisy].append(mask_dice(read_mask(cleansed[case], case=case).array, ref))

    def mean(values: list[float]) -> float | None:
        return float(np.mean(values)) if values else None

    return Repair(
        noisy_cases=len(before[True]),
        clean_cases=len(before[False]),
        given_dice_noisy=mean(before[True]),
        cleansed_dice_noisy=mean(after[True]),
        given_dice_clean=mean(before[False]),
        cleansed_dice_clean=mean(after[False]),
    )


def evaluate_audit(
    audit_dir: Path, truth_csv: Path, true_masks: Path, given_masks: Path
) -> dict[str, object]:
    """Detection and repair figures of a finished audit folder."""
    rows = read_scores(Path(audit_dir) / SCORES)
    truth = read_truth(truth_csv)
    det = detection(
        [r["case"] for r in rows], {r["case"]: r["flagged"] == "1" for r in rows}, truth
    )
    rep = repair(true_masks, given_masks, Path(audit_dir) / CLEANSED, truth)
    return {"detection": asdict(det), "repair": asdict(rep)}
