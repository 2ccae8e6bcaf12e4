"""Working-size preprocessing and its inverse.

Each 2D image, or each slice of a 3D volume, is padded symmetrically to a square and resized to
``size x size``. ``SliceGrid`` records the padding so that ``to_original`` maps any per-pixel map
back onto the original ``(h, w)`` grid exactly (same shape, same pixel positions).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms.intensity.array import ScaleIntensityRangePercentiles


@dataclass(frozen=True)
class SliceGrid:
    """Original in-plane shape ``(h, w)`` of a slice, and the working size it maps to."""

    height: int
    width: int
    size: int

    @property
    def side(self) -> int:
        return max(self.height, self.width)

    @property
    def pads(self) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) padding that makes the slice square."""
        dh, dw = self.side - self.height, self.side - self.width
        return dh // 2, dh - dh // 2, dw // 2, dw - dw // 2


def as_slices(array: np.ndarray, *, channels: bool) -> np.ndarray:
    """``(C, H, W)`` or ``(C, X, Y, Z)`` -> ``(D, C, h, w)``; without channels, drop C."""
    if not channels:
        array = array[None]
    stack = array[None] if array.ndim == 3 else np.moveaxis(array, -1, 0)
    return stack if channels else stack[:, 0]


def from_slices(stack: np.ndarray, *, is_3d: bool) -> np.ndarray:
    """Inverse of ``as_slices`` for arrays with leading slice axis ``(D, ...)``."""
    return np.moveaxis(stack, 0, -1) if is_3d else stack[0]


def normalise_intensity(image: np.ndarray) -> np.ndarray:
    """Per channel, map the 0.5..99.5 percentile range of the whole case to [0, 1]."""
    scale = ScaleIntensityRangePercentiles(
        lower=0.5, upper=99.5, b_min=0.0, b_max=1.0, clip=True, channel_wise=True
    )
    return np.asarray(scale(image), dtype=np.float32)


def _square(t: torch.Tensor, grid: SliceGrid, value: float = 0.0) -> torch.Tensor:
    top, bottom, left, right = grid.pads
    return F.pad(t, (left, right, top, bottom), value=value)


def _resize(t: torch.Tensor, grid: SliceGrid) -> torch.Tensor:
    """Square ``(D, C, side, side)`` -> ``(D, C, size, size)``; area averaging when shrinking."""
    if grid.side >= grid.size:
        return F.interpolate(t, size=(grid.size, grid.size), mode="area")
    return F.interpolate(t, size=(grid.size, grid.size), mode="bilinear", align_corners=False)


def image_to_working(slices: np.ndarray, grid: SliceGrid) -> torch.Tensor:
    """``(D, C, h, w)`` float -> ``(D, C, size, size)``."""
    t = torch.from_numpy(np.ascontiguousarray(slices, dtype=np.float32))
    return _resize(_square(t, grid), grid)


def mask_to_working(slices: np.ndarray, grid: SliceGrid, num_classes: int) -> torch.Tensor:
    """``(D, h, w)`` labels -> ``(D, size, size)`` labels, by majority over each target pixel."""
    labels = torch.from_numpy(np.ascontiguousarray(slices, dtype=np.int64))
    labels = _square(labels[:, None], grid)[:, 0]  # padding is background (0)
    onehot = F.one_hot(labels, num_classes).permute(0, 3, 1, 2).float()
    return _resize(onehot, grid).argmax(1)


def to_original(maps: torch.Tensor, grid: SliceGrid) -> torch.Tensor:
    """``(D, K, size, size)`` per-pixel maps -> ``(D, K, h, w)`` on the original grid."""
    up = F.interpolate(maps, size=(grid.side, grid.side), mode="bilinear", align_corners=False)
    top, _, left, _ = grid.pads
    return up[:, :, top : top + grid.height, left : left + grid.width]
