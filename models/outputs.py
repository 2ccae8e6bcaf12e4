"""Per-case results and the files an audit writes (scores.csv, slices.csv, run.json)."""

from __future__ import annotations

import csv
import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCORES = "scores.csv"
SLICES = "slices.csv"
RUN = "run.json"
MODEL = "model.pt"
CLEANSED = "cleansed"
ISSUE_MAPS = "issue_maps"
PSEUDO = "pseudo_labels"
ALL_OUTPUTS = (SCORES, SLICES, RUN, MODEL, CLEANSED, ISSUE_MAPS, PSEUDO)


@dataclass(frozen=True)
class CaseResult:
    """What the audit says of one case."""

    case: str
    noise_score: float  # 1 - clean probability: higher = more likely noisy
    flagged: bool
    ce: float
    dice_gap: float
    dice: tuple[float, ...]  # teacher vs given mask, per foreground class
    changed_fraction: float  # share of pixels where the pseudo label differs from the given mask
    issue_fraction: float  # share of pixels whose issue map value is above 0.5

    def sort_key(self) -> tuple[float, float, float]:
        return (-self.noise_score, -self.dice_gap, -self.ce)


@dataclass(frozen=True)
class SliceResult:
    case: str
    slice: int
    dice_gap: float
    given_pixels: int
    predicted_pixels: int
    issue_pixels: int


def write_scores(path: Path, results: list[CaseResult], num_classes: int) -> None:
    dice_cols = [f"dice_class_{c}" for c in range(1, num_classes)]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "rank",
                "case",
                "noise_score",
                "flagged",
                "ce",
                "dice_gap",
                *dice_cols,
                "changed_fraction",
                "issue_fraction",
            ]
        )
        for rank, r in enumerate(results, start=1):
            w.writerow(
                [
                    rank,
                    r.case,
                    f"{r.noise_score:.6f}",
                    int(r.flagged),
                    f"{r.ce:.6f}",
                    f"{r.dice_gap:.6f}",
                    *(f"{d:.6f}" for d in r.dice),
                    f"{r.changed_fraction:.6f}",
                    f"{r.issue_fraction:.6f}",
                ]
            )


def read_scores(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def write_slices(path: Path, rows: list[SliceResult]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["case", "slice", "dice_gap", "given_pixels", "predicted_pixels", "issue_pixels"]
        )
        for r in rows:
            w.writerow(
                [
                    r.case,
                    r.slice,
                    f"{r.dice_gap:.6f}",
                    r.given_pixels,
                    r.predicted_pixels,
                    r.issue_pixels,
                ]
            )


def versions() -> dict[str, str]:
    import monai
    import numpy
    import scipy
    import sklearn
    import torch

    import models

    return {
        "segaudit": models.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "platform": platform.platform(),
    }


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")
