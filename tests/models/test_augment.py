"""Training-batch augmentation: image and target move together, and runs repeat."""

from __future__ import annotations

import math

import torch

from models.augment import augment_batch, turn_and_zoom


def _square_batch(n: int = 4, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.zeros(n, size, size, dtype=torch.long)
    y[:, 24:40, 20:44] = 1
    y[:, 10:14, 10:14] = 2
    x = 0.2 + 0.6 * y[:, None].float() / 2
    return x, y


def test_no_turn_and_no_zoom_is_the_identity() -> None:
    x, y = _square_batch()
    image, target = turn_and_zoom(x, y, torch.zeros(4), torch.ones(4))
    assert torch.allclose(image, x, atol=1e-5)
    assert torch.equal(target, y)


def test_a_zoom_of_two_enlarges_a_centred_object_fourfold_and_keeps_its_centre() -> None:
    y = torch.zeros(1, 64, 64, dtype=torch.long)
    y[0, 28:36, 28:36] = 1
    _, target = turn_and_zoom(torch.zeros(1, 1, 64, 64), y, torch.zeros(1), torch.full((1,), 2.0))
    assert int(target.sum()) == 4 * int(y.sum())
    assert torch.allclose(torch.nonzero(target[0]).float().mean(0), torch.tensor([31.5, 31.5]))


def test_a_quarter_turn_turns_image_and_target_alike() -> None:
    x, y = _square_batch(1)
    image, target = turn_and_zoom(x, y, torch.full((1,), math.pi / 2), torch.ones(1))
    assert torch.equal(target, torch.rot90(y, 1, dims=(1, 2))) or torch.equal(
        target, torch.rot90(y, -1, dims=(1, 2))
    )
    # the image's bright pixels are the target's object pixels, after the turn as before
    assert torch.equal(image[:, 0] > 0.45, target > 0)


def test_augmented_targets_keep_their_classes_and_match_the_image() -> None:
    x, y = _square_batch(16)
    image, target = augment_batch(
        x, y, torch.Generator().manual_seed(3), spatial=True, intensity=False
    )
    assert target.dtype == torch.long and set(target.unique().tolist()) <= {0, 1, 2}
    assert not torch.equal(target, y)  # some slices were turned or zoomed
    # nearest-neighbour targets against bilinear images: they disagree only along edges
    assert float(((image[:, 0] > 0.25) != (target > 0)).float().mean()) < 0.05


def test_intensity_changes_leave_the_target_alone_and_the_same_seed_repeats() -> None:
    x, y = _square_batch(8)
    first = augment_batch(x, y, torch.Generator().manual_seed(5), spatial=True, intensity=True)
    again = augment_batch(x, y, torch.Generator().manual_seed(5), spatial=True, intensity=True)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    only = augment_batch(x, y, torch.Generator().manual_seed(5), spatial=False, intensity=True)
    assert torch.equal(only[1], y)
    assert not torch.allclose(only[0], x)
    assert type(only[0]) is torch.Tensor and type(first[1]) is torch.Tensor  # no MetaTensor


def test_the_inputs_are_not_changed() -> None:
    x, y = _square_batch()
    x0, y0 = x.clone(), y.clone()
    augment_batch(x, y, torch.Generator().manual_seed(0), spatial=True, intensity=True)
    assert torch.equal(x, x0) and torch.equal(y, y0)
