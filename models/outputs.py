"""The files for people that an audit writes beside its masks: scores.csv, slices.csv, run.json.

They are outputs only: results reach the service in memory (``models.results``), never by
reading these back.
"""

from __future__ import annotations

import csv
import json
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from models.results import CaseResult


def write_scores(path: Path, results: Sequence[CaseResult], num_classes: int) -> None:
    """One row per case, in the order given (most suspect first)."""
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


def write_slices(path: Path, results: Sequence[CaseResult]) -> None:
    """3D only: one row per slice of every case."""
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["case", "slice", "dice_gap", "given_pixels", "predicted_pixels", "issue_pixels"]
        )
        for result in results:
            for r in result.slices:
                w.writerow(
                    [
                        result.case,
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

    import imaging

    return {
        "segaudit": imaging.__version__,
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
