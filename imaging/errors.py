"""Every error code segaudit answers with, and the one exception shape that carries them.

The codes are part of the interface (the CLI prints them, the API returns them, an audit that
fails keeps one), so they are listed once, here, at the bottom of the import graph: ``imaging``
raises the input codes, ``models`` the engine's, ``app`` and ``worker`` the service's.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """A stable, machine-readable error code (the value is what clients see)."""

    # Input: folders, files and their pairing.
    NOT_A_FOLDER = "not_a_folder"
    EMPTY_FOLDER = "empty_folder"
    UNSUPPORTED_FORMAT = "unsupported_format"
    MISSING_MASK = "missing_mask"
    MISSING_IMAGE = "missing_image"
    DUPLICATE_CASE = "duplicate_case"
    UNREADABLE = "unreadable_file"
    # Input: what a case holds.
    SHAPE_MISMATCH = "shape_mismatch"
    GEOMETRY_MISMATCH = "geometry_mismatch"
    CHANNEL_MISMATCH = "channel_mismatch"
    MASK_NOT_INTEGER = "mask_not_integer"
    MASK_OUT_OF_RANGE = "mask_out_of_range"
    INVALID_CLASSES = "invalid_classes"  # a class declaration that names or numbers wrongly
    IMAGE_NOT_FINITE = "image_not_finite"
    NO_FOREGROUND = "no_foreground"
    TOO_FEW_CASES = "too_few_cases"
    # Input: DICOM and DICOMweb.
    SERIES_INCONSISTENT = "series_inconsistent"
    SEGMENTS_OVERLAP = "segments_overlap"
    PACS_ERROR = "pacs_error"
    # The engine's outputs.
    OUTPUT_NOT_EMPTY = "output_not_empty"
    CHECKPOINT_MISMATCH = "checkpoint_mismatch"
    # The service: requests and resources.
    BAD_REQUEST = "bad_request"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    HTTP_ERROR = "http_error"
    INVALID_REQUEST = "invalid_request"
    INVALID_PARAMETERS = "invalid_parameters"
    BAD_MULTIPART = "bad_multipart"
    NOT_FOUND = "not_found"
    DATASET_EXISTS = "dataset_exists"
    ANNOTATION_SET_EXISTS = "annotation_set_exists"
    CASE_EXISTS = "case_exists"
    MASK_EXISTS = "mask_exists"
    WRONG_DATASET = "wrong_dataset"
    AUDIT_FINISHED = "audit_finished"
    AUDIT_NOT_FINISHED = "audit_not_finished"
    STILL_REFERENCED = "still_referenced"  # a deletion another record blocks
    NOT_IN_REWORK = "not_in_rework"  # an annotator's correction of a case not sent back
    NOTHING_RESOLVED = "nothing_resolved"  # a resolve that would leave no mask
    SERVER_NOT_ALLOWED = "server_not_allowed"
    # The service: uploads.
    EMPTY_UPLOAD = "empty_upload"
    UNSAFE_PATH = "unsafe_path"
    BAD_ZIP = "bad_zip"
    TOO_MANY_FILES = "too_many_files"
    UPLOAD_TOO_LARGE = "upload_too_large"
    COMPRESSION_RATIO = "compression_ratio"  # a zip entry that expands too far: a bomb
    IMAGE_TOO_LARGE = "image_too_large"  # more pixels or voxels than the limit, by its header
    REQUEST_TOO_LARGE = "request_too_large"
    # The service: keys and roles.
    MISSING_KEY = "missing_key"
    INVALID_KEY = "invalid_key"
    FORBIDDEN = "forbidden"
    # The service: its own state.
    BROKER_UNAVAILABLE = "broker_unavailable"
    DATABASE_UNAVAILABLE = "database_unavailable"  # unreachable for now (a restart): retry
    STORAGE_FULL = "storage_full"  # no space left in the storage folder: nothing was kept
    NOT_READY = "not_ready"
    INTERNAL = "internal_error"
    # The workers.
    WORKER_LOST = "worker_lost"
    TIME_LIMIT = "time_limit"
    WORKER_ERROR = "worker_error"


class SegauditError(Exception):
    """An error that is part of the interface: a code, a sentence that says what to fix, and
    where it applies (``case``: a case name; ``file``: an uploaded file's name).
    """

    def __init__(
        self, code: ErrorCode, detail: str, *, case: str | None = None, file: str | None = None
    ) -> None:
        self.code = code
        self.case = case
        self.file = file
        self.detail = f"case '{case}': {detail}" if case else detail
        super().__init__(self.detail)


class InputError(SegauditError, ValueError):
    """Bad input data (a folder, a file, a case), found before any training starts."""
