"""Scoring a case at its own resolution: figures of the given mask, and of known-noisy copies.

Layouts: a case is scored on its mask's grid, as ``(h, w)`` for a 2D image and ``(D, h, w)``
(slices first) for a volume, with ``probs`` ``(K, *spatial)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from imaging.geometry import Geometry
from models.figures import CaseFigures, Prediction, measure_case, object_box
from models.synthetic import corrupt

# Known-noisy copies the calibration learns from, in all (spread over the reference cases).
SYNTHETIC_TOTAL = 200
MIN_COPIES, MAX_COPIES = 1, 6


def spatial(stack: np.ndarray, geometry: Geometry) -> np.ndarray:
    """``(..., D, h, w)`` slices -> the case's scoring layout: ``(..., h, w)`` for a 2D case."""
    return stack if geometry.is_3d else stack[..., 0, :, :]


def scoring_spacing(geometry: Geometry) -> tuple[float, ...]:
    """The pixel spacing in the scoring layout (a volume's (X, Y, Z) becomes (Z, X, Y))."""
    spacing = tuple(float(s) for s in geometry.spacing)
    if geometry.is_3d:
        return (spacing[2], spacing[0], spacing[1])
    return spacing[:2]


def ring_at_resolution(ring_radius: int, side: int, size: int) -> int:
    """The working-size ring radius in pixels of the original grid."""
    return max(1, round(ring_radius * side / size)) if ring_radius else 0


def copies_per_case(references: int) -> int:
    """Known-noisy copies per reference case: about ``SYNTHETIC_TOTAL`` in all, within bounds."""
    return int(np.clip(math.ceil(SYNTHETIC_TOTAL / max(references, 1)), MIN_COPIES, MAX_COPIES))


def synthetic_figures(
    prediction: Prediction,
    given: np.ndarray,
    *,
    spacing: Sequence[float],
    ring_radius: int,
    copies: int,
    rng: np.random.Generator,
) -> list[CaseFigures]:
    """The figures of ``copies`` corrupted copies of ``given`` against the teacher."""
    if not (given > 0).any():
        return []
    # Corrupt and measure inside the objects' box, grown by as much as a corruption can move a
    # boundary: the figures are those of the whole grid, at a fraction of the cost.
    box = object_box(given, prediction.labels, ring_radius + _reach(given > 0) + 2)
    prediction, given = prediction.crop(box), given[box]
    found = []
    for _ in range(copies):
        noisy = corrupt(given, rng)
        if np.array_equal(noisy, given):
            continue
        found.append(measure_case(prediction, noisy, spacing=spacing, ring_radius=ring_radius))
    return found


def _reach(objects: np.ndarray) -> int:
    """How far a corruption may move a boundary: 0.7 of the largest object's radius."""
    area = float(objects.sum()) if objects.ndim == 2 else float(objects.sum(axis=(1, 2)).max())
    return int(math.ceil(0.7 * math.sqrt(area / math.pi)))


def reference_cases(
    initial: np.ndarray, share: float = 0.5, *, eligible: np.ndarray | None = None
) -> np.ndarray:
    """Indices of the ``share`` of cases that an initial disagreement ``(N, F)`` (>= 0, higher
    worse) calls most surely clean: the lowest sums of per-figure ranks; with ``eligible``
    ``(N,)`` bool, only among those (at most all of them).
    """
    x = np.asarray(initial, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    ranks = np.argsort(np.argsort(x, axis=0), axis=0).sum(axis=1)
    count = max(2, round(share * len(x)))
    order = np.argsort(ranks, kind="stable")
    if eligible is not None:
        order = order[np.asarray(eligible, bool)[order]]
    return np.sort(order[:count])
