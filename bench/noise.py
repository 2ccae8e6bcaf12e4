"""Noise protocols of method.md: corrupt true masks, seeded, and record which cases were hit.

- boundary (B): per object, erosion or dilation by a radius relative to the object's size, or a
  smooth random distortion of its outline;
- missing (L): delete each object with probability ``q``; a mask with a single object loses all
  of it or a large part (cut along a random line);
- polygon (P): each object redrawn as the polygon through 5 to 9 points of its outline, as an
  annotator clicking a few vertices does (per slice for volumes);
- mixed: half of the corrupted cases B, half L.

Masks are ``(*spatial)`` class indices; objects are connected components of each class.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from imaging.cases import index_folder
from imaging.formats import read_mask
from imaging.write import write_array
from models.synthetic import objects_of

PROTOCOLS = ("boundary", "missing", "polygon", "mixed")


@dataclass(frozen=True)
class Corruption:
    case: str
    kind: str  # "boundary", "missing" or "none"
    detail: str


def _ball(radius: int, ndim: int) -> np.ndarray:
    grid = np.ogrid[tuple(slice(-radius, radius + 1) for _ in range(ndim))]
    return sum(g.astype(float) ** 2 for g in grid) <= radius**2


def _distort(
    obj: np.ndarray, amplitude: float, smooth: float, rng: np.random.Generator
) -> np.ndarray:
    coords = np.indices(obj.shape).astype(float)
    for axis in range(obj.ndim):
        field = ndimage.gaussian_filter(rng.standard_normal(obj.shape), smooth)
        field *= amplitude / max(np.abs(field).max(), 1e-9)
        coords[axis] += field
    return ndimage.map_coordinates(obj.astype(float), coords, order=1) > 0.5


def corrupt_boundary(mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Move every object's boundary: erode, dilate or distort, by 8-20% of its radius."""
    noisy = mask.copy()
    details = []
    for c, obj in objects_of(mask):
        radius = (
            (obj.sum() / np.pi) ** (1 / 2)
            if mask.ndim == 2
            else (obj.sum() * 3 / (4 * np.pi)) ** (1 / 3)
        )
        step = max(1, int(round(rng.uniform(0.08, 0.2) * radius)))
        how = ("erode", "dilate", "distort")[int(rng.integers(3))]
        if how == "erode":
            new = ndimage.binary_erosion(obj, structure=_ball(step, mask.ndim))
        elif how == "dilate":
            new = ndimage.binary_dilation(obj, structure=_ball(step, mask.ndim)) & (
                (mask == 0) | obj
            )
        else:
            new = _distort(obj, amplitude=2.0 * step, smooth=max(2.0, radius / 3), rng=rng) & (
                (mask == 0) | obj
            )
        noisy[obj] = 0
        noisy[new] = c
        details.append(f"{how} {step}px")
    return noisy, "; ".join(details)


def corrupt_missing(
    mask: np.ndarray, rng: np.random.Generator, *, q: float = 0.5
) -> tuple[np.ndarray, str]:
    """Delete objects; a lone object is deleted whole or loses 30-70% of itself along a line."""
    noisy = mask.copy()
    objects = objects_of(mask)
    if not objects:
        return noisy, "no object to delete"
    if len(objects) == 1:
        _, obj = objects[0]
        if rng.random() < 0.5:
            noisy[obj] = 0
            return noisy, "deleted the whole object"
        coords = np.argwhere(obj)
        normal = rng.standard_normal(mask.ndim)
        proj = coords @ (normal / np.linalg.norm(normal))
        share = rng.uniform(0.3, 0.7)
        cut = proj >= np.quantile(proj, 1 - share)
        noisy[tuple(coords[cut].T)] = 0
        return noisy, f"deleted {share:.0%} of the object"
    drop = rng.random(len(objects)) < q
    if not drop.any():
        drop[int(rng.integers(len(objects)))] = True
    for (_, obj), gone in zip(objects, drop, strict=True):
        if gone:
            noisy[obj] = 0
    return noisy, f"deleted {int(drop.sum())} of {len(objects)} objects"


def _polygon_2d(obj: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image, ImageDraw

    edge = np.argwhere(obj & ~ndimage.binary_erosion(obj))
    if len(edge) < 3:
        return obj
    centre = edge.mean(axis=0)
    angle = np.arctan2(edge[:, 0] - centre[0], edge[:, 1] - centre[1])
    order = np.argsort(angle)
    count = int(rng.integers(5, 10))
    start = rng.uniform(-np.pi, -np.pi + 2 * np.pi / count)
    picks = []
    for k in range(count):  # the outline point nearest each of ``count`` evenly spaced angles
        target = start + 2 * np.pi * k / count
        picks.append(order[np.argmin(np.abs(np.angle(np.exp(1j * (angle[order] - target)))))])
    canvas = Image.new("L", (obj.shape[1], obj.shape[0]), 0)
    ImageDraw.Draw(canvas).polygon([(float(edge[i, 1]), float(edge[i, 0])) for i in picks], fill=1)
    return np.asarray(canvas, dtype=bool)


def corrupt_polygon(mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Every object as a coarse polygon of its outline (per slice for volumes)."""
    noisy = mask.copy()
    objects = objects_of(mask)
    planes = (
        (lambda a: [a]) if mask.ndim == 2 else (lambda a: [a[..., z] for z in range(a.shape[-1])])
    )
    for c, obj in objects:
        noisy[obj] = 0
        drawn = np.zeros_like(obj)
        for z, plane in enumerate(planes(obj)):
            if plane.any():
                poly = _polygon_2d(plane, rng)
                if mask.ndim == 2:
                    drawn |= poly
                else:
                    drawn[..., z] |= poly
        noisy[drawn & (noisy == 0)] = c
    return noisy, f"{len(objects)} objects as polygons"


def plan(case_ids: list[str], *, fraction: float, protocol: str, seed: int) -> dict[str, str]:
    """Which cases get which kind of noise: ``round(fraction * N)`` of them, chosen by ``seed``."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got '{protocol}'")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    rng = np.random.default_rng(seed)
    chosen = sorted(
        rng.choice(len(case_ids), size=int(round(fraction * len(case_ids))), replace=False)
    )
    kinds = {}
    for order, index in enumerate(chosen):
        if protocol == "mixed":
            kinds[case_ids[index]] = "boundary" if order % 2 == 0 else "missing"
        else:
            kinds[case_ids[index]] = protocol
    return kinds


def corrupt_folder(
    masks_dir: Path, out_dir: Path, *, fraction: float = 0.4, protocol: str = "mixed", seed: int = 0
) -> list[Corruption]:
    """Write every mask of ``masks_dir`` to ``out_dir`` (same name and format), corrupting some."""
    masks = index_folder(Path(masks_dir), "mask")
    kinds = plan(sorted(masks), fraction=fraction, protocol=protocol, seed=seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for index, (case, path) in enumerate(sorted(masks.items())):
        loaded = read_mask(path, case=case)
        kind = kinds.get(case, "none")
        rng = np.random.default_rng([seed, index])
        if kind == "boundary":
            noisy, detail = corrupt_boundary(loaded.array, rng)
        elif kind == "missing":
            noisy, detail = corrupt_missing(loaded.array, rng)
        elif kind == "polygon":
            noisy, detail = corrupt_polygon(loaded.array, rng)
        else:
            noisy, detail = loaded.array, ""
        write_array(out_dir / path.name, noisy, loaded.geometry)
        records.append(Corruption(case, kind, detail))
    return records
