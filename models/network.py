"""The segmentation network (MONAI residual U-Net), its EMA teacher, and flip-TTA prediction."""

from __future__ import annotations

import torch
from monai.inferers.utils import sliding_window_inference
from monai.networks.nets.unet import UNet
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from models.config import AuditConfig


def build_network(in_channels: int, num_classes: int, config: AuditConfig) -> nn.Module:
    return UNet(
        spatial_dims=2,
        in_channels=in_channels,
        out_channels=num_classes,
        channels=config.channels,
        strides=(2,) * (len(config.channels) - 1),
        num_res_units=config.num_res_units,
        norm="batch",
    )


def build_teacher(student: nn.Module, decay: float) -> AveragedModel:
    """An exponential moving average of the student's weights and batch-norm statistics."""
    # torch leaves get_ema_multi_avg_fn unannotated.
    ema = get_ema_multi_avg_fn(decay)  # type: ignore[no-untyped-call]
    return AveragedModel(student, multi_avg_fn=ema, use_buffers=True)


def resolve_device(name: str) -> torch.device:
    """``auto`` takes CUDA when present, else the CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA GPU is available")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got '{name}'")
    return torch.device(name)


def autocast(device: torch.device, *, enabled: bool = True) -> torch.autocast:
    """bfloat16 mixed precision on CUDA (no loss scaling needed); a no-op on the CPU."""
    return torch.autocast(
        device_type=device.type, dtype=torch.bfloat16, enabled=enabled and device.type == "cuda"
    )


WINDOW_OVERLAP = 0.25  # sliding windows overlap by a quarter, blended with Gaussian weights


@torch.no_grad()
def predict_probs(
    model: nn.Module,
    images: torch.Tensor,
    *,
    tta_flips: bool,
    patch: int | None = None,
    batch_size: int = 32,
) -> torch.Tensor:
    """Softmax probabilities ``(N, K, S, S)`` for images ``(N, C, S, S)``, on the CPU.

    With ``tta_flips`` the prediction is the mean over identity, horizontal and vertical flips.
    Images larger than ``patch`` (the side the network trained on) are predicted with MONAI's
    sliding-window inferer, windows of ``patch`` px. On CUDA the forward pass runs in bfloat16.
    """
    model.eval()
    device = next(model.parameters()).device
    flips: list[tuple[int, ...]] = [(), (-1,), (-2,)] if tta_flips else [()]
    windowed = patch is not None and max(images.shape[-2:]) > patch

    def softmax(x: torch.Tensor) -> torch.Tensor:
        with autocast(device):
            logits = model(x)
        return torch.softmax(logits.float(), dim=1)

    out = []
    for start in range(0, images.shape[0], batch_size):
        x = images[start : start + batch_size].to(device)
        total: torch.Tensor | None = None
        for dims in flips:
            view = x.flip(dims) if dims else x
            if windowed:
                assert patch is not None
                probs = sliding_window_inference(
                    view,
                    (patch, patch),
                    sw_batch_size=batch_size,
                    predictor=softmax,
                    overlap=WINDOW_OVERLAP,
                    mode="gaussian",
                )
                assert isinstance(probs, torch.Tensor)
            else:
                probs = softmax(view)
            probs = probs.flip(dims) if dims else probs
            total = probs if total is None else total + probs
        assert total is not None  # flips is never empty
        out.append((total / len(flips)).float().cpu())
    return torch.cat(out)
