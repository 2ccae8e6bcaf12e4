import numpy as np
import pytest

from bench.evaluate import detection, mask_dice


def test_a_perfect_ranking_and_flags():
    truth = {"a": True, "b": True, "c": False, "d": False}
    d = detection(["a", "b", "c", "d"], {"a": True, "b": True, "c": False, "d": False}, truth)
    assert d.auroc == 1.0 and d.average_precision == 1.0 and d.precision == 1.0 and d.recall == 1.0


def test_an_inverted_ranking_scores_zero():
    truth = {"a": True, "b": False, "c": False}
    d = detection(["c", "b", "a"], {"a": False, "b": False, "c": True}, truth)
    assert d.auroc == 0.0 and d.precision == 0.0 and d.recall == 0.0


def test_nothing_flagged_has_no_precision_and_one_class_no_auroc():
    d = detection(["a", "b"], {"a": False, "b": False}, {"a": False, "b": False})
    assert d.precision is None and d.auroc is None and d.recall is None


def test_a_case_without_a_score_is_an_error():
    with pytest.raises(ValueError, match="no score"):
        detection(["a"], {"a": False}, {"a": False, "b": True})


def test_dice_edge_cases_are_never_nan():
    empty = np.zeros((4, 4), int)
    full = np.ones((4, 4), int)
    assert mask_dice(empty, empty) == 1.0
    assert mask_dice(full, empty) == 0.0
    assert mask_dice(full, full) == 1.0
