"""Finding, pairing, reading and checking the cases of an audit.

A case is an image and a mask with the same file name stem in two folders (3D Slicer's
``case.seg.nrrd`` is the mask of ``case.nrrd``, also when both lie in one folder), or, for DICOM
input (a folder or zip of series with SEG or RTSTRUCT masks), a series and the mask that
references it (``imaging.dicom.cases``). ``read_case`` reads one case and applies every rule of
``imaging.checks`` to it; the first problem found is raised as an ``InputError`` that names the
case.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from imaging import checks
from imaging.classes import check_declared, mask_values
from imaging.dicom.cases import DicomPair, find_pairs
from imaging.dicom.source import is_dicom_input
from imaging.errors import ErrorCode, InputError
from imaging.formats import (
    FORMATS,
    METAIMAGE_DATA,
    format_of,
    read_image,
    read_mask,
    split_name,
)
from imaging.geometry import Loaded


@dataclass(frozen=True)
class CaseFiles:
    case_id: str
    image: Path
    mask: Path
    dicom: DicomPair | None = None  # for DICOM input: the series and its SEG or RTSTRUCT


@dataclass(frozen=True)
class CheckedCase:
    """One case as read from its files, every rule checked: image ``(C, *spatial)`` float32,
    mask ``(*spatial)`` in its stored dtype, and the mask's largest class.
    """

    files: CaseFiles
    image: Loaded
    mask: Loaded
    max_label: int


def index_folder(
    folder: Path, what: str, *, keep: Callable[[Path], bool] | None = None
) -> dict[str, Path]:
    """The ``what`` files (image or mask) at the top of ``folder`` by case name; ``keep`` picks
    some of them. A ``.mhd`` header's data file is not a case of its own.
    """
    if not folder.is_dir():
        raise InputError(
            ErrorCode.NOT_A_FOLDER, f"the {what} folder {folder} does not exist or is not a folder"
        )
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.is_dir() or (keep and not keep(path)):
            continue
        stem, ext = split_name(path)
        if ext in METAIMAGE_DATA and (folder / f"{stem}.mhd").is_file():
            continue
        if format_of(path) is None:
            _refuse_dicom(folder, what)
            supported = ", ".join(sorted(set(FORMATS)))
            raise InputError(
                ErrorCode.UNSUPPORTED_FORMAT,
                f"{what} file {path.name} has an unsupported extension '{ext}' "
                f"(supported: {supported})",
                case=stem,
            )
        if stem in found:
            raise InputError(
                ErrorCode.DUPLICATE_CASE,
                f"two {what} files share the name {stem}: {found[stem].name} and {path.name}",
                case=stem,
            )
        found[stem] = path
    if not found:
        _refuse_dicom(folder, what)
        raise InputError(
            ErrorCode.EMPTY_FOLDER, f"the {what} folder {folder} holds no {what} files"
        )
    return found


def _refuse_dicom(folder: Path, what: str) -> None:
    """Say that DICOM is not read here when ``folder`` holds DICOM (at any depth)."""
    if is_dicom_input(folder):
        raise InputError(
            ErrorCode.UNSUPPORTED_FORMAT,
            f"the {what} folder {folder} holds DICOM files, which this command does not read "
            "(it reads PNG, JPEG, TIFF, NIfTI, NRRD and MetaImage files); `segaudit audit` and "
            "the service read DICOM series, or convert them first, e.g. with dcm2niix",
        )


def _is_slicer_seg(path: Path) -> bool:
    return split_name(path)[1] == ".seg.nrrd"


def find_cases(images_dir: Path, masks_dir: Path) -> list[CaseFiles]:
    """Pair images with masks by file stem; every image needs a mask and every mask an image.

    DICOM input is paired by the UIDs that each mask references instead.
    """
    if is_dicom_input(Path(images_dir)) or is_dicom_input(Path(masks_dir)):
        pairs, _ = find_pairs(Path(images_dir), Path(masks_dir))
        return [CaseFiles(p.case_id, p.image_path, p.mask_path, p) for p in pairs]
    if Path(images_dir).resolve() == Path(masks_dir).resolve():  # a 3D Slicer scene folder
        images = index_folder(Path(images_dir), "image", keep=lambda p: not _is_slicer_seg(p))
        masks = index_folder(Path(masks_dir), "mask", keep=_is_slicer_seg)
    else:
        images = index_folder(Path(images_dir), "image")
        masks = index_folder(Path(masks_dir), "mask")
    for stems, have, lack, code in (
        (sorted(set(images) - set(masks)), "image", "mask", ErrorCode.MISSING_MASK),
        (sorted(set(masks) - set(images)), "mask", "image", ErrorCode.MISSING_IMAGE),
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


def read_case_image(files: CaseFiles) -> Loaded:
    if files.dicom is not None:
        return files.dicom.read_image()
    return read_image(files.image, case=files.case_id)


def read_case_mask(files: CaseFiles) -> Loaded:
    if files.dicom is not None:
        return files.dicom.read_mask()
    return read_mask(files.mask, case=files.case_id)


def read_case(
    files: CaseFiles, *, limit: int, explicit: bool, classes: Mapping[str, int] | None = None
) -> CheckedCase:
    """Read one case and check it: the mask on the image's grid, finite image values, class
    indices below ``limit`` (``explicit``: the user's ``num_classes``) and, where ``classes``
    are declared, only their values.
    """
    image = read_case_image(files)
    mask = read_case_mask(files)
    case = files.case_id
    checks.check_same_grid(
        tuple(image.array.shape[1:]),
        image.geometry.affine,
        mask.geometry,
        image_name=files.image.name,
        mask_name=files.mask.name,
        case=case,
    )
    checks.check_image_values(image.array, name=files.image.name, case=case)
    top = checks.check_mask_values(
        mask.array, name=files.mask.name, case=case, limit=limit, explicit=explicit
    )
    if classes:
        check_declared(mask_values(mask.array), classes, name=files.mask.name, case=case)
    return CheckedCase(files, image, mask, top)
