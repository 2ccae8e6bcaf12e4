"""``segaudit keys`` before ``segaudit db upgrade``: the embedded SQLite file is migrated on
first use; any other database gets a sentence saying what to run, never a traceback. And every
option of every command says what it is for.
"""

from __future__ import annotations

import argparse

from sqlalchemy import inspect

from app.db import migrate
from app.db.session import make_engine
from app.settings import get_settings
from cli import admin, bench, engine, pacs, serve, submit, worker
from cli.main import COMMANDS, main


def run(monkeypatch, capsys, url, *argv):
    monkeypatch.setenv("SEGAUDIT_DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        code = main(list(argv))
    finally:
        get_settings.cache_clear()
    out = capsys.readouterr()
    return code, out.out, out.err


CREATE = ("keys", "create", "--project", "lab", "--role", "admin")


def test_a_new_sqlite_database_is_migrated_on_first_use(monkeypatch, capsys, tmp_path):
    url = f"sqlite:///{tmp_path / 'var' / 'segaudit.db'}"
    code, out, err = run(monkeypatch, capsys, url, *CREATE)
    assert code == 0, err
    assert "first use, migrated to revision" in err and len(out.split()) == 1
    db = make_engine(url)
    try:
        assert migrate.current(db) == migrate.head()
    finally:
        db.dispose()
    code, out, err = run(monkeypatch, capsys, url, "keys", "list", "--project", "lab")
    assert code == 0 and "admin" in out and "migrated" not in err


def test_a_server_database_is_left_alone_with_what_to_run(monkeypatch, capsys, fresh_pg):
    code, out, err = run(monkeypatch, capsys, fresh_pg, *CREATE)
    assert code == 2 and out == ""
    assert "has no tables yet; run `segaudit db upgrade`" in err
    assert "Traceback" not in err
    db = make_engine(fresh_pg)
    try:
        assert inspect(db).get_table_names() == []  # nothing half-made
    finally:
        db.dispose()
    assert run(monkeypatch, capsys, fresh_pg, "db", "upgrade")[0] == 0
    assert run(monkeypatch, capsys, fresh_pg, *CREATE)[0] == 0


def test_an_unreachable_database_is_one_sentence(monkeypatch, capsys):
    url = "postgresql+psycopg://postgres@127.0.0.1:9/nothing?connect_timeout=2"
    code, _, err = run(monkeypatch, capsys, url, *CREATE)
    assert code == 2 and "OperationalError" in err and "Traceback" not in err


PARSERS = {
    "audit": engine.build_parser,
    "bench": bench.build_parser,
    "pacs": pacs.build_parser,
    "db": lambda: admin._parser("db"),
    "keys": lambda: admin._parser("keys"),
    "serve": serve._parser,
    "worker": worker._parser,
    "submit": submit._parser,
}


def _undocumented(parser: argparse.ArgumentParser, where: str) -> list[str]:
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                missing += _undocumented(sub, f"{where} {name}")
        elif not isinstance(action, argparse._HelpAction) and not action.help:
            missing.append(f"{where} {'/'.join(action.option_strings) or action.dest}")
    return missing


def test_every_option_has_help():
    assert {COMMANDS[c][0] for c in COMMANDS} <= {
        f"cli.{m}" for m in ("engine", "bench", "pacs", "admin", "serve", "worker", "submit")
    }
    missing = [m for name, build in PARSERS.items() for m in _undocumented(build(), name)]
    assert missing == []
