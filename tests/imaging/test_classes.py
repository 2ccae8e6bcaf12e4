"""The rules of declared and inferred classes (``imaging.classes``), written once."""

from __future__ import annotations

import numpy as np
import pytest

from imaging.classes import (
    add_names,
    check_classes,
    check_declared,
    infer_classes,
    mask_values,
    named_classes,
    parse_classes,
)
from imaging.errors import ErrorCode, InputError


def test_declared_classes_come_back_ordered_by_value():
    assert list(check_classes({"brain": 2, "head": 1})) == ["head", "brain"]
    assert parse_classes(" head=1, brain = 2") == {"head": 1, "brain": 2}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("head", "not NAME=VALUE"),
        ("head=x", "not NAME=VALUE"),
        ("head=1,head=2", "named twice"),
        ("head=1,skull=1", "share the value 1"),
        ("head=0", "0 is the background"),
        ("head=-1", "1..65535"),
        ("head=65536", "1..65535"),
        ("fetal head=1", "must be 1-64 letters"),
        ("=1", "must be 1-64 letters"),
    ],
)
def test_bad_declarations_say_what_is_wrong(text, words):
    with pytest.raises(InputError) as caught:
        parse_classes(text)
    assert caught.value.code == ErrorCode.INVALID_CLASSES and words in caught.value.detail


def test_a_mask_may_hold_only_declared_values():
    check_declared([1, 2], {"head": 1, "brain": 2}, name="a.png")
    with pytest.raises(InputError) as caught:
        check_declared([1, 3, 255], {"head": 1}, name="a.png")
    assert caught.value.code == ErrorCode.MASK_OUT_OF_RANGE
    assert "a.png" in caught.value.detail and "values 3, 255" in caught.value.detail
    assert "head=1" in caught.value.detail


def test_inferred_classes_name_the_values_present():
    assert infer_classes([0, 3, 1]) == {"class_1": 1, "class_3": 3}
    assert infer_classes([2], {"class_1": 1}) == {"class_1": 1, "class_2": 2}
    assert infer_classes([2], {"class_2": 5}) == {"class_2_": 2, "class_2": 5}


def test_dicom_labels_become_names_and_keep_their_values_where_free():
    assert named_classes({1: "Fetal head", 2: "", 3: "Fetal head"}) == {
        "Fetal_head": 1,
        "class_2": 2,
        "Fetal_head_3": 3,
    }
    assert add_names({"Tissue": 2, "Tumour": 1}, {}) == {"Tumour": 1, "Tissue": 2}
    assert add_names({"Liver": 1}, {"Tumour": 1}) == {"Tumour": 1, "Liver": 2}


def test_mask_values_by_count_and_by_sort_agree():
    mask = np.zeros((20, 20), np.uint16)
    mask[2, 2], mask[3, 3] = 7, 300
    assert mask_values(mask) == [7, 300]
    assert mask_values(mask.astype(np.float32)) == [7, 300]
    assert mask_values(mask > 0) == [1] and mask_values(np.zeros((2, 2), bool)) == []
    assert mask_values(np.array([[0, 70000]], np.int64)) == [70000]
