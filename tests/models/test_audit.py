"""The audit pipeline's mechanics on real data with a tiny network: outputs, geometry round
trips, determinism, resume, progress and segmentation of new cases. Detection quality is tested
in test_detection.py."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import nrrd
import numpy as np
import pytest
import torch
from PIL import Image

from bench.evaluate import read_scores
from imaging import layout
from imaging.errors import ErrorCode, InputError
from imaging.formats import read_mask
from models import audit
from models.audit import run_audit
from models.config import AuditConfig
from models.segment import segment_folder
from models.train import Progress
from tests.conftest import copy_hc18, mr_nifti_cases

TINY = AuditConfig(size=32, channels=(8, 16, 32), epochs=4, warmup_epochs=2, batch_size=4)


@pytest.fixture(scope="module")
def hc18_data(tmp_path_factory) -> tuple[Path, Path]:
    return copy_hc18(tmp_path_factory.mktemp("hc18"), 8, step=7)


@pytest.fixture(scope="module")
def tiny_run(hc18_data, tmp_path_factory):
    images, masks = hc18_data
    events: list[Progress] = []
    out = tmp_path_factory.mktemp("runs") / "first"
    result = run_audit(images, masks, out, TINY, device="cpu", report=events.append)
    return result, events


def test_writes_every_output_on_the_input_grid(tiny_run, hc18_data):
    result, _ = tiny_run
    _, masks = hc18_data
    out = result.out_dir
    rows = read_scores(out / layout.SCORES)
    assert [r["case"] for r in rows] == [r.case for r in result.results]
    assert len(rows) == 8 and {"case", "noise_score", "flagged", "ce", "dice_gap"} <= set(rows[0])
    scores = [float(r["noise_score"]) for r in rows]
    assert scores == sorted(scores, reverse=True) and all(0.0 <= s <= 1.0 for s in scores)
    for mask in masks.iterdir():
        given = np.asarray(Image.open(mask))
        for folder in (layout.CLEANSED, layout.PSEUDO, layout.ISSUE_MAPS):
            written = np.asarray(Image.open(out / folder / mask.name))
            assert written.shape == given.shape and written.dtype == np.uint8
        cleansed = np.asarray(Image.open(out / layout.CLEANSED / mask.name))
        assert set(np.unique(cleansed)) <= {0, 1}
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "no staging left behind"


def test_the_results_in_memory_agree_with_the_files_for_people(tiny_run, hc18_data):
    result, _ = tiny_run
    _, masks = hc18_data
    rows = read_scores(result.out_dir / layout.SCORES)
    for rank, (record, row) in enumerate(zip(result.results, rows, strict=True), start=1):
        assert int(row["rank"]) == rank and row["case"] == record.case
        assert float(row["noise_score"]) == pytest.approx(record.noise_score, abs=1e-6)
        assert (row["flagged"] == "1") == record.flagged
        for path, folder in (
            (record.cleansed, layout.CLEANSED),
            (record.pseudo_label, layout.PSEUDO),
            (record.issue_map, layout.ISSUE_MAPS),
        ):
            assert path is not None and path.parts[0] == folder
            assert (result.out_dir / path).is_file()
        assert record.slices == ()  # 2D cases: no per-slice detail
        # Why it ranks there: the kind of disagreement and the sizes (PNG: pixels, no mm²).
        assert row["disagreement_kind"] in ("agrees", "boundary") or set(
            row["disagreement_kind"].split("+")
        ) <= {"missing_object", "extra_object", "boundary"}
        given = np.asarray(Image.open(masks / f"{record.case}.png"))
        assert int(row["given_pixels"]) == int((given > 0).sum()) > 0
        assert row["predicted_pixels"].isdigit() and row["given_mm"] == row["worst_slice"] == ""
    assert json.loads((result.out_dir / layout.RUN).read_text())["summary"] == result.run["summary"]


def test_unflagged_cases_keep_their_given_mask(tiny_run, hc18_data):
    result, _ = tiny_run
    _, masks = hc18_data
    for r in result.results:
        if not r.flagged:
            given = np.asarray(Image.open(masks / f"{r.case}.png"))
            cleansed = np.asarray(Image.open(result.out_dir / layout.CLEANSED / f"{r.case}.png"))
            assert np.array_equal(given, cleansed)


def test_run_json_records_config_versions_timings_and_summary(tiny_run):
    result, _ = tiny_run
    run = json.loads((result.out_dir / layout.RUN).read_text())
    assert run["config"]["size"] == 32 and run["config"]["warmup_epochs_in_effect"] == 2
    assert run["config"]["joint_supervision_in_effect"] is True  # hc18: one head per mask
    assert {"torch", "monai", "numpy", "scikit-learn", "segaudit"} <= set(run["versions"])
    assert run["timings"]["train_s"] > 0 and run["timings"]["total_s"] >= run["timings"]["train_s"]
    assert run["summary"]["cases"] == 8 and len(run["history"]) == 4
    assert run["inputs"]["num_classes"] == 2 and run["inputs"]["single_object_classes"] == [1]


def test_progress_reports_every_phase_with_epochs_and_steps(tiny_run):
    _, events = tiny_run
    phases = [e.phase for e in events]
    assert phases[0] == "load" and phases[-1] == "write"
    assert {"warmup", "train", "judge", "score"} <= set(phases)
    training = [e for e in events if e.phase in ("warmup", "train")]
    assert {e.epoch for e in training} == {1, 2, 3, 4}
    assert all(e.steps == 2 and e.loss is not None and e.loss >= 0 for e in training)


def test_same_seed_same_result_on_cpu(tiny_run, hc18_data, tmp_path):
    result, _ = tiny_run
    images, masks = hc18_data
    again = run_audit(images, masks, tmp_path / "again", TINY, device="cpu")
    assert (again.out_dir / layout.SCORES).read_bytes() == (
        result.out_dir / layout.SCORES
    ).read_bytes()
    for name in (p.name for p in (result.out_dir / layout.ISSUE_MAPS).iterdir()):
        a = np.asarray(Image.open(again.out_dir / layout.ISSUE_MAPS / name))
        b = np.asarray(Image.open(result.out_dir / layout.ISSUE_MAPS / name))
        assert np.array_equal(a, b)


def test_an_interrupted_run_resumes_to_the_same_result(tiny_run, hc18_data, tmp_path):
    result, _ = tiny_run
    images, masks = hc18_data
    out = tmp_path / "resumed"

    def interrupt_in_epoch_3(p: Progress) -> None:
        if p.phase == "train" and p.epoch == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_audit(images, masks, out, TINY, device="cpu", report=interrupt_in_epoch_3)
    assert sorted(p.name for p in out.iterdir()) == [layout.MODEL], "only the checkpoint stays"
    resumed = run_audit(images, masks, out, TINY, device="cpu", resume=True)
    assert resumed.run["resumed_from_epoch"] == 2
    assert (out / layout.SCORES).read_bytes() == (result.out_dir / layout.SCORES).read_bytes()


def test_resuming_a_finished_run_writes_the_same_results(tiny_run, hc18_data, tmp_path):
    result, _ = tiny_run
    images, masks = hc18_data
    out = tmp_path / "finished"
    out.mkdir()
    (out / layout.MODEL).write_bytes((result.out_dir / layout.MODEL).read_bytes())
    again = run_audit(images, masks, out, TINY, device="cpu", resume=True)
    assert again.run["resumed_from_epoch"] == TINY.epochs
    assert (out / layout.SCORES).read_bytes() == (result.out_dir / layout.SCORES).read_bytes()


def test_resume_refuses_other_settings(tiny_run, hc18_data, tmp_path):
    images, masks = hc18_data
    out = tmp_path / "other"
    out.mkdir()
    (out / layout.MODEL).write_bytes((tiny_run[0].out_dir / layout.MODEL).read_bytes())
    with pytest.raises(InputError, match="seed differ") as info:
        run_audit(
            images,
            masks,
            out,
            AuditConfig(**{**TINY.to_dict(), "seed": 5}),
            device="cpu",
            resume=True,
        )
    assert info.value.code == ErrorCode.CHECKPOINT_MISMATCH


def test_overwrite_replaces_results(tiny_run, hc18_data, tmp_path):
    images, masks = hc18_data
    out = tmp_path / "over"
    run_audit(images, masks, out, TINY, device="cpu")
    (out / "notes.txt").write_text("kept")
    run_audit(images, masks, out, TINY, device="cpu", overwrite=True)
    assert (out / "notes.txt").read_text() == "kept" and (out / layout.SCORES).exists()


def test_the_checkpoint_segments_new_images(tiny_run, hc18_data, tmp_path):
    result, _ = tiny_run
    images, _ = hc18_data
    written = segment_folder(result.out_dir / layout.MODEL, images, tmp_path / "seg", device="cpu")
    assert len(written) == 8
    for path in written:
        labels = np.asarray(Image.open(path))
        assert labels.shape == np.asarray(Image.open(images / path.name)).shape[:2]
        assert set(np.unique(labels)) <= {0, 1}


@pytest.mark.parametrize("fmt", ["nifti", "nrrd"])
def test_3d_volumes_come_back_on_their_own_grid(tmp_path, fmt):
    images, masks = mr_nifti_cases(tmp_path / "mr", fmt=fmt)
    result = run_audit(images, masks, tmp_path / "out", TINY, device="cpu")
    out = result.out_dir
    ext = ".nii.gz" if fmt == "nifti" else ".nrrd"
    total_slices = 0
    for mask in sorted(masks.iterdir()):
        for folder in (layout.CLEANSED, layout.ISSUE_MAPS):
            written = out / folder / mask.name
            assert written.name.endswith(ext)
            if fmt == "nifti":
                src, dst = nib.load(str(mask)), nib.load(str(written))
                assert dst.shape == src.shape and np.allclose(dst.affine, src.affine)
            else:
                (src_data, src_h), (dst_data, dst_h) = nrrd.read(str(mask)), nrrd.read(str(written))
                assert dst_data.shape == src_data.shape
                assert np.allclose(dst_h["space directions"], src_h["space directions"])
                assert np.allclose(dst_h["space origin"], src_h["space origin"])
        total_slices += 5
    slices = read_scores(out / layout.SLICES)  # same CSV reader
    assert len(slices) == total_slices
    assert sum(len(r.slices) for r in result.results) == total_slices  # the same, in memory
    assert all([s.slice for s in r.slices] == list(range(5)) for r in result.results)
    assert result.run["inputs"]["is_3d"] is True
    # A volume's sizes in voxels and mm³ (its spacing), and its worst slice.
    for row, record in zip(read_scores(out / layout.SCORES), result.results, strict=True):
        given = read_mask(masks / f"{record.case}{ext}", case=record.case)
        voxels = int((given.array > 0).sum())
        assert int(row["given_pixels"]) == voxels
        mm3 = voxels * float(np.prod(given.geometry.spacing))
        assert float(row["given_mm"]) == pytest.approx(mm3, rel=1e-5)
        worst = max(record.slices, key=lambda s: s.dice_gap)
        assert float(row["worst_slice_dice_gap"]) == pytest.approx(worst.dice_gap, abs=1e-6)
        assert int(row["worst_slice"]) in range(5)


def test_resume_refuses_other_cases(tiny_run, hc18_data, tmp_path):
    images, masks = hc18_data
    fewer = copy_hc18(tmp_path / "fewer", 8, step=6)
    out = tmp_path / "other-cases"
    out.mkdir()
    (out / layout.MODEL).write_bytes((tiny_run[0].out_dir / layout.MODEL).read_bytes())
    with pytest.raises(InputError, match="other cases") as info:
        run_audit(*fewer, out, TINY, device="cpu", resume=True)
    assert info.value.code == ErrorCode.CHECKPOINT_MISMATCH


def test_segmenting_images_with_other_channels_is_refused(tiny_run, tmp_path):
    rgb = tmp_path / "rgb"
    rgb.mkdir()
    Image.fromarray((np.zeros((40, 50, 3)) + [10, 200, 30]).astype(np.uint8), "RGB").save(
        rgb / "x.png"
    )
    # The tiny model was trained on grayscale: 3 channels cannot be fed to it.
    with pytest.raises(InputError, match="3 channels") as info:
        segment_folder(tiny_run[0].out_dir / layout.MODEL, rgb, tmp_path / "seg", device="cpu")
    assert info.value.code == ErrorCode.CHANNEL_MISMATCH and not (tmp_path / "seg").exists()


class _SeesNothing(torch.nn.Module):
    """A judge that predicts background everywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(x.shape[0], 2, *x.shape[2:])
        logits[:, 0] = 10.0
        return logits


def test_the_judge_scores_the_cases_and_the_teacher_repairs_them(
    tiny_run, hc18_data, tmp_path, monkeypatch
):
    result, _ = tiny_run
    images, masks = hc18_data
    monkeypatch.setattr(audit, "refit_judge", lambda *_args: _SeesNothing())
    config = AuditConfig(**{**TINY.to_dict(), "judge_epochs": 1})
    judged = run_audit(images, masks, tmp_path / "judged", config, device="cpu")
    # The figures are the judge's: it sees no object in any case.
    assert all(r.dice == (0.0,) and r.figures["predicted_pixels"] == 0 for r in judged.results)
    # The pseudo labels are the teacher's, trained as in the run without a judge.
    for r in result.results:
        name = f"{r.case}.png"
        ours = np.asarray(Image.open(judged.out_dir / layout.PSEUDO / name))
        assert np.array_equal(ours, np.asarray(Image.open(result.out_dir / layout.PSEUDO / name)))
