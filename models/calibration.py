"""From figures to a graded noise score.

Each case's figures are weighed against what a wrong mask looks like *on this data*: known-noisy
copies (``models.synthetic``) of the masks the audit is most sure of (the reference cases),
scored by the same network with the same figures. A logistic model, fitted with the copies and
the reference cases weighing alike, separates the two; its log-odds is each case's ``evidence``:
continuous, never saturated, monotone in how much more the mask looks like a known-noisy copy
than like a sure one. The noise score (``noise_score``) maps it into (0, 1) for ranking. The
final flag's mixture on the evidence (``models.flagging``) gives ``noise_probability``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score


@dataclass(frozen=True)
class Calibration:
    evidence: np.ndarray  # (N,) log-odds: known-noisy copy against sure case
    synthetic_evidence: np.ndarray  # (M,) the same log-odds of the known-noisy copies
    synthetic: int  # known-noisy copies learnt from
    separation: float  # AUROC between the reference cases and their copies (in sample)
    weights: dict[str, float]  # the logistic model's weight per (standardised, log) figure


def noise_score(evidence: float) -> float:
    """The evidence mapped into (0, 1), order kept: ``1/2 + atan(evidence) / pi``. Unlike
    ``expit``, which rounds to 1.0 in double precision from about 37, two cases tie only when
    their evidence does (up to about 1e15), so a sort on the score agrees with the ranking.
    """
    return 0.5 + math.atan(evidence) / math.pi


def transform(features: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``(M, F)`` figures (>= 0) on a log scale, shifted by the lower quartile of ``reference``."""
    shift = np.maximum(np.percentile(reference, 25, axis=0), 1e-3)
    scaled: np.ndarray = np.log(np.maximum(features, 0.0) + shift)
    return scaled


def calibrate(
    real: np.ndarray,
    synthetic: np.ndarray,
    *,
    names: tuple[str, ...],
    reference: np.ndarray,
    seed: int = 0,
) -> Calibration:
    """``real`` ``(N, F)`` evidence figures of the cases, ``synthetic`` ``(M, F)`` of known-noisy
    copies of the ``reference`` cases (indices into ``real``).
    """
    real, synthetic = np.asarray(real, float), np.asarray(synthetic, float)
    if real.ndim != 2 or synthetic.ndim != 2 or real.shape[1] != synthetic.shape[1]:
        raise ValueError(f"figures must be (N, F) and (M, F), got {real.shape}, {synthetic.shape}")
    if len(names) != real.shape[1]:
        raise ValueError(f"{len(names)} names for {real.shape[1]} figures")
    reference = np.asarray(reference, dtype=np.int64)
    if len(synthetic) == 0 or len(reference) < 2:
        raise ValueError("calibration needs known-noisy copies and at least 2 reference cases")
    x_ref = transform(real[reference], real[reference])
    centre, scale = x_ref.mean(axis=0), x_ref.std(axis=0)
    scale = np.where(scale < 1e-9, 1.0, scale)

    def standard(x: np.ndarray) -> np.ndarray:
        z: np.ndarray = (transform(x, real[reference]) - centre) / scale
        return z

    x_ref, x_syn = standard(real[reference]), standard(synthetic)
    weights = np.concatenate([np.ones(len(x_ref)), np.full(len(x_syn), len(x_ref) / len(x_syn))])
    model = LogisticRegression(C=1.0, max_iter=2000, random_state=seed)
    model.fit(
        np.concatenate([x_ref, x_syn]),
        np.concatenate([np.zeros(len(x_ref)), np.ones(len(x_syn))]),
        sample_weight=weights,
    )
    return Calibration(
        evidence=model.decision_function(standard(real)),
        synthetic_evidence=model.decision_function(x_syn),
        synthetic=len(x_syn),
        separation=float(
            roc_auc_score(
                np.concatenate([np.zeros(len(x_ref)), np.ones(len(x_syn))]),
                model.decision_function(np.concatenate([x_ref, x_syn])),
            )
        ),
        weights={n: round(float(w), 4) for n, w in zip(names, model.coef_[0], strict=True)},
    )
