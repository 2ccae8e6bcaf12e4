"""Random spatial and intensity augmentation of a training batch (MONAI).

``augment_batch`` turns each slice of a batch, with probability ``SPATIAL_P``, by a small
rotation and zoom about its centre (the image bilinearly, the target by nearest neighbour, both
the same way; MONAI's batched ``AffineTransform``), and, with probability ``INTENSITY_P``,
changes its gamma and contrast (MONAI's ``AdjustContrast`` and ``ScaleIntensityFixedMean``).
The parameters are drawn from the training state's generator, so that a run repeats and
resumes exactly. The gamma and contrast ranges are nnU-Net's defaults; the rotation and zoom
are narrower than nnU-Net's, for images whose orientation and scale carry meaning.
"""

from __future__ import annotations

import math

import torch
from monai.networks.layers.spatial_transforms import AffineTransform
from monai.transforms.intensity.array import AdjustContrast, ScaleIntensityFixedMean

SPATIAL_P = 0.5  # share of slices turned and zoomed
ROTATION = math.radians(15.0)  # at most this much either way
ZOOM = (0.85, 1.25)  # >1 enlarges the content (nnU-Net: 0.7-1.4)
INTENSITY_P = 0.5  # share of slices whose gamma and contrast change
GAMMA = (0.7, 1.5)
CONTRAST = 0.25  # intensities spread about their mean by 1 +/- at most this


def _uniform(low: float, high: float, n: int, g: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=g, dtype=torch.float64)


def _plain(t: torch.Tensor) -> torch.Tensor:
    """A MONAI ``MetaTensor`` as a plain tensor (the training step needs no metadata)."""
    as_tensor = getattr(t, "as_tensor", None)
    return as_tensor() if callable(as_tensor) else t


def turn_and_zoom(
    x: torch.Tensor, y: torch.Tensor, angle: torch.Tensor, zoom: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` ``(B, C, H, W)`` and ``y`` ``(B, H, W)`` rotated by ``angle`` (radians) and zoomed
    by ``zoom`` ``(B,)`` about the centre; outside the image: 0 (background)."""
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.zeros(len(angle), 2, 3, dtype=torch.float64)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
    theta = theta.to(dtype=x.dtype, device=x.device)
    image = _resampler("bilinear")(x, theta)
    target = _resampler("nearest")(y[:, None].to(x.dtype), theta)
    return image, target[:, 0].round().long()


def _resampler(mode: str) -> AffineTransform:
    """Resampling by ``theta`` in normalised coordinates; outside the image: 0."""
    return AffineTransform(normalized=True, mode=mode, padding_mode="zeros", align_corners=False)


def augment_batch(
    x: torch.Tensor,
    y: torch.Tensor,
    g: torch.Generator,
    *,
    spatial: bool,
    intensity: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augmented copies of ``x`` ``(B, C, H, W)`` (intensities in [0, 1]) and its class-index
    target ``y`` ``(B, H, W)``; the inputs are not changed."""
    x, y = x.clone(), y.clone()
    n = x.shape[0]
    if spatial:
        chosen = torch.rand(n, generator=g) < SPATIAL_P
        angle = _uniform(-ROTATION, ROTATION, n, g)
        zoom = _uniform(*ZOOM, n, g)
        if chosen.any():
            x[chosen], y[chosen] = turn_and_zoom(x[chosen], y[chosen], angle[chosen], zoom[chosen])
    if intensity:
        chosen = torch.rand(n, generator=g) < INTENSITY_P
        gamma = _uniform(*GAMMA, n, g)
        factor = _uniform(-CONTRAST, CONTRAST, n, g)
        for i in torch.nonzero(chosen).flatten().tolist():
            image = AdjustContrast(float(gamma[i]))(x[i])
            image = ScaleIntensityFixedMean(factor=float(factor[i]), channel_wise=True)(image)
            x[i] = _plain(torch.as_tensor(image))
    return x, y
