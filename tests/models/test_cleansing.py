"""The cleansing module on small real masks, with a simulated teacher.

The teacher is the true mask blurred: confident inside and outside the objects, unsure near
their boundaries, as a network trained on mostly clean labels is.
"""

from typing import Any

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from bench.evaluate import mask_dice
from models.cleansing import cleanse, infer_single_object_classes, issue_map
from tests.conftest import HC18, SAMPLE

DSB = (
    SAMPLE
    / "dsb2018"
    / "labels"
    / "4bf6a5ec42032bb8dbbb10d25fdc5211b2fe1ce44b6e577ef89dbda17697d819.png"
)


def teacher(truth: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """``(2, H, W)`` probabilities of a teacher that learned the true mask."""
    fg = ndimage.gaussian_filter((truth > 0).astype(float), sigma)
    return np.stack([1.0 - fg, fg])


@pytest.fixture
def head() -> np.ndarray:
    """A real hc18 head mask at a quarter of its size (135 x 200)."""
    mask = np.asarray(Image.open(HC18 / "masks" / "054_HC.png"))
    return mask[::4, ::4].astype(np.int64)


@pytest.fixture
def nuclei() -> tuple[np.ndarray, np.ndarray]:
    """Real dsb2018 nuclei: (instance map, binary mask)."""
    instances = np.asarray(Image.open(DSB)).astype(np.int64)
    return instances, (instances > 0).astype(np.int64)


def test_a_deleted_object_comes_back(head):
    given = np.zeros_like(head)
    pseudo = cleanse(teacher(head), given, single_object_classes=(1,))
    assert mask_dice(given, head) == 0.0
    assert mask_dice(pseudo, head) > 0.97


def test_deleted_nuclei_come_back(nuclei):
    instances, truth = nuclei
    dropped = [k for k in range(1, instances.max() + 1) if k % 3 == 0]
    given = truth.copy()
    given[np.isin(instances, dropped)] = 0
    pseudo = cleanse(teacher(truth, sigma=1.0), given)
    for k in dropped:
        core = ndimage.binary_erosion(instances == k, iterations=2)
        assert np.all(pseudo[core] == 1), f"nucleus {k} did not come back"
        assert (pseudo[instances == k] == 1).mean() > 0.5
    assert mask_dice(pseudo, truth) > mask_dice(given, truth) + 0.1


@pytest.mark.parametrize("operation", [ndimage.binary_erosion, ndimage.binary_dilation])
def test_a_moved_boundary_moves_back_toward_the_truth(head, operation):
    given = operation(head > 0, iterations=6).astype(np.int64)
    pseudo = cleanse(teacher(head), given, single_object_classes=(1,))
    before, after = mask_dice(given, head), mask_dice(pseudo, head)
    assert after > before + 0.03, (before, after)
    # Where the teacher is unsure (near the true boundary) the given label stays.
    unsure = teacher(head).max(axis=0) < 0.8
    assert np.array_equal(pseudo[unsure], given[unsure])


def test_eroded_nuclei_grow_back(nuclei):
    _, truth = nuclei
    given = ndimage.binary_erosion(truth > 0, iterations=2).astype(np.int64)
    pseudo = cleanse(teacher(truth, sigma=0.7), given)
    assert mask_dice(pseudo, truth) > mask_dice(given, truth) + 0.05


def test_holes_are_filled_and_specks_dropped(head):
    probs = teacher(head)
    probs[:, 60:64, 100:104] = np.array([1.0, 0.0])[
        :, None, None
    ]  # a confident hole inside the head
    probs[:, 2:4, 2:4] = np.array([0.0, 1.0])[:, None, None]  # a confident speck far outside it
    pseudo = cleanse(probs, head.copy())
    assert pseudo[61, 101] == 1
    assert pseudo[2, 2] == 0


def test_only_the_largest_component_of_a_single_object_class_stays(head):
    probs = teacher(head)
    probs[:, 2:20, 2:20] = np.array([0.0, 1.0])[:, None, None]  # a large second blob, not a speck
    multi = cleanse(probs, head.copy(), min_component_fraction=0.0)
    single = cleanse(probs, head.copy(), single_object_classes=(1,))
    assert multi[10, 10] == 1 and single[10, 10] == 0


def test_annotated_small_objects_are_never_dropped_as_specks(nuclei):
    _, truth = nuclei
    pseudo = cleanse(teacher(truth, sigma=0.5), truth.copy(), min_component_fraction=0.9)
    assert mask_dice(pseudo, truth) > 0.95


def test_works_on_stacks_of_slices(head):
    stack = np.stack([head, np.zeros_like(head)])  # (D, H, W)
    probs = np.stack([teacher(head), teacher(head)], axis=1)  # (K, D, H, W)
    pseudo = cleanse(probs, stack)
    assert pseudo.shape == stack.shape
    assert mask_dice(pseudo[1], head) > 0.97


def test_issue_map_marks_where_the_given_label_is_wrong(head):
    given = np.zeros_like(head)
    m = issue_map(teacher(head), given)
    assert m.dtype == np.uint8 and m.shape == head.shape
    inside = ndimage.binary_erosion(head > 0, iterations=5)
    assert m[inside].min() > 240 and m[0, 0] < 5


def test_single_object_classes_are_inferred(head, nuclei):
    assert infer_single_object_classes([head, head, np.zeros_like(head)], 2) == (1,)
    assert infer_single_object_classes([nuclei[1]], 2) == ()


def test_bad_arguments_raise_value_errors(head):
    with pytest.raises(ValueError, match=r"\(K, \*spatial\)"):
        cleanse(np.ones((2, 3, 3)), head)
    with pytest.raises(ValueError, match="given labels must lie in 0..1"):
        cleanse(teacher(head), head * 5)
    with pytest.raises(ValueError, match="confidence"):
        cleanse(teacher(head), head, confidence=0.2)
    with pytest.raises(ValueError, match="sliver must be >= 0"):
        cleanse(teacher(head), head, sliver=-1)


def test_a_minimal_edit_keeps_the_annotators_boundary_where_the_teacher_only_nudges_it(head):
    # The annotator's boundary 1 px inside the truth all round, and a large bite out of it.
    given = ndimage.binary_erosion(head > 0, iterations=1)
    bite = np.zeros_like(given)
    bite[60:90, 80:120] = True
    given = (given & ~bite).astype(np.int64)
    sharp = teacher(head, sigma=0.3)  # sure everywhere, down to the pixel
    swapped = cleanse(sharp, given, single_object_classes=(1,))
    minimal = cleanse(sharp, given, single_object_classes=(1,), sliver=2)
    restored = head.astype(bool) & bite
    assert restored.sum() > 500
    assert np.all(minimal[restored] == 1) and np.all(swapped[restored] == 1)  # the bite is repaired
    ring = (
        (head > 0)
        & ~ndimage.binary_erosion(head > 0, iterations=1)
        & ~ndimage.binary_dilation(bite, iterations=3)
    )
    assert np.all(swapped[ring] == 1)  # without it, the 1 px contour is redrawn everywhere
    assert np.array_equal(minimal[ring], given[ring])  # with it, the annotator's line stays
    assert mask_dice(minimal, head) > mask_dice(given, head) + 0.03


def repair(probs: np.ndarray, given: np.ndarray, **settings: Any) -> np.ndarray:
    """The final repair's cleansing: object-level edits carried to the whole object."""
    return cleanse(probs, given, whole_objects=True, **settings)


def unsure_teacher(truth: np.ndarray) -> np.ndarray:
    """A teacher that finds the true objects but is sure only of their cores: ``p`` 0.95
    more than 3 px inside an object, 0.65 on its outer rim, 0.1 outside."""
    inside = truth > 0
    core = ndimage.binary_erosion(inside, iterations=3)
    fg = np.where(core, 0.95, np.where(inside, 0.65, 0.1))
    return np.stack([1.0 - fg, fg])


def test_a_missed_object_comes_back_whole_not_only_its_core(head):
    given = np.zeros_like(head)
    probs = unsure_teacher(head)
    core_only = cleanse(probs, given, single_object_classes=(1,), whole_objects=False)
    whole = repair(probs, given, single_object_classes=(1,))
    assert mask_dice(core_only, head) < 0.97
    assert mask_dice(whole, head) == 1.0  # the teacher's own extent: no annotator line exists


def test_an_object_drawn_where_there_is_none_goes_whole(nuclei):
    _, truth = nuclei
    given = truth.copy()
    stray = np.zeros_like(truth, dtype=bool)
    stray[2:22, 2:22] = True
    assert not truth[stray].any()
    given[stray] = 1
    probs = unsure_teacher(truth)
    rim = stray & ~ndimage.binary_erosion(stray, iterations=2)
    probs[:, rim] = np.array([0.65, 0.35])[:, None]  # unsure on the stray object's rim
    probs[:, stray & ~rim] = np.array([0.95, 0.05])[:, None]  # sure there is nothing inside
    rim_left = cleanse(probs, given, whole_objects=False)
    whole = repair(probs, given)
    assert rim_left[stray].any()
    assert not whole[stray].any()
    assert np.array_equal(whole[~stray], rim_left[~stray])


def test_objects_both_hold_keep_the_pixel_rule(head, nuclei):
    """A boundary error is no object-level edit: the annotator's line stays where the teacher
    is unsure, exactly as without the object step."""
    for truth in (head, nuclei[1]):
        for operation in (ndimage.binary_erosion, ndimage.binary_dilation):
            given = operation(truth > 0, iterations=2).astype(np.int64)
            probs = unsure_teacher(truth)
            assert np.array_equal(repair(probs, given), cleanse(probs, given, whole_objects=False))


def test_a_missed_object_comes_whole_where_the_teacher_is_sure_of_part_of_it(head):
    given = np.zeros_like(head)
    faint = np.stack([np.where(head > 0, 0.3, 0.9), np.where(head > 0, 0.7, 0.1)])
    assert not repair(faint, given).any()  # no pixel is sure: no edit at all
    line = faint.copy()
    line[:, 60, 60:140] = np.array([0.05, 0.95])[:, None]  # sure of a line across the head
    assert head[60, 60:140].all()
    assert cleanse(line, given, whole_objects=False).sum() == 80
    assert np.array_equal(repair(line, given), head)  # the line is part of the teacher's head
    assert not repair(line, given, sliver=1).any()  # a line under the sliver is no edit


def test_a_drawn_object_goes_whole_only_where_the_teacher_is_sure_of_it_as_a_whole(nuclei):
    _, truth = nuclei
    given = truth.copy()
    stray = np.zeros_like(truth, dtype=bool)
    stray[2:22, 2:22] = True
    given[stray] = 1
    probs = unsure_teacher(truth)
    probs[:, stray] = np.array([0.65, 0.35])[:, None]  # unsure of the stray object
    probs[:, 10:14, 10:14] = np.array([0.95, 0.05])[:, None, None]  # but for a sure core
    assert np.array_equal(repair(probs, given), cleanse(probs, given, whole_objects=False))
    assert repair(probs, given)[stray].all()  # the core is a hole in the drawn object: refilled


def test_a_loose_object_around_a_small_prediction_is_not_removed_whole():
    """The teacher sure of a small disc inside a drawn one and of background over most of the
    rest: the drawn disc holds the teacher's object, so it is no stray object and keeps the
    pixel rule (an unsure rim, the interior refilled as a hole)."""
    yy, xx = np.mgrid[:80, :80]
    r = np.hypot(yy - 40, xx - 40)
    given = (r < 30).astype(np.int64)
    fg = np.where(r < 8, 0.95, np.where((r >= 28.5) & (r < 30), 0.3, 0.05))
    probs = np.stack([1.0 - fg, fg])
    assert 1.0 - fg[r < 30].mean() >= 0.8  # sure over the drawn disc as a whole
    pseudo = repair(probs, given, single_object_classes=(1,))
    assert np.array_equal(pseudo, cleanse(probs, given, whole_objects=False))
    assert np.array_equal(pseudo, given)
