"""Shared fixtures: real sample data committed under data/sample/, copied into tmp folders."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"
HC18 = SAMPLE / "hc18"
MR = SAMPLE / "mr_nrrd"
SHARED_DATA = ROOT.parent / "shared" / "data"


def copy_hc18(dest: Path, n: int, *, step: int = 1) -> tuple[Path, Path]:
    """Copy ``n`` hc18 cases (every ``step``-th) into ``dest/images`` and ``dest/masks``."""
    images, masks = dest / "images", dest / "masks"
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    cases = sorted(p.name for p in (HC18 / "images").iterdir())[::step][:n]
    for name in cases:
        shutil.copy(HC18 / "images" / name, images / name)
        shutil.copy(HC18 / "masks" / name, masks / name)
    return images, masks


@pytest.fixture
def hc18_small(tmp_path: Path) -> tuple[Path, Path]:
    """Eight real hc18 cases: enough for the tiniest valid audit."""
    return copy_hc18(tmp_path / "data", 8, step=7)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def mr_nifti_cases(dest: Path, *, slab: int = 5, fmt: str = "nifti") -> tuple[Path, Path]:
    """Real MR volumes cut into slabs of ``slab`` slices, as image/mask pairs (9 cases).

    ``fmt`` is ``nifti`` (``.nii.gz``, RAS affine) or ``nrrd`` (the NRRD's own LPS header). Each
    slab keeps its true position: its origin is moved to its first slice.
    """
    import nibabel as nib
    import nrrd

    images, masks = dest / "images", dest / "masks"
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    for name in ("brain1", "breast1"):
        image, header = nrrd.read(str(MR / f"{name}_image.nrrd"))
        label, _ = nrrd.read(str(MR / f"{name}_label.nrrd"))
        affine = np.eye(4)
        affine[:3, :3] = np.asarray(header["space directions"], float).T
        affine[:3, 3] = header["space origin"]
        affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine  # LPS -> RAS
        for start in range(0, image.shape[2] - slab + 1, slab):
            moved = affine.copy()
            moved[:3, 3] = affine[:3, :3] @ [0, 0, start] + affine[:3, 3]
            case = f"{name}_z{start:02d}"
            part = slice(start, start + slab)
            if fmt == "nifti":
                nib.save(
                    nib.Nifti1Image(image[:, :, part].astype(np.int16), moved),
                    str(images / f"{case}.nii.gz"),
                )
                nib.save(
                    nib.Nifti1Image(label[:, :, part].astype(np.uint8), moved),
                    str(masks / f"{case}.nii.gz"),
                )
            else:
                h = {k: header[k] for k in ("space", "space directions", "kinds")}
                h["space origin"] = (
                    np.asarray(header["space directions"], float).T @ [0, 0, start]
                    + header["space origin"]
                )
                nrrd.write(str(images / f"{case}.nrrd"), image[:, :, part], header=h)
                nrrd.write(
                    str(masks / f"{case}.nrrd"), label[:, :, part].astype(np.uint8), header=h
                )
    return images, masks
