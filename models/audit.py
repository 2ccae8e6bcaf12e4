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

import dataclasses
import datetime as dt
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imaging import layout
from imaging.cases import find_cases, read_case_mask
from imaging.errors import ErrorCode, InputError
from imaging.formats import FLAT_FORMATS, issue_map_target, output_extension
from imaging.geometry import Geometry, label_dtype
from imaging.write import write_array
from models import outputs
from models.calibration import Calibration, calibrate, noise_score
from models.checkpoint import load_checkpoint, resume_states, save_checkpoint
from models.cleansing import infer_single_object_classes, issue_map
from models.config import AuditConfig
from models.dataset import WorkingCase, WorkingSet, load_dataset
from models.disagreement import dice_per_class
from models.figure_names import EVIDENCE, PHYSICAL_SIZES, SIZES
from models.figures import CaseFigures, Prediction, SizeNorm, measure_case
from models.fingerprint import Fingerprint, fingerprint
from models.flagging import FlagFit, fit_flags
from models.folds import FoldPlan, plan_folds
from models.network import predict_probs, resolve_device
from models.preprocess import as_slices, from_slices, to_original
from models.results import CaseResult, SliceResult
from models.scoring import (
    copies_per_case,
    reference_cases,
    ring_at_resolution,
    scoring_spacing,
    spatial,
    synthetic_figures,
)
from models.train import (
    Progress,
    ProgressFn,
    TrainData,
    TrainState,
    filter_step,
    held_out_figures,
    new_state,
    pseudo_label,
    refit_judge,
    train,
    training_config,
    uses_joint_supervision,
)

UNCERTAIN_Z = 3.0  # a teacher this many robust deviations more unsure than usual is "uncertain"


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
    size: int  # the working size in effect
    fingerprint: Fingerprint | None  # when the size came from the data
    device: torch.device
    report: ProgressFn
    dataset: WorkingSet
    data: TrainData  # every case
    plan: FoldPlan
    fold_data: list[TrainData]  # network k's training cases
    states: list[TrainState]  # network k's training state
    resumed_from: int
    created: bool  # the output folder did not exist before this run
    timings: dict[str, float] = field(default_factory=dict)
    judges: list[torch.nn.Module] = field(default_factory=list)  # refitted (config.judge_epochs)

    def save(self) -> None:
        save_checkpoint(
            self.out / layout.MODEL,
            self.states,
            self.fold_data,
            self.config,
            self.dataset.case_ids,
            working_size=self.size,
            fold=self.plan.fold.tolist() if self.plan.cross_fitted else None,
        )

    def teacher_of(self, case: int) -> torch.nn.Module:
        """The network that repairs case ``case`` (cross-fitting: the one that never saw it)."""
        return self.states[self.plan.scorer(case)].teacher.module

    def judge_of(self, case: int) -> torch.nn.Module:
        """The network whose figures score case ``case``: its refitted judge, if any, else the
        network that repairs it."""
        if self.judges:
            return self.judges[self.plan.scorer(case)]
        return self.teacher_of(case)


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
    print_ = fingerprint(find_cases(images_dir, masks_dir)) if config.size is None else None
    size = print_.working_size if print_ is not None else int(config.size or 0)
    dataset = load_dataset(
        images_dir,
        masks_dir,
        size=size,
        min_cases=config.min_cases,
        num_classes=config.class_limit,
        max_classes=config.max_classes,
        classes=config.classes,
        on_case=lambda i, n, _: report(Progress("load", 0, config.epochs, i, n)),
    )
    single = config.single_object_classes
    if single is None:
        single = infer_single_object_classes(
            (c.mask.numpy() for c in dataset.cases), dataset.num_classes
        )
    data = TrainData.from_dataset(dataset, single)
    config = training_config(config, data)
    for case, span in zip(dataset.cases, data.case_slices, strict=True):
        case.image, case.mask = data.images[span], data.masks[span]  # views: one copy in memory
    load_s = time.perf_counter() - started

    plan = plan_folds(dataset.case_ids, config.folds, config.group_pattern, seed=config.seed)
    fold_data = (
        [data.subset(plan.trains_on(k)) for k in range(plan.networks)]
        if plan.cross_fitted
        else [data]
    )
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    if overwrite and not resume:
        _remove_outputs(out)
    try:
        states = (
            resume_states(payload, fold_data, config, dataset.case_ids, torch_device)
            if payload is not None
            else [new_state(d, config, torch_device) for d in fold_data]
        )
    except BaseException:
        _forget(out, created)
        raise
    return _Run(
        images_dir,
        masks_dir,
        out,
        config,
        size,
        print_,
        torch_device,
        report,
        dataset,
        data,
        plan,
        fold_data,
        states,
        resumed_from=sum(s.epoch for s in states),
        created=created,
        timings={"load_s": load_s},
    )


def fit(run: _Run) -> None:
    """Train every network to the last epoch (one after another), checkpointing after each."""
    started = time.perf_counter()
    epochs = run.config.epochs
    try:
        for k, (state, data) in enumerate(zip(run.states, run.fold_data, strict=True)):
            train(
                state,
                data,
                run.config,
                run.device,
                report=_fold_report(run.report, k, len(run.states), epochs),
                on_epoch_end=lambda _: run.save(),
            )
    except BaseException:
        _forget(run.out, run.created)
        raise
    run.timings["train_s"] = time.perf_counter() - started


def _fold_report(report: ProgressFn, k: int, networks: int, epochs: int) -> ProgressFn:
    """Progress of network ``k`` as part of all networks' epochs (one run of K x epochs)."""
    if networks == 1:
        return report
    return lambda p: report(
        dataclasses.replace(p, epoch=k * epochs + p.epoch, epochs=networks * epochs)
    )


def score(run: _Run, staging: Path) -> tuple[Verdict, list[CaseResult]]:
    """The final label-filter pass, then every case's figures at its own resolution, the
    known-noisy copies, the graded score and the flag; masks written into ``staging``. Returns
    the verdict and the results, most suspect first.
    """
    config, cases = run.config, run.dataset.cases
    started = time.perf_counter()
    for state, data in zip(run.states, run.fold_data, strict=True):
        filter_step(state, data, config, update=not state.scored, final=True)
        state.scored = True
    run.save()
    if config.judge_epochs:
        run.judges = [
            refit_judge(state, data, config, run.device, run.report)
            for state, data in zip(run.states, run.fold_data, strict=True)
        ]
    if run.plan.cross_fitted or run.judges:  # the figures by the network that judges each case
        judged = held_out_figures([run.judge_of(i) for i in range(len(cases))], run.data, config)
    else:
        judged = run.states[0].figures
    initial = np.array([f.features() for f in judged])
    reference = reference_cases(initial)
    # The known-noisy copies come from the surest cases that hold an object to corrupt: a set
    # whose empty masks agree best (slabs without a tumour) still gets its copies.
    has_object = np.array([bool(case.mask.any()) for case in cases])
    sources = reference_cases(initial, eligible=has_object)
    copies = copies_per_case(len(sources))
    is_source = np.zeros(len(cases), bool)
    is_source[sources] = True
    rng = np.random.default_rng(config.seed)
    scored: list[_Scored] = []
    synthetic: list[CaseFigures] = []
    work = staging / ".arrays"
    work.mkdir(parents=True)
    for index, case in enumerate(cases):
        found, copies_found = _score_case(
            case,
            index,
            run,
            work / f"{index}.npy",
            staging,
            copies=copies * is_source[index],
            rng=rng,
        )
        scored.append(found)
        synthetic.extend(copies_found)
        run.report(Progress("score", config.epochs, config.epochs, index + 1, len(cases)))
    verdict = _verdict(run, scored, synthetic, reference)
    run.timings["score_s"] = time.perf_counter() - started

    started = time.perf_counter()
    results = []
    for index, (case, found) in enumerate(zip(cases, scored, strict=True)):
        finished = _finish_case(
            case,
            found,
            verdict,
            index,
            work,
            staging,
            audit_id=config.audit_id,
            class_names=config.class_names,
        )
        results.append(finished)
        run.report(Progress("write", config.epochs, config.epochs, index + 1, len(cases)))
    shutil.rmtree(work)
    results.sort(key=CaseResult.sort_key)
    run.timings["write_s"] = time.perf_counter() - started
    return verdict, results


def publish(
    run: _Run, staging: Path, final: Verdict, results: list[CaseResult]
) -> dict[str, object]:
    """Write the files for people beside the masks and move everything into place."""
    outputs.write_scores(
        staging / layout.SCORES,
        results,
        run.dataset.num_classes,
        class_names=run.dataset.class_names,
    )
    if run.dataset.is_3d:
        outputs.write_slices(staging / layout.SLICES, results)
    info = _run_info(run, final, results)
    outputs.write_json(staging / layout.RUN, info)
    _move_into_place(staging, run.out)
    return info


@dataclass(frozen=True)
class _Scored:
    """One case after scoring, before the flag: its figures and what was written for it."""

    figures: CaseFigures
    changed_fraction: float
    issue_fraction: float
    slices: tuple[SliceResult, ...]
    written: dict[str, Path]
    out_dtype: np.dtype[Any]


@dataclass(frozen=True)
class Verdict:
    """The final decision over all cases: the graded evidence, the flags, and how they came."""

    evidence: np.ndarray  # (N,) log-odds of the graded score
    size_atypical: np.ndarray  # (N,) robust z of the given objects' sizes in this dataset
    model_uncertain: np.ndarray  # (N,) bool
    calibration: Calibration
    flag: FlagFit

    @property
    def flagged(self) -> np.ndarray:
        return self.flag.flagged

    def summary(self) -> dict[str, Any]:
        return {
            "flagged": int(self.flagged.sum()),
            "filter_degenerate": not bool(self.flagged.any()),
            "filter_reason": self.flag.reason,
            "mixture": {
                "noisy_share": round(self.flag.noisy_share, 4),
                "clean_centre": round(self.flag.clean_centre, 4),
                "clean_spread": round(self.flag.clean_spread, 4),
                "copies_weight": round(self.flag.copies_weight, 4),
            },
            "model_uncertain": int(self.model_uncertain.sum()),
            "calibration": {
                "synthetic_copies": self.calibration.synthetic,
                "reference_vs_copies_auroc": round(self.calibration.separation, 4),
                "weights": self.calibration.weights,
            },
        }


def _score_case(
    case: WorkingCase,
    index: int,
    run: _Run,
    keep: Path,
    staging: Path,
    *,
    copies: int,
    rng: np.random.Generator,
) -> tuple[_Scored, list[CaseFigures]]:
    """Score one case on its own grid; write its pseudo label and issue map into ``staging``
    and keep the pseudo label in ``keep`` until the flags are known.
    """
    data, config = run.data, run.config
    teacher, judge = run.teacher_of(index), run.judge_of(index)
    probs = _probs(teacher, case, config)  # (K, D, h, w): the repair's
    judged = probs if judge is teacher else _probs(judge, case, config)
    raw = read_case_mask(case.files).array
    given = as_slices(raw.astype(np.int64), channels=False)  # (D, h, w)
    factor = case.grid.side / run.size
    sliver = max(0, int((factor - 1) // 2))  # edits thinner than a working pixel are noise
    pseudo = pseudo_label(probs, given, data, config, sliver=sliver, whole_objects=True)
    issues = issue_map(probs, given)
    geometry = case.geometry
    spacing = scoring_spacing(geometry)
    ring_radius = ring_at_resolution(config.ring_radius, case.grid.side, run.size)
    view = Prediction.of(spatial(judged, geometry))
    own = spatial(given, geometry)
    figures = measure_case(view, own, spacing=spacing, ring_radius=ring_radius)
    found = synthetic_figures(
        view, own, spacing=spacing, ring_radius=ring_radius, copies=copies, rng=rng
    )
    out_dtype = raw.dtype if np.issubdtype(raw.dtype, np.integer) else label_dtype(data.num_classes)
    ext = output_extension(case.files.mask, geometry)
    is_3d = geometry.is_3d
    written = {layout.PSEUDO: Path(layout.PSEUDO) / f"{case.case_id}{ext}"}
    write_array(
        staging / written[layout.PSEUDO],
        from_slices(pseudo, is_3d=is_3d).astype(out_dtype),
        geometry,
        kind=layout.PSEUDO,
        audit_id=config.audit_id,
        class_names=config.class_names,
    )
    np.save(keep, pseudo)
    issue_ext, issue_geometry = issue_map_target(ext, geometry)
    written[layout.ISSUE_MAPS] = Path(layout.ISSUE_MAPS) / f"{case.case_id}{issue_ext}"
    write_array(
        staging / written[layout.ISSUE_MAPS],
        from_slices(issues, is_3d=is_3d),
        issue_geometry,
        kind=layout.ISSUE_MAPS,
    )
    written[layout.CLEANSED] = Path(layout.CLEANSED) / f"{case.case_id}{ext}"
    return (
        _Scored(
            figures=figures,
            changed_fraction=float((pseudo != given).mean()),
            issue_fraction=float((issues > 127).mean()),
            slices=_slice_results(judged, given, issues, data.num_classes) if is_3d else (),
            written=written,
            out_dtype=np.dtype(out_dtype),
        ),
        found,
    )


def _probs(net: torch.nn.Module, case: WorkingCase, config: AuditConfig) -> np.ndarray:
    """``net``'s probabilities ``(K, D, h, w)`` of ``case`` on its own grid."""
    probs_w = predict_probs(net, case.image, tta_flips=config.tta_flips, patch=config.patch_size)
    probs: np.ndarray = to_original(probs_w, case.grid).movedim(1, 0).numpy()
    return probs


def _verdict(
    run: _Run, scored: list[_Scored], synthetic: list[CaseFigures], reference: np.ndarray
) -> Verdict:
    """The graded evidence (calibrated on the known-noisy copies) and the mixture's flags."""
    config = run.config
    sizes = SizeNorm.fit(np.array([s.figures.areas for s in scored]))
    atypical = sizes(np.array([s.figures.areas for s in scored]))
    real = np.column_stack([np.array([s.figures.evidence() for s in scored]), atypical])
    if not synthetic:
        raise InputError(
            ErrorCode.NO_FOREGROUND,
            "no case holds an object to corrupt into a known-noisy copy (every mask is empty at "
            "the working size)",
        )
    copies = np.column_stack(
        [
            np.array([f.evidence() for f in synthetic]),
            sizes(np.array([f.areas for f in synthetic])),
        ]
    )
    calibration = calibrate(
        real, copies, names=(*EVIDENCE, "size_atypical"), reference=reference, seed=config.seed
    )
    # The label filter's two-component mixture once more, on the graded evidence: a Gaussian
    # clean group and a noisy component, a blend of the copies' evidence density and a uniform
    # (models.flagging), a posterior per case.
    flag = fit_flags(
        calibration.evidence,
        calibration.synthetic_evidence,
        threshold=config.flag_probability,
        max_noisy_share=config.gmm_max_noisy_weight,
        copies_weight=config.flag_copies_weight,
    )
    uncertainty = np.array([s.figures.values["uncertainty"] for s in scored])
    centre = float(np.median(uncertainty))
    spread = 1.4826 * float(np.median(np.abs(uncertainty - centre)))
    return Verdict(
        size_atypical=atypical,
        evidence=calibration.evidence,
        model_uncertain=uncertainty > centre + UNCERTAIN_Z * max(spread, 1e-6),
        calibration=calibration,
        flag=flag,
    )


def _finish_case(
    case: WorkingCase,
    found: _Scored,
    verdict: Verdict,
    index: int,
    work: Path,
    staging: Path,
    *,
    audit_id: int | None,
    class_names: dict[int, str],
) -> CaseResult:
    """Write the cleansed mask (the pseudo label if flagged, else the given mask)."""
    flagged = bool(verdict.flagged[index])
    if flagged:
        cleansed = np.load(work / f"{index}.npy")
    else:
        cleansed = as_slices(read_case_mask(case.files).array.astype(np.int64), channels=False)
    write_array(
        staging / found.written[layout.CLEANSED],
        from_slices(cleansed, is_3d=case.geometry.is_3d).astype(found.out_dtype),
        case.geometry,
        kind=layout.CLEANSED,
        audit_id=audit_id,
        class_names=class_names,
    )
    evidence = float(verdict.evidence[index])
    values = {
        **found.figures.values,
        **_physical_sizes(found.figures.values, case.geometry),
        "size_atypical": float(verdict.size_atypical[index]),
        "evidence": evidence,
        "noise_probability": float(verdict.flag.probability[index]),
    }
    return CaseResult(
        case=case.case_id,
        noise_score=noise_score(evidence),
        flagged=flagged,
        ce=values["ce"],
        dice_gap=values["dice_gap"],
        dice=found.figures.dice,
        changed_fraction=found.changed_fraction,
        issue_fraction=found.issue_fraction,
        figures=values,
        model_uncertain=bool(verdict.model_uncertain[index]),
        slices=found.slices,
        cleansed=found.written[layout.CLEANSED],
        pseudo_label=found.written[layout.PSEUDO],
        issue_map=found.written[layout.ISSUE_MAPS],
    )


def _physical_sizes(values: dict[str, float], geometry: Geometry) -> dict[str, float]:
    """``given_mm`` and ``predicted_mm`` (mm², mm³ for a volume) where the file has a spacing."""
    if geometry.fmt in FLAT_FORMATS:
        return {}
    voxel = float(np.prod(geometry.spacing))
    return {
        physical: values[pixels] * voxel
        for pixels, physical in zip(SIZES, PHYSICAL_SIZES, strict=True)
        if pixels in values
    }


def _slice_results(
    probs: np.ndarray, given: np.ndarray, issues: np.ndarray, num_classes: int
) -> tuple[SliceResult, ...]:
    """Per slice of ``given`` ``(D, h, w)``: the judge's disagreement and pixel counts, and the
    pixels of the issue map (the teacher's)."""
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


def _run_info(run: _Run, final: Verdict, results: list[CaseResult]) -> dict[str, Any]:
    timings = run.timings
    timings["total_s"] = sum(timings.values())
    config, data, dataset = run.config, run.data, run.dataset
    slices = int(data.images.shape[0])
    train_s = timings.get("train_s", 0.0)
    epochs_run = config.epochs * len(run.states) - run.resumed_from
    return {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "inputs": {
            "images": str(run.images_dir.resolve()),
            "masks": str(run.masks_dir.resolve()),
            "cases": len(dataset.cases),
            "slices": slices,
            "is_3d": dataset.is_3d,
            "num_classes": dataset.num_classes,
            "classes": dataset.classes,
            "in_channels": dataset.in_channels,
            "single_object_classes": list(data.single_object_classes),
            "working_size": run.size,
            "fingerprint": None if run.fingerprint is None else run.fingerprint.to_dict(),
        },
        "config": {
            **config.to_dict(),
            "warmup_epochs_in_effect": config.warmup,
            "joint_supervision_in_effect": uses_joint_supervision(config, data),
        },
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
            **final.summary(),
            "most_suspect": [r.case for r in results[:10]],
        },
        "cross_fitting": {
            **run.plan.to_dict(),
            "group_pattern": config.group_pattern,
            **(
                {"scored_by": {c: run.plan.scorer(i) for i, c in enumerate(dataset.case_ids)}}
                if run.plan.cross_fitted
                else {}
            ),
        },
        "history": _history(run.states),
    }


def _history(states: list[TrainState]) -> list[dict[str, object]]:
    """The per-epoch history; with cross-fitting, each network's epochs in turn, with its fold."""
    if len(states) == 1:
        return states[0].history
    return [{**h, "fold": k} for k, s in enumerate(states) for h in s.history]
