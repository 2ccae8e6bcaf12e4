"""``segaudit pacs pull|push``: a thin argparse layer over ``imaging.dicom.web``.

    segaudit pacs pull --url URL --study UID [--series UID ...] --out DIR
    segaudit pacs push --url URL PATH [PATH ...]

The password for ``--user`` is read from the environment variable ``SEGAUDIT_PACS_PASSWORD``,
never from the command line.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from imaging.dicom import web
from imaging.errors import InputError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segaudit pacs", description="Exchange DICOM with a PACS over DICOMweb."
    )
    sub = parser.add_subparsers(dest="action", required=True)
    for name, text in (
        ("pull", "retrieve a study (or some of its series) into a folder (QIDO-RS, WADO-RS)"),
        ("push", "store DICOM files, e.g. an audit's cleansed/ SEGs, on the server (STOW-RS)"),
    ):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument(
            "--url", required=True, help="DICOMweb root, e.g. http://pacs:8042/dicom-web"
        )
        p.add_argument("--user", help="user name (password in $SEGAUDIT_PACS_PASSWORD)")
        if name == "pull":
            p.add_argument("--study", required=True, help="Study Instance UID")
            p.add_argument("--series", action="append", default=[], help="Series Instance UID")
            p.add_argument("--out", type=Path, required=True, help="folder to write into")
        else:
            p.add_argument("paths", nargs="+", type=Path, help="DICOM files or folders")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] == "pacs":
        args_list = args_list[1:]
    args = build_parser().parse_args(args_list)
    client = web.connect(
        args.url, user=args.user, password=os.environ.get("SEGAUDIT_PACS_PASSWORD")
    )
    try:
        if args.action == "pull":
            files = web.pull(client, args.out, study_uid=args.study, series_uids=args.series)
            series = {p.parent for p in files}
            print(f"Pulled {len(files)} instances of {len(series)} series into {args.out}/")
        else:
            stored = web.push(client, args.paths)
            print(f"Pushed {len(stored)} instances to {args.url}")
    except InputError as exc:
        print(f"segaudit: error [{exc.code}]: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
