"""The audit: check and load the cases, train with self-cleansing, score, publish.

``run_audit`` is the one entry point the command line, the workers and the benchmark share. It
runs four stages, each a function below:

    prepare  check the output folder, load and check every case, resume a checkpoint
    fit      train (warm-up, label filter, cleansing, joint supervision); checkpoint per epoch
    score    the final label-filter pass, then each case's figures and masks, into staging
    publish  scores.csv, slices.csv and run.json beside the masks; staging moved into place

Bad input raises ``InputError`` before the output folder is touched. Outputs are written into a
staging folder inside ``out`` and moved into place at the end, so a failed run leaves no
half-written results; the per-epoch checkpoint ``model.pt`` is kept on purpose, for ``resume``.
The results come back in memory as ``models.results.CaseResult`` records.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imaging import layout
from imaging.cases import read_case_mask
from imaging.errors import ErrorCode, InputError
from imaging.formats import issue_map_target, output_extension
from imaging.geometry import label_dtype
from imaging.write import write_array
from models import outputs
from models.checkpoint import load_checkpoint, resume_state, save_checkpoint
from models.cleansing import infer_single_object_classes, issue_map
from models.config import AuditConfig
from models.dataset import WorkingCase, WorkingSet, load_dataset
from models.disagreement import dice_per_class
from models.label_filter import FilterResult
from models.network import predict_probs, resolve_device
from models.preprocess import as_slices, from_slices, to_original
from models.results import CaseResult, SliceResult
from models.train import (
    Progress,
    ProgressFn,
    TrainData,
    TrainState,
    filter_step,
    new_state,
    pseudo_label,
    train,
)


@dataclass(frozen=True)
class AuditResult:
    out_dir: Path
    results: list[CaseResult]  # sorted, most suspect first
    run: dict[str, object]  # what run.json holds


@dataclass
class _Run:
    """What the stages hand on to each other."""

    images_dir: Path
    masks_dir: Path
    out: Path
    config: AuditConfig
    device: torch.device
    report: ProgressFn
    dataset: WorkingSet
    data: TrainData
    state: TrainState
    resumed_from: int
    created: bool  # the output folder did not exist before this run
    timings: dict[str, float] = field(default_factory=dict)


def _no_report(_: Progress) -> None:
    return None


def run_audit(
    images_dir: Path | str,
    masks_dir: Path | str,
    out_dir: Path | str,
    config: AuditConfig | None = None,
    *,
    device: str = "auto",
    resume: bool = False,
    overwrite: bool = False,
    report: ProgressFn | None = None,
) -> AuditResult:
    """Audit the cases in ``images_dir``/``masks_dir``; write the results into ``out_dir``.

    ``report`` receives progress; an exception it raises (or Ctrl-C) interrupts the run, and the
    checkpoint of the last finished epoch stays for ``resume=True``.
    """
    run = prepare(
        Path(images_dir),
        Path(masks_dir),
        Path(out_dir),
        config or AuditConfig(),
        device=device,
        resume=resume,
        overwrite=overwrite,
        report=report or _no_report,
    )
    fit(run)
    staging = run.out / f".staging-{dt.datetime.now():%Y%m%d%H%M%S%f}"
    try:
        final, results = score(run, staging)
        info = publish(run, staging, final, results)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return AuditResult(run.out, results, info)


def prepare(
    images_dir: Path,
    masks_dir: Path,
    out: Path,
    config: AuditConfig,
    *,
    device: str,
    resume: bool,
    overwrite: bool,
    report: ProgressFn,
) -> _Run:
    """Check the output folder, load and check every case, and build (or resume) the state."""
    torch_device = resolve_device(device)
    _check_out_dir(out, resume=resume, overwrite=overwrite)
    payload = load_checkpoint(out / layout.MODEL) if resume else None
    started = time.perf_counter()
    dataset = load_dataset(
        images_dir,
        masks_dir,
        size=config.size,
        min_cases=config.min_cases,
        num_classes=config.num_classes,
        max_classes=config.max_classes,
        on_case=lambda i, n, _: report(Progress("load", 0, config.epochs, i, n)),
    )
    single = config.single_object_classes
    if single is None:
        single = infer_single_object_classes(
            (c.mask.numpy() for c in dataset.cases), dataset.num_classes
        )
    data = TrainData.from_dataset(dataset, single)
    for case, span in zip(dataset.cases, data.case_slices, strict=True):
        case.image, case.mask = data.images[span], data.masks[span]  # views: one copy in memory
    load_s = time.perf_counter() - started

    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    if overwrite and not resume:
        _remove_outputs(out)
    try:
        state = (
            resume_state(payload, data, config, dataset.case_ids, torch_device)
            if payload is not None
            else new_state(data, config, torch_device)
        )
    except BaseException:
        _forget(out, created)
        raise
    return _Run(
        images_dir,
        masks_dir,
        out,
        config,
        torch_device,
        report,
        dataset,
        data,
        state,
        resumed_from=state.epoch,
        created=created,
        timings={"load_s": load_s},
    )


def fit(run: _Run) -> None:
    """Train to the last epoch, checkpointing after each one."""

    def on_epoch_end(s: TrainState) -> None:
        save_checkpoint(run.out / layout.MODEL, s, run.data, run.config, run.dataset.case_ids)

    started = time.perf_counter()
    try:
        train(
            run.state,
            run.data,
            run.config,
            run.device,
            report=run.report,
            on_epoch_end=on_epoch_end,
        )
    except BaseException:
        _forget(run.out, run.created)
        raise
    run.timings["train_s"] = time.perf_counter() - started


def score(run: _Run, staging: Path) -> tuple[FilterResult, list[CaseResult]]:
    """The final label-filter pass, then every case's figures and masks written into
    ``staging``; returns the pass and the results, most suspect first.
    """
    state, config = run.state, run.config
    started = time.perf_counter()
    final = filter_step(state, run.data, config, update=not state.scored, final=True)
    state.scored = True
    assert state.flagged is not None
    flagged = int(state.flagged.sum())
    run.report(Progress("score", config.epochs, config.epochs, 1, 1, None, flagged))
    save_checkpoint(run.out / layout.MODEL, state, run.data, config, run.dataset.case_ids)
    run.timings["score_s"] = time.perf_counter() - started

    started = time.perf_counter()
    results = []
    cases = run.dataset.cases
    for index, case in enumerate(cases):
        results.append(_score_case(case, run, index, staging))
        run.report(Progress("write", config.epochs, config.epochs, index + 1, len(cases)))
    results.sort(key=CaseResult.sort_key)
    run.timings["write_s"] = time.perf_counter() - started
    return final, results


def publish(
    run: _Run, staging: Path, final: FilterResult, results: list[CaseResult]
) -> dict[str, object]:
    """Write the files for people beside the masks and move everything into place."""
    outputs.write_scores(staging / layout.SCORES, results, run.dataset.num_classes)
    if run.dataset.is_3d:
        outputs.write_slices(staging / layout.SLICES, results)
    info = _run_info(run, final, results)
    outputs.write_json(staging / layout.RUN, info)
    _move_into_place(staging, run.out)
    return info


def _score_case(case: WorkingCase, run: _Run, index: int, staging: Path) -> CaseResult:
    """Score one case at full resolution and write its cleansed mask, pseudo label and issue map."""
    state, data, config = run.state, run.data, run.config
    assert state.flagged is not None and state.clean_prob is not None
    probs_w = predict_probs(state.teacher.module, case.image, tta_flips=config.tta_flips)
    probs = to_original(probs_w, case.grid).movedim(1, 0).numpy()  # (K, D, h, w)
    raw = read_case_mask(case.files).array
    given = as_slices(raw.astype(np.int64), channels=False)  # (D, h, w)
    pseudo = pseudo_label(probs, given, data, config)
    flagged = bool(state.flagged[index])
    cleansed = pseudo if flagged else given
    issues = issue_map(probs, given)
    out_dtype = raw.dtype if np.issubdtype(raw.dtype, np.integer) else label_dtype(data.num_classes)
    ext = output_extension(case.files.mask, case.geometry)
    is_3d = case.geometry.is_3d
    written: dict[str, Path] = {}
    for folder, array in ((layout.CLEANSED, cleansed), (layout.PSEUDO, pseudo)):
        written[folder] = Path(folder) / f"{case.case_id}{ext}"
        write_array(
            staging / written[folder],
            from_slices(array, is_3d=is_3d).astype(out_dtype),
            case.geometry,
            kind=folder,
        )
    issue_ext, issue_geometry = issue_map_target(ext, case.geometry)
    written[layout.ISSUE_MAPS] = Path(layout.ISSUE_MAPS) / f"{case.case_id}{issue_ext}"
    write_array(
        staging / written[layout.ISSUE_MAPS], from_slices(issues, is_3d=is_3d), issue_geometry
    )
    figures = state.figures[index]
    return CaseResult(
        case=case.case_id,
        noise_score=float(1.0 - state.clean_prob[index]),
        flagged=flagged,
        ce=figures.ce,
        dice_gap=figures.dice_gap,
        dice=figures.dice,
        changed_fraction=float((pseudo != given).mean()),
        issue_fraction=float((issues > 127).mean()),
        slices=_slice_results(probs, given, issues, data.num_classes) if is_3d else (),
        cleansed=written[layout.CLEANSED],
        pseudo_label=written[layout.PSEUDO],
        issue_map=written[layout.ISSUE_MAPS],
    )


def _slice_results(
    probs: np.ndarray, given: np.ndarray, issues: np.ndarray, num_classes: int
) -> tuple[SliceResult, ...]:
    """Per slice of ``given`` ``(D, h, w)``: the teacher's disagreement and pixel counts."""
    pred = probs.argmax(axis=0)
    gaps = 1.0 - dice_per_class(pred, given, num_classes).mean(axis=1)
    return tuple(
        SliceResult(
            z,
            float(gaps[z]),
            int((given[z] > 0).sum()),
            int((pred[z] > 0).sum()),
            int((issues[z] > 127).sum()),
        )
        for z in range(given.shape[0])
    )


def _check_out_dir(out: Path, *, resume: bool, overwrite: bool) -> None:
    if resume:
        if not (out / layout.MODEL).is_file():
            raise InputError(
                ErrorCode.CHECKPOINT_MISMATCH,
                f"nothing to resume: {out / layout.MODEL} does not exist",
            )
        return
    if out.exists() and not out.is_dir():
        raise InputError(
            ErrorCode.NOT_A_FOLDER, f"the output path {out} exists and is not a folder"
        )
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError(
            ErrorCode.OUTPUT_NOT_EMPTY,
            f"the output folder {out} is not empty; choose a new folder, pass --overwrite to "
            "replace its results, or --resume to continue an interrupted run",
        )


def _forget(out: Path, created: bool) -> None:
    """After a failure: remove an output folder this run created, unless it holds a checkpoint."""
    if created and not (out / layout.MODEL).exists():
        shutil.rmtree(out, ignore_errors=True)


def _remove_outputs(out: Path) -> None:
    for name in layout.ALL_OUTPUTS:
        _remove(out / name)


def _remove(target: Path) -> None:
    if target.is_dir():
        shutil.rmtree(target)
    elif target.exists():
        target.unlink()


def _move_into_place(staging: Path, out: Path) -> None:
    """Move finished outputs into place; run.json last, so its presence means a complete run."""
    names = sorted(p.name for p in staging.iterdir())
    names.sort(key=lambda n: n == layout.RUN)
    for name in names:
        _remove(out / name)
        (staging / name).rename(out / name)


def _run_info(run: _Run, final: FilterResult, results: list[CaseResult]) -> dict[str, Any]:
    timings = run.timings
    timings["total_s"] = sum(timings.values())
    config, data, dataset = run.config, run.data, run.dataset
    slices = int(data.images.shape[0])
    train_s = timings.get("train_s", 0.0)
    epochs_run = config.epochs - run.resumed_from
    return {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "inputs": {
            "images": str(run.images_dir.resolve()),
            "masks": str(run.masks_dir.resolve()),
            "cases": len(dataset.cases),
            "slices": slices,
            "is_3d": dataset.is_3d,
            "num_classes": dataset.num_classes,
            "in_channels": dataset.in_channels,
            "single_object_classes": list(data.single_object_classes),
        },
        "config": {**config.to_dict(), "warmup_epochs_in_effect": config.warmup},
        "device": str(run.device),
        "threads": torch.get_num_threads(),
        "versions": outputs.versions(),
        "resumed_from_epoch": run.resumed_from,
        "timings": {
            **{k: round(v, 3) for k, v in timings.items()},
            "train_slices_per_s": round(slices * epochs_run / train_s, 2) if train_s > 0 else None,
        },
        "summary": {
            "cases": len(results),
            "flagged": sum(r.flagged for r in results),
            "filter_degenerate": final.degenerate,
            "filter_reason": final.reason,
            "filter_separation": round(final.separation, 4),
            "most_suspect": [r.case for r in results[:10]],
        },
        "history": run.state.history,
    }
