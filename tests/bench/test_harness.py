"""The benchmark harness: splits, folds, noise on instance maps, and one tiny cell end to end."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bench.harness import BenchSpec, group_of, prepare, run_bench, split_cases
from bench.peers import fold_of, small_loss_flags
from cli.bench import main
from imaging.formats import read_mask
from tests.conftest import HC18, SAMPLE


def test_groups_follow_the_hc18_fetus_number():
    assert group_of("012_HC") == group_of("012_2HC") == group_of("012_3HC") == "012"
    assert group_of("10328b822b83") == "10328b822b83"


def test_split_never_puts_one_fetus_on_both_sides_and_pools_are_disjoint():
    cases = [f"{n:03d}_{k}HC".replace("_1HC", "_HC") for n in range(40) for k in (1, 2, 3)]
    splits = {pool: split_cases(cases, 30, 12, pool=pool) for pool in ("dev", "test")}
    for train, test in splits.values():
        assert len(train) == 30 and len(test) == 12
        assert not {group_of(c) for c in train} & {group_of(c) for c in test}
    dev_cases = set(sum(splits["dev"], []))
    test_cases = set(sum(splits["test"], []))
    assert not {group_of(c) for c in dev_cases} & {group_of(c) for c in test_cases}
    with pytest.raises(ValueError, match="the test half"):
        split_cases(cases, 100, 12)


def test_folds_keep_groups_whole_and_need_enough_groups():
    groups = ["a", "a", "b", "c", "c", "d", "e"]
    fold = fold_of(groups, 3)
    assert fold[0] == fold[1] and fold[3] == fold[4]
    assert set(fold) == {0, 1, 2}
    with pytest.raises(ValueError, match="needs 3 groups"):
        fold_of(["a", "b"], 3)


def test_small_loss_flags_pick_the_high_loss_cases(rng):
    losses = np.concatenate([rng.normal(0.1, 0.01, 30), rng.normal(0.6, 0.05, 10)])
    flags = small_loss_flags(np.abs(losses), seed=0)
    assert flags[30:].all() and not flags[:30].any()


def _dsb_cases(dest: Path, copies: int) -> tuple[Path, Path]:
    """The two committed dsb2018 instance maps, each repeated under new names."""
    images, labels = dest / "images", dest / "labels"
    images.mkdir(parents=True)
    labels.mkdir()
    sources = sorted((SAMPLE / "dsb2018" / "images").iterdir())
    for i in range(copies):
        src = sources[i % len(sources)]
        shutil.copy(src, images / f"cell{i:02d}.png")
        shutil.copy(SAMPLE / "dsb2018" / "labels" / src.name, labels / f"cell{i:02d}.png")
    return images, labels


def test_missing_noise_on_instance_maps_deletes_whole_nuclei(tmp_path):
    images, labels = _dsb_cases(tmp_path / "dsb", 24)
    spec = BenchSpec(
        images=images,
        masks=labels,
        out=tmp_path / "out",
        noise="L",
        instances=True,
        train_cases=10,
        test_cases=2,
    )
    paths = prepare(spec, tmp_path / "work")
    with paths["truth"].open(newline="") as f:
        truth = {row["case"]: row["kind"] for row in csv.DictReader(f)}
    assert sum(kind == "missing" for kind in truth.values()) == 4  # alpha 0.4 of 10
    for case, kind in truth.items():
        instances = read_mask(labels / f"{case}.png", case=case).array
        noisy = read_mask(paths["noisy"] / f"{case}.png", case=case).array
        true = read_mask(paths["train_true"] / f"{case}.png", case=case).array
        assert set(np.unique(noisy)) <= {0, 1} and np.array_equal(true, instances > 0)
        kept = [bool(noisy[instances == k].all()) for k in np.unique(instances)[1:]]
        gone = [not noisy[instances == k].any() for k in np.unique(instances)[1:]]
        assert all(a or b for a, b in zip(kept, gone, strict=True))  # whole nuclei only
        assert (kind == "missing") == any(gone)


def test_a_tiny_cell_runs_every_method_and_writes_its_report(tmp_path):
    spec = BenchSpec(
        images=HC18 / "images",
        masks=HC18 / "masks",
        out=tmp_path / "cell",
        noise="mixed",
        size=32,
        epochs=3,
        train_cases=10,
        test_cases=2,
        folds=2,
        device="cpu",
        config={"batch_size": 4, "min_cases": 4},
    )
    report = run_bench(spec, log=lambda _: None)
    saved = json.loads((tmp_path / "cell" / "results.json").read_text())
    assert saved["methods"].keys() == {"selfclean", "naive", "cleanlab", "oracle"}
    assert len(saved["split"]["train"]) == 10 and len(saved["split"]["test"]) == 2
    for method in ("selfclean", "naive", "cleanlab"):
        entry = report["methods"][method]
        assert entry["detection"]["cases"] == 10 and entry["detection"]["noisy"] == 4
        assert 0.0 <= entry["detection"]["auroc"] <= 1.0
        assert entry["repair"]["given_dice_clean"] == pytest.approx(1.0)
        assert entry["cost"]["wall_s"] > 0 and entry["cost"]["peak_rss_mb"] > 100
    for method in ("selfclean", "naive", "oracle"):
        assert 0.0 <= report["methods"][method]["downstream_dice"] <= 1.0
    assert "cleanlab" in (tmp_path / "cell" / "results.md").read_text()


def test_cli_refuses_bad_settings_and_a_used_output_folder(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    base = ["bench", "--images", str(HC18 / "images"), "--masks", str(HC18 / "masks")]
    assert main([*base, "--noise", "B", "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main([*base, "--noise", "B", "--out", str(tmp_path / "x"), "--set", "nope=1"]) == 2
    assert "unknown audit parameters ['nope']" in capsys.readouterr().err
    assert main([*base, "--noise", "B", "--out", str(tmp_path / "y"), "--methods", "magic"]) == 2
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
