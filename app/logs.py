"""One log format for the API, the workers and the migrations, with the id of the request (or
the task) that a line belongs to, and library notes said once rather than once per case.

``configure()`` is called by each entry point (``segaudit serve``, the Celery worker, ``segaudit
db upgrade``); ``RequestId`` is the API's middleware: it takes a client's ``X-Request-ID`` (or
makes one), answers with it, and puts it into every log record of the request.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:  # the module itself needs only the standard library
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
HEADER = "X-Request-ID"
NO_REQUEST = "-"
# A client's id is kept when it is short and plain (it is echoed into logs and a header).
_ACCEPTED = re.compile(r"[A-Za-z0-9._:-]{1,64}")
# Libraries that say the same thing for every case (highdicom: "Encoding an empty image with
# omit_empty_frames ..." for each all-background SEG).
CHATTY = ("highdicom", "pydicom")

request_id: ContextVar[str] = ContextVar("request_id", default=NO_REQUEST)
access = logging.getLogger("segaudit.api")


class RequestIdFilter(logging.Filter):
    """Puts the current request's (or task's) id into every record as ``request_id``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id.get()
        return True


class Once(logging.Filter):
    """Lets each distinct note of ``CHATTY``'s libraries (and each captured warning) through
    once per process, by logger, level and template; every other record passes.
    """

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[str, int, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.split(".", 1)[0] not in (*CHATTY, "py"):
            return True
        key = (record.name, record.levelno, str(record.msg))
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


_handler: logging.Handler | None = None


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler on whatever ``sys.stderr`` is when a record is written, not the one of
    the moment it was made (a stream replaced or closed since, as by pytest's capture, would
    otherwise turn every later record into a "Logging error"). ``setStream`` to another stream
    fixes it there; back to ``sys.stderr``, it follows ``sys.stderr`` again."""

    def __init__(self) -> None:
        self._fixed: TextIO | None = None
        super().__init__()

    @property
    def stream(self) -> TextIO:
        return self._fixed if self._fixed is not None else sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        self._fixed = None if value is sys.stderr else value


def configure(level: str | int = "INFO") -> logging.Handler:
    """Log to stderr in ``FORMAT`` at ``level``, library notes once; idempotent (one handler
    of ours however often it is called). uvicorn (``log_config=None``) and Celery (its
    ``setup_logging`` signal) leave logging to this.
    """
    global _handler
    root = logging.getLogger()
    if _handler is None or _handler not in root.handlers:
        _handler = _Stderr()
        _handler.setFormatter(logging.Formatter(FORMAT))
        _handler.addFilter(RequestIdFilter())
        _handler.addFilter(Once())  # its own: what another handler saw is no matter here
        root.addHandler(_handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    logging.captureWarnings(True)  # warnings.warn goes through the handler, said once
    return _handler


def new_id(offered: str | None) -> str:
    """The client's id where it is acceptable, else a new one."""
    if offered and _ACCEPTED.fullmatch(offered):
        return offered
    return uuid.uuid4().hex


class RequestId:
    """ASGI middleware: an id for each request, in the ``X-Request-ID`` response header and in
    the log records made while it is handled; one access line per request.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v for k, v in scope.get("headers", [])}
        offered = headers.get(HEADER.lower())
        rid = new_id(offered.decode("latin-1") if offered is not None else None)
        token = request_id.set(rid)
        started = time.perf_counter()
        status: dict[str, Any] = {"code": 500}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (HEADER.lower().encode(), rid.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            access.info(
                "%s %s %s %.1f ms",
                scope.get("method", "?"),
                scope.get("path", "?"),
                status["code"],
                (time.perf_counter() - started) * 1000,
            )
            request_id.reset(token)
