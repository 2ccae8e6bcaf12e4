"""``segaudit db ...`` and ``segaudit keys ...``: the service's administration commands.

They read the same settings as the service (``SEGAUDIT_DATABASE_URL`` ...) and call the same
data-layer functions.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.db import migrate
from app.db.enums import Role
from app.db.session import make_engine, make_sessions
from app.db.tables import Project
from app.errors import ServiceError
from app.services import keys
from app.settings import get_settings


def _parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"segaudit {command}")
    sub = parser.add_subparsers(dest="action", required=True)
    if command == "db":
        up = sub.add_parser("upgrade", help="apply the migrations (default: up to the newest)")
        up.add_argument("revision", nargs="?", default="head")
        down = sub.add_parser("downgrade", help="undo migrations down to REVISION ('base': all)")
        down.add_argument("revision")
        sub.add_parser("current", help="print the database's revision")
    else:
        create = sub.add_parser("create", help="create a key and print it (shown only this once)")
        create.add_argument("--project", required=True, help="created if it does not exist")
        create.add_argument("--role", required=True, choices=[r.value for r in Role])
        create.add_argument("--name", default="", help="who or what the key is for")
        listing = sub.add_parser("list", help="list a project's keys (not the keys themselves)")
        listing.add_argument("--project", required=True)
        revoke = sub.add_parser("revoke", help="revoke a key by its id")
        revoke.add_argument("--project", required=True)
        revoke.add_argument("--id", type=int, required=True)
    return parser


def main(argv: Sequence[str]) -> int:
    """``argv[0]`` is the command (``db`` or ``keys``), the rest its options."""
    command, *rest = argv
    args = _parser(command).parse_args(rest)
    settings = get_settings()
    engine = make_engine(settings.database_url)
    try:
        if command == "db":
            return _db(engine, args)
        with make_sessions(engine)() as session:
            return _keys(session, args)
    finally:
        engine.dispose()


def _db(engine: Engine, args: argparse.Namespace) -> int:
    if args.action == "upgrade":
        migrate.upgrade(engine, args.revision)
    elif args.action == "downgrade":
        migrate.downgrade(engine, args.revision)
    print(f"database {engine.url.render_as_string()} at revision {migrate.current(engine)}")
    return 0


def _keys(session: Session, args: argparse.Namespace) -> int:
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
        print(f"key {key.id} revoked")
        return 0
    for key in keys.list_keys(session, project.id):
        state = "revoked" if key.revoked_at else "active"
        print(f"{key.id}\t{key.prefix}...\t{key.role}\t{state}\t{key.name}")
    return 0
