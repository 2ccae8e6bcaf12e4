"""Segment new images with the network of a finished (or interrupted) audit's checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imaging.cases import index_folder
from imaging.errors import ErrorCode, InputError
from imaging.formats import label_extension, read_image
from imaging.geometry import label_dtype
from imaging.write import write_array
from models.checkpoint import load_checkpoint
from models.config import AuditConfig
from models.network import build_network, predict_probs, resolve_device
from models.preprocess import (
    SliceGrid,
    as_slices,
    from_slices,
    image_to_working,
    normalise_intensity,
    to_original,
)


def segment_folder(
    model_path: Path, images_dir: Path, out_dir: Path, *, device: str = "auto"
) -> list[Path]:
    """Write ``out_dir/<case>.<image extension>`` (PNG for JPEG): every image's label map."""
    payload = load_checkpoint(Path(model_path))
    config = AuditConfig.from_dict(payload["config"])
    size = int(payload.get("working_size") or config.size or 0)
    if size < 32:
        raise InputError(ErrorCode.UNREADABLE, f"{model_path} records no working size")
    num_classes, in_channels = int(payload["num_classes"]), int(payload["in_channels"])
    torch_device = resolve_device(device)
    net = build_network(in_channels, num_classes, config).to(torch_device)
    net.load_state_dict(payload["segmenter"])
    images = index_folder(Path(images_dir), "image")
    loaded = {}
    for case, path in images.items():  # check everything before writing anything
        image = read_image(path, case=case)
        channels = image.array.shape[0]
        if channels not in (1, in_channels):
            raise InputError(
                ErrorCode.CHANNEL_MISMATCH,
                f"image {path.name} has {channels} channels; "
                f"the model was trained on {in_channels}",
                case=case,
            )
        loaded[case] = image
    written = []
    for case, image in loaded.items():
        array = normalise_intensity(image.array)
        if array.shape[0] != in_channels:
            array = np.repeat(array, in_channels, axis=0)
        slices = as_slices(array, channels=True)
        grid = SliceGrid(int(slices.shape[2]), int(slices.shape[3]), size)
        probs = predict_probs(
            net, image_to_working(slices, grid), tta_flips=config.tta_flips, patch=config.patch_size
        )
        labels = to_original(probs, grid).argmax(dim=1).numpy().astype(label_dtype(num_classes))
        target = Path(out_dir) / f"{case}{label_extension(images[case])}"  # JPEG: PNG
        write_array(target, from_slices(labels, is_3d=image.geometry.is_3d), image.geometry)
        written.append(target)
    return written
