"""A fingerprint of the data, and the working size it calls for.

The network sees every image (or slice) resized to a working size. Too small, and a nucleus is
a few pixels, so the network cannot see that one was never drawn, nor a boundary moved by a
tenth of a fetal head's radius; too large, and a CPU audit takes hours. The fingerprint reads a
sample of the masks: the images' in-plane side and the objects' equivalent radius (per class,
per connected component, per slice). The working size makes the median object about
``TARGET_RADIUS`` working pixels in radius, never below ``MIN_SIZE`` (boundary detail), never
above the images' own side (no upsampling) nor ``MAX_SIZE`` (the compute budget).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from imaging.cases import CaseFiles, read_case_mask

TARGET_RADIUS = 20.0  # working pixels: a 5% boundary error is then a pixel
MIN_SIZE, MAX_SIZE = 128, 512
SAMPLE = 48  # masks read for the fingerprint


@dataclass(frozen=True)
class Fingerprint:
    cases_read: int
    median_side: int  # in-plane, pixels
    median_radius: float  # equivalent radius of the median object, pixels
    objects: int  # objects measured
    working_size: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def working_size(side: float, radius: float) -> tuple[int, str]:
    """The working size for images of ``side`` px whose median object has ``radius`` px."""
    cap = min(MAX_SIZE, _round_up(side))
    if radius <= 0:
        size = min(MIN_SIZE, cap)
        return size, "no objects measured: the smallest working size"
    need = side * TARGET_RADIUS / radius
    size = min(max(_round_up(need), MIN_SIZE), cap)
    if size == cap and need > cap:
        why = "the images' own side" if cap < MAX_SIZE else f"the limit of {MAX_SIZE}"
        return size, (
            f"objects of radius {radius:.1f} px would need {need:.0f} px; capped at {why}"
        )
    return size, f"objects of radius {radius:.1f} px at {TARGET_RADIUS:.0f} working px"


def _round_up(value: float, step: int = 32) -> int:
    return max(step, int(math.ceil(value / step)) * step)


def _radii(mask: np.ndarray) -> list[float]:
    """Equivalent radii of every object of a ``(h, w)`` or ``(X, Y, Z)`` mask, per slice."""
    planes = [mask] if mask.ndim == 2 else [mask[..., z] for z in range(mask.shape[-1])]
    radii: list[float] = []
    for plane in planes:
        for c in np.unique(plane):
            if c == 0:
                continue
            labels, count = ndimage.label(plane == c)
            if count:
                sizes = np.bincount(labels.ravel())[1:]
                radii.extend(float(math.sqrt(s / math.pi)) for s in sizes)
    return radii


def fingerprint(files: Sequence[CaseFiles], *, sample: int = SAMPLE) -> Fingerprint:
    """Read up to ``sample`` masks, evenly spread over ``files``, and choose the working size."""
    if not files:
        raise ValueError("a fingerprint needs at least one case")
    picks = np.unique(np.linspace(0, len(files) - 1, min(sample, len(files))).round().astype(int))
    sides, radii = [], []
    for i in picks:
        mask = read_case_mask(files[int(i)]).array
        sides.append(max(mask.shape[:2]))
        radii.extend(_radii(mask))
    side = float(np.median(sides))
    radius = float(np.median(radii)) if radii else 0.0
    size, reason = working_size(side, radius)
    return Fingerprint(len(picks), int(side), round(radius, 2), len(radii), size, reason)
