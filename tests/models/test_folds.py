"""Cross-fitting: folds keep groups whole, and no case is scored by a network that trained on it
(asserted from the checkpoint's record of what each network trained on, on a real audit)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from imaging import layout
from imaging.errors import ErrorCode, InputError
from models.audit import run_audit
from models.checkpoint import load_checkpoint
from models.config import AuditConfig
from models.folds import case_group, plan_folds
from models.train import Progress, TrainData
from tests.conftest import HC18

TINY = AuditConfig(
    size=32, channels=(8, 16, 32), epochs=4, warmup_epochs=2, batch_size=4, folds=3,
    group_pattern=r"^(p\d)_",
)  # fmt: skip


def test_a_group_names_its_cases_by_the_first_capture_or_the_match():
    import re

    assert case_group("p1_a", re.compile(r"^(p\d)_")) == "p1"
    assert case_group("p1_a", re.compile(r"^p\d")) == "p1"
    assert case_group("other", re.compile(r"^(p\d)_")) == "other"
    assert case_group("p1_a", None) == "p1_a"


def test_folds_keep_groups_whole_and_balance_the_cases():
    ids = [f"p{g}_{i}" for g, n in enumerate([5, 1, 3, 2, 2, 3]) for i in range(n)]
    plan = plan_folds(ids, 3, r"^(p\d)_", seed=0)
    for g in range(6):
        folds = {int(plan.fold[i]) for i, c in enumerate(ids) if c.startswith(f"p{g}_")}
        assert len(folds) == 1, f"group p{g} straddles folds {folds}"
    sizes = np.bincount(plan.fold, minlength=3)
    assert sizes.sum() == len(ids) and sizes.max() - sizes.min() <= 1, sizes
    for k in range(3):
        assert set(plan.trains_on(k)) == {i for i in range(len(ids)) if plan.fold[i] != k}
        assert all(plan.scorer(i) == k for i in range(len(ids)) if plan.fold[i] == k)


def test_too_few_groups_for_the_folds_is_refused_with_a_reason():
    ids = [f"p{g}_{i}" for g in range(2) for i in range(6)]
    with pytest.raises(InputError) as err:
        plan_folds(ids, 3, r"^(p\d)_", seed=0)
    assert err.value.code == ErrorCode.TOO_FEW_CASES and "finds 2" in str(err.value)
    with pytest.raises(InputError, match="only 2 cases"):
        plan_folds([f"c{i}" for i in range(4)], 2, None, seed=0)


def test_a_bad_pattern_or_fold_count_is_refused_by_the_config():
    with pytest.raises(ValueError, match="group_pattern"):
        AuditConfig(group_pattern="(unclosed")
    with pytest.raises(ValueError, match="folds"):
        AuditConfig(folds=0)


def test_a_subset_holds_exactly_the_slices_of_its_cases():
    sizes = [2, 1, 3]
    images = torch.arange(6, dtype=torch.float32).reshape(6, 1, 1, 1)
    data = TrainData(
        images=images,
        masks=images[:, 0].long(),
        slice_case=torch.tensor([0, 0, 1, 2, 2, 2]),
        case_slices=[slice(0, 2), slice(2, 3), slice(3, 6)],
        num_classes=2,
        in_channels=1,
        single_object_classes=(),
    )
    sub = data.subset([2, 0])
    assert sub.case_index == (2, 0) and sub.num_cases == 2
    assert sub.images.flatten().tolist() == [3, 4, 5, 0, 1]
    assert sub.slice_case.tolist() == [0, 0, 0, 1, 1]
    assert [s.stop - s.start for s in sub.case_slices] == [sizes[2], sizes[0]]
    assert sub.subset([1]).case_index == (0,)


@pytest.fixture(scope="module")
def grouped(tmp_path_factory) -> tuple[Path, Path]:
    """Twelve real hc18 cases renamed into six 'patients' of two cases each."""
    root = tmp_path_factory.mktemp("grouped")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    names = sorted(p.name for p in (HC18 / "images").iterdir())[::4][:12]
    for i, name in enumerate(names):
        new = f"p{i // 2}_{name}"
        shutil.copy(HC18 / "images" / name, root / "images" / new)
        shutil.copy(HC18 / "masks" / name, root / "masks" / new)
    return root / "images", root / "masks"


@pytest.fixture(scope="module")
def crossfit_run(grouped, tmp_path_factory):
    images, masks = grouped
    events: list[Progress] = []
    out = tmp_path_factory.mktemp("crossfit") / "run"
    return run_audit(images, masks, out, TINY, device="cpu", report=events.append), events


def test_no_case_is_scored_by_a_network_that_trained_on_its_mask(crossfit_run):
    result, _ = crossfit_run
    payload = load_checkpoint(result.out_dir / layout.MODEL)
    ids = payload["case_ids"]
    networks = [payload, *payload["fold_states"]]
    assert len(networks) == 3
    trained_on = [{ids[i] for i in net["trained_on"]} for net in networks]
    scored_by = result.run["cross_fitting"]["scored_by"]
    assert sorted(scored_by) == sorted(ids)
    for case, k in scored_by.items():
        assert case not in trained_on[k], f"{case} scored by network {k}, which trained on it"
        others = [j for j in range(3) if j != k]
        assert all(case in trained_on[j] for j in others), "every other network trains on it"
        patient = case.split("_")[0]
        siblings = {c for c in ids if c.startswith(patient + "_")} - {case}
        assert not siblings & trained_on[k], f"{case}'s sibling trained its scorer"
    assert all(net["epoch"] == TINY.epochs for net in networks)


def test_cross_fitting_reports_its_folds_progress_and_history(crossfit_run):
    result, events = crossfit_run
    info = result.run["cross_fitting"]
    assert info["folds"] == 3 and info["groups"] == 6 and sum(info["fold_sizes"]) == 12
    train = [p for p in events if p.phase in ("warmup", "train")]
    assert {p.epochs for p in train} == {3 * TINY.epochs}
    epochs = [p.epoch for p in train]
    assert epochs == sorted(epochs) and epochs[-1] == 3 * TINY.epochs, "one monotone run"
    history = result.run["history"]
    assert [h["fold"] for h in history] == [k for k in range(3) for _ in range(TINY.epochs)]
    assert len(result.results) == 12
    assert len({r.noise_score for r in result.results}) == 12


def test_an_interrupted_cross_fitted_run_resumes_to_the_same_result(
    crossfit_run, grouped, tmp_path
):
    result, _ = crossfit_run
    images, masks = grouped
    out = tmp_path / "resumed"

    def interrupt_in_the_second_network(p: Progress) -> None:
        if p.phase == "train" and p.epoch == TINY.epochs + 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_audit(images, masks, out, TINY, device="cpu", report=interrupt_in_the_second_network)
    resumed = run_audit(images, masks, out, TINY, device="cpu", resume=True)
    assert resumed.run["resumed_from_epoch"] == TINY.epochs + 2
    assert (out / layout.SCORES).read_bytes() == (result.out_dir / layout.SCORES).read_bytes()
