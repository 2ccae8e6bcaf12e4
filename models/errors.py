"""Errors that are part of segaudit's interface: each carries a stable code and names the case."""

from __future__ import annotations


class InputError(ValueError):
    """Bad input data, found before any training starts.

    ``code`` is stable and machine-readable (the service maps it to a 4xx response);
    ``case`` names the offending case (file stem) where there is one.
    """

    def __init__(self, code: str, message: str, *, case: str | None = None) -> None:
        self.code = code
        self.case = case
        prefix = f"case '{case}': " if case else ""
        super().__init__(f"{prefix}{message}")


# Stable codes, listed once so callers and tests refer to the same names.
EMPTY_FOLDER = "empty_folder"
NOT_A_FOLDER = "not_a_folder"
MISSING_MASK = "missing_mask"
MISSING_IMAGE = "missing_image"
DUPLICATE_CASE = "duplicate_case"
UNSUPPORTED_FORMAT = "unsupported_format"
UNREADABLE = "unreadable_file"
SHAPE_MISMATCH = "shape_mismatch"
GEOMETRY_MISMATCH = "geometry_mismatch"
CHANNEL_MISMATCH = "channel_mismatch"
MASK_NOT_INTEGER = "mask_not_integer"
MASK_OUT_OF_RANGE = "mask_out_of_range"
TOO_FEW_CASES = "too_few_cases"
OUTPUT_NOT_EMPTY = "output_not_empty"
CHECKPOINT_MISMATCH = "checkpoint_mismatch"
NO_FOREGROUND = "no_foreground"
IMAGE_NOT_FINITE = "image_not_finite"
# DICOM inputs (models/dicom/) and DICOMweb.
SERIES_INCONSISTENT = "series_inconsistent"
SEGMENTS_OVERLAP = "segments_overlap"
PACS_ERROR = "pacs_error"
