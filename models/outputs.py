"""The files for people that an audit writes beside its masks: scores.csv, slices.csv, run.json.

They are outputs only: results reach the service in memory (``models.results``), never by
reading these back.
"""

from __future__ import annotations

import csv
import json
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from models.figure_names import FIGURES, PHYSICAL_SIZES, SIZES, describe, disagreement_kind
from models.results import CaseResult, SliceResult

# Figures that have columns of their own, not among the figure columns.
_OWN_COLUMNS = {"ce", "dice_gap", *SIZES, *PHYSICAL_SIZES}


def figure_columns(results: Sequence[CaseResult]) -> list[str]:
    """The figure columns of ``results``: the named figures in their order, then per-class ones."""
    present = {name for r in results for name in r.figures}
    order = ("evidence", "noise_probability", *FIGURES, "size_atypical")
    named = [n for n in order if n in present and n not in _OWN_COLUMNS]
    return named + sorted(present - set(named) - _OWN_COLUMNS)


def class_label(c: int, class_names: Mapping[int, str] | None = None) -> str:
    """The name of foreground class ``c`` in column names: its given name, else ``class_<c>``."""
    name = (class_names or {}).get(c)
    return name if name else f"class_{c}"


def worst_slice(slices: Sequence[SliceResult]) -> SliceResult | None:
    """The slice of a volume where the teacher disagrees most (``None`` for a 2D case)."""
    return max(slices, key=lambda s: (s.dice_gap, s.issue_pixels, -s.slice), default=None)


def write_scores(
    path: Path,
    results: Sequence[CaseResult],
    num_classes: int,
    *,
    class_names: Mapping[int, str] | None = None,
) -> None:
    """One row per case, in the order given (most suspect first), every figure a column.

    Why a case ranks where it does: ``disagreement`` in words and ``disagreement_kind`` for
    machines, the given and predicted sizes (pixels, and mm² or mm³ where the format has a
    spacing), and the worst slice of a volume. Per-class columns take ``class_names`` where
    known (``dice_<name>``), else ``dice_class_<c>``.
    """
    dice_cols = [f"dice_{class_label(c, class_names)}" for c in range(1, num_classes)]
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
                "disagreement_kind",
                *SIZES,
                *PHYSICAL_SIZES,
                "worst_slice",
                "worst_slice_dice_gap",
                *(named_column(name, class_names) for name in figure_cols),
            ]
        )
        for rank, r in enumerate(results, start=1):
            worst = worst_slice(r.slices)
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
                    disagreement_kind(r.figures),
                    *(_count(r.figures.get(name)) for name in SIZES),
                    *(_figure(r.figures.get(name)) for name in PHYSICAL_SIZES),
                    "" if worst is None else worst.slice,
                    "" if worst is None else f"{worst.dice_gap:.6f}",
                    *(_figure(r.figures.get(name)) for name in figure_cols),
                ]
            )


def named_column(column: str, class_names: Mapping[int, str] | None) -> str:
    """``<figure>_class_<c>`` as ``<figure>_<name>`` where the class has a name."""
    figure, sep, c = column.rpartition("_class_")
    if not sep or not c.isdigit():
        return column
    return f"{figure}_{class_label(int(c), class_names)}"


def _count(value: float | None) -> str:
    return "" if value is None else str(round(value))


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
