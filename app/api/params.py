"""The bounds of every integer a request may carry: ids in paths, queries and bodies, and
pagination. Defined once here and used by every route and request schema, so that a number the
database cannot hold (PostgreSQL's ``integer`` is 32-bit) is a 422 that says so, never a 500.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query
from pydantic import Field

# Row ids are PostgreSQL ``integer`` (SERIAL) columns: 1 .. 2^31 - 1.
MAX_ID = 2**31 - 1
# OFFSET is a bigint in PostgreSQL and SQLite alike, but no page lies past 2^31 - 1 rows.
MAX_OFFSET = 2**31 - 1
MAX_LIMIT = 500

_ID = "a row id, 1..2147483647"

# A row id in a path (``/v1/audits/{audit_id}``), a query (``?dataset_id=``) or a body.
DbId = Annotated[int, Path(ge=1, le=MAX_ID, description=_ID)]
DbIdQuery = Annotated[int, Query(ge=1, le=MAX_ID, description=_ID)]
DbIdField = Annotated[int, Field(ge=1, le=MAX_ID, description=_ID)]

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="items per page")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="items to skip")]
