"""Probes of the audit's judge: one cell's audit with a variant of how the network that
scores the cases is trained or chosen, and every case's evidence, flag and repair figures saved.

    python -m bench.probe --data hc18|dsb2018|dsb2018-360|dsb2018-large
                          --noise B|L|P|mixed|clean [--seed S]
                          [--train-cases N] [--variant base|plain|student|warmup|folds2]
                          [--set KEY=VALUE ...] [--pool dev|test] --out FILE.json

Variants (each patches the engine in this process only; none is a product setting):

- ``base``: the engine as it is.
- ``plain``: no joint supervision. Warm-up lasts until the last epoch, so the network learns the
  given masks only; the label filter runs once before the last epoch and again when scoring.
  The same training as the product setting ``--set joint_supervision=off`` (kept as a variant
  so that earlier result files stay reproducible by their names).
- ``student``: the final filter pass and the scoring use the student's weights, not the EMA
  teacher's.
- ``warmup``: ... the teacher's weights as they were at the end of warm-up.
- ``folds2``: cross-fitting with two folds (each case scored by the network that never saw it).

The dev pool (``bench.harness.split_cases``) unless ``--pool test`` is given, so that nothing
here tunes on reported cases; ``--pool test`` reruns the selfclean audit of a matrix cell (same
split, noise and settings) to report a variant already chosen on the dev pool. Used for the
"judge" sections of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.evaluate import mask_dice, read_truth
from bench.harness import BenchSpec, downstream_dice, judge, parse_settings, prepare
from bench.matrix import SHARED, dsb_square_256, dsb_subset
from imaging.cases import index_folder
from imaging.formats import read_mask
from imaging.layout import PSEUDO, SCORES

VARIANTS = ("base", "plain", "student", "warmup", "folds2")


def _patch(variant: str, epochs: int) -> dict[str, Any]:
    """Patch the engine for ``variant`` (an audit of ``epochs``); returns AuditConfig overrides."""
    import models.audit as audit
    import models.train as train

    if variant == "plain":
        return {"warmup_epochs": epochs - 1}
    if variant == "folds2":
        return {"folds": 2}
    score: Callable[..., Any] = audit.score
    if variant == "student":

        def score_student(run: Any, staging: Path) -> Any:
            for state in run.states:
                state.teacher.module.load_state_dict(state.net.state_dict())
            return score(run, staging)

        audit.score = score_student  # type: ignore[assignment]
    elif variant == "warmup":
        saved: dict[int, dict[str, Any]] = {}
        epoch_fn = train.train_epoch

        def train_epoch(state: Any, data: Any, config: Any, device: Any, report: Any) -> float:
            if state.epoch == config.warmup:
                saved[id(state)] = copy.deepcopy(state.teacher.state_dict())
            return epoch_fn(state, data, config, device, report)

        def score_warmup(run: Any, staging: Path) -> Any:
            for state in run.states:
                state.teacher.load_state_dict(saved[id(state)])
            return score(run, staging)

        train.train_epoch = train_epoch  # type: ignore[assignment]
        audit.score = score_warmup  # type: ignore[assignment]
    return {}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """One probe audit in a temporary folder, removed afterwards."""
    overrides = {**_patch(args.variant, args.epochs), **parse_settings(args.set)}
    with tempfile.TemporaryDirectory(prefix="segaudit-probe-") as tmp:
        return _probe(args, overrides, Path(tmp))


def _probe(args: argparse.Namespace, overrides: dict[str, Any], work: Path) -> dict[str, Any]:
    from imaging.cases import find_cases
    from models.audit import run_audit
    from models.config import AuditConfig
    from models.fingerprint import fingerprint

    if args.data == "hc18":
        images, masks, instances = SHARED / "hc18/images", SHARED / "hc18/masks", False
    elif args.data == "dsb2018-large":  # 126 images of 512 to 1388 px a side
        images, masks = dsb_subset(work / "dsb", lambda size: min(size) >= 512)
        instances = True
    elif args.data == "dsb2018-360":  # 538 images up to 360 px: the dsb2018-200 cell's
        images, masks = dsb_subset(work / "dsb", lambda size: max(size) <= 360)
        instances = True
    else:
        images, masks = dsb_square_256(work / "dsb")
        instances = True
    spec = BenchSpec(
        images=images,
        masks=masks,
        out=work / "out",
        noise=args.noise,
        seed=args.seed,
        instances=instances,
        train_cases=args.train_cases,
        pool=args.pool,
        methods=("selfclean",),
        oracle=False,
    )
    paths = prepare(spec, work / "cell")
    size = fingerprint(find_cases(paths["train_images"], paths["noisy"])).working_size
    config = AuditConfig(**{"size": size, **overrides, "epochs": args.epochs, "seed": args.seed})
    started = time.perf_counter()
    result = run_audit(paths["train_images"], paths["noisy"], work / "audit", config, device="auto")
    wall = time.perf_counter() - started
    truth = read_truth(paths["truth"])
    judged = judge(work / "audit", paths)  # the figures a matrix cell reports
    # The final network on the pool's held-out cases, as a matrix cell's downstream figure.
    test_dice = downstream_dice(
        work / "audit" / "model.pt", paths["test_images"], paths["test_true"], work / "test", "auto"
    )
    with (work / "audit" / SCORES).open(newline="") as f:
        rows = list(csv.DictReader(f))
    true, given = index_folder(paths["train_true"], "mask"), index_folder(paths["noisy"], "mask")
    pseudo = index_folder(work / "audit" / PSEUDO, "mask")
    cases = []
    for row in rows:
        c = row["case"]
        t = read_mask(true[c], case=c).array
        cases.append(
            {
                "case": c,
                "corrupted": truth[c],
                "evidence": float(row["evidence"]),
                "flagged": row["flagged"] == "1",
                "dice_given": mask_dice(read_mask(given[c], case=c).array, t),
                "dice_pseudo": mask_dice(read_mask(pseudo[c], case=c).array, t),
                "figures": {k: v for k, v in row.items() if k not in ("case", "flagged")},
            }
        )
    summary = result.run["summary"]
    return {
        "cell": vars(args) | {"out": str(args.out)},
        "wall_s": round(wall, 1),
        **judged["detection"],
        "repair": judged["repair"],
        "test_dice": test_dice,
        "mixture": summary["mixture"] if isinstance(summary, dict) else None,
        "history": result.run["history"],
        "cases": cases,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.probe", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", choices=("hc18", "dsb2018", "dsb2018-360", "dsb2018-large"), required=True
    )
    parser.add_argument("--noise", choices=("B", "L", "P", "mixed", "clean"), required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-cases", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--variant", choices=VARIANTS, default="base")
    parser.add_argument(
        "--pool",
        choices=("dev", "test"),
        default="dev",
        help="dev (the default) to compare variants; test only to report the one chosen, on the "
        "matrix's own cases",
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="an audit setting"
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    folder = SHARED / args.data.split("-")[0]
    if not folder.is_dir():
        parser.error(f"the probes read {folder}, which is not there")
    found = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(found, indent=1))
    auroc = "-" if found["auroc"] is None else f"{found['auroc']:.3f}"
    sys.stdout.write(
        f"{args.data} {args.noise} seed {args.seed} n {args.train_cases} {args.pool} "
        f"{args.variant} "
        f"{' '.join(args.set)}: "
        f"AUROC {auroc}, {found['flagged']} flagged, F1 {found['f1']:.2f}, "
        f"test Dice {found['test_dice']:.3f}, {found['wall_s']:.0f} s\n"
    )


if __name__ == "__main__":
    main()
