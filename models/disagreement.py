"""How badly a given mask agrees with the teacher: the figures the label filter ranks cases by.

``probs`` is ``(K, *spatial)`` softmax, ``given`` ``(*spatial)`` class indices, spatial ``(H, W)``
or ``(D, H, W)`` (a stack of slices; the ring then grows within each slice only).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from monai.metrics.meandice import compute_dice
from scipy import ndimage

_EPS = 1e-6


@dataclass(frozen=True)
class Disagreement:
    ce: float  # mean cross-entropy of the given labels near the objects
    dice_gap: float  # 1 - mean foreground Dice(teacher prediction, given mask)
    dice: tuple[float, ...]  # Dice per foreground class 1..K-1

    def features(self) -> list[float]:
        return [self.ce, self.dice_gap]


def dice_per_class(pred: np.ndarray, given: np.ndarray, num_classes: int) -> np.ndarray:
    """Dice of each foreground class over a batch: ``(B, *spatial)`` pair -> ``(B, K-1)``.

    Both empty scores 1, one empty scores 0 (never NaN).
    """

    def onehot(labels: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64))
        return F.one_hot(t, num_classes).movedim(-1, 1).float()

    scores = compute_dice(onehot(pred), onehot(given), include_background=False, ignore_empty=False)
    return scores.numpy().astype(np.float64)


def ring(objects: np.ndarray, radius: int) -> np.ndarray:
    """``objects`` grown by ``radius`` pixels (in-plane for stacks)."""
    if radius == 0 or not objects.any():
        return objects
    structure = ndimage.generate_binary_structure(2, 1)
    if objects.ndim == 3:
        structure = structure[None]
    grown: np.ndarray = ndimage.binary_dilation(objects, structure=structure, iterations=radius)
    return grown


def given_cross_entropy(probs: np.ndarray, given: np.ndarray, region: np.ndarray) -> float:
    """Mean cross-entropy of the given labels over ``region`` (everywhere when it is empty)."""
    if not region.any():
        region = np.ones_like(region)
    p_given = np.take_along_axis(probs, given[None].astype(np.int64), axis=0)[0]
    return float(-np.log(np.clip(p_given[region], _EPS, 1.0)).mean())


def measure(probs: np.ndarray, given: np.ndarray, *, ring_radius: int) -> Disagreement:
    """Disagreement of one case's given mask with the teacher's probabilities."""
    if probs.shape[1:] != given.shape:
        raise ValueError(f"probs {probs.shape} must be (K, *spatial) for given {given.shape}")
    num_classes = probs.shape[0]
    given = given.astype(np.int64)
    pred = probs.argmax(axis=0)
    ce = given_cross_entropy(probs, given, ring((given > 0) | (pred > 0), ring_radius))
    dice = dice_per_class(pred[None], given[None], num_classes)[0]
    return Disagreement(
        ce=ce, dice_gap=float(1.0 - dice.mean()), dice=tuple(float(d) for d in dice)
    )
