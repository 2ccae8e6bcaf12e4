"""scores.csv says why a case ranks where it does: the kind of disagreement, the sizes, the
worst slice, class names where known; the benchmark's reader still reads it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from bench.evaluate import read_scores
from models.figure_names import describe, disagreement_kind
from models.figures import measure_case
from models.outputs import write_scores
from models.results import CaseResult, SliceResult


def disk(cy: int, cx: int, r: int, shape: tuple[int, int] = (128, 128)) -> np.ndarray:
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return ((yy - cy) ** 2 + (xx - cx) ** 2 <= r**2).astype(np.int64)


def confident(labels: np.ndarray) -> np.ndarray:
    return np.stack([np.where(labels == 0, 0.98, 0.02), np.where(labels == 1, 0.98, 0.02)])


def figures(truth: np.ndarray, given: np.ndarray) -> dict[str, float]:
    return measure_case(confident(truth), given, spacing=(1.0, 1.0), ring_radius=4).values


TRUTH = disk(64, 64, 24)


def test_the_kind_of_disagreement_follows_the_words():
    two = disk(30, 30, 10) | disk(90, 90, 10)
    missing = figures(two, disk(30, 30, 10))
    assert (
        disagreement_kind(missing) == "missing_object" and describe(missing) == "1 object missing"
    )
    extra = figures(disk(30, 30, 10), two)
    assert disagreement_kind(extra) == "extra_object"
    tight = figures(TRUTH, (ndimage.distance_transform_edt(TRUTH) > 3).astype(np.int64))
    assert disagreement_kind(tight) == "boundary" and describe(tight).startswith("too tight")
    assert disagreement_kind(figures(TRUTH, TRUTH)) == "agrees" and disagreement_kind({}) == ""


def test_the_sizes_are_the_given_and_predicted_pixels():
    given = disk(64, 64, 20)
    values = figures(TRUTH, given)
    assert values["given_pixels"] == given.sum() and values["predicted_pixels"] == TRUTH.sum()


def result(case: str, values: dict[str, float], slices: tuple[SliceResult, ...] = ()) -> CaseResult:
    return CaseResult(
        case=case,
        noise_score=0.5,
        flagged=False,
        ce=0.1,
        dice_gap=0.2,
        dice=(0.8, 0.7),
        changed_fraction=0.0,
        issue_fraction=0.0,
        figures=values,
        slices=slices,
    )


def test_scores_csv_carries_why_a_case_ranks_there(tmp_path: Path):
    two = disk(30, 30, 10) | disk(90, 90, 10)
    missing = {**figures(two, disk(30, 30, 10)), "given_mm": 12.5, "predicted_mm": 25.0}
    missing["boundary_abs_class_2"] = 0.25
    slices = (
        SliceResult(0, 0.1, 5, 5, 0),
        SliceResult(1, 0.6, 9, 2, 4),
        SliceResult(2, 0.3, 1, 1, 1),
    )
    rows_in = [result("a", missing, slices), result("b", figures(TRUTH, TRUTH))]
    path = tmp_path / "scores.csv"
    write_scores(path, rows_in, num_classes=3, class_names={2: "tumour"})
    a, b = read_scores(path)
    assert a["disagreement"] == "1 object missing" and a["disagreement_kind"] == "missing_object"
    assert int(a["given_pixels"]) == disk(30, 30, 10).sum()
    assert int(a["predicted_pixels"]) == two.sum()
    assert float(a["given_mm"]) == 12.5 and float(a["predicted_mm"]) == 25.0
    assert a["worst_slice"] == "1" and float(a["worst_slice_dice_gap"]) == 0.6
    # Class 1 has no name: its index; class 2 its given name, in every per-class column.
    assert a["dice_class_1"] == "0.800000" and a["dice_tumour"] == "0.700000"
    assert a["boundary_abs_tumour"] == "0.250000" and "boundary_abs_class_2" not in a
    assert b["disagreement_kind"] == "agrees" and b["worst_slice"] == b["given_mm"] == ""
    assert "given_pixels" not in list(a)[list(a).index("worst_slice_dice_gap") :]  # once


def test_without_class_names_the_columns_keep_their_indices(tmp_path: Path):
    path = tmp_path / "scores.csv"
    write_scores(path, [result("a", figures(TRUTH, TRUTH))], num_classes=3)
    (row,) = read_scores(path)
    assert {"dice_class_1", "dice_class_2"} <= set(row)
