"""``segaudit worker``: one Celery worker process, solo pool, on the chosen queues.

One worker per GPU: ``--gpu N`` sets ``CUDA_VISIBLE_DEVICES`` before anything can load torch
(torch is loaded when the first audit runs, in this same process: the solo pool never forks).
A CPU-only worker is the same command on a machine without a GPU (or with
``SEGAUDIT_DEVICE=cpu``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segaudit worker",
        description="Run audits from the task queues (settings: SEGAUDIT_* environment).",
    )
    parser.add_argument(
        "--queues",
        help="comma-separated queues to consume (default: SEGAUDIT_AUDIT_QUEUE and "
        "SEGAUDIT_CPU_QUEUE, i.e. gpu,cpu)",
    )
    parser.add_argument(
        "--gpu", help="the GPU this worker uses (sets CUDA_VISIBLE_DEVICES); one worker per GPU"
    )
    parser.add_argument("--hostname", help="the worker's node name (default: segaudit-PID@host)")
    parser.add_argument(
        "--loglevel",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="Celery's log level",
    )
    parser.add_argument(
        "--no-reconcile",
        dest="reconcile",
        action="store_false",
        help="do not run the reconciler loop in this worker (another worker runs it)",
    )
    return parser


def main(argv: Sequence[str]) -> int:
    """``argv[0]`` is the command (``worker``), the rest its options."""
    args = _parser().parse_args(list(argv[1:]))
    if args.gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = args.gpu
    from worker.celery_app import celery  # reads the settings; never loads torch

    declared = [q.name for q in celery.conf.task_queues]
    queues = [q.strip() for q in (args.queues or ",".join(declared)).split(",") if q.strip()]
    unknown = sorted(set(queues) - set(declared))
    if unknown or not queues:
        print(
            f"segaudit worker: unknown queue(s) {unknown or queues}; the queues are "
            f"{', '.join(declared)} (SEGAUDIT_AUDIT_QUEUE, SEGAUDIT_CPU_QUEUE)",
            file=sys.stderr,
        )
        return 2
    celery.conf.segaudit_reconcile = args.reconcile
    code = celery.start(
        [
            "worker",
            "--pool=solo",
            "--concurrency=1",
            f"--queues={','.join(queues)}",
            f"--loglevel={args.loglevel.upper()}",
            f"--hostname={args.hostname or f'segaudit-{os.getpid()}@%h'}",
            # Cancels and state live in the database: no revoke lists to sync between workers.
            "--without-mingle",
            "--without-gossip",
        ]
    )
    return int(code or 0)
