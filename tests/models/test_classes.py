"""Declared classes in the engine: the config checks them and gives K; loading refuses masks
with other values and names the classes (declared, else ``class_<v>``).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from imaging.errors import ErrorCode, InputError
from models.config import AuditConfig
from models.dataset import load_dataset


def test_the_config_checks_declared_classes_and_gives_k():
    config = AuditConfig(classes={"brain": 3, "head": 1})
    assert config.class_limit == 4 and config.class_names == {1: "head", 3: "brain"}
    assert AuditConfig.from_dict(config.to_dict()) == config
    assert AuditConfig(classes={"head": 1}, num_classes=5).class_limit == 5
    assert AuditConfig().class_limit is None and AuditConfig().class_names == {}
    for bad, words in (
        ({"head": 1, "skull": 1}, "share the value 1"),
        ({"head head": 1}, "must be 1-64"),
        ({"head": 0}, "1..65535"),
    ):
        with pytest.raises(ValueError, match="invalid audit config") as caught:
            AuditConfig(classes=bad)
        assert words in str(caught.value)
    with pytest.raises(ValueError, match="num_classes is 2 but class value 2 is declared"):
        AuditConfig(classes={"head": 2}, num_classes=2)


def four_cases(hc18_small, tmp_path):
    """Four of the real hc18 cases, the fewest ``load_dataset`` takes with min_cases=4."""
    images, masks = tmp_path / "images", tmp_path / "masks"
    for source, dest in zip(hc18_small, (images, masks), strict=True):
        dest.mkdir()
        for path in sorted(source.iterdir())[:4]:
            shutil.copy(path, dest / path.name)
    return images, masks


def test_loading_refuses_undeclared_values_and_names_the_classes(hc18_small, tmp_path):
    images, masks = four_cases(hc18_small, tmp_path)
    config = AuditConfig(classes={"head": 1, "skull": 2})
    found = load_dataset(
        images, masks, size=32, min_cases=4, num_classes=config.class_limit, classes=config.classes
    )
    assert found.num_classes == 3 and found.classes == {"head": 1, "skull": 2}
    assert found.class_names == {1: "head", 2: "skull"}
    plain = load_dataset(images, masks, size=32, min_cases=4)
    assert plain.num_classes == 2 and plain.classes == {"class_1": 1}

    odd = tmp_path / "odd"
    shutil.copytree(masks, odd)
    first = sorted(odd.iterdir())[0]
    array = np.asarray(Image.open(first)).copy()
    array[:5, :5] = 4
    Image.fromarray(array).save(first)
    with pytest.raises(InputError) as caught:
        load_dataset(
            images,
            odd,
            size=32,
            min_cases=4,
            num_classes=config.class_limit,
            classes=config.classes,
        )
    assert caught.value.code == ErrorCode.MASK_OUT_OF_RANGE
    assert first.name in caught.value.detail and "value 4" in caught.value.detail
