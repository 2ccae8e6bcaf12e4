"""Shape-aware figures of disagreement between a given mask and the teacher, on the mask's grid.

Arrays: ``probs`` ``(K, *spatial)`` softmax, ``given`` ``(*spatial)`` class indices, spatial
``(H, W)`` or ``(D, H, W)``; ``spacing`` the physical size of a pixel along each spatial axis.
Every figure is measured per foreground class and per object (a connected component), in
physical units divided by the object's equivalent radius, so that a 3 px error on a nucleus and
a 30 px one on a fetal head of ten times the radius weigh alike.

- ``boundary_*``: signed distances between the two boundaries, each point of the given boundary
  to the predicted mask and each point of the predicted boundary to the given mask, positive
  where the given mask reaches beyond the prediction (too loose), negative where it falls short
  (too tight): their mean, mean absolute, 95th percentile, sign coherence (|mean| / mean
  absolute: 1 when the whole contour errs one way) and spread (standard deviation: high for a
  local bump or dent);
- ``area_ratio``: log of given over predicted area of the matched objects (signed);
- ``centroid_shift``: distance between the centroids of matched objects, over the radius;
- ``boundary_iou_gap``: 1 - boundary IoU (Cheng et al. 2021) with a band of a tenth of the
  radius;
- ``missing_*`` / ``extra_*``: objects the teacher finds that the given mask lacks / objects of
  the given mask the teacher does not find (count and share of the area);
- ``confident_disagreement``: share of the objects' pixels where the teacher confidently
  (probability >= 0.9) picks another class than the given one;
- ``uncertainty``: the teacher's mean normalised entropy near the objects: its own doubt. It is
  not among the evidence figures, though a network that trained on a wrong mask is less sure
  there too.

Case-level figures take the worst class; per-class ones are kept as ``<figure>_class_<c>`` when
there are several foreground classes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from models.disagreement import dice_per_class, given_cross_entropy, ring
from models.figure_names import CLASS_FIGURES, EVIDENCE

CONFIDENT = 0.9  # a teacher probability this high is a confident call
FOUND = 0.7  # mean teacher probability over an object it finds, for it to count as missing
MATCH = 0.5  # an object overlapping the other mask by less than this share is unmatched
SPECK = 0.2  # predicted objects smaller than this share of the median given object are specks
_EPS = 1e-6


@dataclass(frozen=True)
class CaseFigures:
    """Every figure of one case: ``values`` by name (see ``FIGURES``), ``dice`` per class."""

    values: dict[str, float]
    dice: tuple[float, ...]
    areas: tuple[float, ...] = ()  # physical area (volume) of each foreground class, given mask

    def evidence(self) -> list[float]:
        """The figures the noise score combines, in ``EVIDENCE`` order (all >= 0)."""
        v = self.values
        named = {**v, "abs_area_ratio": abs(v["area_ratio"])}
        return [float(named[name]) for name in EVIDENCE]


def _worst_class(figures: dict[int, dict[str, float]]) -> dict[str, float]:
    """Case-level class figures: the worst class for each, signed ones from the worst boundary."""
    if not figures:
        return dict.fromkeys(CLASS_FIGURES, 0.0)
    worst = max(figures.values(), key=lambda f: f["boundary_abs"])
    out = {}
    for name in CLASS_FIGURES:
        if name in ("boundary_mean", "boundary_coherence", "area_ratio"):
            out[name] = worst[name]
            if name == "area_ratio":
                out[name] = max((f[name] for f in figures.values()), key=abs)
        else:
            out[name] = max(f[name] for f in figures.values())
    return out


def _radius(volume: np.ndarray, ndim: int) -> np.ndarray:
    """Equivalent radius of objects of ``volume`` (area in 2D, volume in 3D)."""
    radius: np.ndarray = (
        np.sqrt(np.maximum(volume, _EPS) / math.pi)
        if ndim == 2
        else np.cbrt(3.0 * np.maximum(volume, _EPS) / (4.0 * math.pi))
    )
    return radius


def _boundary(mask: np.ndarray) -> np.ndarray:
    eroded: np.ndarray = ndimage.binary_erosion(mask, border_value=0)
    edge: np.ndarray = mask & ~eroded
    return edge


def _signed_distance(mask: np.ndarray, sampling: Sequence[float]) -> np.ndarray:
    """Distance to ``mask``'s boundary, positive outside and negative inside, half a pixel in."""
    half = 0.5 * min(sampling)
    outside = ndimage.distance_transform_edt(~mask, sampling=sampling)
    inside = ndimage.distance_transform_edt(mask, sampling=sampling)
    signed: np.ndarray = np.where(mask, -(inside - half), outside - half)
    return signed


def class_figures(
    prob: np.ndarray, given: np.ndarray, pred: np.ndarray, spacing: Sequence[float]
) -> dict[str, float] | None:
    """Figures of one class: ``prob`` its teacher probability, ``given``/``pred`` boolean masks.

    None when neither mask holds the class.
    """
    if not given.any() and not pred.any():
        return None
    ndim = given.ndim
    voxel = float(np.prod(spacing))
    box = object_box(given, pred, 2)
    g, p, prob = given[box], pred[box], prob[box]
    lab_g, n_g = ndimage.label(g)
    lab_p, n_p = ndimage.label(p)
    idx_g, idx_p = np.arange(1, n_g + 1), np.arange(1, n_p + 1)
    size_g = ndimage.sum_labels(g, lab_g, idx_g) if n_g else np.zeros(0)
    size_p = ndimage.sum_labels(p, lab_p, idx_p) if n_p else np.zeros(0)
    extra = (ndimage.sum_labels(p, lab_g, idx_g) < MATCH * size_g) if n_g else np.zeros(0, bool)
    typical = float(np.median(size_g)) if n_g else float(size_p.max())
    confident = ndimage.mean(prob, lab_p, idx_p) >= FOUND if n_p else np.zeros(0, bool)
    missing = (
        (ndimage.sum_labels(g, lab_p, idx_p) < MATCH * size_p)
        & (size_p >= SPECK * typical)
        & confident
        if n_p
        else np.zeros(0, bool)
    )
    missing_area = float(size_p[missing].sum()) if n_p else 0.0
    extra_area = float(size_g[extra].sum()) if n_g else 0.0
    figures = {
        "missing_objects": float(missing.sum()),
        "missing_fraction": missing_area / max(float(size_g.sum()) + missing_area, 1.0),
        "extra_objects": float(extra.sum()),
        "extra_fraction": extra_area / max(float(size_g.sum()), 1.0),
    }
    keep_g = np.concatenate([[False], ~extra]) if n_g else np.zeros(1, bool)
    # Specks the teacher finds are not the given mask's fault: leave them out of the boundary.
    keep_p = np.concatenate([[False], ~missing & (size_p >= SPECK * typical)]) if n_p else None
    g_m = keep_g[lab_g]
    p_m = keep_p[lab_p] if keep_p is not None else np.zeros_like(p)
    if not g_m.any() or not p_m.any():
        # Nothing to match: every object is missing or extra; the boundary figures are worst.
        sign = -1.0 if not g_m.any() else 1.0
        figures |= {
            "boundary_mean": sign,
            "boundary_abs": 1.0,
            "boundary_p95": 1.0,
            "boundary_coherence": 1.0,
            "boundary_spread": 0.0,
            "area_ratio": sign * math.log(1.0 + max(float(g.sum()), float(p.sum()))),
            "centroid_shift": 1.0,
            "boundary_iou_gap": 1.0,
        }
        return figures
    radius_g = np.concatenate([[1.0], _radius(size_g * voxel, ndim)])
    radius_p = np.concatenate([[1.0], _radius(size_p * voxel, ndim)])
    sd_g, sd_p = _signed_distance(g_m, spacing), _signed_distance(p_m, spacing)
    bg, bp = _boundary(g_m), _boundary(p_m)
    samples = np.concatenate([sd_p[bg] / radius_g[lab_g[bg]], -sd_g[bp] / radius_p[lab_p[bp]]])
    absolute = np.abs(samples)
    band = 0.1 * float(np.median(radius_g[1:][~extra]))
    band_g, band_p = g_m & (-sd_g <= band), p_m & (-sd_p <= band)
    union = float((band_g | band_p).sum())
    figures |= {
        "boundary_mean": float(samples.mean()),
        "boundary_abs": float(absolute.mean()),
        "boundary_p95": float(np.percentile(absolute, 95)),
        "boundary_coherence": float(abs(samples.sum()) / max(absolute.sum(), _EPS)),
        "boundary_spread": float(samples.std()),
        "area_ratio": float(math.log(float(g_m.sum()) / float(p_m.sum()))),
        "centroid_shift": _centroid_shift(lab_g, lab_p, keep_g, keep_p, radius_g, spacing),
        "boundary_iou_gap": 1.0 - float((band_g & band_p).sum()) / max(union, 1.0),
    }
    return figures


def _centroid_shift(
    lab_g: np.ndarray,
    lab_p: np.ndarray,
    keep_g: np.ndarray,
    keep_p: np.ndarray | None,
    radius_g: np.ndarray,
    spacing: Sequence[float],
) -> float:
    """Area-weighted mean distance between each matched given object and the predicted object
    it overlaps most, over the given object's radius.
    """
    if keep_p is None:
        return 1.0
    step = np.asarray(spacing, dtype=np.float64)
    shifts, weights = [], []
    for i, box in enumerate(ndimage.find_objects(lab_g), start=1):
        if box is None or not keep_g[i]:
            continue
        own = lab_g[box] == i
        partners = lab_p[box][own]
        partners = partners[keep_p[partners]]
        if partners.size == 0:
            continue
        j = int(np.bincount(partners).argmax())
        c_g = np.asarray(ndimage.center_of_mass(lab_g == i))
        c_p = np.asarray(ndimage.center_of_mass(lab_p == j))
        shifts.append(float(np.linalg.norm((c_g - c_p) * step)) / float(radius_g[i]))
        weights.append(float(own.sum()))
    if not shifts:
        return 1.0
    return float(np.average(shifts, weights=weights))


@dataclass(frozen=True)
class Prediction:
    """The teacher's view of one case, computed once and shared by the given mask and its
    known-noisy copies: ``probs`` ``(K, *spatial)``, the predicted labels, the top probability
    and the normalised entropy.
    """

    probs: np.ndarray
    labels: np.ndarray
    top: np.ndarray
    entropy: np.ndarray

    @classmethod
    def of(cls, probs: np.ndarray) -> Prediction:
        probs = np.asarray(probs, dtype=np.float32)
        if probs.ndim < 3 or probs.shape[0] < 2:
            raise ValueError(f"probs must be (K >= 2, *spatial), got {probs.shape}")
        logs = np.log(np.clip(probs, _EPS, 1.0))
        entropy = -(probs * logs).sum(axis=0) / math.log(probs.shape[0])
        return cls(probs, probs.argmax(axis=0), probs.max(axis=0), entropy)

    def crop(self, box: tuple[slice, ...]) -> Prediction:
        return Prediction(
            self.probs[(slice(None), *box)], self.labels[box], self.top[box], self.entropy[box]
        )


def object_box(given: np.ndarray, labels: np.ndarray, margin: int) -> tuple[slice, ...]:
    """The bounding box of every object of either mask, grown by ``margin`` pixels on every axis
    (the whole grid when there is none). With a margin of at least 1, distance transforms and
    every figure measured inside it are those of the whole grid.
    """
    objects = (given > 0) | (labels > 0)
    if not objects.any():
        return tuple(slice(0, n) for n in given.shape)
    box = ndimage.find_objects(objects.astype(np.uint8))[0]
    return tuple(
        slice(max(0, b.start - margin), min(n, b.stop + margin))
        for b, n in zip(box, given.shape, strict=True)
    )


def _near(objects: np.ndarray, radius: int) -> np.ndarray:
    """Pixels within ``radius`` pixels of ``objects`` (in-plane for volumes)."""
    if objects.ndim == 3 or radius == 0 or not objects.any():
        return ring(objects, radius)
    near: np.ndarray = ndimage.distance_transform_edt(~objects) <= radius
    return near


def measure_case(
    prediction: Prediction | np.ndarray,
    given: np.ndarray,
    *,
    spacing: Sequence[float],
    ring_radius: int,
) -> CaseFigures:
    """Every figure of one case, on the mask's own grid (``prediction`` or raw ``probs``)."""
    view = prediction if isinstance(prediction, Prediction) else Prediction.of(prediction)
    probs, pred = view.probs, view.labels
    if probs.shape[1:] != given.shape:
        raise ValueError(f"probs {probs.shape} must be (K, *spatial) for given {given.shape}")
    if len(spacing) != given.ndim:
        raise ValueError(f"spacing {tuple(spacing)} must have one value per axis of {given.shape}")
    num_classes = probs.shape[0]
    box = object_box(given, pred, ring_radius + 2)
    view, given = view.crop(box), given[box].astype(np.int64, copy=False)
    probs, pred = view.probs, view.labels
    objects = (given > 0) | (pred > 0)
    region = _near(objects, ring_radius)
    ce = given_cross_entropy(probs, given, region)
    dice = dice_per_class(pred[None], given[None], num_classes)[0]
    confident = (pred != given) & (view.top >= CONFIDENT)
    per_class = {}
    for c in range(1, num_classes):
        found = class_figures(probs[c], given == c, pred == c, spacing)
        if found is not None:
            per_class[c] = found
    values = {
        "ce": ce,
        "dice_gap": float(1.0 - dice.mean()),
        "confident_disagreement": float(confident[objects].sum() / max(objects.sum(), 1)),
        # Nothing given and nothing predicted: the teacher's doubt over the whole image.
        "uncertainty": float(view.entropy[region if region.any() else ...].mean()),
        **_worst_class(per_class),
        "given_pixels": float((given > 0).sum()),  # the box holds every object of both
        "predicted_pixels": float((pred > 0).sum()),
    }
    if num_classes > 2:
        for c, found in per_class.items():
            values |= {f"{name}_class_{c}": value for name, value in found.items()}
    voxel = float(np.prod(spacing))
    counts = np.bincount(given.ravel(), minlength=num_classes)[1:num_classes]
    return CaseFigures(
        values, tuple(float(d) for d in dice), tuple(float(a) * voxel for a in counts)
    )


@dataclass(frozen=True)
class SizeNorm:
    """How atypical a mask's object sizes are for this dataset (no teacher involved).

    A teacher can memorise a wrong mask, an object never drawn included, and then agrees with
    it; the dataset still knows how large that class usually is. Per class: the robust z-score
    (median and MAD over the audit's cases) of log(1 + area); a case takes its largest |z|.
    """

    centre: np.ndarray  # (K-1,)
    spread: np.ndarray  # (K-1,)

    @classmethod
    def fit(cls, areas: np.ndarray) -> SizeNorm:
        logs = np.log1p(np.asarray(areas, dtype=np.float64))
        centre = np.median(logs, axis=0)
        spread = 1.4826 * np.median(np.abs(logs - centre), axis=0)
        floor = 0.05 * np.maximum(np.abs(centre), 1.0)  # sets of one size: no division by ~0
        return cls(centre, np.maximum(spread, floor))

    def __call__(self, areas: np.ndarray) -> np.ndarray:
        z = (np.log1p(np.asarray(areas, dtype=np.float64)) - self.centre) / self.spread
        atypical: np.ndarray = np.abs(z).max(axis=-1)
        return atypical
