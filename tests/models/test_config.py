import dataclasses

import pytest

from models.config import AuditConfig


def test_defaults_are_valid_and_frozen():
    config = AuditConfig()
    assert config.warmup == 13  # a third of 40 epochs
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 3  # type: ignore[misc]


def test_the_flag_copies_weight_is_fitted_by_default_or_fixed_when_given():
    assert AuditConfig().flag_copies_weight is None  # fitted with the mixture
    assert AuditConfig.from_dict({"flag_copies_weight": 0.0}).flag_copies_weight == 0.0
    assert AuditConfig.from_dict({"flag_copies_weight": None}).flag_copies_weight is None


def test_round_trips_through_a_dict():
    config = AuditConfig(channels=(8, 16), single_object_classes=(1, 2), seed=4)
    assert AuditConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"size": 30}, "size must be >= 32"),
        ({"epochs": 10, "warmup_epochs": 10}, "warmup_epochs must be in 1..epochs-1"),
        ({"confidence": 0.3}, "confidence"),
        ({"flag_threshold": 1.0}, "flag_threshold"),
        ({"min_cases": 2}, "min_cases must be >= 4"),
        ({"gmm_max_noisy_weight": 0.2}, "gmm_max_noisy_weight"),
        ({"flag_probability": 1.0}, "flag_probability must be in"),
        ({"flag_copies_weight": 1.5}, "flag_copies_weight must be in"),
        ({"judge_epochs": -1}, "judge_epochs must be 0..100"),
        ({"patch_size": 100}, "patch_size must be >= 32 and a multiple of 8"),
        ({"patch_size": 16}, "patch_size must be >= 32"),
        ({"judge_learning_rate": 0.0}, "judge_learning_rate must be > 0"),
        ({"joint_supervision": "maybe"}, "joint_supervision must be auto, on or off"),
        ({"augment_spatial": "maybe"}, "augment_spatial must be true or false, got 'maybe'"),
        ({"augment_intensity": 1}, "augment_intensity must be true or false, got 1"),
        ({"tta_flips": None}, "tta_flips must be true or false, got None"),
    ],
)
def test_invalid_values_are_refused_with_the_reason(change, message):
    with pytest.raises(ValueError, match=message):
        AuditConfig(**change)


def test_unknown_keys_are_refused():
    with pytest.raises(ValueError, match="unknown audit parameters"):
        AuditConfig.from_dict({"epochs": 5, "speed": "fast"})
