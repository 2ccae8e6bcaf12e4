"""The audit pipeline: check and load cases, train with self-cleansing, score, write outputs.

``run_audit`` is the one entry point the command line, the workers and the benchmark share.
Bad input raises ``InputError`` before the output folder is touched. Outputs are written into a
staging folder inside ``out`` and moved into place at the end, so a failed run leaves no
half-written results; the per-epoch checkpoint ``model.pt`` is kept on purpose, for ``resume``.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models import errors, outputs
from models.cases import Case, Dataset, load_dataset, read_case_mask
from models.checkpoint import load_checkpoint, resume_state, save_checkpoint
from models.cleansing import infer_single_object_classes, issue_map
from models.config import AuditConfig
from models.disagreement import dice_per_class
from models.errors import InputError
from models.io import issue_map_target, label_dtype, output_extension, write_array
from models.label_filter import FilterResult
from models.network import predict_probs, resolve_device
from models.outputs import CaseResult, SliceResult
from models.preprocess import as_slices, from_slices, to_original
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


def _no_report(_: Progress) -> None:
    return None


def _check_out_dir(out: Path, *, resume: bool, overwrite: bool) -> None:
    if resume:
        if not (out / outputs.MODEL).is_file():
            raise InputError(
                errors.CHECKPOINT_MISMATCH,
                f"nothing to resume: {out / outputs.MODEL} does not exist",
            )
        return
    if out.exists() and not out.is_dir():
        raise InputError(errors.NOT_A_FOLDER, f"the output path {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError(
            errors.OUTPUT_NOT_EMPTY,
            f"the output folder {out} is not empty; choose a new folder, pass --overwrite to "
            "replace its results, or --resume to continue an interrupted run",
        )


def _case_outputs(
    case: Case, state: TrainState, data: TrainData, config: AuditConfig, index: int, staging: Path
) -> tuple[CaseResult, list[SliceResult]]:
    """Score one case at full resolution and write its cleansed mask, pseudo label and issue map."""
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
    for folder, array in ((outputs.CLEANSED, cleansed), (outputs.PSEUDO, pseudo)):
        write_array(
            staging / folder / f"{case.case_id}{ext}",
            from_slices(array, is_3d=is_3d).astype(out_dtype),
            case.geometry,
        )
    issue_ext, issue_geometry = issue_map_target(ext, case.geometry)
    write_array(
        staging / outputs.ISSUE_MAPS / f"{case.case_id}{issue_ext}",
        from_slices(issues, is_3d=is_3d),
        issue_geometry,
    )

    figures = state.figures[index]
    result = CaseResult(
        case=case.case_id,
        noise_score=float(1.0 - state.clean_prob[index]),
        flagged=flagged,
        ce=figures.ce,
        dice_gap=figures.dice_gap,
        dice=figures.dice,
        changed_fraction=float((pseudo != given).mean()),
        issue_fraction=float((issues > 127).mean()),
    )
    slices: list[SliceResult] = []
    if is_3d:
        pred = probs.argmax(axis=0)
        gaps = 1.0 - dice_per_class(pred, given, data.num_classes).mean(axis=1)
        for z in range(given.shape[0]):
            slices.append(
                SliceResult(
                    case.case_id,
                    z,
                    float(gaps[z]),
                    int((given[z] > 0).sum()),
                    int((pred[z] > 0).sum()),
                    int((issues[z] > 127).sum()),
                )
            )
    return result, slices


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
    config = config or AuditConfig()
    report = report or _no_report
    out = Path(out_dir)
    torch_device = resolve_device(device)
    _check_out_dir(out, resume=resume, overwrite=overwrite)
    payload = load_checkpoint(out / outputs.MODEL) if resume else None
    timings: dict[str, float] = {}

    started = time.perf_counter()
    dataset = load_dataset(
        Path(images_dir),
        Path(masks_dir),
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
    timings["load_s"] = time.perf_counter() - started

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
        resumed_from = state.epoch

        def on_epoch_end(s: TrainState) -> None:
            save_checkpoint(out / outputs.MODEL, s, data, config, dataset.case_ids)

        started = time.perf_counter()
        train(state, data, config, torch_device, report=report, on_epoch_end=on_epoch_end)
        timings["train_s"] = time.perf_counter() - started
    except BaseException:
        if created and not (out / outputs.MODEL).exists():
            shutil.rmtree(out, ignore_errors=True)
        raise

    started = time.perf_counter()
    final = filter_step(state, data, config, update=not state.scored, final=True)
    state.scored = True
    report(Progress("score", config.epochs, config.epochs, 1, 1, None, int(state.flagged.sum())))
    save_checkpoint(out / outputs.MODEL, state, data, config, dataset.case_ids)
    timings["score_s"] = time.perf_counter() - started

    started = time.perf_counter()
    staging = out / f".staging-{dt.datetime.now():%Y%m%d%H%M%S%f}"
    try:
        results, slice_rows = [], []
        for index, case in enumerate(dataset.cases):
            result, rows = _case_outputs(case, state, data, config, index, staging)
            results.append(result)
            slice_rows.extend(rows)
            report(Progress("write", config.epochs, config.epochs, index + 1, len(dataset.cases)))
        results.sort(key=CaseResult.sort_key)
        outputs.write_scores(staging / outputs.SCORES, results, dataset.num_classes)
        if dataset.is_3d:
            outputs.write_slices(staging / outputs.SLICES, slice_rows)
        timings["write_s"] = time.perf_counter() - started
        run = _run_info(
            images_dir,
            masks_dir,
            dataset,
            data,
            config,
            torch_device,
            state,
            final,
            results,
            timings,
            resumed_from,
        )
        outputs.write_json(staging / outputs.RUN, run)
        _publish(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return AuditResult(out, results, run)


def _remove_outputs(out: Path) -> None:
    for name in outputs.ALL_OUTPUTS:
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


def _publish(staging: Path, out: Path) -> None:
    """Move finished outputs into place; run.json last, so its presence means a complete run."""
    names = sorted(p.name for p in staging.iterdir())
    names.sort(key=lambda n: n == outputs.RUN)
    for name in names:
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        (staging / name).rename(target)


def _run_info(
    images_dir: Path | str,
    masks_dir: Path | str,
    dataset: Dataset,
    data: TrainData,
    config: AuditConfig,
    device: torch.device,
    state: TrainState,
    final: FilterResult,
    results: list[CaseResult],
    timings: dict[str, float],
    resumed_from: int,
) -> dict[str, object]:
    timings["total_s"] = sum(timings.values())
    slices = int(data.images.shape[0])
    train_s = timings.get("train_s", 0.0)
    epochs_run = config.epochs - resumed_from
    return {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "inputs": {
            "images": str(Path(images_dir).resolve()),
            "masks": str(Path(masks_dir).resolve()),
            "cases": len(dataset.cases),
            "slices": slices,
            "is_3d": dataset.is_3d,
            "num_classes": dataset.num_classes,
            "in_channels": dataset.in_channels,
            "single_object_classes": list(data.single_object_classes),
        },
        "config": {**config.to_dict(), "warmup_epochs_in_effect": config.warmup},
        "device": str(device),
        "threads": torch.get_num_threads(),
        "versions": outputs.versions(),
        "resumed_from_epoch": resumed_from,
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
        "history": state.history,
    }
