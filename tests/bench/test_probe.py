"""The judge probes of bench/probe.py: each variant changes what it says, and only that."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import models.audit as audit
import models.train as train
from bench.harness import parse_settings
from bench.probe import _patch, main
from models.network import build_teacher


def _state(seed: int) -> SimpleNamespace:
    torch.manual_seed(seed)
    net = torch.nn.Linear(3, 2)
    teacher = build_teacher(net, 0.5)
    torch.nn.init.constant_(net.weight, float(seed + 1))  # the student moves on; the EMA lags
    return SimpleNamespace(net=net, teacher=teacher, epoch=0)


def _restore_engine(monkeypatch: pytest.MonkeyPatch, calls: list[object]) -> None:
    """A recording ``score`` in place of the engine's; both patches undone after the test."""
    monkeypatch.setattr(audit, "score", lambda run, staging: calls.append((run, staging)))
    monkeypatch.setattr(train, "train_epoch", train.train_epoch)


def test_config_variants_only_override_the_config():
    assert _patch("base", 40) == {}
    assert _patch("plain", 40) == {"warmup_epochs": 39}  # warm-up to the last epoch
    assert _patch("folds2", 40) == {"folds": 2}


def test_the_student_variant_scores_with_the_students_weights(monkeypatch):
    calls: list[object] = []
    _restore_engine(monkeypatch, calls)
    state = _state(1)
    assert not torch.equal(state.teacher.module.weight, state.net.weight)
    _patch("student", 40)
    run = SimpleNamespace(states=[state])
    audit.score(run, Path("staging"))
    assert torch.equal(state.teacher.module.weight, state.net.weight)
    assert calls == [(run, Path("staging"))]


def test_the_warmup_variant_scores_with_the_teacher_of_the_warmup_end(monkeypatch):
    calls: list[object] = []
    _restore_engine(monkeypatch, calls)
    monkeypatch.setattr(train, "train_epoch", lambda *_: 0.0)
    _patch("warmup", 40)
    state, config = _state(2), SimpleNamespace(warmup=1)
    state.epoch = 1  # the first epoch after warm-up starts: the teacher is kept as it is
    kept = state.teacher.module.weight.detach().clone()
    train.train_epoch(state, None, config, None, None)
    with torch.no_grad():
        state.teacher.module.weight.add_(5.0)  # later epochs move it
    audit.score(SimpleNamespace(states=[state]), Path("staging"))
    assert torch.equal(state.teacher.module.weight, kept)
    assert len(calls) == 1


def test_an_unknown_variant_is_refused(tmp_path):
    with pytest.raises(SystemExit):
        main(["--data", "hc18", "--noise", "B", "--variant", "nope", "--out", str(tmp_path / "x")])


@pytest.mark.parametrize(
    ("data", "folder"),
    [
        ("hc18", "hc18"),
        ("dsb2018", "dsb2018"),
        ("dsb2018-360", "dsb2018"),
        ("dsb2018-large", "dsb2018"),
    ],
)
def test_a_missing_data_folder_is_refused_by_name(tmp_path, monkeypatch, capsys, data, folder):
    import bench.probe

    monkeypatch.setattr(bench.probe, "SHARED", tmp_path / "nowhere")
    with pytest.raises(SystemExit):
        main(["--data", data, "--noise", "B", "--out", str(tmp_path / "x.json")])
    assert f"nowhere/{folder}, which is not there" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_settings_are_read_as_json_values_and_bad_pairs_refused():
    assert parse_settings(["judge_epochs=4", "lr_schedule=constant", "channels=[8,16]"]) == {
        "judge_epochs": 4,
        "lr_schedule": "constant",
        "channels": [8, 16],
    }
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_settings(["judge_epochs"])
    with pytest.raises(ValueError, match="unknown audit parameters"):
        parse_settings(["speed=fast"])
