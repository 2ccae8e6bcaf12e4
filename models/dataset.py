"""The audit's cases at working size, ready to train on.

``imaging.cases`` finds, reads and checks each case; here its slices are brought to the working
size. A loaded case keeps only its working-size slices and the mask's geometry; outputs are
written later by re-reading each mask, so no full-resolution volume is held for long.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from imaging import checks
from imaging.cases import CaseFiles, find_cases, read_case
from imaging.classes import infer_classes, names_by_value
from imaging.errors import ErrorCode, InputError
from imaging.geometry import Geometry
from models.preprocess import (
    SliceGrid,
    as_slices,
    image_to_working,
    mask_to_working,
    normalise_intensity,
)


@dataclass
class WorkingCase:
    """One case at working size: ``image`` ``(D, C, S, S)`` float, ``mask`` ``(D, S, S)`` uint8."""

    files: CaseFiles
    geometry: Geometry
    grid: SliceGrid
    image: torch.Tensor
    mask: torch.Tensor

    @property
    def case_id(self) -> str:
        return self.files.case_id

    @property
    def num_slices(self) -> int:
        return int(self.image.shape[0])


@dataclass
class WorkingSet:
    """Every case of an audit at working size, with what the dataset as a whole is."""

    cases: list[WorkingCase]
    num_classes: int
    in_channels: int
    is_3d: bool
    classes: dict[str, int]  # {name: value}: declared, DICOM labels, or class_<v> of the values

    @property
    def class_names(self) -> dict[int, str]:
        return names_by_value(self.classes)

    @property
    def case_ids(self) -> list[str]:
        return [c.case_id for c in self.cases]


def load_case(
    files: CaseFiles,
    *,
    size: int,
    limit: int,
    explicit: bool,
    classes: Mapping[str, int] | None = None,
) -> tuple[WorkingCase, int]:
    """Read, check and preprocess one case; return it with its largest mask value."""
    checked = read_case(files, limit=limit, explicit=explicit, classes=classes)
    slices = as_slices(normalise_intensity(checked.image.array), channels=True)
    labels = as_slices(checked.mask.array.astype(np.int64), channels=False)
    grid = SliceGrid(int(labels.shape[1]), int(labels.shape[2]), size)
    case = WorkingCase(
        files=files,
        geometry=checked.mask.geometry,
        grid=grid,
        image=image_to_working(slices, grid),
        mask=mask_to_working(labels, grid, max(2, checked.max_label + 1)).to(torch.uint8),
    )
    return case, checked.max_label


def load_dataset(
    images_dir: Path,
    masks_dir: Path,
    *,
    size: int,
    min_cases: int,
    num_classes: int | None = None,
    max_classes: int = 32,
    classes: Mapping[str, int] | None = None,
    on_case: Callable[[int, int, str], None] | None = None,
) -> WorkingSet:
    """Find, check and load all cases. Raises ``InputError`` on the first problem found.

    ``classes`` (declared ``{name: value}``) refuses masks with other values; ``num_classes``
    None is the largest mask value + 1 (``AuditConfig.class_limit`` gives it).
    """
    files = find_cases(images_dir, masks_dir)
    checks.check_case_count(len(files), min_cases=min_cases)
    limit = num_classes if num_classes is not None else max_classes
    cases: list[WorkingCase] = []
    largest = 0
    for index, case_files in enumerate(files):
        case, top = load_case(
            case_files,
            size=size,
            limit=limit,
            explicit=num_classes is not None,
            classes=classes,
        )
        if cases and case.geometry.is_3d != cases[0].geometry.is_3d:
            raise InputError(
                ErrorCode.SHAPE_MISMATCH,
                f"mixes 2D and 3D cases ({case_files.mask.name} vs {cases[0].files.mask.name}); "
                "audit them separately",
                case=case.case_id,
            )
        cases.append(case)
        largest = max(largest, top)
        if on_case is not None:
            on_case(index + 1, len(files), case.case_id)
    checks.check_foreground(largest)
    channels = {int(c.image.shape[1]) for c in cases}
    in_channels = max(channels)
    if len(channels) > 1:  # grayscale beside RGB: repeat the gray channel
        for c in cases:
            if c.image.shape[1] != in_channels:
                c.image = c.image.expand(-1, in_channels, -1, -1).contiguous()
    count = num_classes if num_classes is not None else max(2, largest + 1)
    return WorkingSet(
        cases=cases,
        num_classes=count,
        in_channels=in_channels,
        is_3d=cases[0].geometry.is_3d,
        classes=dict(classes) if classes else _found_classes(files, count),
    )


def _found_classes(files: list[CaseFiles], num_classes: int) -> dict[str, int]:
    """Undeclared classes: a DICOM dataset's segment labels or ROI names, else ``class_<v>``."""
    dicom = files[0].dicom
    named = dicom.mask.class_names() if dicom is not None else {}
    return infer_classes(range(1, num_classes), named)
