"""The service's one configuration object, read once from ``SEGAUDIT_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

GIB = 1024**3


class Settings(BaseSettings):
    """Every setting has a default that runs on one machine with no database server or Redis."""

    model_config = SettingsConfigDict(env_prefix="SEGAUDIT_", extra="ignore")

    # Where the embedded defaults live; resolved against the working directory at start-up.
    data_dir: Path = Path("var")
    # Empty means the embedded default derived from data_dir (see fill_defaults).
    database_url: str = ""
    storage_dir: Path | None = None
    # The embedded default is kombu's SQLAlchemy transport on a SQLite file, so the service and
    # a worker can run with no Redis (make demo); production sets redis://.
    broker_url: str = ""
    audit_queue: str = "gpu"
    # The workers' (worker/) second queue, for CPU-bound jobs; audits go to audit_queue.
    cpu_queue: str = "cpu"
    # The device audits train on: auto (CUDA when the worker sees a GPU), cpu or cuda.
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Time limits of one audit attempt (seconds): past the soft limit the audit stops at its
    # next step and fails with code time_limit; past the hard limit the worker process exits.
    audit_soft_time_limit_s: PositiveFloat = 12 * 3600
    audit_time_limit_s: PositiveFloat = 12 * 3600 + 600
    # Redis redelivers a message that is not acknowledged within this time (after a worker died
    # with it); it must outlast the longest audit, or a running audit would be delivered twice.
    visibility_timeout_s: PositiveFloat = 13 * 3600
    # A running audit's worker refreshes its heartbeat every heartbeat_timeout_s / 4; one whose
    # heartbeat is older is taken for dead, and the reconciler (every reconcile_interval_s, in
    # every worker) puts it back in the queue, at most max_attempts times in all.
    heartbeat_timeout_s: PositiveFloat = 120.0
    reconcile_interval_s: PositiveFloat = 30.0
    max_attempts: PositiveInt = 3
    # Progress is written to the audit row at most this often (0: at every step).
    progress_interval_s: NonNegativeFloat = 2.0
    # Retries of a task that met a database or broker error: how many, and the first delay.
    transient_retries: NonNegativeInt = 5
    transient_retry_delay_s: PositiveFloat = 10.0
    # Origins allowed to call the API from a browser: comma-separated, or "*".
    cors_origins: Annotated[list[str], NoDecode] = []
    # Upload limits: the whole request body, files per upload (zip entries included), and the
    # bytes an upload expands to once unpacked.
    max_request_bytes: int = 2 * GIB
    max_files: int = 10_000
    max_uncompressed_bytes: int = 8 * GIB
    # DICOMweb servers the API may pull from and push to (POST .../dicomweb/pull|push): root
    # URLs, comma-separated; a request's URL must be one of them or lie under one. The default,
    # none, turns DICOMweb through the API off: the service would otherwise send requests to any
    # address a caller names. "*" allows every server.
    dicomweb_servers: Annotated[list[str], NoDecode] = []

    @field_validator("cors_origins", "dicomweb_servers", mode="before")
    @classmethod
    def split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def fill_defaults(self) -> Settings:
        self.data_dir = self.data_dir.expanduser().resolve()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'segaudit.db'}"
        if self.storage_dir is None:
            self.storage_dir = self.data_dir / "storage"
        self.storage_dir = self.storage_dir.expanduser().resolve()
        if not self.broker_url:
            self.broker_url = f"sqla+sqlite:///{self.data_dir / 'broker.db'}"
        if not self.audit_soft_time_limit_s <= self.audit_time_limit_s < self.visibility_timeout_s:
            raise ValueError(
                "the time limits must satisfy audit_soft_time_limit_s <= audit_time_limit_s < "
                f"visibility_timeout_s, got {self.audit_soft_time_limit_s}, "
                f"{self.audit_time_limit_s} and {self.visibility_timeout_s}"
            )
        return self

    @property
    def storage(self) -> Path:
        assert self.storage_dir is not None  # filled in by fill_defaults
        return self.storage_dir


@lru_cache
def get_settings() -> Settings:
    """The settings of this process, read from the environment on first use."""
    return Settings()


def sqlite_path(url: str) -> Path | None:
    """The file behind a ``sqlite:///`` or ``sqla+sqlite:///`` URL, else None."""
    for prefix in ("sqlite:///", "sqla+sqlite:///"):
        if url.startswith(prefix):
            rest = url[len(prefix) :].split("?", 1)[0]
            return Path(rest) if rest and rest != ":memory:" else None
    return None


def ensure_sqlite_folder(url: str) -> None:
    """Create the folder of a SQLite file so that the first connection can make the file."""
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
