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

from models.figure_names import FIGURES, describe
from models.results import CaseResult


def figure_columns(results: Sequence[CaseResult]) -> list[str]:
    """The figure columns of ``results``: the named figures in their order, then per-class ones."""
    present = {name for r in results for name in r.figures}
    order = ("evidence", *FIGURES, "size_atypical")
    named = [n for n in order if n in present and n not in ("ce", "dice_gap")]
    return named + sorted(present - set(named) - {"ce", "dice_gap"})


def write_scores(path: Path, results: Sequence[CaseResult], num_classes: int) -> None:
    """One row per case, in the order given (most suspect first), every figure a column."""
    dice_cols = [f"dice_class_{c}" for c in range(1, num_classes)]
    figure_cols = figure_columns(results)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "rank",
                "case",
                "noise_score",
                "flagged",
                "model_uncertain",
                "ce",
                "dice_gap",
                *dice_cols,
                "changed_fraction",
                "issue_fraction",
                "disagreement",
                *figure_cols,
            ]
        )
        for rank, r in enumerate(results, start=1):
            w.writerow(
                [
                    rank,
                    r.case,
                    f"{r.noise_score:.10g}",
                    int(r.flagged),
                    int(r.model_uncertain),
                    f"{r.ce:.6f}",
                    f"{r.dice_gap:.6f}",
                    *(f"{d:.6f}" for d in r.dice),
                    f"{r.changed_fraction:.6f}",
                    f"{r.issue_fraction:.6f}",
                    describe(r.figures),
                    *(_figure(r.figures.get(name)) for name in figure_cols),
                ]
            )


def _figure(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


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
