"""Errors that say the database or the broker is unreachable for now: the task is retried."""

from __future__ import annotations

import kombu.exceptions
import redis.exceptions
import sqlalchemy.exc

TRANSIENT: tuple[type[BaseException], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    kombu.exceptions.OperationalError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)


class Transient(Exception):
    """The database or the broker failed for now; the audit was put back in the queue where
    the database allowed it. The task should be retried later.
    """


def unreachable(exc: BaseException) -> Transient:
    """``Transient`` for ``exc`` (one of ``TRANSIENT``), in the driver's words: no SQL, no
    links, the first line only.
    """
    reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
    return Transient(f"the database or the broker was unreachable ({reason})")
