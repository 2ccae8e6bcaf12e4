"""The names of the shape-aware figures and how to say them in words; no numerics, no torch, so
that the service can read and write results without importing the engine's numerics
(``models.figures`` measures them).
"""

from __future__ import annotations

from collections.abc import Mapping

NOTABLE = 0.05  # a boundary figure (over the radius) worth putting in words

# Figures of one class (the order of the columns in scores.csv).
CLASS_FIGURES = (
    "boundary_mean",
    "boundary_abs",
    "boundary_p95",
    "boundary_coherence",
    "boundary_spread",
    "area_ratio",
    "centroid_shift",
    "boundary_iou_gap",
    "missing_objects",
    "missing_fraction",
    "extra_objects",
    "extra_fraction",
)
CASE_FIGURES = ("ce", "dice_gap", "confident_disagreement", "uncertainty")
FIGURES = CASE_FIGURES + CLASS_FIGURES
# The figures that grow with how wrong the mask looks (>= 0), which the score combines.
EVIDENCE = (
    "ce",
    "dice_gap",
    "confident_disagreement",
    "boundary_abs",
    "boundary_p95",
    "abs_area_ratio",
    "centroid_shift",
    "boundary_iou_gap",
    "missing_fraction",
    "extra_fraction",
)


def describe(values: dict[str, float] | Mapping[str, float]) -> str:
    """In words, the kind of disagreement the figures show (``"agrees"`` when there is none)."""
    if not values or "boundary_abs" not in values:
        return ""
    parts = []
    missing, extra = int(values.get("missing_objects", 0)), int(values.get("extra_objects", 0))
    if missing:
        parts.append(f"{missing} object{'s' * (missing > 1)} missing")
    if extra:
        parts.append(f"{extra} extra object{'s' * (extra > 1)}")
    mean, absolute = values["boundary_mean"], values["boundary_abs"]
    unmatched = max(values.get("missing_fraction", 0.0), values.get("extra_fraction", 0.0)) >= 1.0
    if absolute >= NOTABLE and not unmatched:  # no boundary to compare when nothing matched
        if values["boundary_coherence"] >= 0.6:
            parts.append(f"too {'loose' if mean > 0 else 'tight'} by {abs(mean):.0%} of the radius")
        elif values["centroid_shift"] >= NOTABLE:
            parts.append(f"shifted by {values['centroid_shift']:.0%} of the radius")
        else:
            parts.append(f"boundary off by up to {values['boundary_p95']:.0%} of the radius")
    return "; ".join(parts) or "agrees"
