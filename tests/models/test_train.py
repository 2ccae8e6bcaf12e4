"""The training loop's label-filter step: how passes are smoothed into flags."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models import train
from models.config import AuditConfig
from models.dataset import load_dataset
from models.label_filter import FilterResult
from models.network import predict_probs


@pytest.fixture
def tiny(hc18_small):
    config = AuditConfig(size=32, epochs=4, channels=(8, 16), batch_size=4)
    dataset = load_dataset(*hc18_small, size=config.size, min_cases=config.min_cases)
    data = train.TrainData.from_dataset(dataset, single_object_classes=(1,))
    return train.new_state(data, config, torch.device("cpu")), data, config


def _fake_filter(clean_prob: np.ndarray, degenerate: bool):
    def fit(*_args, **_kwargs) -> FilterResult:
        return FilterResult(clean_prob, degenerate, 3.0, 0.3, 10.0, "x" if degenerate else "")

    return fit


@pytest.mark.parametrize("mode", ["hold", "decay"])
def test_a_degenerate_pass_holds_or_decays_flags_but_never_in_the_final_pass(
    tiny, monkeypatch, mode
):
    state, data, config = tiny
    config = AuditConfig(**{**config.to_dict(), "degenerate_pass": mode})
    n = data.num_cases
    noisy = np.array([0.0, 0.0] + [1.0] * (n - 2))
    monkeypatch.setattr(train, "fit_label_filter", _fake_filter(noisy, False))
    train.filter_step(state, data, config)
    assert state.flagged.tolist() == [True, True] + [False] * (n - 2)
    monkeypatch.setattr(train, "fit_label_filter", _fake_filter(np.ones(n), True))
    train.filter_step(state, data, config, final=True)
    assert np.array_equal(state.clean_prob, noisy)  # the final pass erases nothing
    train.filter_step(state, data, config)
    if mode == "hold":
        assert np.array_equal(state.clean_prob, noisy)
        assert state.flagged[:2].all()
    else:
        m = config.clean_prob_momentum
        assert np.allclose(state.clean_prob, m * noisy + (1 - m))
        assert not state.flagged.any()


def test_informative_passes_are_smoothed_with_momentum(tiny, monkeypatch):
    state, data, config = tiny
    n = data.num_cases
    monkeypatch.setattr(train, "fit_label_filter", _fake_filter(np.zeros(n), False))
    train.filter_step(state, data, config)
    monkeypatch.setattr(train, "fit_label_filter", _fake_filter(np.ones(n), False))
    train.filter_step(state, data, config)
    m = config.clean_prob_momentum
    assert np.allclose(state.clean_prob, 1.0 - m)


def test_cosine_schedule_and_filter_epochs():
    config = AuditConfig(epochs=10, warmup_epochs=4, filter_every=2, lr_schedule="cosine")
    assert train.learning_rate(0, config) == pytest.approx(config.learning_rate)
    assert train.learning_rate(5, config) == pytest.approx(config.learning_rate / 2)
    assert train.learning_rate(9, config) < 0.03 * config.learning_rate
    assert [e for e in range(10) if train.is_filter_epoch(e, config)] == [4, 6, 8]
    flat = AuditConfig(epochs=10, lr_schedule="constant")
    assert train.learning_rate(9, flat) == flat.learning_rate


def _loss_on_given(net: torch.nn.Module, data: train.TrainData) -> float:
    """Mean cross-entropy of ``net``'s predictions against the given masks."""
    probs = predict_probs(net, data.images, tta_flips=False)
    picked = probs.gather(1, data.masks[:, None].long()).clamp_min(1e-6)
    return float(-picked.log().mean())


def test_the_judge_is_refitted_to_the_given_masks_and_the_teacher_is_left_alone(tiny):
    state, data, config = tiny
    config = AuditConfig(**{**config.to_dict(), "judge_epochs": 20, "judge_learning_rate": 5e-3})
    before = {k: v.clone() for k, v in state.teacher.state_dict().items()}
    events: list[train.Progress] = []
    judge = train.refit_judge(state, data, config, torch.device("cpu"), events.append)
    after = state.teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "the teacher must not move"
    assert _loss_on_given(judge, data) < 0.85 * _loss_on_given(state.teacher.module, data)
    assert {e.phase for e in events} == {"judge"} and events[-1].step == events[-1].steps
    again = train.refit_judge(state, data, config, torch.device("cpu"), lambda _: None)
    for a, b in zip(judge.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # the same seed refits the same judge
