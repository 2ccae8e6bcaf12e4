"""The migration matches the tables, downgrades cleanly, and `segaudit db upgrade` applies it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from app.db import migrate
from app.db.base import Base
from app.db.session import make_engine

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_engine(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'fresh.db'}"
    else:
        url = request.getfixturevalue("fresh_pg")
    engine = make_engine(url)
    yield engine
    engine.dispose()


def drift(engine: Engine) -> list:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)


def test_upgrade_downgrade_upgrade(empty_engine):
    tables = {t.name for t in Base.metadata.sorted_tables}
    migrate.upgrade(empty_engine)
    assert set(inspect(empty_engine).get_table_names()) == tables | {"alembic_version"}
    assert drift(empty_engine) == []
    assert migrate.current(empty_engine) == migrate.head()

    migrate.downgrade(empty_engine, "base")
    assert set(inspect(empty_engine).get_table_names()) == {"alembic_version"}
    assert migrate.current(empty_engine) is None

    migrate.upgrade(empty_engine)
    assert drift(empty_engine) == []


def test_the_comparison_notices_drift(empty_engine):
    migrate.upgrade(empty_engine)
    with empty_engine.begin() as connection:
        connection.execute(text("DROP INDEX ix_audits_status"))
        connection.execute(text("ALTER TABLE reviews ADD COLUMN mood VARCHAR(10)"))
    found = {entry[0] for entry in drift(empty_engine)}
    assert found == {"add_index", "remove_column"}


def test_segaudit_db_upgrade_works_from_any_folder(tmp_path):
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SEGAUDIT_DATA_DIR": str(tmp_path / "var"),
    }
    env.pop("SEGAUDIT_DATABASE_URL", None)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "cli", "db", "upgrade"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert f"at revision {migrate.head()}" in done.stdout
    engine = make_engine(f"sqlite:///{tmp_path / 'var' / 'segaudit.db'}")
    assert migrate.current(engine) == migrate.head()
    engine.dispose()
