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
# How much is given and predicted (all foreground classes): pixels (voxels), and mm² (mm³) when
# the format has a physical spacing; scores.csv gives them columns of their own.
SIZES = ("given_pixels", "predicted_pixels")
PHYSICAL_SIZES = ("given_mm", "predicted_mm")
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


KINDS = ("missing_object", "extra_object", "boundary")  # the kinds of disagreement, in order


def _boundary_words(values: Mapping[str, float]) -> str:
    """The boundary's disagreement in words; "" when it agrees or there is none to compare."""
    mean, absolute = values["boundary_mean"], values["boundary_abs"]
    unmatched = max(values.get("missing_fraction", 0.0), values.get("extra_fraction", 0.0)) >= 1.0
    if absolute < NOTABLE or unmatched:  # no boundary to compare when nothing matched
        return ""
    if values["boundary_coherence"] >= 0.6:
        return f"too {'loose' if mean > 0 else 'tight'} by {abs(mean):.0%} of the radius"
    if values["centroid_shift"] >= NOTABLE:
        return f"shifted by {values['centroid_shift']:.0%} of the radius"
    return f"boundary off by up to {values['boundary_p95']:.0%} of the radius"


def _parts(values: Mapping[str, float]) -> dict[str, str]:
    """Each kind of disagreement ``values`` show (``KINDS``), with its words."""
    parts = {}
    missing, extra = int(values.get("missing_objects", 0)), int(values.get("extra_objects", 0))
    if missing:
        parts["missing_object"] = f"{missing} object{'s' * (missing > 1)} missing"
    if extra:
        parts["extra_object"] = f"{extra} extra object{'s' * (extra > 1)}"
    if words := _boundary_words(values):
        parts["boundary"] = words
    return parts


def describe(values: dict[str, float] | Mapping[str, float]) -> str:
    """In words, the kind of disagreement the figures show (``"agrees"`` when there is none)."""
    if not values or "boundary_abs" not in values:
        return ""
    return "; ".join(_parts(values).values()) or "agrees"


def disagreement_kind(values: dict[str, float] | Mapping[str, float]) -> str:
    """The kinds of disagreement, for machines: ``KINDS`` joined by ``+`` in that order
    (``missing_object+boundary``), ``agrees`` when there is none, "" without figures.
    """
    if not values or "boundary_abs" not in values:
        return ""
    return "+".join(_parts(values)) or "agrees"
