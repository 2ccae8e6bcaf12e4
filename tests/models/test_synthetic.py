"""Known-noisy copies (models.synthetic): every kind corrupts, keeps the grid and the classes."""

from __future__ import annotations

import numpy as np
import pytest

from models.synthetic import KINDS, applicable, corrupt


def disk(cy: float, cx: float, r: float, shape=(96, 96)) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return ((yy - cy) ** 2 + (xx - cx) ** 2) <= r * r


SINGLE = disk(48, 48, 20).astype(np.uint8)
MANY = np.zeros((96, 96), np.uint8)
for cy, cx in ((20, 20), (20, 70), (70, 20), (70, 70), (45, 45)):
    MANY[disk(cy, cx, 7)] = 1
CLASSES = MANY.copy()
CLASSES[disk(70, 70, 7)] = 2
VOLUME = np.stack([SINGLE] * 8)


MASKS = {"one": SINGLE, "many": MANY, "2cls": CLASSES, "3d": VOLUME}
PAIRS = [
    (name, kind) for name, m in MASKS.items() for kind in sorted(KINDS) if kind in applicable(m)
]


@pytest.mark.parametrize(("name", "kind"), PAIRS)
def test_every_kind_changes_the_mask_and_keeps_its_grid(name, kind):
    mask = MASKS[name]
    out = corrupt(mask, np.random.default_rng(3), kind)
    assert out.shape == mask.shape and out.dtype == mask.dtype
    assert not np.array_equal(out, mask)
    assert set(np.unique(out)) <= set(np.unique(mask)) | {0}


def test_kinds_follow_the_mask():
    assert "swap" not in applicable(SINGLE) and "swap" in applicable(CLASSES)
    assert "drop_slices" in applicable(VOLUME) and "drop_slices" not in applicable(SINGLE)


def test_copies_are_seeded_and_vary():
    a = [corrupt(MANY, np.random.default_rng(7)) for _ in range(2)]
    assert np.array_equal(a[0], a[1])
    rng = np.random.default_rng(7)
    copies = [corrupt(MANY, rng) for _ in range(6)]
    assert len({c.tobytes() for c in copies}) == 6


def test_the_given_mask_is_never_modified():
    before = MANY.copy()
    for kind in applicable(MANY):
        corrupt(MANY, np.random.default_rng(0), kind)
    assert np.array_equal(MANY, before)


def test_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt(SINGLE, np.random.default_rng(0), "sneeze")
