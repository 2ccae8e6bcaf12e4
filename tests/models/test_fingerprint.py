"""The data's fingerprint and the working size it calls for (models.fingerprint)."""

from __future__ import annotations

import pytest

from imaging.cases import find_cases
from models.fingerprint import MAX_SIZE, MIN_SIZE, TARGET_RADIUS, fingerprint, working_size
from tests.conftest import HC18, SAMPLE


def test_large_objects_keep_the_smallest_size():
    size, reason = working_size(800, 180)
    assert size == MIN_SIZE and "180.0 px" in reason


def test_small_objects_get_their_images_own_side_and_no_more():
    assert working_size(256, 6)[0] == 256
    assert "own side" in working_size(256, 6)[1]
    assert working_size(1388, 8)[0] == MAX_SIZE


def test_the_median_object_reaches_the_target_radius():
    side, radius = 1000, 50  # needs 1000 * 20 / 50 = 400 px
    size = working_size(side, radius)[0]
    assert size % 32 == 0 and size >= side * TARGET_RADIUS / radius > size - 32


def test_no_objects_and_tiny_images():
    assert working_size(800, 0)[0] == MIN_SIZE
    assert working_size(70, 3)[0] == 96  # never above the side (rounded up to 32)


@pytest.mark.parametrize(
    ("images", "masks", "size"),
    [
        (HC18 / "images", HC18 / "masks", 128),
        (SAMPLE / "dsb2018/images", SAMPLE / "dsb2018/labels", 256),
    ],
)
def test_fingerprints_of_the_samples(images, masks, size):
    found = fingerprint(find_cases(images, masks))
    assert found.working_size == size
    assert found.objects >= found.cases_read > 0 and found.median_radius > 0
    assert found.to_dict()["reason"] == found.reason


def test_a_fingerprint_needs_cases():
    with pytest.raises(ValueError, match="at least one"):
        fingerprint([])
