"""From figures to a graded noise score.

Each case's figures are weighed against what a wrong mask looks like *on this data*: known-noisy
copies (``models.synthetic``) of the masks the audit is most sure of (the reference cases),
scored by the same network with the same figures. A logistic model, fitted with the copies and
the reference cases weighing alike, separates the two; its log-odds is each case's ``evidence``:
continuous, never saturated, monotone in how much more the mask looks like a known-noisy copy
than like a sure one. Each figure's weight is held at or above 0 (a mask that disagrees more,
in any figure, never looks less wrong), except the figures in ``SIGN_FREE``: fitted freely on
copies it separates almost perfectly, the model gave negative weights to correlated figures,
and where the copies were extreme a mask with no head drawn then looked less wrong than a hard
clean case (``docs/benchmarks.md``, 2026-12-08). The noise score (``noise_score``) maps it into
(0, 1) for ranking. The final flag's mixture on the evidence (``models.flagging``) gives
``noise_probability``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit
from sklearn.metrics import roc_auc_score

from models.figure_names import SIGN_FREE

L2 = 1.0  # the weights' ridge penalty, 1/2 L2 |w|^2 beside the weighted log-loss (sklearn's C=1)


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
    x = np.concatenate([x_ref, x_syn])
    y = np.concatenate([np.zeros(len(x_ref)), np.ones(len(x_syn))])
    weights = np.concatenate([np.ones(len(x_ref)), np.full(len(x_syn), len(x_ref) / len(x_syn))])
    coef, intercept = _fit_logistic(x, y, weights, signed=[n in SIGN_FREE for n in names])
    return Calibration(
        evidence=standard(real) @ coef + intercept,
        synthetic_evidence=x_syn @ coef + intercept,
        synthetic=len(x_syn),
        separation=float(roc_auc_score(y, x @ coef + intercept)),
        weights={n: round(float(w), 4) for n, w in zip(names, coef, strict=True)},
    )


def _fit_logistic(
    x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray, *, signed: list[bool]
) -> tuple[np.ndarray, float]:
    """Weighted, L2-penalised logistic regression (the intercept unpenalised) with each weight
    held >= 0 unless ``signed``; returns the weights and the intercept."""
    features = x.shape[1]

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        coef, intercept = params[:features], params[features]
        z = x @ coef + intercept
        value = np.sum(sample_weight * (np.logaddexp(0.0, z) - y * z)) + 0.5 * L2 * coef @ coef
        residual = sample_weight * (expit(z) - y)
        gradient = np.concatenate([x.T @ residual + L2 * coef, [residual.sum()]])
        return float(value), gradient

    bounds = [(None, None) if free else (0.0, None) for free in signed] + [(None, None)]
    fit = minimize(
        loss,
        np.zeros(features + 1),
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": 2000, "gtol": 1e-8},
    )
    if not np.all(np.isfinite(fit.x)):
        raise RuntimeError(f"the calibration's logistic fit failed: {fit.message}")
    return fit.x[:features], float(fit.x[features])
