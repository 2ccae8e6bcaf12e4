"""Benchmark of the audit: detection, repair and cost on real data with injected noise.

    python -m bench.run [--data DIR] [--cases N] [--protocols mixed boundary missing]
                        [--seeds 0 1] [--epochs N] [--size PX] [--device auto]

Reads hc18 from ../shared/data/hc18 when it is there (else the committed 60-case sample), takes
``--cases`` cases spread over the fetus numbers, corrupts a fraction 0.4 of the masks with each
protocol and seed, audits them with the same ``run_audit`` the command line uses, and scores the
result with ``models.evaluate``. Prints a table and writes bench/results/<time>.json with the
machine, the command and every figure.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from models.audit import run_audit
from models.config import AuditConfig
from models.evaluate import evaluate_audit
from models.noise import corrupt_folder
from models.outputs import versions

ROOT = Path(__file__).resolve().parents[1]
SHARED_HC18 = ROOT.parent / "shared" / "data" / "hc18"
SAMPLE_HC18 = ROOT / "data" / "sample" / "hc18"


def pick_cases(data: Path, n: int) -> list[str]:
    """``n`` cases of distinct fetuses (``NNN_HC`` only), spread evenly over the numbers."""
    cases = sorted(p.stem for p in (data / "images").iterdir() if p.stem.endswith("_HC"))
    if n > len(cases):
        raise SystemExit(f"--cases {n}: {data} has only {len(cases)} NNN_HC cases")
    return [cases[round(i * (len(cases) - 1) / max(n - 1, 1))] for i in range(n)]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run_one(
    data: Path,
    cases: list[str],
    protocol: str,
    seed: int,
    config: AuditConfig,
    device: str,
    work: Path,
) -> dict[str, object]:
    images, masks = work / "images", work / "masks"
    for folder, sub in ((images, "images"), (masks, "masks")):
        folder.mkdir(parents=True)
        for case in cases:
            os.symlink(data / sub / f"{case}.png", folder / f"{case}.png")
    noisy, truth = work / "noisy", work / "truth.csv"
    records = corrupt_folder(masks, noisy, fraction=0.4, protocol=protocol, seed=seed)
    with truth.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["case", "kind", "detail"])
        w.writerows((r.case, r.kind, r.detail) for r in records)
    started = time.perf_counter()
    result = run_audit(images, noisy, work / "audit", config, device=device)
    wall = time.perf_counter() - started
    figures = evaluate_audit(work / "audit", truth, masks, noisy)
    timings = result.run["timings"]
    assert isinstance(timings, dict)
    return {
        "protocol": protocol,
        "seed": seed,
        "cases": len(cases),
        "wall_s": round(wall, 1),
        "images_per_s": round(len(cases) / wall, 3),
        "timings": timings,
        **figures,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, default=SHARED_HC18 if SHARED_HC18.is_dir() else SAMPLE_HC18
    )
    parser.add_argument("--cases", type=int, default=60)
    parser.add_argument("--protocols", nargs="+", default=["mixed", "boundary", "missing"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--epochs", type=int, default=AuditConfig.epochs)
    parser.add_argument("--size", type=int, default=AuditConfig.size)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)

    config = AuditConfig(epochs=args.epochs, size=args.size)
    cases = pick_cases(args.data, args.cases)
    rows = []
    print(
        f"{'protocol':<9} {'seed':>4} {'AUROC':>6} {'AP':>6} {'prec':>6} {'recall':>6} "
        f"{'Dice noisy given->cleansed':>27} {'Dice clean given->cleansed':>27} {'wall s':>7}"
    )
    for protocol in args.protocols:
        for seed in args.seeds:
            with tempfile.TemporaryDirectory(prefix="segaudit-bench-") as tmp:
                row = run_one(
                    args.data,
                    cases,
                    protocol,
                    seed,
                    AuditConfig(**{**config.to_dict(), "seed": seed}),
                    args.device,
                    Path(tmp),
                )
            rows.append(row)
            d, r = row["detection"], row["repair"]
            assert isinstance(d, dict) and isinstance(r, dict)

            def f(v: object) -> str:
                return "  n/a" if v is None else f"{v:.3f}"

            print(
                f"{protocol:<9} {seed:>4} {f(d['auroc']):>6} {f(d['average_precision']):>6} "
                f"{f(d['precision']):>6} {f(d['recall']):>6} "
                f"{f(r['given_dice_noisy']) + ' -> ' + f(r['cleansed_dice_noisy']):>27} "
                f"{f(r['given_dice_clean']) + ' -> ' + f(r['cleansed_dice_clean']):>27} "
                f"{row['wall_s']:>7}",
                flush=True,
            )
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    report = {
        "created": stamp,
        "command": " ".join(
            [Path(sys.executable).name, "-m", "bench.run", *(argv or sys.argv[1:])]
        ),
        "machine": {
            "cpu": cpu_name(),
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "versions": versions(),
        "data": str(args.data),
        "config": config.to_dict(),
        "runs": rows,
    }
    path = args.out / f"{stamp}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
