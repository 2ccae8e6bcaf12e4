"""Known-noisy copies of a given mask, to calibrate the flag on (never the benchmark's truth).

``corrupt(mask, rng)`` returns a copy of ``mask`` (``(*spatial)`` class indices, 2D or 3D) with
one delineation error of a kind drawn from a broad family of the ways annotators err, at a
magnitude relative to each object's size drawn from a wide range (small errors included):

- contours drawn too loose or too tight (a uniform margin), or shifted;
- an outline scaled along one axis, or wobbling (a smooth random displacement);
- a local bump or dent (a disc added or cut at a point of the contour);
- part of an object cut off along a line;
- objects never drawn (deleted), or drawn where there are none (a copy of one moved elsewhere);
- neighbouring objects merged into one;
- a coarse, blocky outline (drawn at a low zoom);
- a class swapped for another (several foreground classes);
- for volumes: the object left out of a run of slices.

The audit scores these copies with the same networks and figures as the real masks; the
calibration learns from them what a wrong mask looks like on this data.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import ndimage

Kind = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def objects_of(mask: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """Every object of ``mask``: (class, boolean mask) per connected component of each class."""
    found: list[tuple[int, np.ndarray]] = []
    for c in np.unique(mask):
        if c == 0:
            continue
        labels, count = ndimage.label(mask == c)
        found.extend((int(c), labels == i) for i in range(1, count + 1))
    return found


def _radius(obj: np.ndarray) -> float:
    n = float(obj.sum())
    if obj.ndim == 2:
        return max(1.0, math.sqrt(n / math.pi))
    return max(1.0, float((3.0 * n / (4.0 * math.pi)) ** (1.0 / 3.0)))


def _chosen(mask: np.ndarray, rng: np.random.Generator) -> list[tuple[int, np.ndarray]]:
    """Some objects of ``mask`` (all of a single-object mask), at least one."""
    objects = objects_of(mask)
    if len(objects) <= 1:
        return objects
    share = rng.uniform(0.3, 1.0)
    pick = rng.random(len(objects)) < share
    pick[rng.integers(len(objects))] = True
    return [o for o, p in zip(objects, pick, strict=True) if p]


def _paint(mask: np.ndarray, c: int, old: np.ndarray, new: np.ndarray) -> None:
    """Replace object ``old`` of class ``c`` by ``new`` in place (never over other objects)."""
    mask[old] = 0
    mask[new & (mask == 0)] = c


def _margin(mask: np.ndarray, rng: np.random.Generator, sign: float) -> np.ndarray:
    out = mask.copy()
    for c, obj in _chosen(mask, rng):
        t = rng.uniform(0.04, 0.3) * _radius(obj)
        if sign > 0:
            new = ndimage.distance_transform_edt(~obj) <= t
        else:
            new = ndimage.distance_transform_edt(obj) > t
        _paint(out, c, obj, new)
    return out


def loose(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return _margin(mask, rng, +1.0)


def tight(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return _margin(mask, rng, -1.0)


def shift(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = mask.copy()
    for c, obj in _chosen(mask, rng):
        direction = rng.standard_normal(obj.ndim)
        if obj.ndim == 3:
            direction[0] = 0.0  # volumes: in-plane, as an annotator drags an outline
        direction /= max(float(np.linalg.norm(direction)), 1e-9)
        offset = direction * rng.uniform(0.06, 0.35) * _radius(obj)
        _paint(out, c, obj, ndimage.shift(obj.astype(float), offset, order=1) > 0.5)
    return out


def stretch(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = mask.copy()
    for c, obj in _chosen(mask, rng):
        centre = np.array(ndimage.center_of_mass(obj))
        scale = np.ones(obj.ndim)
        axis = int(rng.integers(obj.ndim - 2, obj.ndim)) if obj.ndim == 3 else int(rng.integers(2))
        factor = rng.uniform(1.08, 1.35)
        scale[axis] = factor if rng.random() < 0.5 else 1.0 / factor
        matrix = np.diag(1.0 / scale)
        moved = ndimage.affine_transform(
            obj.astype(float), matrix, offset=centre - matrix @ centre, order=1
        )
        _paint(out, c, obj, moved > 0.5)
    return out


def wobble(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = mask.copy()
    for c, obj in _chosen(mask, rng):
        r = _radius(obj)
        amplitude, smooth = rng.uniform(0.06, 0.3) * r, rng.uniform(0.3, 1.0) * r
        coords = np.indices(obj.shape).astype(float)
        step = max(1, int(smooth // 4))  # a smooth field, drawn coarse and zoomed up
        coarse_shape = tuple(-(-n // step) for n in obj.shape)
        for axis in range(obj.ndim):
            field = ndimage.gaussian_filter(rng.standard_normal(coarse_shape), smooth / step)
            field = ndimage.zoom(field, step, order=1)[tuple(slice(0, n) for n in obj.shape)]
            coords[axis] += field * amplitude / max(float(np.abs(field).max()), 1e-9)
        _paint(out, c, obj, ndimage.map_coordinates(obj.astype(float), coords, order=1) > 0.5)
    return out


def _disc(shape: tuple[int, ...], centre: np.ndarray, radius: float) -> np.ndarray:
    grid = np.indices(shape).astype(float)
    squared = np.zeros(shape)
    for g, x in zip(grid, centre, strict=True):
        squared += (g - x) ** 2
    inside: np.ndarray = squared <= radius**2
    return inside


def bump(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = mask.copy()
    for c, obj in _chosen(mask, rng):
        edge = np.argwhere(obj & ~ndimage.binary_erosion(obj))
        if len(edge) == 0:
            continue
        centre = edge[rng.integers(len(edge))].astype(float)
        disc = _disc(obj.shape, centre, rng.uniform(0.2, 0.6) * _radius(obj))
        _paint(out, c, obj, (obj | disc) if rng.random() < 0.5 else (obj & ~disc))
    return out


def cut(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = mask.copy()
    for c, obj in _chosen(mask, rng):
        points = np.argwhere(obj).astype(float)
        normal = rng.standard_normal(obj.ndim)
        normal /= max(float(np.linalg.norm(normal)), 1e-9)
        along = points @ normal
        keep = along <= np.quantile(along, 1.0 - rng.uniform(0.12, 0.6))
        new = np.zeros_like(obj)
        new[tuple(points[keep].astype(int).T)] = True
        _paint(out, c, obj, new)
    return out


def delete(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    objects = objects_of(mask)
    if len(objects) <= 1:
        return cut(mask, rng) if rng.random() < 0.5 else np.zeros_like(mask)
    out = mask.copy()
    share = rng.uniform(0.15, 0.6)
    pick = rng.random(len(objects)) < share
    pick[rng.integers(len(objects))] = True
    for (_, obj), gone in zip(objects, pick, strict=True):
        if gone:
            out[obj] = 0
    return out


def add(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    objects = objects_of(mask)
    if not objects:
        return mask.copy()
    out = mask.copy()
    count = 1 if len(objects) == 1 else int(rng.integers(1, max(2, len(objects) // 3 + 1)))
    for _ in range(count):
        c, obj = objects[rng.integers(len(objects))]
        points = np.argwhere(obj)
        low, high = points.min(0), points.max(0)
        span = np.array(mask.shape) - (high - low + 1)
        if mask.ndim == 3:
            span[0] = 0  # volumes: on the same slices
        if np.all(span >= 0) and np.any(span[-2:] > 0):
            start = np.array([rng.integers(s + 1) for s in span])
            start[0] = low[0] if mask.ndim == 3 else start[0]
            moved = np.zeros_like(obj)
            moved[tuple((points - low + start).T)] = True
        else:  # no room for a copy: a small blob somewhere in the background
            free = np.argwhere(out == 0)
            if len(free) == 0:
                continue
            centre = free[rng.integers(len(free))].astype(float)
            moved = _disc(mask.shape, centre, rng.uniform(0.15, 0.4) * _radius(obj))
            if mask.ndim == 3:
                drawn = np.asarray(obj.any(axis=(1, 2)))
                moved &= drawn[:, None, None]
        out[moved & (out == 0)] = c
    return out


def merge(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Neighbouring objects of a class joined: closed with the smallest reach that joins some."""
    objects = objects_of(mask)
    if len(objects) < 2:
        return loose(mask, rng)
    out = mask.copy()
    radius = float(np.median([_radius(o) for _, o in objects]))
    for c in np.unique(mask[mask > 0]):
        own = mask == c
        count = ndimage.label(own)[1]
        if count < 2:
            continue
        reach = max(1, round(rng.uniform(0.3, 1.0) * radius))
        while reach < max(mask.shape):
            closed = ndimage.binary_closing(own, iterations=reach)
            if ndimage.label(closed)[1] < count:
                out[closed & (out == 0)] = c
                break
            reach *= 2
    return out


def coarse(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    objects = objects_of(mask)
    if not objects:
        return mask.copy()
    radius = float(np.median([_radius(o) for _, o in objects]))
    step = max(2, round(radius / rng.uniform(1.5, 4.0)))
    factors = [1 if (mask.ndim == 3 and a == 0) else step for a in range(mask.ndim)]
    small = mask[tuple(slice(0, None, f) for f in factors)]
    big = small
    for axis, f in enumerate(factors):
        big = np.repeat(big, f, axis=axis)
    offset = [int(rng.integers(f)) for f in factors]
    big = np.roll(big, offset, axis=tuple(range(mask.ndim)))
    return np.ascontiguousarray(big[tuple(slice(0, n) for n in mask.shape)])


def swap(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    classes = [int(c) for c in np.unique(mask) if c]
    if len(classes) < 2:
        return tight(mask, rng)
    out = mask.copy()
    for c, obj in _chosen(mask, rng):
        out[obj] = rng.choice([k for k in classes if k != c])
    return out


def drop_slices(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if mask.ndim != 3:
        return delete(mask, rng)
    drawn = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))
    if len(drawn) < 2:
        return delete(mask, rng)
    run = max(1, round(rng.uniform(0.1, 0.4) * len(drawn)))
    start = int(rng.integers(0, len(drawn) - run + 1))
    out = mask.copy()
    out[drawn[start : start + run]] = 0
    return out


KINDS: dict[str, Kind] = {
    "loose": loose,
    "tight": tight,
    "shift": shift,
    "stretch": stretch,
    "wobble": wobble,
    "bump": bump,
    "cut": cut,
    "delete": delete,
    "add": add,
    "merge": merge,
    "coarse": coarse,
    "swap": swap,
    "drop_slices": drop_slices,
}


def applicable(mask: np.ndarray) -> list[str]:
    """The kinds that make sense for ``mask`` (no swap with one class, no slices in 2D...)."""
    classes = len([c for c in np.unique(mask) if c])
    kinds = [k for k in KINDS if k not in ("swap", "drop_slices")]
    if classes >= 2:
        kinds.append("swap")
    if mask.ndim == 3:
        kinds.append("drop_slices")
    return kinds


def corrupt(mask: np.ndarray, rng: np.random.Generator, kind: str | None = None) -> np.ndarray:
    """One corrupted copy of ``mask`` (a kind drawn at random unless named); never ``mask``
    itself, never identical to it unless ``mask`` holds no object.
    """
    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown corruption '{kind}'; known: {', '.join(KINDS)}")
    kinds = applicable(mask)
    for _ in range(5):
        name = kind or kinds[int(rng.integers(len(kinds)))]
        out = KINDS[name](mask, rng).astype(mask.dtype, copy=False)
        if not np.array_equal(out, mask):
            return out
    return out
