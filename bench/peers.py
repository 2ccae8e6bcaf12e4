"""The peers the audit is measured against, on the same network, loss and working size.

- naive: plain training on the given masks (no label filter); the score of a case is the final
  network's loss on its given mask (small-loss ranking); flagged when a two-component Gaussian
  mixture on the log losses puts it in the high-loss component; flagged cases are replaced by the
  network's prediction.
- cleanlab: out-of-sample probabilities from K-fold cross-validation (folds never split a
  group, e.g. an hc18 fetus), ``cleanlab.segmentation.rank.get_label_quality_scores`` for the
  score and ``filter.find_label_issues`` for the pixels; a case is flagged when its issue pixels
  reach ``min_issue_fraction`` of its foreground (given or predicted), and its flagged pixels
  take the predicted class.
- oracle: plain training on the true masks (only for the downstream comparison).

cleanlab is AGPL-3.0: it is imported here, inside the function that runs it, and nowhere else.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from sklearn.mixture import GaussianMixture

from imaging.formats import read_mask, split_name
from imaging.geometry import label_dtype
from imaging.write import write_array
from models.checkpoint import save_checkpoint
from models.config import AuditConfig
from models.dataset import WorkingCase, WorkingSet
from models.network import autocast, predict_probs
from models.preprocess import as_slices, from_slices, to_original
from models.train import Progress, TrainData, TrainState, new_state, train_epoch


def _quiet(_: Progress) -> None:
    return None


def train_plain(
    dataset: WorkingSet, config: AuditConfig, device: torch.device, *, cases: Sequence[int] = ()
) -> tuple[TrainState, TrainData]:
    """The audit's network and loss trained for ``config.epochs`` epochs with no label filter.

    ``cases`` picks a subset of the dataset (all cases when empty).
    """
    if cases:
        dataset = dataclasses.replace(dataset, cases=[dataset.cases[i] for i in cases])
    data = TrainData.from_dataset(dataset, single_object_classes=())
    state = new_state(data, config, device)
    while state.epoch < config.epochs:
        # Without a filter pass, state.flagged stays None and every slice keeps its given mask.
        train_epoch(state, data, config, device, _quiet)
        state.epoch += 1
    assert state.flagged is None
    return state, data


@torch.no_grad()
def case_losses(net: torch.nn.Module, data: TrainData, device: torch.device) -> np.ndarray:
    """Mean training loss (Dice + cross-entropy) of each case on its given mask, ``(N,)``."""
    net.eval()
    dice = DiceLoss(to_onehot_y=True, softmax=True, reduction="none")
    losses = []
    for span in data.case_slices:
        x, y = data.images[span].to(device), data.masks[span].long().to(device)
        with autocast(device):
            logits = net(x)
        logits = logits.float()
        per_slice = dice(logits, y[:, None]).mean(dim=(1, 2, 3)) + F.cross_entropy(
            logits, y, reduction="none"
        ).mean(dim=(1, 2))
        losses.append(float(per_slice.mean()))
    return np.array(losses)


def small_loss_flags(losses: np.ndarray, seed: int) -> np.ndarray:
    """Cases in the high-loss component of a two-component GMM on log losses, ``(N,)`` bool."""
    x = np.log(np.maximum(losses, 1e-8))[:, None]
    gmm = GaussianMixture(2, random_state=seed, n_init=3).fit(x)
    high = int(np.argmax(gmm.means_[:, 0]))
    return gmm.predict_proba(x)[:, high] > 0.5


def _given(case: WorkingCase) -> tuple[np.ndarray, np.ndarray]:
    raw = read_mask(case.files.mask, case=case.case_id).array
    return raw, as_slices(raw.astype(np.int64), channels=False)


def write_case_mask(case: WorkingCase, labels: np.ndarray, raw: np.ndarray, folder: Path) -> None:
    """Write ``(D, h, w)`` labels as ``folder/<case>.<mask extension>`` on the mask's grid."""
    dtype = raw.dtype if np.issubdtype(raw.dtype, np.integer) else label_dtype(2)
    target = folder / f"{case.case_id}{split_name(case.files.mask)[1]}"
    write_array(target, from_slices(labels, is_3d=case.geometry.is_3d).astype(dtype), case.geometry)


def _size(data: TrainData) -> int:
    return int(data.images.shape[-1])


def write_scores(path: Path, cases: list[str], scores: np.ndarray, flagged: np.ndarray) -> None:
    """``case,noise_score,flagged``, most suspect first (the order detection is judged by)."""
    order = sorted(range(len(cases)), key=lambda i: (-scores[i], cases[i]))
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["case", "noise_score", "flagged"])
        w.writerows((cases[i], f"{scores[i]:.6f}", int(flagged[i])) for i in order)


def run_naive(
    dataset: WorkingSet, config: AuditConfig, device: torch.device, out: Path
) -> dict[str, float]:
    """Plain training, small-loss scores and flags; writes scores.csv, cleansed/, model.pt."""
    state, data = train_plain(dataset, config, device)
    losses = case_losses(state.net, data, device)
    flagged = small_loss_flags(losses, config.seed)
    (out / "cleansed").mkdir(parents=True)
    for index, case in enumerate(dataset.cases):
        raw, given = _given(case)
        labels = given
        if flagged[index]:
            probs = predict_probs(
                state.teacher.module,
                case.image,
                tta_flips=config.tta_flips,
                patch=config.patch_size,
            )
            labels = to_original(probs, case.grid).argmax(dim=1).numpy()
        write_case_mask(case, labels, raw, out / "cleansed")
    write_scores(out / "scores.csv", dataset.case_ids, losses, flagged)
    save_checkpoint(
        out / "model.pt", [state], [data], config, dataset.case_ids, working_size=_size(data)
    )
    return {"trained_images": float(len(data.masks) * config.epochs)}


def run_oracle(
    dataset: WorkingSet, config: AuditConfig, device: torch.device, out: Path
) -> dict[str, float]:
    """Plain training on the true masks; writes model.pt for the downstream comparison."""
    state, data = train_plain(dataset, config, device)
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(
        out / "model.pt", [state], [data], config, dataset.case_ids, working_size=_size(data)
    )
    return {"trained_images": float(len(data.masks) * config.epochs)}


def fold_of(groups: Sequence[str], folds: int) -> np.ndarray:
    """Fold of each case, ``(N,)``: whole groups, dealt round-robin in sorted order."""
    names = sorted(set(groups))
    if len(names) < folds:
        raise ValueError(f"{folds}-fold cross-validation needs {folds} groups, got {len(names)}")
    fold = {g: i % folds for i, g in enumerate(names)}
    return np.array([fold[g] for g in groups])


def run_cleanlab(
    dataset: WorkingSet,
    config: AuditConfig,
    device: torch.device,
    out: Path,
    *,
    groups: Sequence[str],
    folds: int = 5,
    min_issue_fraction: float = 0.05,
) -> dict[str, float]:
    """K-fold out-of-sample probabilities, then cleanlab's scores and issues (2D cases)."""
    from cleanlab.segmentation.filter import find_label_issues
    from cleanlab.segmentation.rank import get_label_quality_scores

    if dataset.is_3d:
        raise ValueError("the cleanlab peer is run on 2D data sets only")
    fold = fold_of(groups, folds)
    probs: list[torch.Tensor | None] = [None] * len(dataset.cases)
    trained = 0.0
    for k in range(folds):
        train_idx = [i for i in range(len(fold)) if fold[i] != k]
        state, data = train_plain(dataset, config, device, cases=train_idx)
        trained += len(data.masks) * config.epochs
        for i in np.flatnonzero(fold == k):
            probs[i] = predict_probs(
                state.teacher.module,
                dataset.cases[i].image,
                tta_flips=config.tta_flips,
                patch=config.patch_size,
            )
    pred_probs = torch.cat([p for p in probs if p is not None]).numpy()  # (N, K, S, S)
    labels = torch.cat([c.mask for c in dataset.cases]).numpy().astype(np.int64)  # (N, S, S)
    image_scores, _ = get_label_quality_scores(labels, pred_probs, verbose=False)
    issues = find_label_issues(labels, pred_probs, verbose=False, n_jobs=1)
    foreground = np.maximum((labels > 0).sum(axis=(1, 2)), (pred_probs.argmax(1) > 0).sum((1, 2)))
    flagged = issues.sum(axis=(1, 2)) >= min_issue_fraction * np.maximum(foreground, 1)
    (out / "cleansed").mkdir(parents=True)
    for index, case in enumerate(dataset.cases):
        raw, given = _given(case)
        labels_out = given
        if flagged[index]:
            p = probs[index]
            assert p is not None
            full = to_original(p, case.grid)  # (1, K, h, w)
            marked = to_original(
                torch.from_numpy(issues[index : index + 1, None]).float(), case.grid
            )
            labels_out = np.where(marked[:, 0].numpy() > 0.5, full.argmax(dim=1).numpy(), given)
        write_case_mask(case, labels_out, raw, out / "cleansed")
    write_scores(out / "scores.csv", dataset.case_ids, 1.0 - image_scores, flagged)
    return {"trained_images": trained}
