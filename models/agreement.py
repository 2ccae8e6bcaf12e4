"""The records of a comparison of annotation sets, and their summary: torch-free, so that the
service can store and read them (``models.compare`` computes them).

Per case, class and pair of sets (``a``, ``b``), a class is:

- ``scored``: present in both masks: Dice and surface distances measured;
- ``missing_in_a`` / ``missing_in_b``: present in one mask only: the worst scores, Dice 0 and
  both distances the image's diagonal in mm (``models.compare.worst_distance``), never NaN;
- ``absent``: in neither mask: reported, neither scored nor averaged in.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class ClassStatus(StrEnum):
    scored = "scored"
    missing_in_a = "missing_in_a"
    missing_in_b = "missing_in_b"
    absent = "absent"


@dataclass(frozen=True)
class ClassScore:
    """One class of one case between two masks. Distances are symmetric, in millimetres.

    ``objects_*``: connected components of the class in each mask; ``only_in_*``: those that
    overlap no voxel of the class in the other mask (an object one set has and the other not).
    """

    label: int
    status: ClassStatus
    dice: float | None
    mean_distance_mm: float | None
    p95_distance_mm: float | None
    objects_a: int
    objects_b: int
    only_in_a: int
    only_in_b: int

    @property
    def disagreement(self) -> float | None:
        """``1 - Dice``: 0 for identical masks, 1 for a class one set lacks; None if absent."""
        return None if self.dice is None else 1.0 - self.dice


@dataclass(frozen=True)
class PairScore:
    """One case between the sets at positions ``a`` < ``b`` of the comparison."""

    case: str
    a: int
    b: int
    classes: tuple[ClassScore, ...]


@dataclass(frozen=True)
class Counts:
    """Voxels of one set against the consensus, for one class: the confusion counts."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn
        )

    @property
    def sensitivity(self) -> float | None:
        """TP / (TP + FN); None when the consensus has no voxel of the class."""
        positives = self.tp + self.fn
        return self.tp / positives if positives else None

    @property
    def specificity(self) -> float | None:
        """TN / (TN + FP); None when the consensus is the class everywhere."""
        negatives = self.tn + self.fp
        return self.tn / negatives if negatives else None


def _mean(values: Iterable[float]) -> float | None:
    found = list(values)
    return round(statistics.fmean(found), 6) if found else None


def summarise_class(scores: Sequence[ClassScore]) -> dict[str, Any]:
    """One class over the cases of one pair: means over the scored and missing cases (a
    missing class counts with its worst scores), counts of each status, objects one-sided.
    """
    judged = [s for s in scores if s.status != ClassStatus.absent]
    return {
        "dice_mean": _mean(s.dice for s in judged if s.dice is not None),
        "mean_distance_mm": _mean(
            s.mean_distance_mm for s in judged if s.mean_distance_mm is not None
        ),
        "p95_distance_mm": _mean(
            s.p95_distance_mm for s in judged if s.p95_distance_mm is not None
        ),
        **{status.value: sum(s.status == status for s in scores) for status in ClassStatus},
        "objects_only_in_a": sum(s.only_in_a for s in scores),
        "objects_only_in_b": sum(s.only_in_b for s in scores),
    }


def case_disagreement(pairs: Sequence[PairScore]) -> float | None:
    """A case's disagreement: the mean ``1 - Dice`` over its pairs and judged classes."""
    return _mean(c.disagreement for p in pairs for c in p.classes if c.disagreement is not None)


def ranked(scores: Sequence[PairScore]) -> list[tuple[PairScore, ClassScore]]:
    """Every (pair, class) of ``scores``, the most disagreement first: ``1 - Dice``, then the
    95th-percentile distance; absent classes last; ties by case, class and pair.
    """

    def key(row: tuple[PairScore, ClassScore]) -> tuple[bool, float, float, str, int, int, int]:
        pair, score = row
        d, p95 = score.disagreement, score.p95_distance_mm
        return (d is None, -(d or 0.0), -(p95 or 0.0), pair.case, score.label, pair.a, pair.b)

    return sorted(((p, c) for p in scores for c in p.classes), key=key)


def summarise(
    scores: Sequence[PairScore], *, set_ids: Sequence[int], labels: Sequence[int], top: int = 10
) -> dict[str, Any]:
    """The comparison's summary: per pair of sets and class, and the cases that disagree most.

    ``set_ids`` names the sets by position (``PairScore.a``/``b``).
    """
    pairs = sorted({(p.a, p.b) for p in scores})
    by_case: dict[str, list[PairScore]] = {}
    for p in scores:
        by_case.setdefault(p.case, []).append(p)
    judged: list[tuple[str, float]] = []
    for case, case_pairs in by_case.items():
        d = case_disagreement(case_pairs)
        if d is not None:
            judged.append((case, d))
    judged.sort(key=lambda r: (-r[1], r[0]))
    ranked = [{"case": case, "disagreement": d} for case, d in judged]
    return {
        "sets": list(set_ids),
        "cases": len(by_case),
        "classes": list(labels),
        "worst_distance": "the image's diagonal in mm, for a class that one set lacks",
        "pairs": [
            {
                "set_a": set_ids[a],
                "set_b": set_ids[b],
                "classes": {
                    str(label): summarise_class(
                        [
                            c
                            for p in scores
                            if (p.a, p.b) == (a, b)
                            for c in p.classes
                            if c.label == label
                        ]
                    )
                    for label in labels
                },
            }
            for a, b in pairs
        ],
        "most_disagreement": ranked[:top],
    }


def agreement_summary(
    counts: dict[int, dict[int, Counts]], *, set_ids: Sequence[int]
) -> list[dict[str, Any]]:
    """Each set's sensitivity and specificity per class against the consensus, from the
    voxel counts pooled over all cases (``counts[position][label]``).
    """
    return [
        {
            "annotation_set_id": set_ids[position],
            "classes": {
                str(label): {
                    "sensitivity": _round(c.sensitivity),
                    "specificity": _round(c.specificity),
                }
                for label, c in sorted(counts[position].items())
            },
        }
        for position in sorted(counts)
    ]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
