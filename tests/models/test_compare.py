"""Comparing annotation sets on masks with a known answer: real hc18 masks, moved and edited."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from models.agreement import ClassStatus, summarise
from models.compare import against, compare_case, compare_pair, staple, worst_distance
from tests.conftest import HC18


@pytest.fixture(scope="module")
def head() -> np.ndarray:
    """A real hc18 mask (540 x 800, one filled ellipse of class 1)."""
    mask = np.asarray(Image.open(sorted((HC18 / "masks").iterdir())[0]))
    assert set(np.unique(mask)) == {0, 1}
    return mask.astype(np.uint8)


def test_a_set_against_itself_has_dice_1_and_distance_0(head):
    [score] = compare_pair(head, head.copy(), labels=[1], spacing=(0.4, 0.25))
    assert score.status == ClassStatus.scored
    assert score.dice == pytest.approx(1.0)
    assert score.mean_distance_mm == 0.0 and score.p95_distance_mm == 0.0
    assert (score.objects_a, score.objects_b, score.only_in_a, score.only_in_b) == (1, 1, 0, 0)
    assert score.disagreement == pytest.approx(0.0)


@pytest.mark.parametrize(("axis", "k"), [(0, 3), (1, 3), (1, 8)])
def test_a_real_mask_shifted_by_k_pixels_is_k_times_the_spacing_away(head, axis, k):
    spacing = (0.4, 0.25)  # mm per row, per column: the shift's axis decides the distance
    expected = k * spacing[axis]
    [score] = compare_pair(head, np.roll(head, k, axis=axis), labels=[1], spacing=spacing)
    # A convex outline moved by d: a boundary point whose normal makes an angle t with the move
    # is d * |cos t| from the other outline. The 95th percentile is then within 1% of d (the
    # ends of the ellipse, where the outline is square to the move, are more than 5% of it);
    # the mean is d times the mean |cos t| over the outline, between 0.5 and 0.75 here.
    assert score.p95_distance_mm == pytest.approx(expected, rel=0.01)
    assert 0.45 * expected < score.mean_distance_mm < 0.8 * expected
    assert score.dice < 1.0


def test_a_line_shifted_sideways_is_exactly_k_times_the_spacing_away_at_every_point():
    a = np.zeros((40, 30), np.uint8)
    a[5:35, 10] = 1  # every pixel of a one-pixel line is on its outline
    for axis, k, spacing in ((1, 4, (2.0, 0.5)), (1, 2, (0.5, 1.5))):
        [score] = compare_pair(a, np.roll(a, k, axis=axis), labels=[1], spacing=spacing)
        assert score.mean_distance_mm == pytest.approx(k * spacing[axis], abs=1e-6)
        assert score.p95_distance_mm == pytest.approx(k * spacing[axis], abs=1e-6)
        assert score.dice == 0.0 and score.status == ClassStatus.scored
        assert (score.only_in_a, score.only_in_b) == (1, 1)  # no overlap: both one-sided


def test_an_object_on_the_image_border_is_measured_the_same():
    a = np.zeros((40, 30), np.uint8)
    a[0:40, 0] = 1  # a line along the whole left border
    [score] = compare_pair(a, np.roll(a, 3, axis=1), labels=[1], spacing=(1.0, 0.5))
    assert score.mean_distance_mm == pytest.approx(1.5, abs=1e-6)
    assert score.p95_distance_mm == pytest.approx(1.5, abs=1e-6)


def test_a_3d_plate_moved_between_slices_uses_the_slice_spacing():
    a = np.zeros((20, 20, 12), np.uint8)
    a[4:16, 4:16, 3] = 1
    b = np.roll(a, 2, axis=2)
    [score] = compare_pair(a, b, labels=[1], spacing=(0.8, 0.8, 3.0))
    assert score.mean_distance_mm == pytest.approx(6.0, abs=1e-6)
    assert score.p95_distance_mm == pytest.approx(6.0, abs=1e-6)


def test_a_deleted_object_is_counted_as_missing_from_the_other_set(head):
    with_lesion = head.copy()
    with_lesion[20:40, 20:40] = 1  # a second object of class 1, far from the head
    [score] = compare_pair(with_lesion, head, labels=[1], spacing=(1.0, 1.0))
    assert (score.objects_a, score.objects_b) == (2, 1)
    assert (score.only_in_a, score.only_in_b) == (1, 0)
    [back] = compare_pair(head, with_lesion, labels=[1], spacing=(1.0, 1.0))
    assert (back.only_in_a, back.only_in_b) == (0, 1)
    # An object that still overlaps (shrunk, not deleted) is matched, not one-sided.
    shrunk = with_lesion.copy()
    shrunk[20:40, 20:30] = 0
    [kept] = compare_pair(with_lesion, shrunk, labels=[1], spacing=(1.0, 1.0))
    assert (kept.objects_a, kept.objects_b, kept.only_in_a, kept.only_in_b) == (2, 2, 0, 0)


def test_a_class_one_set_lacks_scores_worst_and_one_neither_has_is_absent(head):
    two_classes = head.copy()
    two_classes[20:40, 20:40] = 2
    spacing = (0.4, 0.25)
    one, two, three = compare_pair(two_classes, head, labels=[1, 2, 3], spacing=spacing)
    assert one.status == ClassStatus.scored and one.dice == pytest.approx(1.0)
    diagonal = math.hypot(540 * 0.4, 800 * 0.25)
    assert worst_distance(head.shape, spacing) == pytest.approx(diagonal)
    assert two.status == ClassStatus.missing_in_b
    assert (two.dice, two.mean_distance_mm, two.p95_distance_mm) == (0.0, diagonal, diagonal)
    assert two.disagreement == 1.0 and (two.objects_a, two.only_in_a) == (1, 1)
    assert three.status == ClassStatus.absent and three.dice is None
    assert three.mean_distance_mm is None and three.disagreement is None
    [missing_in_a] = compare_pair(head, two_classes, labels=[2], spacing=spacing)
    assert missing_in_a.status == ClassStatus.missing_in_a


def test_the_summary_averages_worst_scores_in_and_leaves_absent_classes_out(head):
    two_classes = head.copy()
    two_classes[20:40, 20:40] = 2
    spacing = (1.0, 1.0)
    scores = [
        *compare_case([head, head], case="same", labels=[1, 2], spacing=spacing),
        *compare_case([two_classes, head], case="lacks_2", labels=[1, 2], spacing=spacing),
    ]
    summary = summarise(scores, set_ids=[11, 12], labels=[1, 2])
    [pair] = summary["pairs"]
    assert (pair["set_a"], pair["set_b"]) == (11, 12)
    second = pair["classes"]["2"]
    # Class 2 is absent from "same" (not averaged) and missing from set 12 in "lacks_2".
    assert (second["absent"], second["missing_in_b"], second["scored"]) == (1, 1, 0)
    assert second["dice_mean"] == 0.0
    assert second["p95_distance_mm"] == pytest.approx(worst_distance(head.shape, spacing))
    assert pair["classes"]["1"]["dice_mean"] == pytest.approx(1.0)
    assert [r["case"] for r in summary["most_disagreement"]] == ["lacks_2", "same"]
    assert summary["most_disagreement"][0]["disagreement"] == pytest.approx(0.5)


def test_three_sets_give_every_pair(head):
    pairs = compare_case([head, head, head], case="c", labels=[1], spacing=(1.0, 1.0))
    assert [(p.a, p.b) for p in pairs] == [(0, 1), (0, 2), (1, 2)]


def test_staple_of_three_sets_recovers_the_two_that_agree(head):
    odd = np.roll(head, 25, axis=1)
    odd[20:60, 20:60] = 1  # and an object the other two do not have
    masks = [head, head.copy(), odd]
    consensus = staple(masks, labels=[1])
    assert consensus.dtype == np.uint8
    assert np.array_equal(consensus, head)
    counts = [against(m, consensus, 1) for m in masks]
    assert counts[0].sensitivity == 1.0 and counts[0].specificity == 1.0
    assert counts[1] == counts[0]
    assert counts[2].sensitivity < 0.99 and counts[2].specificity < 1.0
    assert counts[2].tp + counts[2].fp + counts[2].fn + counts[2].tn == head.size


def test_staple_labels_each_class_and_needs_three_sets(head):
    two = head.copy()
    two[20:40, 20:40] = 2
    odd = head.copy()  # lacks class 2
    consensus = staple([two, two.copy(), odd], labels=[1, 2, 3])
    assert np.array_equal(consensus, two)
    with pytest.raises(ValueError, match="three or more"):
        staple([two, odd], labels=[1])


def test_masks_on_different_grids_are_refused(head):
    with pytest.raises(ValueError, match="one grid"):
        compare_pair(head, head[:-1], labels=[1], spacing=(1.0, 1.0))
    with pytest.raises(ValueError, match="one spacing per axis"):
        compare_pair(head, head, labels=[1], spacing=(1.0, 1.0, 1.0))
