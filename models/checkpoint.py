"""Checkpoints: everything needed to resume an audit or to segment new cases with its network.

Saved atomically (temporary file, then rename) after every epoch, so an interrupted run leaves
the last complete epoch behind and never a torn file. Loaded with ``weights_only=True``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imaging.errors import ErrorCode, InputError
from models.config import AuditConfig
from models.train import TrainData, TrainState, new_state

FORMAT = "segaudit-checkpoint/1"


def _state_payload(state: TrainState, data: TrainData) -> dict[str, Any]:
    return {
        "trained_on": list(data.case_index),
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


def save_checkpoint(
    path: Path,
    states: Sequence[TrainState],
    datas: Sequence[TrainData],
    config: AuditConfig,
    case_ids: list[str],
    *,
    working_size: int,
    fold: Sequence[int] | None = None,
) -> None:
    """Save every network of the audit. The first network's fields sit at the top level (what
    ``segment`` reads); the cross-fitting networks after it under ``fold_states``, with each
    case's fold in ``fold``.
    """
    first = datas[0]
    payload: dict[str, Any] = {
        "format": FORMAT,
        "config": config.to_dict(),
        "working_size": working_size,
        "case_ids": list(case_ids),
        "num_classes": first.num_classes,
        "in_channels": first.in_channels,
        "single_object_classes": list(first.single_object_classes),
        **_state_payload(states[0], first),
        "fold": None if fold is None else [int(f) for f in fold],
        "fold_states": [_state_payload(s, d) for s, d in zip(states[1:], datas[1:], strict=True)],
    }
    # Serialised in memory first and written with Python's own I/O: a full disk then raises
    # OSError(ENOSPC), which the worker reports as such (torch's writer says only "unexpected
    # pos"), and a partial file is removed, never left beside the last good checkpoint.
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("wb") as f:
            f.write(buffer.getbuffer())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise InputError(ErrorCode.UNREADABLE, f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise InputError(ErrorCode.UNREADABLE, f"{path} is not a segaudit checkpoint ({FORMAT})")
    return payload


def resume_states(
    payload: dict[str, Any],
    datas: Sequence[TrainData],
    config: AuditConfig,
    case_ids: list[str],
    device: torch.device,
) -> list[TrainState]:
    """Rebuild the training state of every network in ``payload``; the run must be the same."""
    saved = AuditConfig.from_dict(payload["config"])
    if saved != config:
        diff = sorted(k for k, v in config.to_dict().items() if saved.to_dict()[k] != v)
        raise InputError(
            ErrorCode.CHECKPOINT_MISMATCH,
            f"the checkpoint was made with other settings ({', '.join(diff)} differ); "
            "resume with the same options or start a new output folder",
        )
    parts = [payload, *payload.get("fold_states", [])]
    if (
        payload["case_ids"] != case_ids
        or payload["num_classes"] != datas[0].num_classes
        or payload.get("working_size") != int(datas[0].images.shape[-1])
        or len(parts) != len(datas)
        or any(
            list(p.get("trained_on", d.case_index)) != list(d.case_index)
            for p, d in zip(parts, datas, strict=True)
        )
    ):
        raise InputError(
            ErrorCode.CHECKPOINT_MISMATCH,
            "the checkpoint was made on other cases; resume with the same images and masks",
        )
    return [_resume(part, data, config, device) for part, data in zip(parts, datas, strict=True)]


def _resume(
    part: dict[str, Any], data: TrainData, config: AuditConfig, device: torch.device
) -> TrainState:
    state = new_state(data, config, device)
    state.net.load_state_dict(part["network"])
    state.teacher.load_state_dict(part["teacher"])
    state.optimizer.load_state_dict(part["optimizer"])
    state.generator.set_state(part["generator"])
    state.epoch = int(part["epoch"])
    state.clean_prob = (
        None if part["clean_prob"] is None else part["clean_prob"].numpy().astype(np.float64)
    )
    state.flagged = None if part["flagged"] is None else part["flagged"].numpy().astype(bool)
    state.pseudo = part["pseudo"]
    state.history = list(part["history"])
    state.scored = bool(part["scored"])
    return state
