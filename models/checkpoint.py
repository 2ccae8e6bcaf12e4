"""Checkpoints: everything needed to resume an audit or to segment new cases with its network.

Saved atomically (temporary file, then rename) after every epoch, so an interrupted run leaves
the last complete epoch behind and never a torn file. Loaded with ``weights_only=True``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imaging.errors import ErrorCode, InputError
from models.config import AuditConfig
from models.train import TrainData, TrainState, new_state

FORMAT = "segaudit-checkpoint/1"


def save_checkpoint(
    path: Path,
    state: TrainState,
    data: TrainData,
    config: AuditConfig,
    case_ids: list[str],
    *,
    working_size: int,
) -> None:
    payload: dict[str, Any] = {
        "format": FORMAT,
        "config": config.to_dict(),
        "working_size": working_size,
        "case_ids": list(case_ids),
        "num_classes": data.num_classes,
        "in_channels": data.in_channels,
        "single_object_classes": list(data.single_object_classes),
        "epoch": state.epoch,
        "network": state.net.state_dict(),
        "teacher": state.teacher.state_dict(),
        "segmenter": state.teacher.module.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "generator": state.generator.get_state(),
        "clean_prob": None if state.clean_prob is None else torch.from_numpy(state.clean_prob),
        "flagged": None if state.flagged is None else torch.from_numpy(state.flagged),
        "pseudo": state.pseudo,
        "history": state.history,
        "scored": state.scored,
    }
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise InputError(ErrorCode.UNREADABLE, f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise InputError(ErrorCode.UNREADABLE, f"{path} is not a segaudit checkpoint ({FORMAT})")
    return payload


def resume_state(
    payload: dict[str, Any],
    data: TrainData,
    config: AuditConfig,
    case_ids: list[str],
    device: torch.device,
) -> TrainState:
    """Rebuild the training state of ``payload``; the run must be the same one."""
    saved = AuditConfig.from_dict(payload["config"])
    if saved != config:
        diff = sorted(k for k, v in config.to_dict().items() if saved.to_dict()[k] != v)
        raise InputError(
            ErrorCode.CHECKPOINT_MISMATCH,
            f"the checkpoint was made with other settings ({', '.join(diff)} differ); "
            "resume with the same options or start a new output folder",
        )
    if (
        payload["case_ids"] != case_ids
        or payload["num_classes"] != data.num_classes
        or payload.get("working_size") != int(data.images.shape[-1])
    ):
        raise InputError(
            ErrorCode.CHECKPOINT_MISMATCH,
            "the checkpoint was made on other cases; resume with the same images and masks",
        )
    state = new_state(data, config, device)
    state.net.load_state_dict(payload["network"])
    state.teacher.load_state_dict(payload["teacher"])
    state.optimizer.load_state_dict(payload["optimizer"])
    state.generator.set_state(payload["generator"])
    state.epoch = int(payload["epoch"])
    state.clean_prob = (
        None if payload["clean_prob"] is None else payload["clean_prob"].numpy().astype(np.float64)
    )
    state.flagged = None if payload["flagged"] is None else payload["flagged"].numpy().astype(bool)
    state.pseudo = payload["pseudo"]
    state.history = list(payload["history"])
    state.scored = bool(payload["scored"])
    return state
