"""PNG layers of a case for the dashboard: the image (windowed), the given and cleansed masks and
the issue map, each of one plane, at most ``MAX_SIDE`` pixels a side, that the browser stacks
(the image opaque, grey or colour; the others palette PNGs with transparency, a byte a pixel).
Each is drawn once and kept under ``<storage>/ui-cache/`` by the hash of what it is drawn from
(the stored file's SHA-256, the plane, the window, the size), so a second look is a read.
"""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from app.db.tables import StoredFile
from app.errors import Invalid
from app.storage import Store
from imaging.errors import ErrorCode, SegauditError
from imaging.formats import format_of, read_image, read_mask

Layer = Literal["image", "given", "cleansed", "issue"]
LAYERS: tuple[Layer, ...] = ("image", "given", "cleansed", "issue")
MAX_SIDE = 512
CACHE = "ui-cache"
VERSION = "2"  # bump when the drawing changes: old cached files are then never read
# Per class (1, 2, ...): the given mask in green tones, the cleansed in magenta tones.
GIVEN = ((0, 200, 83), (255, 214, 0), (0, 176, 255), (255, 109, 0))
CLEANSED = ((213, 0, 249), (255, 64, 129), (124, 77, 255), (255, 23, 68))
FILL = 150  # alpha of a mask's pixels
ISSUE = (255, 40, 40)  # the issue map: red, as opaque as the map's probability


@dataclass(frozen=True)
class Window:
    """A grey-level window (CT/MR): ``center`` and ``width`` in the image's units; None: the
    volume's 1st to 99th percentile.
    """

    center: float | None = None
    width: float | None = None

    def __post_init__(self) -> None:
        if (self.center is None) != (self.width is None):
            raise Invalid(ErrorCode.INVALID_PARAMETERS, "give a window's center and width both")
        if self.width is not None and not self.width > 0:
            raise Invalid(ErrorCode.INVALID_PARAMETERS, "a window's width must be above 0")


@dataclass(frozen=True)
class Volume:
    """A file read for drawing: ``(C, H, W)`` planes stacked as ``(C, H, W, D)`` (D=1 in 2D)."""

    array: np.ndarray
    low: float  # the 1st and 99th percentile of an image (0, 1 for a mask)
    high: float

    @property
    def depth(self) -> int:
        return int(self.array.shape[-1])


class _Recent:
    """The few files read last (a volume is drawn slice after slice); thread-safe."""

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self.items: OrderedDict[tuple[str, bool], Volume] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, store: Store, file: StoredFile, *, is_mask: bool) -> Volume:
        key = (file.sha256, is_mask)
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
        volume = _read(store, file, is_mask=is_mask)
        with self.lock:
            self.items[key] = volume
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        return volume


_recent = _Recent()


def drawable(file: StoredFile) -> bool:
    """Whether the dashboard can draw ``file``: a format ``imaging.formats`` reads (not yet a
    DICOM series or a DICOM SEG/RTSTRUCT mask).
    """
    return format_of(Path(file.name)) is not None


def _read(store: Store, file: StoredFile, *, is_mask: bool) -> Volume:
    """Read a stored file by its name's format (blobs have no extension: a link gives one)."""
    if not drawable(file):
        raise Invalid(
            ErrorCode.UNSUPPORTED_FORMAT,
            f"the dashboard cannot draw '{file.name}' (a {file.format} file); download it instead",
        )
    with store.staging() as folder:
        link = folder / Path(file.name).name
        os.symlink(store.path(file.sha256), link)
        try:
            loaded = (
                read_mask(link, case=file.name) if is_mask else read_image(link, case=file.name)
            )
        except SegauditError as exc:
            raise Invalid(exc.code, exc.detail) from exc
    array = loaded.array
    if is_mask:
        array = array[None]
    # 2D (C, H, W) as one plane; 3D (C, X, Y, Z) as planes (C, Y, X), rows down the second axis
    planes = array[..., None] if array.ndim == 3 else np.swapaxes(array, 1, 2)
    if is_mask:
        return Volume(planes, 0.0, 1.0)
    low, high = np.percentile(planes, [1, 99])
    return Volume(planes, float(low), float(high))


def depth(store: Store, file: StoredFile) -> int:
    """How many planes the stored image has (1 for a 2D image)."""
    return _recent.get(store, file, is_mask=False).depth


def _fit(height: int, width: int, max_side: int) -> tuple[int, int]:
    scale = min(1.0, max_side / max(height, width))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _image_picture(volume: Volume, z: int, window: Window) -> Image.Image:
    """The windowed plane: grey (L) or colour (RGB); one byte a channel keeps the PNG quick."""
    plane = volume.array[..., z].astype(np.float32)
    if window.center is not None and window.width is not None:
        low, high = window.center - window.width / 2, window.center + window.width / 2
    else:
        low, high = volume.low, volume.high
    grey = (np.clip((plane - low) / max(high - low, 1e-6), 0, 1) * 255).astype(np.uint8)
    if grey.shape[0] >= 3:
        return Image.fromarray(np.dstack(list(grey[:3])), "RGB")
    return Image.fromarray(grey[0], "L")


def _paletted(
    indices: np.ndarray, colours: list[tuple[int, int, int]], alphas: list[int]
) -> Image.Image:
    """A palette picture: ``indices`` (H, W) into ``colours``, each with its alpha."""
    picture = Image.fromarray(indices.astype(np.uint8), "P")
    picture.putpalette([c for colour in colours for c in colour])
    picture.info["transparency"] = bytes(alphas)
    return picture


def _mask_picture(plane: np.ndarray, palette: tuple[tuple[int, int, int], ...]) -> Image.Image:
    """Class ``c`` in ``palette[(c - 1) % len]`` at alpha ``FILL``; background clear."""
    labels = np.clip(plane, 0, 255)
    colours = [(0, 0, 0)] + [palette[(c - 1) % len(palette)] for c in range(1, 256)]
    return _paletted(labels, colours, [0] + [FILL] * 255)


def _issue_picture(plane: np.ndarray) -> Image.Image:
    """The issue map in red, as opaque as its value (0..255)."""
    values = np.clip(plane.astype(np.float32), 0, 255)
    return _paletted(values, [ISSUE] * 256, list(range(256)))


def render(
    store: Store,
    layer: Layer,
    file: StoredFile,
    *,
    z: int,
    window: Window,
    max_side: int = MAX_SIDE,
) -> Path:
    """The PNG of ``layer`` (drawn from ``file``) at plane ``z``, from the cache or drawn now."""
    drawn = window if layer == "image" else Window()
    key = hashlib.sha256(
        f"{VERSION}|{layer}|{file.sha256}|{z}|{drawn.center}|{drawn.width}|{max_side}".encode()
    ).hexdigest()
    path = store.root / CACHE / key[:2] / f"{key}.png"
    if path.is_file():
        return path
    volume = _recent.get(store, file, is_mask=layer != "image")
    if not 0 <= z < volume.depth:
        raise Invalid(
            ErrorCode.INVALID_PARAMETERS,
            f"slice {z} is outside the case's {volume.depth} slices (0..{volume.depth - 1})",
        )
    if layer == "image":
        picture = _image_picture(volume, z, window)
        resample = Image.Resampling.BILINEAR
    else:
        plane = volume.array[0, ..., z]
        picture = (
            _issue_picture(plane)
            if layer == "issue"
            else _mask_picture(plane, GIVEN if layer == "given" else CLEANSED)
        )
        resample = Image.Resampling.NEAREST
    size = _fit(picture.height, picture.width, max_side)
    if size != picture.size:
        picture = picture.resize(size, resample)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{uuid.uuid4().hex}.png")
    picture.save(partial, "PNG", compress_level=1)
    os.replace(partial, path)  # atomic: a reader sees the whole file or none
    return path
