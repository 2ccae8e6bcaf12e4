"""Writing a label map or an issue map back in the input's own form: its file format, or a
DICOM SEG or RTSTRUCT for masks that were read from DICOM.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from imaging.dicom.export import write_mask
from imaging.formats import write_file
from imaging.geometry import Geometry


def write_array(
    path: Path,
    array: np.ndarray,
    geometry: Geometry,
    *,
    kind: str = "",
    audit_id: int | None = None,
    class_names: Mapping[int, str] | None = None,
) -> None:
    """Write ``array`` (same spatial shape as ``geometry``) at ``path``.

    A ``.dcm`` path on a DICOM geometry becomes a SEG or RTSTRUCT of the source series; ``kind``
    (``imaging.layout.CLEANSED``, ``PSEUDO`` or ``ISSUE_MAPS``) says what it is in its
    description (NIfTI and NRRD: ``imaging.formats.write_file``); a DICOM output's description
    names ``audit_id`` too, the service's audit that made it; ``class_names`` (``{class:
    name}``) name a SEG's segments or an RTSTRUCT's ROIs.
    """
    if geometry.is_dicom and path.suffix.lower() == ".dcm":
        path.parent.mkdir(parents=True, exist_ok=True)
        write_mask(path, array, geometry, kind=kind, audit_id=audit_id, class_names=class_names)
    else:
        write_file(path, array, geometry, kind=kind)
