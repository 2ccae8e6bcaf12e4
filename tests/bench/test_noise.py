import numpy as np
import pytest
from PIL import Image

from bench.evaluate import mask_dice
from bench.noise import corrupt_boundary, corrupt_folder, corrupt_missing, plan
from tests.conftest import HC18, SAMPLE

DSB = (
    SAMPLE
    / "dsb2018"
    / "labels"
    / "10328b822b836e67b547b4144e0b7eb43747c114ce4cacd8b540648892945b00.png"
)


@pytest.fixture
def head() -> np.ndarray:
    return np.asarray(Image.open(HC18 / "masks" / "088_HC.png"))


def test_plan_corrupts_the_asked_fraction_and_splits_mixed_noise():
    ids = [f"c{i:02d}" for i in range(60)]
    kinds = plan(ids, fraction=0.4, protocol="mixed", seed=3)
    assert len(kinds) == 24
    assert sorted(kinds.values()).count("boundary") == 12
    assert kinds == plan(ids, fraction=0.4, protocol="mixed", seed=3)
    assert kinds != plan(ids, fraction=0.4, protocol="mixed", seed=4)


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"protocol": "x"}, "protocol"), ({"fraction": 1.5}, "fraction")]
)
def test_plan_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        plan(["a", "b"], **{"fraction": 0.4, "protocol": "mixed", "seed": 0, **kwargs})


def test_boundary_noise_moves_the_boundary_but_keeps_the_object(head):
    for seed in range(6):
        noisy, detail = corrupt_boundary(head, np.random.default_rng(seed))
        assert noisy.dtype == head.dtype and noisy.shape == head.shape
        assert 0.6 < mask_dice(noisy, head) < 0.99, detail
        how = detail.split()[0]
        if how == "erode":
            assert noisy.sum() < head.sum()
        elif how == "dilate":
            assert noisy.sum() > head.sum()


def test_missing_noise_removes_a_lone_object_or_a_large_part_of_it(head):
    for seed in range(6):
        noisy, detail = corrupt_missing(head, np.random.default_rng(seed))
        kept = noisy.sum() / head.sum()
        assert kept == 0 if "whole" in detail else 0.25 < kept < 0.75, detail


def test_missing_noise_deletes_whole_nuclei():
    nuclei = (np.asarray(Image.open(DSB)) > 0).astype(np.uint8)
    noisy, detail = corrupt_missing(nuclei, np.random.default_rng(0))
    deleted, total = (int(w) for w in detail.split()[1::2][:2])
    assert 0 < deleted < total and noisy.sum() < nuclei.sum()
    assert np.all(noisy <= nuclei)  # only deletions


def test_corrupt_folder_writes_every_mask_and_records_the_truth(hc18_small, tmp_path):
    _, masks = hc18_small
    records = corrupt_folder(masks, tmp_path / "noisy", fraction=0.5, protocol="missing", seed=1)
    assert len(records) == 8 and sum(r.kind == "missing" for r in records) == 4
    for r in records:
        given = np.asarray(Image.open(masks / f"{r.case}.png"))
        noisy = np.asarray(Image.open(tmp_path / "noisy" / f"{r.case}.png"))
        assert noisy.shape == given.shape
        assert np.array_equal(noisy, given) == (r.kind == "none")


def test_polygon_redraws_each_object_coarsely():
    from bench.noise import corrupt_polygon

    yy, xx = np.mgrid[:96, :96]
    mask = ((yy - 48) ** 2 / 30**2 + (xx - 48) ** 2 / 20**2 <= 1).astype(np.uint8)
    noisy, detail = corrupt_polygon(mask, np.random.default_rng(0))
    assert detail == "1 objects as polygons" and noisy.dtype == mask.dtype
    overlap = 2 * (noisy & mask).sum() / (noisy.sum() + mask.sum())
    assert 0.85 < overlap < 0.995  # the same object, drawn with a few vertices
    volume = np.stack([mask] * 3, axis=-1)
    assert corrupt_polygon(volume, np.random.default_rng(0))[0].shape == volume.shape
