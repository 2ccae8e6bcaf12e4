"""The label filtering module (LFM): a 2-component Gaussian mixture over per-case disagreement.

Input is ``features`` of shape ``(N, F)``: for each of N cases, F disagreement figures where
higher means the given mask agrees worse with the teacher. The component with the lower mean is
"clean"; a case's clean probability is its posterior under that component. A fit that one
Gaussian explains as well (by BIC), whose components are not separated, where one holds almost
no cases, or where the noisy one holds most of them, finds no noise: every case is then clean
rather than half of a unimodal set being called noisy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.mixture import GaussianMixture


@dataclass(frozen=True)
class FilterResult:
    clean_prob: np.ndarray  # (N,) in [0, 1]
    degenerate: bool
    separation: float  # Ashman's D between the components (0 when not fitted)
    noisy_weight: float  # mixture weight of the noisy component
    bic_gain: float  # BIC(1 component) - BIC(2 components): > 0 favours two
    reason: str  # why the fit was judged degenerate ("" when it was not)


def _as_features(features: np.ndarray) -> np.ndarray:
    x = np.asarray(features, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"features must have shape (N,) or (N, F), got {x.shape}")
    if x.shape[0] < 4:
        raise ValueError(f"the label filter needs at least 4 cases, got {x.shape[0]}")
    if x.shape[1] < 1:
        raise ValueError("features must hold at least one figure per case")
    if not np.all(np.isfinite(x)):
        raise ValueError("features must be finite (found NaN or infinity)")
    return x


def log_scale(features: np.ndarray) -> np.ndarray:
    """Disagreement figures ``(N, F)`` (>= 0) on a log scale, each shifted by its lower quartile.

    Disagreements are skewed and noise comes in levels (a moved boundary, a missing object): on
    a log scale a clean group and a noisy group each look Gaussian, where on the raw scale the
    worst few cases take a component of their own. The shift keeps cases that agree perfectly
    (a figure of 0) near the clean group instead of far below it, where they would do the same.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if np.any(x < 0):
        raise ValueError("disagreement figures must be >= 0")
    shift = np.maximum(np.percentile(x, 25, axis=0), 1e-3)
    return np.log(x + shift)


def ashman_d(mean_a: np.ndarray, cov_a: np.ndarray, mean_b: np.ndarray, cov_b: np.ndarray) -> float:
    """Separation of two Gaussians: Mahalanobis distance of the means under the mean covariance.

    In 1D this is Ashman's D, ``|m1 - m2| / sqrt((s1^2 + s2^2) / 2)``; above 2 the mixture is
    clearly bimodal.
    """
    diff = mean_a - mean_b
    pooled = (cov_a + cov_b) / 2.0
    return float(np.sqrt(diff @ np.linalg.solve(pooled, diff)))


def fit_label_filter(
    features: np.ndarray,
    *,
    seed: int = 0,
    min_separation: float = 2.0,
    min_weight: float = 0.03,
    min_bic_gain: float = 5.0,
    max_noisy_weight: float = 0.5,
) -> FilterResult:
    """Fit the 2-component mixture to ``features`` ``(N, F)`` and return clean probabilities."""
    x = _as_features(features)
    n = x.shape[0]
    scale = x.std(axis=0)
    if np.all(scale < 1e-12):
        return FilterResult(np.ones(n), True, 0.0, 0.0, 0.0, "all cases have the same disagreement")
    z = (x - x.mean(axis=0)) / np.where(scale < 1e-12, 1.0, scale)
    one = GaussianMixture(n_components=1, covariance_type="full", reg_covar=1e-4).fit(z)
    gmm = GaussianMixture(
        n_components=2, covariance_type="full", reg_covar=1e-4, n_init=3, random_state=seed
    ).fit(z)
    bic_gain = float(one.bic(z) - gmm.bic(z))
    order = np.argsort(gmm.means_.sum(axis=1))
    clean, noisy = int(order[0]), int(order[1])
    separation = ashman_d(
        gmm.means_[clean], gmm.covariances_[clean], gmm.means_[noisy], gmm.covariances_[noisy]
    )
    weight = float(gmm.weights_[noisy])
    reason = ""
    if bic_gain < min_bic_gain:
        reason = f"one Gaussian fits as well (BIC gain {bic_gain:.1f} < {min_bic_gain})"
    elif separation < min_separation:
        reason = f"components not separated (D={separation:.2f} < {min_separation:.2f})"
    elif min(weight, 1.0 - weight) < min_weight:
        reason = f"one component nearly empty (weight {min(weight, 1 - weight):.3f} < {min_weight})"
    elif weight > max_noisy_weight:
        # The low-disagreement group is the smaller one: that is a few unusually easy cases, not
        # a clean majority, and calling everyone else noisy would invent noise.
        reason = (
            f"no clean majority (the higher-disagreement group holds {weight:.0%} of the cases)"
        )
    if reason:
        return FilterResult(np.ones(n), True, separation, weight, bic_gain, reason)
    clean_prob = gmm.predict_proba(z)[:, clean]
    # A wide noisy component can out-weigh the clean one far below the clean mean; a case that
    # disagrees less than the typical clean case on every figure is clean.
    clean_prob[np.all(z <= gmm.means_[clean], axis=1)] = 1.0
    return FilterResult(clean_prob, False, separation, weight, bic_gain, "")
