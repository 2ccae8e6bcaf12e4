"""``segaudit db ...``, ``segaudit keys ...`` and ``segaudit storage gc``: administration.

They read the same settings as the service (``SEGAUDIT_DATABASE_URL`` ...) and call the same
data-layer functions.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sqlalchemy import Engine, select
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session

from app import logs
from app.db import migrate
from app.db.enums import Role
from app.db.session import make_engine, make_sessions
from app.db.tables import Project
from app.errors import ServiceError
from app.services import keys, sweep
from app.settings import Settings, get_settings
from app.storage import Store


def _parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"segaudit {command}")
    sub = parser.add_subparsers(dest="action", required=True)
    if command == "db":
        up = sub.add_parser("upgrade", help="apply the migrations (default: up to the newest)")
        up.add_argument(
            "revision", nargs="?", default="head", help="revision to reach (default: head)"
        )
        down = sub.add_parser("downgrade", help="undo migrations down to REVISION ('base': all)")
        down.add_argument("revision", help="revision to go back to ('base': before the first)")
        sub.add_parser("current", help="print the database's revision")
    elif command == "storage":
        gc = sub.add_parser(
            "gc",
            help="remove stale staging and the blobs that no files row names (crash leftovers); "
            "only those older than SEGAUDIT_STAGING_MAX_AGE_S / SEGAUDIT_ORPHAN_BLOB_MIN_AGE_S",
        )
        gc.add_argument("--dry-run", action="store_true", help="print what would go, remove none")
    else:
        create = sub.add_parser("create", help="create a key and print it (shown only this once)")
        create.add_argument("--project", required=True, help="created if it does not exist")
        create.add_argument(
            "--role",
            required=True,
            choices=[r.value for r in Role],
            help="what the key may do; each role includes the ones before it",
        )
        create.add_argument("--name", default="", help="who or what the key is for")
        listing = sub.add_parser("list", help="list a project's keys (not the keys themselves)")
        listing.add_argument("--project", required=True, help="the project's name")
        revoke = sub.add_parser("revoke", help="revoke a key by its id")
        revoke.add_argument("--project", required=True, help="the project's name")
        revoke.add_argument("--id", type=int, required=True, help="the key's id (see keys list)")
    return parser


def main(argv: Sequence[str]) -> int:
    """``argv[0]`` is the command (``db``, ``keys`` or ``storage``), the rest its options."""
    command, *rest = argv
    args = _parser(command).parse_args(rest)
    settings = get_settings()
    engine = make_engine(settings.database_url)
    try:
        if command == "db":
            logs.configure()  # the migrations log as the API and the workers do
            return _db(engine, args)
        problem = ensure_migrated(engine)
        if problem:
            print(f"segaudit {command}: {problem}", file=sys.stderr)
            return 2
        with make_sessions(engine)() as session:
            if command == "storage":
                return _storage_gc(session, Store(settings.storage), settings, args.dry_run)
            return _keys(session, args, settings)
    except SQLAlchemyError as exc:
        url = engine.url.render_as_string()
        print(f"segaudit {command}: database {url}: {type(exc).__name__}", file=sys.stderr)
        print(
            f"  {str(exc.orig if isinstance(exc, DBAPIError) else exc)}".rstrip(), file=sys.stderr
        )
        return 2
    finally:
        engine.dispose()


def ensure_migrated(engine: Engine) -> str:
    """Bring the database to the newest revision when it is a SQLite file used for the first
    time (the embedded default); otherwise say what to run when it is not at the newest. "" when
    the database is ready.
    """
    at, head = migrate.current(engine), migrate.head()
    if at == head:
        return ""
    url = engine.url.render_as_string()
    if at is None and engine.dialect.name == "sqlite":
        migrate.upgrade(engine)
        print(f"database {url}: first use, migrated to revision {head}", file=sys.stderr)
        return ""
    where = "has no tables yet" if at is None else f"is at revision {at}, not {head}"
    env = "" if engine.dialect.name == "sqlite" else " (with the same SEGAUDIT_DATABASE_URL)"
    return f"the database {url} {where}; run `segaudit db upgrade`{env} first"


def _db(engine: Engine, args: argparse.Namespace) -> int:
    if args.action == "upgrade":
        migrate.upgrade(engine, args.revision)
    elif args.action == "downgrade":
        migrate.downgrade(engine, args.revision)
    print(f"database {engine.url.render_as_string()} at revision {migrate.current(engine)}")
    return 0


def _keys(session: Session, args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "create":
        project = keys.get_or_create_project(session, args.project)
        key, secret = keys.create_key(session, project, Role(args.role), args.name)
        print(secret)
        print(
            f"key {key.id} ({key.role}, '{key.name}') for project '{project.name}': "
            "store it now, it is not shown again",
            file=sys.stderr,
        )
        return 0
    project = session.scalar(select(Project).where(Project.name == args.project))
    if project is None:
        print(f"segaudit keys: no project named '{args.project}'", file=sys.stderr)
        return 2
    if args.action == "revoke":
        try:
            key = keys.revoke_key(session, project.id, args.id)
        except ServiceError as exc:
            print(f"segaudit keys: {exc.detail}", file=sys.stderr)
            return 2
        print(
            f"key {key.id} revoked; running API processes stop honouring it within "
            f"{settings.access_cache_s:g} s (SEGAUDIT_ACCESS_CACHE_S)"
        )
        return 0
    for key in keys.list_keys(session, project.id):
        state = "revoked" if key.revoked_at else "active"
        print(f"{key.id}\t{key.prefix}...\t{key.role}\t{state}\t{key.name}")
    return 0


def _storage_gc(session: Session, store: Store, settings: Settings, dry_run: bool) -> int:
    """Stale staging, then orphan blobs: each printed (``would remove`` with ``--dry-run``)."""
    verb = "would remove" if dry_run else "removed"
    staging = store.sweep_staging(settings.staging_max_age_s, dry_run=dry_run)
    for path in staging:
        print(f"{verb} staging {path}")
    orphans = sweep.collect_orphans(session, store, settings.orphan_blob_min_age_s, dry_run=dry_run)
    for orphan in orphans:
        print(f"{verb} blob {orphan.path} ({orphan.size} bytes)")
    total = sum(o.size for o in orphans)
    print(
        f"storage {store.root}: {verb} {len(staging)} staging entries and "
        f"{len(orphans)} orphan blobs ({total} bytes)",
        file=sys.stderr,
    )
    return 0
