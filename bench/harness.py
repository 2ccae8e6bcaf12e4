"""One benchmark cell: corrupt a training split, run every method on it, judge them all alike.

``run_bench`` is what ``segaudit bench`` calls. Each method runs in a fresh child process (so its
wall time and peak memory are its own) and leaves ``scores.csv`` (most suspect first) and
``cleansed/`` in its folder; the audit and the plain networks also leave ``model.pt``, which
segments the held-out test cases for the downstream comparison.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import resource
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.evaluate import detection, mask_dice, read_scores, read_truth, repair
from bench.noise import corrupt_folder
from imaging.cases import index_folder
from imaging.formats import read_mask, split_name
from imaging.write import write_array

NOISE = {"B": "boundary", "L": "missing", "P": "polygon", "mixed": "mixed", "clean": "mixed"}
METHODS = ("selfclean", "naive", "cleanlab")
DOWNSTREAM = ("selfclean", "naive", "oracle")


@dataclass(frozen=True)
class BenchSpec:
    images: Path
    masks: Path
    out: Path
    noise: str = "mixed"  # B, L or mixed
    alpha: float = 0.4
    seed: int = 0
    methods: tuple[str, ...] = METHODS
    instances: bool = False  # masks are instance maps: L deletes whole objects
    size: int | None = None  # working size; None: from the training set's fingerprint
    epochs: int = 40
    train_cases: int = 48
    test_cases: int = 16
    folds: int = 5
    device: str = "auto"
    oracle: bool = True  # also train on the true masks, for the downstream comparison
    pool: str = "test"  # fixed half of the cases: "dev" for tuning, "test" for reporting; or "all"
    config: dict[str, Any] = field(default_factory=dict)  # further AuditConfig fields

    def __post_init__(self) -> None:
        if self.noise not in NOISE:
            raise ValueError(f"noise must be one of {sorted(NOISE)}, got '{self.noise}'")
        unknown = sorted(set(self.methods) - set(METHODS))
        if unknown or not self.methods:
            raise ValueError(f"methods must be some of {', '.join(METHODS)}, got {unknown}")
        if self.noise == "clean":
            object.__setattr__(self, "alpha", 0.0)  # the clean cell: every mask is right
        elif not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if self.train_cases < 8 or self.test_cases < 1:
            raise ValueError("need at least 8 training cases and 1 test case")


def group_of(case: str) -> str:
    """Cases of one group never straddle a split: hc18's ``NNN_2HC`` belongs to fetus ``NNN``."""
    head, sep, tail = case.partition("_")
    return head if sep and tail.endswith("HC") else case


POOLS = ("test", "dev", "all")


def split_cases(
    cases: list[str], train: int, test: int, *, pool: str = "test"
) -> tuple[list[str], list[str]]:
    """Disjoint train and test cases, whole groups at a time.

    The groups are first dealt into two fixed halves: ``dev`` (for tuning) and ``test`` (for the
    reported figures), so that no tuning run ever sees a case of the reported benchmark. ``all``
    skips the halving, for a folder that already holds only reportable cases.
    """
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got '{pool}'")
    groups: dict[str, list[str]] = {}
    for case in sorted(cases):
        groups.setdefault(group_of(case), []).append(case)
    order = sorted(groups)
    np.random.default_rng(20261127).shuffle(order)
    half = len(order) // 2
    order = {"dev": order[:half], "test": order[half:], "all": order}[pool]
    test_set: list[str] = []
    train_set: list[str] = []
    for g in order:
        if len(test_set) < test:
            test_set += groups[g]
        elif len(train_set) < train:
            train_set += groups[g]
    if len(train_set) < train or len(test_set) < test:
        raise ValueError(
            f"asked for {train} training and {test} test cases; the {pool} half of the folder "
            f"has {sum(len(groups[g]) for g in order)}"
        )
    return train_set[:train], test_set[:test]


def _link_or_binarise(source: Path, target: Path, binarise: bool) -> None:
    if not binarise:
        os.symlink(source.resolve(), target)
        return
    loaded = read_mask(source, case=source.stem)
    write_array(target, (loaded.array > 0).astype(np.uint8), loaded.geometry)


def prepare(spec: BenchSpec, work: Path) -> dict[str, Path]:
    """Folders of the cell: train/test images and true masks, noisy training masks, truth.csv."""
    images, masks = index_folder(spec.images, "image"), index_folder(spec.masks, "mask")
    common = sorted(set(images) & set(masks))
    train, test = split_cases(common, spec.train_cases, spec.test_cases, pool=spec.pool)
    paths = {name: work / name for name in ("train_images", "train_true", "test_images")}
    paths |= {"test_true": work / "test_true", "noisy": work / "noisy"}
    for folder in paths.values():
        folder.mkdir(parents=True)
    raw = work / "train_raw"  # instance maps (or masks) of the training cases, to corrupt
    raw.mkdir()
    for cases, image_dir, true_dir in (
        (train, paths["train_images"], paths["train_true"]),
        (test, paths["test_images"], paths["test_true"]),
    ):
        for case in cases:
            os.symlink(images[case].resolve(), image_dir / images[case].name)
            _link_or_binarise(masks[case], true_dir / masks[case].name, spec.instances)
    for case in train:
        os.symlink(masks[case].resolve(), raw / masks[case].name)
    corrupted = work / "corrupted"
    records = corrupt_folder(
        raw, corrupted, fraction=spec.alpha, protocol=NOISE[spec.noise], seed=spec.seed
    )
    for path in corrupted.iterdir():
        _link_or_binarise(path, paths["noisy"] / path.name, spec.instances)
    paths["truth"] = work / "truth.csv"
    with paths["truth"].open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["case", "kind", "detail"])
        w.writerows((r.case, r.kind, r.detail) for r in records)
    return paths


def _peak_memory_mb() -> dict[str, float | None]:
    import torch

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    gpu = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    return {"peak_rss_mb": round(rss, 1), "peak_gpu_mb": None if gpu is None else round(gpu, 1)}


def run_method(method: str, spec: BenchSpec, paths: dict[str, Path], out: Path) -> dict[str, Any]:
    """Run one method on the cell's training split (in the calling process)."""
    from bench import peers
    from imaging.cases import find_cases
    from models.audit import run_audit
    from models.config import AuditConfig
    from models.dataset import load_dataset
    from models.fingerprint import fingerprint
    from models.network import resolve_device

    size = spec.size or fingerprint(find_cases(paths["train_images"], paths["noisy"])).working_size
    config = AuditConfig(**{**spec.config, "size": size, "epochs": spec.epochs, "seed": spec.seed})
    device = resolve_device(spec.device)
    started = time.perf_counter()
    if method == "selfclean":
        result = run_audit(paths["train_images"], paths["noisy"], out, config, device=spec.device)
        timings = result.run["timings"]
        assert isinstance(timings, dict)
        slices = result.run["inputs"]["slices"]  # type: ignore[index]
        extra = {"trained_images": float(slices * config.epochs), "train_s": timings["train_s"]}
    else:
        masks = paths["train_true"] if method == "oracle" else paths["noisy"]
        loaded = time.perf_counter()
        dataset = load_dataset(paths["train_images"], masks, size=size, min_cases=config.min_cases)
        train_started = time.perf_counter()
        if method == "naive":
            extra = peers.run_naive(dataset, config, device, out)
        elif method == "oracle":
            extra = peers.run_oracle(dataset, config, device, out)
        else:
            groups = [group_of(c) for c in dataset.case_ids]
            extra = peers.run_cleanlab(
                dataset, config, device, out, groups=groups, folds=spec.folds
            )
        extra["train_s"] = time.perf_counter() - train_started
        extra["load_s"] = train_started - loaded
    wall = time.perf_counter() - started
    return {
        "wall_s": round(wall, 2),
        "train_images_per_s": round(extra["trained_images"] / extra["train_s"], 2),
        **{k: round(float(v), 2) for k, v in extra.items()},
        **_peak_memory_mb(),
    }


def _in_child(method: str, spec: BenchSpec, paths: dict[str, Path], out: Path) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")  # CUDA-safe, and a fresh memory peak
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(run_method, method, spec, paths, out).result()


def downstream_dice(
    model: Path, test_images: Path, test_true: Path, work: Path, device: str
) -> float:
    """Mean Dice of the model's segmentation of the held-out cases against their true masks."""
    from models.segment import segment_folder

    written = segment_folder(model, test_images, work, device=device)
    truth = index_folder(test_true, "mask")
    scores = []
    for path in written:
        case = split_name(path)[0]
        predicted, true = read_mask(path, case=case), read_mask(truth[case], case=case)
        scores.append(mask_dice(predicted.array, true.array))
    return float(np.mean(scores))


def judge(method_dir: Path, paths: dict[str, Path]) -> dict[str, Any]:
    """Detection (AUROC, AP, precision, recall, F1) and repair Dice of one method's outputs."""
    rows = read_scores(method_dir / "scores.csv")
    truth = read_truth(paths["truth"])
    det = asdict(
        detection([r["case"] for r in rows], {r["case"]: r["flagged"] == "1" for r in rows}, truth)
    )
    p, r = det["precision"], det["recall"]
    det["f1"] = 2 * p * r / (p + r) if p is not None and r is not None and p + r > 0 else 0.0
    rep = asdict(repair(paths["train_true"], paths["noisy"], method_dir / "cleansed", truth))
    return {"detection": det, "repair": rep}


def run_bench(spec: BenchSpec, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the cell described by ``spec``; write ``results.json`` and ``results.md`` in its out."""
    out = spec.out
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"the output folder {out} is not empty; choose a new one")
    work = out / "work"
    paths = prepare(spec, work)
    methods = list(spec.methods)
    if spec.oracle and ("selfclean" in methods or "naive" in methods):
        methods.append("oracle")
    results: dict[str, Any] = {}
    for method in methods:
        log(f"[{spec.noise} seed {spec.seed}] {method}: running")
        cost = _in_child(method, spec, paths, work / method)
        entry: dict[str, Any] = {"cost": cost}
        if method != "oracle":
            entry |= judge(work / method, paths)
        if method in DOWNSTREAM:
            entry["downstream_dice"] = downstream_dice(
                work / method / "model.pt",
                paths["test_images"],
                paths["test_true"],
                work / method / "test_pred",
                spec.device,
            )
        results[method] = entry
        log(f"[{spec.noise} seed {spec.seed}] {method}: {summary_line(entry)}")
    report = {
        "spec": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(spec).items()},
        "split": {
            "train": sorted(p.name for p in paths["train_images"].iterdir()),
            "test": sorted(p.name for p in paths["test_images"].iterdir()),
        },
        "methods": results,
    }
    (out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "results.md").write_text(markdown_table(results) + "\n")
    shutil.rmtree(work / "train_raw", ignore_errors=True)
    return report


def _f(value: object, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def summary_line(entry: dict[str, Any]) -> str:
    parts = []
    if "detection" in entry:
        d, r = entry["detection"], entry["repair"]
        parts.append(
            f"AUROC {_f(d['auroc'])} AP {_f(d['average_precision'])} F1 {_f(d['f1'])} "
            f"Dice noisy {_f(r['given_dice_noisy'])}->{_f(r['cleansed_dice_noisy'])} "
            f"clean {_f(r['given_dice_clean'])}->{_f(r['cleansed_dice_clean'])}"
        )
    if "downstream_dice" in entry:
        parts.append(f"test Dice {_f(entry['downstream_dice'])}")
    parts.append(f"{entry['cost']['wall_s']:.0f} s")
    return "; ".join(parts)


COLUMNS = (
    "method | AUROC | AP | flagged | precision | recall | F1 | Dice corrupted given -> cleansed | "
    "Dice clean given -> cleansed | test Dice | wall s | train img/s | peak RSS MB"
)


def _flag_rate(d: dict[str, Any]) -> str:
    if not d:
        return "n/a"
    return f"{d['flagged']}/{d['cases']} ({d['flagged'] / max(d['cases'], 1):.0%})"


def markdown_row(method: str, entry: dict[str, Any]) -> str:
    d, r, c = entry.get("detection", {}), entry.get("repair", {}), entry["cost"]
    return " | ".join(
        [
            method,
            _f(d.get("auroc")),
            _f(d.get("average_precision")),
            _flag_rate(d),
            _f(d.get("precision")),
            _f(d.get("recall")),
            _f(d.get("f1")),
            f"{_f(r.get('given_dice_noisy'))} -> {_f(r.get('cleansed_dice_noisy'))}",
            f"{_f(r.get('given_dice_clean'))} -> {_f(r.get('cleansed_dice_clean'))}",
            _f(entry.get("downstream_dice")),
            f"{c['wall_s']:.0f}",
            f"{c['train_images_per_s']:.1f}",
            f"{c['peak_rss_mb']:.0f}",
        ]
    )


def markdown_table(results: dict[str, Any]) -> str:
    header = f"| {COLUMNS} |\n|" + "---|" * len(COLUMNS.split(" | "))
    return "\n".join([header, *(f"| {markdown_row(m, e)} |" for m, e in results.items())])


def parse_settings(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs -> AuditConfig fields, values read as JSON where they parse; a pair
    without ``=``, an unknown key or a bad value raises ValueError, before any work."""
    from models.config import AuditConfig

    settings: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set takes KEY=VALUE, got '{item}'")
        try:
            settings[key] = json.loads(value)
        except json.JSONDecodeError:
            settings[key] = value
    AuditConfig.from_dict(settings)
    return settings
