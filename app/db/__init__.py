"""The database: typed SQLAlchemy tables, engines and sessions, and the Alembic migrations."""
