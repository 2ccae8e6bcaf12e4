"""Each shape-aware figure on masks with a known answer (models.figures)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from imaging.formats import read_mask
from models.figure_names import EVIDENCE, FIGURES
from models.figures import Prediction, measure_case
from tests.conftest import HC18

R = 30


def disk(cy: float, cx: float, r: float, shape=(128, 128)) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return ((yy - cy) ** 2 + (xx - cx) ** 2) <= r * r


def confident(truth: np.ndarray, num_classes: int = 2) -> np.ndarray:
    """A teacher sure of ``truth`` (class indices): probability 0.98 on it."""
    probs = np.full((num_classes, *truth.shape), 0.02 / (num_classes - 1))
    np.put_along_axis(probs, truth[None].astype(np.int64), 0.98, axis=0)
    return probs


def figures(probs: np.ndarray, given: np.ndarray, spacing=(1.0, 1.0)) -> dict[str, float]:
    return measure_case(probs, given.astype(np.int64), spacing=spacing, ring_radius=4).values


TRUTH = disk(64, 64, R).astype(np.int64)


def test_agreement_scores_near_zero():
    f = figures(confident(TRUTH), TRUTH)
    assert set(FIGURES) <= set(f)
    assert f["dice_gap"] == 0 and f["missing_objects"] == 0 and f["extra_objects"] == 0
    assert abs(f["boundary_mean"]) < 1e-9
    assert f["boundary_abs"] < 0.55 / R  # half a pixel, over the radius
    assert f["centroid_shift"] == 0 and f["boundary_iou_gap"] == 0


def test_a_mask_shifted_by_3_px():
    f = figures(confident(TRUTH), np.roll(TRUTH, 3, axis=1))
    assert f["centroid_shift"] == pytest.approx(3 / R, rel=0.05)
    assert abs(f["boundary_mean"]) < 0.01  # one side too far out, the other too far in
    assert f["boundary_coherence"] < 0.1
    assert f["boundary_p95"] == pytest.approx(3 / R, rel=0.25)


@pytest.mark.parametrize(("grow", "sign"), [(-3, -1.0), (3, 1.0)])
def test_eroded_and_dilated_masks_have_a_coherent_sign(grow, sign):
    if grow > 0:  # a uniform Euclidean margin of 3 px
        given = ndimage.distance_transform_edt(TRUTH == 0) <= grow
    else:
        given = ndimage.distance_transform_edt(TRUTH) > -grow
    f = figures(confident(TRUTH), given)
    assert sign * f["boundary_mean"] == pytest.approx(3 / R, rel=0.25)
    assert f["boundary_coherence"] > 0.95
    assert sign * f["area_ratio"] > 0.1
    assert f["centroid_shift"] < 0.01


def test_a_local_dent_spreads_more_than_a_uniform_margin():
    dent = TRUTH & ~disk(64, 64 + R, 10)
    uniform = ndimage.binary_erosion(TRUTH, iterations=2)
    f_dent, f_uniform = figures(confident(TRUTH), dent), figures(confident(TRUTH), uniform)
    assert f_dent["boundary_spread"] > 2 * f_uniform["boundary_spread"]
    assert f_dent["boundary_p95"] > f_dent["boundary_abs"] * 3


def test_a_deleted_object_counts_as_missing_and_a_drawn_one_as_extra():
    two = (disk(30, 30, 10) | disk(90, 90, 10)).astype(np.int64)
    missing = figures(confident(two), disk(30, 30, 10))
    assert missing["missing_objects"] == 1 and missing["extra_objects"] == 0
    assert missing["missing_fraction"] == pytest.approx(0.5, abs=0.02)
    assert missing["boundary_abs"] < 0.1  # the object that is there is right
    extra = figures(confident(disk(30, 30, 10).astype(np.int64)), two)
    assert extra["extra_objects"] == 1 and extra["missing_objects"] == 0
    assert extra["extra_fraction"] == pytest.approx(0.5, abs=0.02)


def test_an_unsure_teacher_is_uncertain_but_not_confidently_in_disagreement():
    unsure = np.stack([np.full(TRUTH.shape, 0.45), np.full(TRUTH.shape, 0.55)])
    f = figures(unsure, np.zeros_like(TRUTH))
    sure = figures(confident(TRUTH), np.zeros_like(TRUTH))
    assert f["uncertainty"] > 0.9 and sure["uncertainty"] < 0.2
    assert f["confident_disagreement"] == 0 and sure["confident_disagreement"] == 1


def test_per_class_figures_with_several_classes():
    truth = TRUTH + disk(64, 64, 10).astype(np.int64)  # class 2 inside class 1
    given = truth.copy()
    given[given == 2] = 1  # class 2 never drawn
    f = figures(confident(truth, 3), given)
    assert f["missing_objects_class_2"] == 1
    assert f["missing_objects_class_1"] == 0
    assert f["missing_objects"] == 1  # the case takes the worst class


def test_volumes_use_the_spacing():
    zz, yy, xx = np.mgrid[:12, :64, :64]
    ball = ((zz - 6) * 4.0) ** 2 + (yy - 32.0) ** 2 + (xx - 32.0) ** 2 <= 20.0**2
    shifted = np.roll(ball, 2, axis=2)  # 2 px in-plane, 1 mm pixels
    f = measure_case(confident(ball.astype(int)), shifted, spacing=(4.0, 1.0, 1.0), ring_radius=2)
    assert f.values["centroid_shift"] == pytest.approx(2 / 20, rel=0.15)


def test_a_real_mask_shifted_by_3_px():
    path = sorted((HC18 / "masks").iterdir())[0]
    truth = (read_mask(path, case=path.stem).array > 0).astype(np.int64)
    radius = np.sqrt(truth.sum() / np.pi)
    f = figures(confident(truth), np.roll(truth, 3, axis=0))
    assert f["centroid_shift"] == pytest.approx(3 / radius, rel=0.05)
    assert f["boundary_p95"] == pytest.approx(3 / radius, rel=0.3)


def test_evidence_is_the_named_figures_and_never_negative():
    view = Prediction.of(confident(TRUTH))
    eroded = ndimage.binary_erosion(TRUTH, iterations=3).astype(np.int64)
    values = measure_case(view, eroded, spacing=(1.0, 1.0), ring_radius=4).evidence()
    assert len(values) == len(EVIDENCE) and min(values) >= 0


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="must be"):
        figures(confident(TRUTH), TRUTH[:10])
    with pytest.raises(ValueError, match=r"probs must be \(K >= 2"):
        Prediction.of(np.ones((1, 8, 8)))
    with pytest.raises(ValueError, match="spacing"):
        measure_case(confident(TRUTH), TRUTH, spacing=(1.0,), ring_radius=4)


def test_the_disagreement_in_words():
    from models.figure_names import describe

    eroded = ndimage.distance_transform_edt(TRUTH) > 3
    assert describe(figures(confident(TRUTH), eroded)) == "too tight by 9% of the radius"
    assert describe(figures(confident(TRUTH), TRUTH)) == "agrees"
    two = (disk(30, 30, 10) | disk(90, 90, 10)).astype(np.int64)
    assert describe(figures(confident(two), disk(30, 30, 10))) == "1 object missing"
    shifted = describe(figures(confident(TRUTH), np.roll(TRUTH, 4, axis=1)))
    assert shifted.startswith("shifted by 1") and describe({}) == ""


def test_an_empty_mask_with_an_empty_prediction_has_a_finite_uncertainty():
    empty = np.zeros_like(TRUTH)
    f = figures(confident(empty), empty)
    assert all(np.isfinite(v) for v in f.values()), {
        k: v for k, v in f.items() if not np.isfinite(v)
    }
    unsure = np.stack([np.full(TRUTH.shape, 0.6), np.full(TRUTH.shape, 0.4)])
    assert figures(unsure, empty)["uncertainty"] > 0.9 > 0.2 > f["uncertainty"]
