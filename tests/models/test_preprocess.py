import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from models.preprocess import (
    SliceGrid,
    as_slices,
    from_slices,
    image_to_working,
    mask_to_working,
    normalise_intensity,
    to_original,
)
from tests.conftest import HC18


def _mask() -> np.ndarray:
    return np.asarray(Image.open(HC18 / "masks" / "000_HC.png")).astype(np.int64)  # (540, 800)


def _onehot(labels: torch.Tensor, k: int) -> torch.Tensor:
    return F.one_hot(labels, k).permute(0, 3, 1, 2).float()


def test_inverse_restores_the_original_grid_exactly_at_full_size():
    mask = _mask()
    grid = SliceGrid(540, 800, size=800)
    working = mask_to_working(mask[None], grid, 2)
    assert working.shape == (1, 800, 800)
    back = to_original(_onehot(working, 2), grid).argmax(1)[0].numpy()
    assert back.shape == (540, 800)
    assert np.array_equal(back, mask)


def test_inverse_from_working_size_lands_on_the_original_pixels():
    mask = _mask()
    grid = SliceGrid(540, 800, size=128)
    working = mask_to_working(mask[None], grid, 2)
    assert working.shape == (1, 128, 128)
    back = to_original(_onehot(working, 2), grid).argmax(1)[0].numpy()
    assert back.shape == mask.shape
    assert (back == mask).mean() > 0.99  # only the boundary band can differ


def test_padding_is_background_and_the_aspect_ratio_is_kept():
    full = np.ones((1, 50, 100), np.int64)
    working = mask_to_working(full, SliceGrid(50, 100, 64), 2)[0]
    assert working[:, 32].tolist() == [0] * 16 + [1] * 32 + [0] * 16


def test_images_shrink_by_area_and_keep_channels():
    image = np.random.default_rng(0).random((2, 3, 60, 40)).astype(np.float32)
    out = image_to_working(image, SliceGrid(60, 40, 32))
    assert out.shape == (2, 3, 32, 32)


def test_slices_round_trip_for_2d_and_3d():
    two_d = np.arange(12).reshape(1, 3, 4)  # (C, H, W)
    assert as_slices(two_d, channels=True).shape == (1, 1, 3, 4)
    volume = np.arange(24).reshape(2, 3, 4)  # (X, Y, Z): 4 slices of 2 x 3
    stack = as_slices(volume, channels=False)
    assert stack.shape == (4, 2, 3) and np.array_equal(stack[1], volume[:, :, 1])
    assert np.array_equal(from_slices(stack, is_3d=True), volume)
    assert np.array_equal(from_slices(as_slices(two_d[0], channels=False), is_3d=False), two_d[0])


def test_intensity_is_scaled_per_channel_to_unit_range():
    image = np.stack([np.linspace(0, 1000, 400), np.linspace(-5, 5, 400)]).reshape(2, 20, 20)
    out = normalise_intensity(image.astype(np.float32))
    assert out.min() == 0.0 and out.max() == 1.0
    assert np.allclose(out[0], out[1], atol=1e-5)
