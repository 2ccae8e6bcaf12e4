"""Comparing annotation sets of one dataset: pure functions over label maps.

Masks are label maps ``(*spatial)`` (``(H, W)`` or ``(X, Y, Z)``) on one grid, ``spacing`` in
mm per axis in the same order. Dice and the mean and 95th-percentile symmetric surface
distances are MONAI's (``compute_dice``, ``compute_average_surface_distance``,
``compute_hausdorff_distance``); a class present in one mask only gets the worst scores instead
of MONAI's NaN, and a class in neither is ``absent`` (``models.agreement``). The consensus of
three or more sets is SimpleITK's STAPLE, per class.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk
import torch
from monai.metrics.hausdorff_distance import compute_hausdorff_distance
from monai.metrics.meandice import compute_dice
from monai.metrics.surface_distance import compute_average_surface_distance
from scipy import ndimage

from imaging.geometry import label_dtype
from models.agreement import ClassScore, ClassStatus, Counts, PairScore

CONSENSUS = 0.5  # a voxel is the class in the consensus where STAPLE's probability reaches it


def worst_distance(shape: Sequence[int], spacing: Sequence[float]) -> float:
    """The image's diagonal in mm: no surface distance on this grid can be longer."""
    return math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, spacing, strict=True)))


def _check(masks: Sequence[np.ndarray], spacing: Sequence[float]) -> None:
    shapes = {tuple(m.shape) for m in masks}
    if len(shapes) != 1:
        raise ValueError(f"the masks must share one grid; got shapes {sorted(shapes)}")
    ndim = masks[0].ndim
    if ndim not in (2, 3) or len(spacing) != ndim:
        raise ValueError(
            f"expected 2D or 3D masks with one spacing per axis; got {ndim}D and {len(spacing)}"
        )
    if not all(s > 0 for s in spacing):
        raise ValueError(f"spacing must be positive; got {tuple(spacing)}")


def count_objects(a: np.ndarray, b: np.ndarray) -> tuple[int, int, int, int]:
    """Objects of two binary masks ``(*spatial)``: connected components (faces, edges and
    corners touching) of each, and those of each that overlap nothing of the other.

    Returns ``(objects_a, objects_b, only_in_a, only_in_b)``.
    """
    structure = ndimage.generate_binary_structure(a.ndim, a.ndim)
    counts = []
    for mine, other in ((a, b), (b, a)):
        components, n = ndimage.label(mine, structure=structure)
        touched = np.unique(components[other & mine])
        counts.append((n, n - int(np.count_nonzero(touched))))
    (objects_a, only_a), (objects_b, only_b) = counts
    return objects_a, objects_b, only_a, only_b


def compare_pair(
    a: np.ndarray, b: np.ndarray, *, labels: Sequence[int], spacing: Sequence[float]
) -> tuple[ClassScore, ...]:
    """Each of ``labels`` between two label maps ``(*spatial)`` on one grid."""
    _check([a, b], spacing)
    worst = worst_distance(a.shape, spacing)
    present = {label: (bool((a == label).any()), bool((b == label).any())) for label in labels}
    both = [label for label in labels if all(present[label])]
    measured = _measure(a, b, both, spacing)
    scores = []
    for label in labels:
        in_a, in_b = present[label]
        objects = count_objects(a == label, b == label)
        if in_a and in_b:
            dice, mean, p95 = measured[label]
            status = ClassStatus.scored
        elif in_a or in_b:
            dice, mean, p95 = 0.0, worst, worst
            status = ClassStatus.missing_in_b if in_a else ClassStatus.missing_in_a
        else:
            scores.append(ClassScore(label, ClassStatus.absent, None, None, None, *objects))
            continue
        scores.append(ClassScore(label, status, dice, mean, p95, *objects))
    return tuple(scores)


def _measure(
    a: np.ndarray, b: np.ndarray, labels: Sequence[int], spacing: Sequence[float]
) -> dict[int, tuple[float, float, float]]:
    """MONAI's Dice, mean and p95 symmetric surface distance (mm) of classes in both masks."""
    if not labels:
        return {}
    a, b = _crop(a, b, labels)
    pred, truth = (
        torch.from_numpy(np.stack([m == label for label in labels]))[None] for m in (a, b)
    )
    dice = compute_dice(pred, truth, include_background=True)[0]
    with warnings.catch_warnings():  # MONAI 1.6 passes its own deprecated argument internally
        warnings.filterwarnings("ignore", "monai.metrics.utils get_mask_edges", FutureWarning)
        mean = compute_average_surface_distance(
            pred, truth, include_background=True, symmetric=True, spacing=list(spacing)
        )[0]
        p95 = compute_hausdorff_distance(
            pred, truth, include_background=True, percentile=95, spacing=list(spacing)
        )[0]
    found = {}
    for i, label in enumerate(labels):
        values = (float(dice[i]), float(mean[i]), float(p95[i]))
        if not all(math.isfinite(v) for v in values):  # both masks hold the class: never NaN
            raise ValueError(f"class {label}: MONAI returned {values} for two non-empty masks")
        found[label] = values
    return found


def _crop(a: np.ndarray, b: np.ndarray, labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Both masks cut to the bounding box of ``labels`` in either, one voxel wider on each side:
    the background around it changes neither Dice nor the outlines (MONAI crops so too, but
    only after its Dice has gone over the whole image).
    """
    found = np.isin(a, labels) | np.isin(b, labels)
    box = tuple(slice(max(int(i.min()) - 1, 0), int(i.max()) + 2) for i in np.nonzero(found))
    return a[box], b[box]


def compare_case(
    masks: Sequence[np.ndarray], *, case: str, labels: Sequence[int], spacing: Sequence[float]
) -> list[PairScore]:
    """Every pair of a case's masks (one per set, in the comparison's order)."""
    if len(masks) < 2:
        raise ValueError(f"a comparison needs two or more masks; got {len(masks)}")
    return [
        PairScore(case, i, j, compare_pair(masks[i], masks[j], labels=labels, spacing=spacing))
        for i, j in itertools.combinations(range(len(masks)), 2)
    ]


def staple(masks: Sequence[np.ndarray], *, labels: Sequence[int]) -> np.ndarray:
    """STAPLE's consensus of three or more label maps ``(*spatial)``: per class, the voxels
    whose estimated probability of the class is at least ``CONSENSUS`` (the most probable class
    where two classes reach it); background elsewhere. Returns a label map of ``label_dtype``.
    """
    if len(masks) < 3:
        raise ValueError(f"STAPLE needs three or more masks; got {len(masks)}")
    _check(masks, [1.0] * masks[0].ndim)
    shape = masks[0].shape
    best = np.zeros(shape, np.float64)
    consensus = np.zeros(shape, label_dtype(max(labels, default=0) + 1))
    for label in labels:
        binary = [(m == label).astype(np.uint8) for m in masks]
        if not any(b.any() for b in binary):
            continue
        probability = _staple_probability(binary)
        wins = (probability >= CONSENSUS) & (probability > best)
        consensus[wins] = label
        best = np.where(wins, probability, best)
    return consensus


def _staple_probability(binary: Sequence[np.ndarray]) -> np.ndarray:
    """STAPLE's probability of the foreground (1) per voxel, from binary masks ``(*spatial)``."""
    # SimpleITK's wrappers are unannotated.
    estimator = sitk.STAPLEImageFilter()  # type: ignore[no-untyped-call]
    estimator.SetForegroundValue(1.0)  # type: ignore[no-untyped-call]
    images = [sitk.GetImageFromArray(b) for b in binary]
    probability: np.ndarray = sitk.GetArrayFromImage(estimator.Execute(images))  # type: ignore[no-untyped-call]
    return probability


def against(mask: np.ndarray, consensus: np.ndarray, label: int) -> Counts:
    """One set's mask against the consensus, for ``label``: the confusion counts."""
    mine, truth = mask == label, consensus == label
    tp = int(np.count_nonzero(mine & truth))
    fp = int(np.count_nonzero(mine & ~truth))
    fn = int(np.count_nonzero(~mine & truth))
    return Counts(tp, fp, fn, int(mine.size) - tp - fp - fn)
