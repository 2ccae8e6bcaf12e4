"""The ``segaudit`` command: a thin argparse layer over the functions the service also calls."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from bench.evaluate import evaluate_audit
from bench.noise import corrupt_folder
from cli.options import CLASSES_HELP, classes_option
from imaging.errors import InputError
from models.audit import AuditResult, run_audit
from models.config import AuditConfig
from models.figure_names import describe
from models.segment import segment_folder
from models.train import Progress


class ProgressBars:
    """Renders ``Progress`` reports as tqdm bars with ETA: loading, training, writing."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: tqdm | None = None
        self.phase = ""

    def _open(self, phase: str, total: int, desc: str, unit: str) -> tqdm:
        self.close()
        self.phase = phase
        # On a terminal the bar redraws in place; in a log file every redraw is a line, so fewer.
        interval = 0.5 if sys.stderr.isatty() else 15.0
        self.bar = tqdm(
            total=total,
            desc=desc,
            unit=unit,
            disable=not self.enabled,
            file=sys.stderr,
            dynamic_ncols=True,
            mininterval=interval,
        )
        return self.bar

    def __call__(self, p: Progress) -> None:
        if p.phase in ("warmup", "train"):
            if self.phase != "training":
                self._open("training", p.epochs * p.steps, "training", "step")
            assert self.bar is not None
            self.bar.set_postfix_str(
                f"epoch {p.epoch}/{p.epochs} {p.phase} loss {p.loss:.3f} flagged {p.flagged}",
                refresh=False,
            )
            self.bar.update(1)
        elif p.phase in ("load", "judge", "score", "write"):
            if self.phase != p.phase:
                desc = {
                    "load": "checking cases",
                    "judge": "refitting the judge",
                    "score": "scoring",
                    "write": "writing",
                }[p.phase]
                self._open(p.phase, p.steps, desc, "step" if p.phase == "judge" else "case")
            assert self.bar is not None
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar, self.phase = None, ""


def _print_table(result: AuditResult, out: Path, top: int) -> None:
    rows = result.results
    summary = result.run["summary"]
    timings = result.run["timings"]
    assert isinstance(summary, dict) and isinstance(timings, dict)
    print(f"\nMost suspect cases (of {len(rows)}; {summary['flagged']} flagged as noisy):")
    print(
        f"{'rank':>4}  {'case':<24} {'evidence':>8}  {'flagged':<7} {'dice_gap':>8} "
        f"{'changed':>8}  disagreement"
    )
    for rank, r in enumerate(rows[:top], start=1):
        evidence = r.figures.get("evidence", float("nan"))
        print(
            f"{rank:>4}  {r.case:<24} {evidence:>8.2f}  {'yes' if r.flagged else 'no':<7} "
            f"{r.dice_gap:>8.3f} {r.changed_fraction:>8.2%}  {describe(r.figures)}"
        )
    uncertain = [r.case for r in rows if r.model_uncertain]
    if uncertain:
        print(
            f"\nThe network was unusually unsure on {len(uncertain)} case(s) (model_uncertain: "
            f"a hard or unusual image; it does not enter the score, nor clear the mask): "
            f"{', '.join(uncertain[:5])}" + (" ..." if len(uncertain) > 5 else "")
        )
    if summary["filter_degenerate"]:
        print(
            f"\nNo case is flagged: {summary['filter_reason']}. "
            "The ranking still orders the cases by evidence."
        )
    print(
        f"\nMeasured: {timings['total_s']:.1f} s in all "
        f"({timings.get('train_s', 0):.1f} s training, "
        f"{timings['train_slices_per_s']} slices/s) on {result.run['device']}."
    )
    print(
        f"Outputs in {out}/: scores.csv, cleansed/, pseudo_labels/, issue_maps/, model.pt, run.json"
    )


def _cmd_audit(args: argparse.Namespace) -> int:
    options = {
        k: v
        for k, v in (
            ("epochs", args.epochs),
            ("size", args.size),
            ("patch_size", args.patch_size),
            ("seed", args.seed),
            ("num_classes", args.num_classes),
            ("folds", args.folds),
            ("group_pattern", args.group_pattern),
            ("classes", args.classes),
        )
        if v is not None
    }
    config = AuditConfig(**options)
    bars = ProgressBars(enabled=not args.quiet)
    try:
        result = run_audit(
            args.images,
            args.masks,
            args.out,
            config,
            device=args.device,
            resume=args.resume,
            overwrite=args.overwrite,
            report=bars,
        )
    finally:
        bars.close()
    _print_table(result, Path(args.out), args.top)
    return 0


def _cmd_segment(args: argparse.Namespace) -> int:
    written = segment_folder(args.model, args.images, args.out, device=args.device)
    print(f"Wrote {len(written)} label maps to {args.out}/")
    return 0


def _cmd_corrupt(args: argparse.Namespace) -> int:
    records = corrupt_folder(
        args.masks, args.out, fraction=args.fraction, protocol=args.protocol, seed=args.seed
    )
    Path(args.truth).parent.mkdir(parents=True, exist_ok=True)
    with Path(args.truth).open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["case", "kind", "detail"])
        w.writerows((r.case, r.kind, r.detail) for r in records)
    hit = sum(r.kind != "none" for r in records)
    print(
        f"Corrupted {hit} of {len(records)} masks ({args.protocol}, seed {args.seed}) "
        f"into {args.out}/; "
        f"truth in {args.truth}"
    )
    return 0


def _fmt(value: object) -> str:
    return "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    figures = evaluate_audit(args.audit, args.truth, args.true_masks, args.given_masks)
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    d, r = figures["detection"], figures["repair"]
    assert isinstance(d, dict) and isinstance(r, dict)
    print(f"Detection of the {d['noisy']} corrupted cases among {d['cases']}:")
    print(
        f"  AUROC {_fmt(d['auroc'])}   average precision {_fmt(d['average_precision'])}   "
        f"flagged {d['flagged']}: precision {_fmt(d['precision'])}, recall {_fmt(d['recall'])}"
    )
    print("Repair (mean foreground Dice against the true masks):")
    print(
        f"  corrupted cases ({r['noisy_cases']}): given {_fmt(r['given_dice_noisy'])} -> "
        f"cleansed {_fmt(r['cleansed_dice_noisy'])}"
    )
    print(
        f"  clean cases ({r['clean_cases']}):     given {_fmt(r['given_dice_clean'])} -> "
        f"cleansed {_fmt(r['cleansed_dice_clean'])}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segaudit", description="Label-quality audit of segmentation masks."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("audit", help="find noisy masks and cleanse them (deep self-cleansing)")
    p.add_argument(
        "--images",
        type=Path,
        required=True,
        help="folder of images (PNG, TIFF, NIfTI, NRRD), or a folder or zip of DICOM series",
    )
    p.add_argument(
        "--masks",
        type=Path,
        required=True,
        help="folder of masks, matched to images by file name; or DICOM-SEG/RTSTRUCT files "
        "(folder or zip, may be the images'), matched to series by UID",
    )
    p.add_argument("--out", type=Path, required=True, help="output folder (new or empty)")
    p.add_argument("--epochs", type=int, help="training epochs (default 40)")
    p.add_argument(
        "--size", type=int, help="working size in pixels (default: from the data's fingerprint)"
    )
    p.add_argument(
        "--patch-size",
        type=int,
        help="above this working size, train on patches of it and predict with sliding windows "
        "(default 256)",
    )
    p.add_argument(
        "--seed", type=int, help="random seed (default 0); runs on the CPU repeat exactly"
    )
    p.add_argument(
        "--num-classes", type=int, help="number of classes K incl. background (default: inferred)"
    )
    p.add_argument("--classes", type=classes_option, metavar="NAME=VALUE,...", help=CLASSES_HELP)
    p.add_argument(
        "--folds",
        type=int,
        help="cross-fitting: train K networks, each scoring the cases it never saw (default 1: "
        "one network on every case)",
    )
    p.add_argument(
        "--group-pattern",
        help="regex naming each case's group (its first group, or the match), so folds keep "
        "a patient's cases together, e.g. '^([^_]+)_'",
    )
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where to train (auto: CUDA when there is a GPU)",
    )
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    p.add_argument("--overwrite", action="store_true", help="replace the results already in --out")
    p.add_argument("--top", type=int, default=10, help="rows of the printed table")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_audit)

    p = sub.add_parser("segment", help="segment new images with an audit's model.pt")
    p.add_argument("--model", type=Path, required=True, help="an audit's model.pt")
    p.add_argument(
        "--images", type=Path, required=True, help="folder of images (PNG, JPEG, TIFF, NIfTI...)"
    )
    p.add_argument("--out", type=Path, required=True, help="folder for the predicted masks")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where to run")
    p.set_defaults(func=_cmd_segment)

    p = sub.add_parser(
        "corrupt", help="inject known noise into true masks (for demos and benchmarks)"
    )
    p.add_argument("--masks", type=Path, required=True, help="folder of true masks")
    p.add_argument("--out", type=Path, required=True, help="folder for the noisy copies")
    p.add_argument("--truth", type=Path, required=True, help="CSV to write: case,kind,detail")
    p.add_argument("--fraction", type=float, default=0.4, help="fraction of masks corrupted")
    p.add_argument(
        "--protocol",
        choices=("boundary", "missing", "mixed"),
        default="mixed",
        help="kind of noise injected",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.set_defaults(func=_cmd_corrupt)

    p = sub.add_parser("evaluate", help="score a finished audit against known noise")
    p.add_argument("--audit", type=Path, required=True, help="the audit's output folder")
    p.add_argument("--truth", type=Path, required=True, help="CSV case,kind (kind none = clean)")
    p.add_argument("--true-masks", type=Path, required=True, help="folder of the true masks")
    p.add_argument("--given-masks", type=Path, required=True, help="the masks the audit was given")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(func=_cmd_evaluate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except InputError as exc:
        print(f"segaudit: error [{exc.code}]: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"segaudit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        out = getattr(args, "out", None)
        hint = (
            "; continue with the same command and --resume"
            if args.command == "audit" and out
            else ""
        )
        print(f"\nsegaudit: interrupted{hint}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
