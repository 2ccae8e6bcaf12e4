"""The training loop's label-filter step: how passes are smoothed into flags."""

from __future__ import annotations

import dataclasses

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


def test_augmentation_changes_training_but_never_the_judge(tiny):
    state, data, config = tiny
    augmented = AuditConfig(
        **{**config.to_dict(), "augment_spatial": True, "augment_intensity": True}
    )
    trained = []
    for chosen in (config, augmented):
        fresh = train.new_state(data, chosen, torch.device("cpu"))
        train.train_epoch(fresh, data, chosen, torch.device("cpu"), lambda _: None)
        trained.append(fresh.net.state_dict())
    assert any(not torch.equal(a, b) for a, b in zip(*(t.values() for t in trained), strict=True))
    plain = train.refit_judge(state, data, config, torch.device("cpu"), lambda _: None)
    judged = train.refit_judge(state, data, augmented, torch.device("cpu"), lambda _: None)
    for a, b in zip(plain.state_dict().values(), judged.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # the judge fits the masks as drawn


def test_patches_are_windows_of_image_and_target_and_find_small_objects():
    x = torch.arange(2 * 64 * 64, dtype=torch.float32).reshape(2, 1, 64, 64)
    y = torch.zeros(2, 64, 64, dtype=torch.long)
    y[:, 58:62, 2:6] = 1  # one small object in a corner
    g = torch.Generator().manual_seed(0)
    seen = 0
    for _ in range(60):
        px, py = train.crop_batch(x, y, 16, g)
        assert px.shape == (2, 1, 16, 16) and py.shape == (2, 16, 16)
        for i in range(2):  # the window of the image and of its target is the same one
            top, left = divmod(int(px[i, 0, 0, 0]) - i * 64 * 64, 64)
            assert torch.equal(py[i], y[i, top : top + 16, left : left + 16])
        seen += int((py > 0).flatten(1).any(1).sum())
    # A uniform window holds the object about 1 time in 19; a third are centred on it.
    assert seen / 120 > 0.3
    again = train.crop_batch(x, y, 16, torch.Generator().manual_seed(0))
    first = train.crop_batch(x, y, 16, torch.Generator().manual_seed(0))
    assert torch.equal(again[0], first[0])
    whole = train.crop_batch(x[:, :, :16, :16], y[:, :16, :16], 16, g)  # no larger than a patch
    assert torch.equal(whole[0], x[:, :, :16, :16])


def test_sliding_windows_match_a_whole_image_prediction_of_a_pointwise_network():
    net = torch.nn.Conv2d(1, 3, kernel_size=1)  # no context: every window agrees with the whole
    images = torch.randn(3, 1, 40, 40)
    whole = predict_probs(net, images, tta_flips=True)
    windows = predict_probs(net, images, tta_flips=True, patch=16)
    assert windows.shape == (3, 3, 40, 40)
    assert torch.allclose(windows, whole, atol=1e-5)
    assert torch.allclose(windows.sum(1), torch.ones(3, 40, 40), atol=1e-5)


def test_above_the_patch_size_the_network_trains_on_patches(hc18_small):
    config = AuditConfig(size=64, patch_size=32, epochs=4, channels=(8, 16), batch_size=4)
    dataset = load_dataset(*hc18_small, size=config.size, min_cases=config.min_cases)
    data = train.TrainData.from_dataset(dataset, single_object_classes=(1,))
    state = train.new_state(data, config, torch.device("cpu"))
    sides: list[int] = []
    hook = state.net.register_forward_pre_hook(lambda _, args: sides.append(args[0].shape[-1]))
    train.train_epoch(state, data, config, torch.device("cpu"), lambda _: None)
    hook.remove()
    assert sides and set(sides) == {32}
    sides.clear()
    hook = state.teacher.module.register_forward_pre_hook(
        lambda _, args: sides.append(args[0].shape[-1])
    )
    found = train.held_out_figures([state.teacher.module] * len(data.case_slices), data, config)
    hook.remove()
    assert len(found) == len(data.case_slices) and set(sides) == {32}  # sliding windows


@pytest.mark.parametrize(
    ("setting", "single", "expected"),
    [
        ("auto", (1,), True),  # one object per mask (hc18): pseudo labels replace wrong masks
        ("auto", (), False),  # many objects per mask (nuclei): the given masks teach
        ("on", (1,), True),
        ("on", (), True),
        ("off", (1,), False),
    ],
)
def test_joint_supervision_follows_the_masks_unless_set(tiny, setting, single, expected):
    _, data, config = tiny
    data = dataclasses.replace(data, single_object_classes=single)
    chosen = AuditConfig(**{**config.to_dict(), "joint_supervision": setting})
    assert train.uses_joint_supervision(chosen, data) is expected
    resolved = train.training_config(chosen, data)
    assert resolved.warmup == (chosen.warmup if expected else chosen.epochs - 1)


def test_a_drawn_class_of_many_objects_turns_auto_joint_supervision_off(tiny):
    _, data, config = tiny
    masks = data.masks.clone()
    masks[0][masks[0] == 1] = 2  # class 2 drawn in one mask, not among the single-object ones
    two = dataclasses.replace(data, masks=masks, num_classes=4, single_object_classes=(1,))
    assert not train.uses_joint_supervision(config, two)
    # class 3 is declared but never drawn: it has no say
    assert train.uses_joint_supervision(
        config, dataclasses.replace(two, single_object_classes=(1, 2))
    )


def test_training_pseudo_labels_keep_the_pixel_rule_and_the_repair_takes_whole_objects():
    """A missed disc the teacher is sure of only at its core: training gets the core alone,
    the final repair (``whole_objects``) the whole disc."""
    yy, xx = np.mgrid[:48, :48]
    r = np.hypot(yy - 24, xx - 24)
    fg = np.where(r < 8, 0.95, np.where(r < 14, 0.65, 0.05))
    probs = np.stack([1.0 - fg, fg])[:, None]  # (K, D, H, W)
    given = np.zeros((1, 48, 48), np.int64)
    data = train.TrainData(
        images=torch.zeros(1, 1, 48, 48),
        masks=torch.from_numpy(given),
        slice_case=torch.tensor([0]),
        case_slices=[slice(0, 1)],
        num_classes=2,
        in_channels=1,
        single_object_classes=(1,),
    )
    config = AuditConfig()
    core = train.pseudo_label(probs, given, data, config)
    whole = train.pseudo_label(probs, given, data, config, whole_objects=True)
    assert core.sum() == (r < 8).sum()
    assert whole.sum() == (r < 14).sum()
