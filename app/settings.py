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

MIB = 1024**2
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
    # bytes an upload expands to once unpacked (twice the body: zipped NIfTI/PNG barely shrink).
    max_request_bytes: PositiveInt = 2 * GIB
    max_files: PositiveInt = 10_000
    max_uncompressed_bytes: PositiveInt = 4 * GIB
    # Zip bombs: a zip entry, or a whole zip, that declares more than
    # compression_ratio_floor_bytes unpacked may expand at most max_compression_ratio times its
    # compressed size. Checked on the central directory before anything is written, and again
    # on the bytes while they are unpacked (declared sizes can lie). DEFLATE tops out near
    # 1030:1 (all zeros); a sparse raw label volume reaches ~650:1, hence the floor: raw masks
    # up to 64 MiB pass whatever their ratio; bigger ones should be sent gzipped (.nii.gz).
    max_compression_ratio: PositiveFloat = 200.0
    compression_ratio_floor_bytes: NonNegativeInt = 64 * MIB
    # Decompression bombs: an image is refused by its header's size before it is decoded.
    # Checking an upload holds one decoded image at a time, about 5 bytes per pixel or voxel
    # and channel (its stored values and a float32 copy; docs/benchmarks.md): 2^26 pixels
    # (8192 x 8192, 2D) and 2^28 voxels (512 x 512 x 1024, 3D) bound that at about 0.3 GiB
    # (1 GiB in RGB) and 1.3 GiB.
    max_image_pixels: PositiveInt = 2**26
    max_image_voxels: PositiveInt = 2**28
    # Crash leftovers (app/storage.py, app/services/sweep.py): staging under <storage>/tmp in
    # which nothing changed for staging_max_age_s is swept at the API's start-up and then at
    # most every 10 minutes (when a request stages files); blobs older than
    # orphan_blob_min_age_s that no files row names are collected at start-up and by
    # `segaudit storage gc`. Each must outlast what a live request or job does (an upload's
    # unpacking, a job's staging; an upload's publish-to-commit); 0 is for tests only.
    staging_max_age_s: NonNegativeFloat = 6 * 3600
    orphan_blob_min_age_s: NonNegativeFloat = 3600
    # DICOMweb servers the API may pull from and push to (POST .../dicomweb/pull|push): root
    # URLs, comma-separated; a request's URL must be one of them or lie under one. The default,
    # none, turns DICOMweb through the API off: the service would otherwise send requests to any
    # address a caller names. "*" allows every server.
    dicomweb_servers: Annotated[list[str], NoDecode] = []
    # How long a server process trusts what it looked up about an API key (its project and
    # role) or a succeeded audit (for the case listing) before it looks again. A key revoked
    # or an audit deleted through one process is forgotten by that process at once; the other
    # processes (`serve --workers`, other hosts) honour it for at most this long. 0: look up
    # on every request.
    access_cache_s: NonNegativeFloat = 5.0

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
