"""Finding, validating and loading the cases of an audit.

A case is an image and a mask with the same file name stem in two folders, or, for DICOM input
(a folder or zip of series with SEG or RTSTRUCT masks), a series and the mask that references it
(``models.dicom.cases``). Everything is checked before any training starts, and the first
problem found is raised as an ``InputError`` that names the case. Loaded cases keep only their
working-size slices and the mask's geometry; outputs are written later by re-reading each mask,
so no full-resolution volume is held for long.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models import errors
from models.dicom.cases import DicomPair, find_pairs
from models.dicom.source import is_dicom_input
from models.errors import InputError
from models.io import FORMATS, Geometry, Loaded, format_of, read_image, read_mask, split_name
from models.preprocess import (
    SliceGrid,
    as_slices,
    image_to_working,
    mask_to_working,
    normalise_intensity,
)


@dataclass(frozen=True)
class CaseFiles:
    case_id: str
    image: Path
    mask: Path
    dicom: DicomPair | None = None  # for DICOM input: the series and its SEG or RTSTRUCT


@dataclass
class Case:
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
class Dataset:
    cases: list[Case]
    num_classes: int
    in_channels: int
    is_3d: bool

    @property
    def case_ids(self) -> list[str]:
        return [c.case_id for c in self.cases]


def index_folder(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise InputError(
            errors.NOT_A_FOLDER, f"the {what} folder {folder} does not exist or is not a folder"
        )
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.is_dir():
            continue
        stem, ext = split_name(path)
        if format_of(path) is None:
            supported = ", ".join(sorted(set(FORMATS)))
            raise InputError(
                errors.UNSUPPORTED_FORMAT,
                f"{what} file {path.name} has an unsupported extension '{ext}' "
                f"(supported: {supported})",
                case=stem,
            )
        if stem in found:
            raise InputError(
                errors.DUPLICATE_CASE,
                f"two {what} files share the name {stem}: {found[stem].name} and {path.name}",
                case=stem,
            )
        found[stem] = path
    if not found:
        raise InputError(errors.EMPTY_FOLDER, f"the {what} folder {folder} holds no {what} files")
    return found


def find_cases(images_dir: Path, masks_dir: Path) -> list[CaseFiles]:
    """Pair images with masks by file stem; every image needs a mask and every mask an image.

    DICOM input is paired by the UIDs that each mask references instead.
    """
    if is_dicom_input(Path(images_dir)) or is_dicom_input(Path(masks_dir)):
        pairs, _ = find_pairs(Path(images_dir), Path(masks_dir))
        return [CaseFiles(p.case_id, p.image_path, p.mask_path, p) for p in pairs]
    images = index_folder(Path(images_dir), "image")
    masks = index_folder(Path(masks_dir), "mask")
    for stems, have, lack, code in (
        (sorted(set(images) - set(masks)), "image", "mask", errors.MISSING_MASK),
        (sorted(set(masks) - set(images)), "mask", "image", errors.MISSING_IMAGE),
    ):
        if stems:
            others = len(stems) - 1
            more = {0: "", 1: " (1 more case has the same problem)"}.get(
                others, f" ({others} more cases have the same problem)"
            )
            source = images if have == "image" else masks
            raise InputError(
                code,
                f"{have} {source[stems[0]].name} has no {lack} with the same name{more}",
                case=stems[0],
            )
    return [CaseFiles(stem, images[stem], masks[stem]) for stem in sorted(images)]


def _check_mask_values(mask: np.ndarray, case: str, name: str, limit: int, explicit: bool) -> int:
    """Check a mask holds class indices below ``limit``; return its largest value."""
    if mask.dtype == bool:
        return int(mask.any())
    if not np.issubdtype(mask.dtype, np.integer) and (
        not np.all(np.isfinite(mask)) or not np.array_equal(mask, np.round(mask))
    ):
        raise InputError(
            errors.MASK_NOT_INTEGER,
            f"mask {name} holds non-integer values; a mask must hold class indices 0..K-1",
            case=case,
        )
    if mask.size == 0:
        raise InputError(errors.UNREADABLE, f"mask {name} is empty (no pixels)", case=case)
    low, high = mask.min(), mask.max()
    if low < 0 or high >= limit:
        bad = low if low < 0 else high
        hint = (
            f"num_classes is {limit}"
            if explicit
            else f"more than {limit} classes is taken as a mis-encoded mask "
            "(a 0/255 mask must be saved as 0/1)"
        )
        raise InputError(
            errors.MASK_OUT_OF_RANGE,
            f"mask {name} holds the value {bad:g}; masks must hold class indices 0..K-1 ({hint})",
            case=case,
        )
    return int(high)


def _check_pair(
    files: CaseFiles, image_shape: tuple[int, ...], image_geo: Geometry, mask_geo: Geometry
) -> None:
    case = files.case_id
    if image_shape != mask_geo.shape:
        raise InputError(
            errors.SHAPE_MISMATCH,
            f"image {files.image.name} is {image_shape} but mask {files.mask.name} is "
            f"{mask_geo.shape}",
            case=case,
        )
    if mask_geo.is_3d and not np.allclose(image_geo.affine, mask_geo.affine, atol=1e-3):
        corners = np.array([[0, 0, 0, 1], [*(np.asarray(mask_geo.shape) - 1), 1]]).T
        apart = np.linalg.norm((image_geo.affine - mask_geo.affine) @ corners, axis=0).max()
        raise InputError(
            errors.GEOMETRY_MISMATCH,
            f"image {files.image.name} and mask {files.mask.name} have the same shape but "
            f"different positions or spacing (affines differ; corner voxels {apart:.2f} mm "
            "apart): they do not lie on the same grid",
            case=case,
        )


def read_case_image(files: CaseFiles) -> Loaded:
    if files.dicom is not None:
        return files.dicom.read_image()
    return read_image(files.image, case=files.case_id)


def read_case_mask(files: CaseFiles) -> Loaded:
    if files.dicom is not None:
        return files.dicom.read_mask()
    return read_mask(files.mask, case=files.case_id)


def load_case(files: CaseFiles, *, size: int, limit: int, explicit: bool) -> tuple[Case, int]:
    """Read, check and preprocess one case; return it with its largest mask value."""
    image = read_case_image(files)
    mask = read_case_mask(files)
    _check_pair(files, tuple(image.array.shape[1:]), image.geometry, mask.geometry)
    if not np.all(np.isfinite(image.array)):
        raise InputError(
            errors.IMAGE_NOT_FINITE,
            f"image {files.image.name} holds NaN or infinite values",
            case=files.case_id,
        )
    top = _check_mask_values(mask.array, files.case_id, files.mask.name, limit, explicit)
    slices = as_slices(normalise_intensity(image.array), channels=True)
    labels = as_slices(mask.array.astype(np.int64), channels=False)
    grid = SliceGrid(int(labels.shape[1]), int(labels.shape[2]), size)
    case = Case(
        files=files,
        geometry=mask.geometry,
        grid=grid,
        image=image_to_working(slices, grid),
        mask=mask_to_working(labels, grid, max(2, top + 1)).to(torch.uint8),
    )
    return case, top


def load_dataset(
    images_dir: Path,
    masks_dir: Path,
    *,
    size: int,
    min_cases: int,
    num_classes: int | None = None,
    max_classes: int = 32,
    on_case: Callable[[int, int, str], None] | None = None,
) -> Dataset:
    """Find, check and load all cases. Raises ``InputError`` on the first problem found."""
    files = find_cases(images_dir, masks_dir)
    if len(files) < min_cases:
        raise InputError(
            errors.TOO_FEW_CASES,
            f"found {len(files)} cases; the label filter needs at least {min_cases} to tell clean "
            "labels from noisy ones",
        )
    limit = num_classes if num_classes is not None else max_classes
    cases: list[Case] = []
    largest = 0
    for index, case_files in enumerate(files):
        case, top = load_case(case_files, size=size, limit=limit, explicit=num_classes is not None)
        if cases and case.geometry.is_3d != cases[0].geometry.is_3d:
            raise InputError(
                errors.SHAPE_MISMATCH,
                f"mixes 2D and 3D cases ({case_files.mask.name} vs {cases[0].files.mask.name}); "
                "audit them separately",
                case=case.case_id,
            )
        cases.append(case)
        largest = max(largest, top)
        if on_case is not None:
            on_case(index + 1, len(files), case.case_id)
    if largest == 0:
        raise InputError(
            errors.NO_FOREGROUND,
            "no mask holds any foreground (all values are 0): nothing to audit",
        )
    channels = {int(c.image.shape[1]) for c in cases}
    in_channels = max(channels)
    if len(channels) > 1:  # grayscale beside RGB: repeat the gray channel
        for c in cases:
            if c.image.shape[1] != in_channels:
                c.image = c.image.expand(-1, in_channels, -1, -1).contiguous()
    return Dataset(
        cases=cases,
        num_classes=num_classes if num_classes is not None else max(2, largest + 1),
        in_channels=in_channels,
        is_3d=cases[0].geometry.is_3d,
    )
