"""The standard benchmark matrix (``make bench``) and its quick subset (``make bench-quick``).

    python -m bench.matrix [--quick] [--device auto|cpu|cuda] [--seeds 0 1 2]
                           [--datasets hc18 dsb2018 hc18-200 dsb2018-200]
                           [--noises B L P mixed clean]
                           [--out DIR | --into RUN] [--summarise RUN]

Full: hc18 and dsb2018 (instance masks; its 256x256 images) from ../shared/data at the working
size of their fingerprint (128 and 256 px), every method, one seed (0), about 100 minutes on 2
CPU cores (docs/benchmarks.md): 40 training cases each, hc18 with noise B, L, P (polygon),
mixed and clean (alpha 0), dsb2018 (where each cell costs about three hc18 cells) with B, L
and clean; then ``hc18-200``, 200 training cases, mixed and clean, and ``dsb2018-200``, 200
training cases of dsb2018's images up to 360 px (at 256 px, as the 40-case cells; the 256 px
images alone hold 167 in the reporting half, too few), mixed. ``--noises`` and ``--seeds`` add
the rest.
Quick: the committed hc18 sample, mixed noise, one seed, smaller and shorter.
Writes each cell's ``results.json`` into ``DIR/<time>/cells/`` and then ``summary.json`` and
``summary.md`` (means over the seeds, the targets of docs/benchmarks.md beside them).
``--into`` adds cells to an earlier run; ``--summarise`` rebuilds its summary.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import BenchSpec, run_bench

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


@dataclass(frozen=True)
class DataSet:
    name: str
    images: Path
    masks: Path
    instances: bool
    min_auroc: float  # the detection target of docs/benchmarks.md
    noises: tuple[str, ...] = ()  # the cells of a full run (all when empty)
    train_cases: int | None = None  # the run's size when None


def dsb_square_256(work: Path) -> tuple[Path, Path]:
    """dsb2018's 256x256 images (334 of 664) and their instance maps, linked into ``work``."""
    return dsb_subset(work, lambda size: size == (256, 256))


def dsb_subset(work: Path, keep: Callable[[tuple[int, int]], bool]) -> tuple[Path, Path]:
    """dsb2018's images whose ``(width, height)`` ``keep`` accepts, and their instance maps,
    linked into ``work``."""
    from PIL import Image

    images, labels = work / "images", work / "labels"
    images.mkdir(parents=True)
    labels.mkdir()
    for path in sorted((SHARED / "dsb2018" / "images").glob("*.png")):
        with Image.open(path) as im:
            if not keep(im.size):
                continue
        os.symlink(path, images / path.name)
        os.symlink(SHARED / "dsb2018" / "labels" / path.name, labels / path.name)
    return images, labels


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine(device: str) -> dict[str, Any]:
    import torch

    from models.network import resolve_device
    from models.outputs import versions

    used = resolve_device(device)
    return {
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(used),
        "gpu": torch.cuda.get_device_name(0) if used.type == "cuda" else None,
        "versions": versions(),
    }


def mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def aggregate(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over seeds of every figure, per method, plus the comparisons the targets use."""
    methods: dict[str, Any] = {}
    for method in cells[0]["methods"]:
        entries = [c["methods"][method] for c in cells if method in c["methods"]]
        figures: dict[str, Any] = {"seeds": len(entries)}
        for part in ("detection", "repair", "cost"):
            if part in entries[0]:
                keys = entries[0][part].keys()
                figures[part] = {k: mean([e[part][k] for e in entries]) for k in keys}
        if "downstream_dice" in entries[0]:
            figures["downstream_dice"] = mean([e["downstream_dice"] for e in entries])
        methods[method] = figures
    out: dict[str, Any] = {"methods": methods}
    dice = {m: methods[m].get("downstream_dice") for m in ("selfclean", "naive", "oracle")}
    if None not in dice.values() and len(dice) == 3:
        gap = dice["oracle"] - dice["naive"]
        out["gap_recovered"] = (dice["selfclean"] - dice["naive"]) / gap if gap > 1e-6 else None
    if "cleanlab" in methods and "selfclean" in methods:
        out["speedup_vs_cleanlab"] = (
            methods["cleanlab"]["cost"]["wall_s"] / methods["selfclean"]["cost"]["wall_s"]
        )
    return out


def _f(v: float | None, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _flag_share(d: dict[str, Any]) -> str:
    if not d.get("cases"):
        return "n/a"
    return f"{d['flagged'] / d['cases']:.1%}"


def summary_markdown(summary: dict[str, Any]) -> str:
    lines = [
        "| data | noise | method | AUROC | AP | flagged | precision | recall | F1 | Dice corrupted "
        "given -> cleansed | Dice clean given -> cleansed | test Dice | wall s | train img/s |",
        "|" + "---|" * 14,
    ]
    for key, agg in summary["cells"].items():
        data, noise = key.split("/")
        for method, m in agg["methods"].items():
            d, r, c = m.get("detection", {}), m.get("repair", {}), m["cost"]
            lines.append(
                f"| {data} | {noise} | {method} | {_f(d.get('auroc'))} | "
                f"{_f(d.get('average_precision'))} | {_flag_share(d)} | {_f(d.get('precision'))} | "
                f"{_f(d.get('recall'))} | {_f(d.get('f1'))} | "
                f"{_f(r.get('given_dice_noisy'))} -> {_f(r.get('cleansed_dice_noisy'))} | "
                f"{_f(r.get('given_dice_clean'))} -> {_f(r.get('cleansed_dice_clean'))} | "
                f"{_f(m.get('downstream_dice'))} | {_f(c['wall_s'], 0)} | "
                f"{_f(c['train_images_per_s'], 1)} |"
            )
    lines += [
        "",
        "| data | noise | gap recovered (target >= 0.80) | speed-up vs cleanlab (target >= 3) |",
        "|---|---|---|---|",
    ]
    for key, agg in summary["cells"].items():
        data, noise = key.split("/")
        lines.append(
            f"| {data} | {noise} | {_f(agg.get('gap_recovered'), 2)} | "
            f"{_f(agg.get('speedup_vs_cleanlab'), 1)} |"
        )
    return "\n".join(lines)


def targets_markdown(summary: dict[str, Any], min_auroc: dict[str, float]) -> str:
    """The targets of docs/benchmarks.md against the self-cleansing audit's means."""
    lines = [
        "| data | noise | AUROC | F1 >= 0.90 | Dice corrupted cleansed >= 0.95 | clean loss "
        "<= 0.005 | gap recovered >= 0.80 | AUROC above cleanlab | >= 3x faster than cleanlab "
        "| clean cell: flags <= 2% |",
        "|" + "---|" * 10,
    ]

    def mark(value: float | None, ok: bool | None, digits: int = 3) -> str:
        if value is None or ok is None:
            return "n/a"
        return f"{value:.{digits}f} {'met' if ok else 'missed'}"

    for key, agg in summary["cells"].items():
        data, noise = key.split("/")
        m = agg["methods"].get("selfclean")
        if m is None:
            continue
        d, r = m["detection"], m["repair"]
        target = min_auroc[data]
        auroc, f1 = d["auroc"], d["f1"]
        dice_noisy = r["cleansed_dice_noisy"]
        loss = None
        if r["given_dice_clean"] is not None and r["cleansed_dice_clean"] is not None:
            loss = r["given_dice_clean"] - r["cleansed_dice_clean"]
        gap, speed = agg.get("gap_recovered"), agg.get("speedup_vs_cleanlab")
        share = d["flagged"] / d["cases"] if noise == "clean" and d.get("cases") else None
        peer = agg["methods"].get("cleanlab", {}).get("detection", {}).get("auroc")
        lines.append(
            " | ".join(
                [
                    f"| {data}",
                    noise,
                    mark(auroc, None if auroc is None else auroc >= target) + f" (>= {target})",
                    mark(f1, None if f1 is None else f1 >= 0.90),
                    mark(dice_noisy, None if dice_noisy is None else dice_noisy >= 0.95),
                    mark(loss, None if loss is None else loss <= 0.005, 4),
                    mark(gap, None if gap is None else gap >= 0.80, 2),
                    mark(peer, None if peer is None or auroc is None else auroc > peer)
                    + " (cleanlab)",
                    mark(speed, None if speed is None else speed >= 3.0, 1),
                    mark(share, None if share is None else share <= 0.02) + " |",
                ]
            )
        )
    return "\n".join(lines)


def plan(quick: bool, work: Path) -> tuple[list[DataSet], list[str], dict[str, Any]]:
    if quick:
        sample = ROOT / "data" / "sample" / "hc18"
        hc18 = DataSet("hc18-sample", sample / "images", sample / "masks", False, 0.98)
        # The sample's test half holds 30 cases (one per fetus).
        sizes = {"train_cases": 20, "test_cases": 8, "size": 96, "epochs": 30}
        return [hc18], ["mixed"], sizes
    missing = [p for p in (SHARED / "hc18", SHARED / "dsb2018") if not p.is_dir()]
    if missing:
        raise SystemExit(f"the full benchmark reads {missing[0]}; use --quick without it")
    hc18 = DataSet("hc18", SHARED / "hc18" / "images", SHARED / "hc18" / "masks", False, 0.98)
    dsb_images, dsb_labels = dsb_square_256(work / "dsb2018-256")
    dsb = DataSet("dsb2018", dsb_images, dsb_labels, True, 0.95, ("B", "L", "clean"))
    hc18_200 = DataSet(
        "hc18-200", hc18.images, hc18.masks, False, 0.98, ("mixed", "clean"), train_cases=200
    )
    # dsb2018's images up to 360 px (256x256, 256x320, 360x360: 538 of 664), whose fingerprint
    # keeps the 256 px working size of the 40-case cells; the reporting half holds 269.
    dsb_images_360, dsb_labels_360 = dsb_subset(work / "dsb2018-360", lambda size: max(size) <= 360)
    dsb_200 = DataSet(
        "dsb2018-200", dsb_images_360, dsb_labels_360, True, 0.98, ("mixed",), train_cases=200
    )
    sizes = {"train_cases": 40, "test_cases": 16, "size": None, "epochs": 40}
    return [hc18, dsb, hc18_200, dsb_200], ["B", "L", "P", "mixed", "clean"], sizes


def summarise(out: Path, min_auroc: dict[str, float]) -> dict[str, Any]:
    """Means over seeds of every ``out/cells/<data>-<noise>-s<seed>/results.json`` found.

    The oracle ignores the noise, so it runs once per data set and seed; the other cells of that
    seed take its figures. Written as ``summary.json`` and ``summary.md`` beside the cells, so
    an interrupted run, or runs merged into one folder, still summarise.
    """
    found: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    oracle: dict[tuple[str, int], dict[str, Any]] = {}
    for path in sorted((out / "cells").glob("*/results.json")):
        report = json.loads(path.read_text())
        data, noise, seed = path.parent.name.rsplit("-", 2)
        if "oracle" in report["methods"]:
            oracle[data, int(seed[1:])] = report["methods"]["oracle"]
        found.setdefault(f"{data}/{noise}", []).append((int(seed[1:]), report))
    cells: dict[str, Any] = {}
    noise_order = {"B": 0, "L": 1, "P": 2, "mixed": 3, "clean": 4}
    for key in sorted(found, key=lambda k: (k.split("/")[0], noise_order.get(k.split("/")[1], 9))):
        data = key.split("/")[0]
        reports = []
        for seed, report in sorted(found[key], key=lambda t: t[0]):
            if (data, seed) in oracle:
                report["methods"].setdefault("oracle", oracle[data, seed])
            reports.append(report)
        seeds = sorted(seed for seed, _ in found[key])
        cells[key] = {"seeds": seeds, **aggregate(reports)}
    summary = json.loads((out / "run.json").read_text()) if (out / "run.json").exists() else {}
    summary["cells"] = cells
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    table = summary_markdown(summary) + "\n\n" + targets_markdown(summary, min_auroc)
    (out / "summary.md").write_text(table + "\n")
    return summary


MIN_AUROC = {
    "hc18": 0.98,
    "hc18-sample": 0.98,
    "dsb2018": 0.95,
    "hc18-200": 0.98,
    "dsb2018-200": 0.98,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.matrix", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the minutes-long subset")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--seeds", nargs="+", type=int, default=None)
    parser.add_argument(
        "--datasets",
        nargs="+",
        default=None,
        help="hc18, dsb2018, hc18-200, dsb2018-200 (default all)",
    )
    parser.add_argument("--noises", nargs="+", default=None, help="B L P mixed clean (default all)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--into", type=Path, help="add the cells to this earlier run's folder")
    parser.add_argument("--summarise", type=Path, help="only rebuild a run folder's summary")
    parser.add_argument("--keep-work", action="store_true", help="keep masks and models")
    args = parser.parse_args(argv)
    if args.summarise:
        print(summary_markdown(summarise(args.summarise, MIN_AUROC)))
        return 0

    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.into or args.out / (stamp + ("-quick" if args.quick else ""))
    out.mkdir(parents=True, exist_ok=args.into is not None)
    datasets, noises, sizes = plan(args.quick, out / "data")
    if args.datasets:
        datasets = [ds for ds in datasets if ds.name in args.datasets]
    if args.noises:
        noises = [n for n in noises if n in args.noises]
    seeds = args.seeds if args.seeds is not None else [0]
    run = {
        "created": stamp,
        "command": " ".join([Path(sys.executable).name, "-m", "bench.matrix", *sys.argv[1:]]),
        "machine": machine(args.device),
        "settings": {
            "alpha": 0.4,
            **sizes,
            "train_cases_by_data": {
                ds.name: ds.train_cases or sizes["train_cases"] for ds in datasets
            },
        },
    }
    runs = json.loads((out / "run.json").read_text()).get("runs", []) if args.into else []
    (out / "run.json").write_text(json.dumps({**run, "runs": [*runs, run]}, indent=2) + "\n")
    cells = {
        ds.name: [n for n in noises if args.noises or not ds.noises or n in ds.noises]
        for ds in datasets
    }
    total = sum(len(c) for c in cells.values()) * len(seeds)
    done, started = 0, time.perf_counter()
    for ds in datasets:
        for seed in seeds:
            for noise in cells[ds.name]:
                spec = BenchSpec(
                    images=ds.images,
                    masks=ds.masks,
                    out=out / "cells" / f"{ds.name}-{noise}-s{seed}",
                    noise=noise,
                    seed=seed,
                    instances=ds.instances,
                    device=args.device,
                    oracle=noise == cells[ds.name][0],  # it ignores the noise: once per seed
                    **(sizes | ({"train_cases": ds.train_cases} if ds.train_cases else {})),
                )
                run_bench(spec)
                if not args.keep_work:
                    shutil.rmtree(spec.out / "work", ignore_errors=True)
                done += 1
                elapsed = time.perf_counter() - started
                print(
                    f"== {done}/{total} cells, {elapsed / 60:.1f} min, "
                    f"about {elapsed / done * (total - done) / 60:.0f} min left",
                    flush=True,
                )
    shutil.rmtree(out / "data", ignore_errors=True)
    summarise(out, MIN_AUROC)
    table = (out / "summary.md").read_text()
    minutes = (time.perf_counter() - started) / 60
    print(f"\n{table}\nwritten: {out / 'summary.json'} ({minutes:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
