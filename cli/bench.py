"""``segaudit bench``: one benchmark cell (a noise protocol and a seed) on a folder of cases."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bench import harness
from bench.harness import METHODS, NOISE, BenchSpec, run_bench
from imaging.errors import InputError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="segaudit bench",
        description="Corrupt true masks with a noise protocol, run the audit and its peers on the "
        "same corrupted training split, and judge them alike (detection, repair, downstream "
        "test Dice on held-out cases, cost). Writes OUT/results.json and OUT/results.md.",
    )
    p.add_argument("--images", type=Path, required=True, help="folder of images")
    p.add_argument("--masks", type=Path, required=True, help="folder of TRUE masks")
    p.add_argument("--instances", action="store_true", help="masks are instance maps")
    p.add_argument("--noise", choices=sorted(NOISE), required=True, help="B, L or mixed")
    p.add_argument("--alpha", type=float, default=0.4, help="fraction of training cases corrupted")
    p.add_argument("--seed", type=int, default=0, help="random seed of noise and training")
    p.add_argument(
        "--methods", default=",".join(METHODS), help=f"comma-separated, of {', '.join(METHODS)}"
    )
    p.add_argument(
        "--size", type=int, default=None, help="working size in px (default: from the data)"
    )
    p.add_argument("--epochs", type=int, default=40, help="training epochs of every method")
    p.add_argument(
        "--train-cases", type=int, default=48, help="cases in the corrupted training split"
    )
    p.add_argument("--test-cases", type=int, default=16, help="held-out cases for downstream Dice")
    p.add_argument(
        "--pool",
        choices=("test", "dev", "all"),
        default="test",
        help="which fixed half of the cases to draw from: dev for tuning, test for reporting "
        "(default), or all of them for a folder that is already a test set",
    )
    p.add_argument("--folds", type=int, default=5, help="cleanlab's cross-validation folds")
    p.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="where to train"
    )
    p.add_argument(
        "--oracle",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also train on the true masks for the downstream comparison (default: yes)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an AuditConfig field for every method, e.g. --set lr_schedule=cosine (repeatable)",
    )
    p.add_argument("--out", type=Path, required=True, help="folder for results.json/.md")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    # argv[0] is the command name ("bench"), as cli.main passes it.
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv)[1:])
    try:
        spec = BenchSpec(
            images=args.images,
            masks=args.masks,
            out=args.out,
            noise=args.noise,
            alpha=args.alpha,
            seed=args.seed,
            methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()),
            instances=args.instances,
            size=args.size,
            epochs=args.epochs,
            train_cases=args.train_cases,
            test_cases=args.test_cases,
            folds=args.folds,
            device=args.device,
            oracle=args.oracle,
            pool=args.pool,
            config=harness.parse_settings(args.set),
        )
        report = run_bench(spec)
    except InputError as exc:
        print(f"segaudit bench: error [{exc.code}]: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"segaudit bench: error: {exc}", file=sys.stderr)
        return 2
    print()
    print((args.out / "results.md").read_text(), end="")
    print(f"\n{len(report['methods'])} methods; results in {args.out / 'results.json'}")
    return 0
