"""The service commands (``segaudit db|keys|serve``) run against the same databases as the
service's tests: PostgreSQL and SQLite, each migrated once per session.
"""

from tests.app.conftest import db_url, fresh_pg, hc18, migrated, pg_server  # noqa: F401  fixtures
