"""Alembic, located from the installed packages rather than the working directory.

``migrations/`` ships beside ``app/`` (pyproject.toml's package list): in a source tree, an
editable install and a wheel installed into site-packages alike, it is ``app``'s sibling.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

log = logging.getLogger("segaudit.migrate")  # alembic's own lines: "alembic.runtime.migration"
MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


@cache
def migrations_folder() -> Path:
    """The folder of ``env.py`` and ``versions/``: ``app``'s sibling, else wherever Python
    finds the ``migrations`` package (an unusual install layout).
    """
    if (MIGRATIONS / "env.py").is_file():
        return MIGRATIONS
    spec = importlib.util.find_spec("migrations")
    for location in (spec.submodule_search_locations or []) if spec else []:
        if (Path(location) / "env.py").is_file():
            return Path(location)
    raise RuntimeError(
        f"segaudit's migrations are not installed (no {MIGRATIONS / 'env.py'}); reinstall "
        "segaudit from a wheel or source tree that includes migrations/"
    )


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_folder()))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply the migrations up to ``revision`` on ``engine``'s database."""
    log.info("database %s: upgrading from %s to %s", _shown(engine), current(engine), revision)
    _run(engine, lambda config: command.upgrade(config, revision))
    log.info("database %s: at %s", _shown(engine), current(engine))


def downgrade(engine: Engine, revision: str) -> None:
    """Undo the migrations down to ``revision`` (``base``: no tables left)."""
    log.info("database %s: downgrading from %s to %s", _shown(engine), current(engine), revision)
    _run(engine, lambda config: command.downgrade(config, revision))


def _shown(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def current(engine: Engine) -> str | None:
    """The revision the database is at, None before the first upgrade."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _run(engine: Engine, step: Callable[[Config], None]) -> None:
    """Run ``step`` in one transaction. On SQLite, foreign keys are off while it runs: a batch
    alteration copies a table and drops the old one, which the rows of other tables still name
    (an upgrade of a database holding masks failed on it); the keys are checked at the end.
    """
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as connection:
        if sqlite:  # outside a transaction, where SQLite honours it
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        try:
            with connection.begin():
                config.attributes["connection"] = connection
                step(config)
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                    if broken:
                        raise RuntimeError(
                            f"the migration left {len(broken)} rows naming missing rows "
                            f"(first: table {broken[0][0]}, row {broken[0][1]})"
                        )
        finally:
            if sqlite:
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()


def head() -> str | None:
    """The newest revision in migrations/."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
