"""``segaudit submit``: a batch job's way into the service, over its REST API only.

It creates a dataset (or, with ``--dataset-id``, adds to an existing one), uploads the images
and the masks (zipped, in batches), starts an audit and, with ``--wait``, follows it with a
progress bar until it ends, then downloads the export (``scores.csv`` and ``cleansed/``) into
``--out``. ``--audit ID`` re-attaches to an audit started earlier: it follows it and downloads
its export. When an upload or the audit's start is refused, the dataset and annotation set this
run created are deleted again, so nothing half-made stays behind.

The key is read from ``SEGAUDIT_API_KEY`` (``--api-key`` also works, but shows the key in
``ps`` and the shell's history). Exit status: 0 when the audit succeeded (or was queued, without
``--wait``), 1 when it failed or was cancelled, 2 when the service refused a request or could
not be reached.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from cli.options import CLASSES_HELP, classes_option

FINISHED = ("succeeded", "failed", "cancelled")
BATCH = 2000  # files per uploaded zip, well under the service's SEGAUDIT_MAX_FILES
KEY_ENV = "SEGAUDIT_API_KEY"
# Folder names that say nothing about the data: a default name adds the parent folder's.
GENERIC = {"images", "image", "imgs", "img", "masks", "mask", "labels", "label", "segmentations"}
GENERIC |= {"imagestr", "imagests", "labelstr", "labelsts", "data", "input", "inputs", "gt"}


class Refused(Exception):
    """The service answered with an error (its ``code`` and ``detail``), or was unreachable."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="segaudit submit",
        description="Upload images and masks to a segaudit service and audit the masks; or "
        "(--audit ID) follow an audit started earlier and download its results.",
        epilog=f"The API key is read from ${KEY_ENV}; prefer it to --api-key, which other "
        "users of the machine can see in `ps` and which stays in the shell's history.",
    )
    p.add_argument("--server", required=True, help="the service's URL, e.g. http://host:8000")
    p.add_argument(
        "--api-key",
        default=os.environ.get(KEY_ENV),
        help=f"a key with role annotator or above (default: ${KEY_ENV}, the better place)",
    )
    what = p.add_argument_group("what to upload")
    what.add_argument(
        "--images", type=Path, help="folder of images (any depth); not with --dataset-id"
    )
    what.add_argument("--masks", type=Path, help="folder of masks, named as the images (any depth)")
    what.add_argument(
        "--dataset-id",
        type=int,
        help="add the masks as a new annotation set of this existing dataset (its images are "
        "used; history and comparisons then span the sets) instead of creating a dataset",
    )
    what.add_argument(
        "--dataset",
        help="name of the new dataset (default: the images folder's name, with its parent's "
        "when it is a generic one such as images/, and the time)",
    )
    what.add_argument(
        "--annotation-set",
        help="name of the new annotation set (default: the masks folder's name, with its "
        "parent's when it is a generic one such as masks/)",
    )
    what.add_argument(
        "--audit",
        type=int,
        metavar="ID",
        help="upload nothing: follow audit ID (queued, running or finished) and download its "
        "results, as --wait does",
    )
    params = p.add_argument_group("audit parameters (default: the service's)")
    params.add_argument("--epochs", type=int, help="training epochs")
    params.add_argument("--size", type=int, help="working size in pixels")
    params.add_argument("--seed", type=int, help="random seed")
    params.add_argument("--num-classes", type=int, help="classes including background")
    params.add_argument(
        "--classes",
        type=classes_option,
        metavar="NAME=VALUE,...",
        help=f"declared on the new annotation set: {CLASSES_HELP}",
    )
    params.add_argument(
        "--parameters", type=json.loads, default={}, help="more parameters, as a JSON object"
    )
    out = p.add_argument_group("following and downloading")
    out.add_argument("--wait", action="store_true", help="follow the audit, then download it")
    out.add_argument("--out", type=Path, help="where the export is unpacked (default: ./audit-ID)")
    out.add_argument("--poll", type=float, default=2.0, help="seconds between status requests")
    out.add_argument("--quiet", action="store_true", help="no progress bar")
    out.add_argument("--top", type=int, default=10, help="most suspect cases to print")
    return p


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not args.api_key:
        parser.error(f"no API key: set {KEY_ENV} (or pass --api-key)")
    if args.audit is not None:
        given = [
            o for o in ("images", "masks", "dataset_id", "classes") if getattr(args, o) is not None
        ]
        if given:
            parser.error(f"--audit follows an audit started earlier; leave out --{given[0]}")
        return
    if args.masks is None:
        parser.error("--masks is required (or --audit ID to follow an earlier audit)")
    if args.dataset_id is None and args.images is None:
        parser.error("--images is required, unless --dataset-id names a dataset to add to")
    if args.dataset_id is not None and args.images is not None:
        parser.error("--dataset-id uses the dataset's images; leave out --images")


def main(argv: Sequence[str]) -> int:
    """``argv[0]`` is the command (``submit``), the rest its options."""
    parser = _parser()
    args = parser.parse_args(list(argv[1:]))
    _check(parser, args)
    parameters = dict(args.parameters)
    for key in ("epochs", "size", "seed", "num_classes"):
        if getattr(args, key) is not None:
            parameters[key] = getattr(args, key)
    headers = {"X-API-Key": args.api_key}
    with httpx.Client(base_url=args.server.rstrip("/"), headers=headers, timeout=600) as client:
        try:
            if args.audit is not None:
                audit = _call(client, "GET", f"/v1/audits/{args.audit}")
            else:
                audit = submit(client, args, parameters)
            print(f"audit {audit['id']}: {audit['status']} ({audit['cases']} cases)")
            if not args.wait and args.audit is None:
                return 0
            if audit["status"] not in FINISHED:
                audit = follow(client, audit["id"], poll=args.poll, quiet=args.quiet)
            out = args.out or Path(f"audit-{audit['id']}")
            return report(client, audit, out, top=args.top)
        except Refused as exc:
            print(f"segaudit submit: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("segaudit submit: stopped waiting; the audit goes on", file=sys.stderr)
            return 130


def default_name(folder: Path) -> str:
    """A name that says which data a folder holds: ``hc18/images`` rather than ``images``."""
    folder = folder.resolve()
    if folder.name.lower() in GENERIC and folder.parent.name:
        return f"{folder.parent.name}/{folder.name}"
    return folder.name


def submit(client: httpx.Client, args: argparse.Namespace, parameters: dict[str, Any]) -> Any:
    """Create the dataset (unless ``--dataset-id``) and annotation set, upload the files, start
    the audit. When any of it is refused, what this call created is deleted before it raises.
    """
    for folder in (args.images, args.masks):
        if folder is not None and not folder.is_dir():
            raise Refused(f"{folder} is not a folder")
    created: list[tuple[str, str]] = []  # (what, URL), to delete again on failure
    try:
        if args.dataset_id is None:
            name = (
                args.dataset or f"{default_name(args.images)} {dt.datetime.now():%Y-%m-%d %H:%M:%S}"
            )
            dataset = _call(client, "POST", "/v1/datasets", json={"name": name})
            created.append((f"dataset {dataset['id']}", f"/v1/datasets/{dataset['id']}"))
            cases = 0
            for batch in _zips(args.images, "images"):
                cases += _upload(client, f"/v1/datasets/{dataset['id']}/images", batch)["count"]
            print(f"dataset {dataset['id']} '{name}': {cases} cases uploaded")
        else:
            dataset = _call(client, "GET", f"/v1/datasets/{args.dataset_id}")
            print(f"dataset {dataset['id']} '{dataset['name']}': {dataset['cases']} cases")
        aset_name = args.annotation_set or default_name(args.masks)
        aset_path = f"/v1/datasets/{dataset['id']}/annotation-sets"
        declared = {} if args.classes is None else {"classes": args.classes}
        aset = _call(client, "POST", aset_path, json={"name": aset_name, **declared})
        created.append((f"annotation set {aset['id']}", f"{aset_path}/{aset['id']}"))
        masks = 0
        for batch in _zips(args.masks, "masks"):
            masks += _upload(client, f"{aset_path}/{aset['id']}/masks", batch)["count"]
        print(f"annotation set {aset['id']} '{aset_name}': {masks} masks uploaded")
        body = {
            "dataset_id": dataset["id"],
            "annotation_set_id": aset["id"],
            "parameters": parameters,
        }
        return _call(client, "POST", "/v1/audits", json=body)
    except Refused:
        _undo(client, created)
        raise
    except KeyboardInterrupt:
        _undo(client, created)
        raise Refused("interrupted before the audit started") from None


def _undo(client: httpx.Client, created: list[tuple[str, str]]) -> None:
    """Delete what ``submit`` created, newest first (the dataset takes its sets with it)."""
    for what, url in reversed(created):
        try:
            response = client.delete(url)
        except httpx.HTTPError as exc:
            print(f"segaudit submit: could not delete {what}: {exc}", file=sys.stderr)
            continue
        if response.status_code in (200, 404):
            print(f"segaudit submit: deleted {what}, which this run had created", file=sys.stderr)
        else:
            print(
                f"segaudit submit: {what} is left behind ({_describe(response)}); an admin "
                f"can delete it: DELETE {url}",
                file=sys.stderr,
            )


def follow(client: httpx.Client, audit_id: int, *, poll: float, quiet: bool) -> Any:
    """Poll the audit until it ends, showing its progress; returns its last state."""
    # A bar on a terminal; in a log, one line per change of phase or epoch.
    bar = tqdm(
        total=100,
        disable=quiet or not sys.stderr.isatty(),
        desc=f"audit {audit_id}",
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed} {postfix}",
    )
    shown = ""
    failures = 0
    try:
        while True:
            try:
                audit = _call(client, "GET", f"/v1/audits/{audit_id}")
                failures = 0
            except Refused:
                failures += 1  # the service may be restarting: keep waiting a while
                if failures > 10:
                    raise
                time.sleep(min(poll * failures, 30))
                continue
            line = _status_line(audit)
            step = f"{audit['status']} {audit['progress']['phase']} {audit['progress']['epoch']}"
            if bar.disable and not quiet and step != shown:
                print(f"audit {audit_id}: {line}", file=sys.stderr)
                shown = step
            percent = audit["progress"]["percent"] or 0.0
            bar.n = 100.0 if audit["status"] == "succeeded" else percent
            bar.set_postfix_str(line, refresh=False)
            bar.refresh()
            if audit["status"] in FINISHED:
                return audit
            time.sleep(poll)
    finally:
        bar.close()


def _status_line(audit: dict[str, Any]) -> str:
    p = audit["progress"]
    parts = [audit["status"] if audit["status"] != "running" else p["phase"] or "running"]
    if p["epoch"] and p["epochs"]:
        parts.append(f"epoch {p['epoch']}/{p['epochs']}")
    if p["flagged"] is not None:
        parts.append(f"flagged {p['flagged']}")
    if p["eta_seconds"] is not None and audit["status"] == "running":
        parts.append(f"ETA {dt.timedelta(seconds=round(p['eta_seconds']))}")
    return ", ".join(parts)


def report(client: httpx.Client, audit: dict[str, Any], out: Path, *, top: int = 10) -> int:
    """Download and unpack a succeeded audit's export, or say why it did not succeed."""
    if audit["status"] != "succeeded":
        error = audit.get("error") or {}
        print(
            f"audit {audit['id']} {audit['status']}: "
            f"{error.get('code') or ''} {error.get('message') or ''}".rstrip(),
            file=sys.stderr,
        )
        return 1
    out.mkdir(parents=True, exist_ok=True)
    archive = out / f"audit-{audit['id']}.zip"
    with client.stream("GET", f"/v1/audits/{audit['id']}/export") as response:
        if response.status_code != 200:
            response.read()
            raise Refused(_describe(response))
        with archive.open("wb") as f:
            for chunk in response.iter_bytes():
                f.write(chunk)
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(out)
    summary = audit.get("summary") or {}
    print(
        f"audit {audit['id']} succeeded: {summary.get('cases')} cases, "
        f"{summary.get('flagged')} flagged; scores.csv and cleansed/ in {out}/"
    )
    if summary.get("filter_degenerate"):
        print(
            f"No case is flagged: {summary.get('filter_reason')}. "
            "The ranking still orders the cases by evidence."
        )
    with (out / "scores.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))[:top]
    if rows:
        print(f"\n{'rank':>4}  {'case':<24} {'evidence':>8}  {'flagged':<7}  disagreement")
        for row in rows:
            flag = "yes" if row["flagged"] == "1" else ""
            evidence = float(row.get("evidence") or "nan")
            print(
                f"{row['rank']:>4}  {row['case']:<24} {evidence:>8.2f}  {flag:<7}  "
                f"{row.get('disagreement', '')}"
            )
    return 0


def _zips(folder: Path, label: str) -> Iterator[Path]:
    """The files under ``folder`` in zips of at most ``BATCH`` files (stored, not compressed:
    medical images are compressed already), each removed once it has been uploaded.
    """
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise Refused(f"{folder} holds no files")
    with tempfile.TemporaryDirectory() as tmp:
        for start in range(0, len(files), BATCH):
            archive = Path(tmp) / f"{label}-{start // BATCH}.zip"
            with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
                for path in files[start : start + BATCH]:
                    zf.write(path, path.relative_to(folder).as_posix())
            yield archive
            archive.unlink()


def _upload(client: httpx.Client, url: str, archive: Path) -> Any:
    with archive.open("rb") as f:
        return _call(client, "POST", url, files=[("files", (archive.name, f, "application/zip"))])


def _call(client: httpx.Client, method: str, url: str, **kwargs: Any) -> Any:
    try:
        response = client.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        raise Refused(f"{method} {client.base_url}{url}: {type(exc).__name__}: {exc}") from exc
    if response.status_code >= 400:
        raise Refused(_describe(response))
    return response.json()


def _describe(response: httpx.Response) -> str:
    request = response.request
    try:
        body = response.json()
        what = f"{body.get('code')}: {body.get('detail')}"
    except ValueError:
        what = response.text[:200]
    return f"{request.method} {request.url.path} answered {response.status_code} {what}"
