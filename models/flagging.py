"""The final flag: the label filter's two-component mixture on the graded evidence, as a
probability per case.

Input is the ``(N,)`` evidence of the real cases and the ``(M,)`` evidence of the known-noisy
copies (``models.calibration``; the same model scores both). The real cases are modelled as
``(1 - share) * clean + share * noisy``: the clean component is a Gaussian whose centre, spread
and share are fitted by EM; the noisy component is uniform over the evidence seen (the real
cases' and the copies'). The copies set the evidence's scale (the logistic model learnt what a
wrong mask looks like on this data); the noisy component assumes nothing more about the shape
of the errors, which differ from set to set and from the copies' (on nuclei, most copies touch
one small object among thirty and sit with the clean cases, while a real annotator who skipped
half the nuclei lies far beyond). A free two-Gaussian mixture had to see a wide gap before it
could be trusted on a few dozen cases and then found nothing; here a case is called noisy when
the clean group cannot explain it. Each case's posterior under the noisy component is its
``noise_probability``; it is flagged at ``threshold``. The probability is monotone in the
evidence and 0 at or below the clean centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit
from scipy.stats import norm

MAX_ITERATIONS = 500
TOLERANCE = 1e-8
START_SHARES = (1.0, 0.8, 0.6)  # EM starts from the lowest cases' share
MIN_SHARE = 1e-6  # the noisy share stays inside (0, 1), so that its log-odds stay finite


@dataclass(frozen=True)
class FlagFit:
    probability: np.ndarray  # (N,) posterior that the case's mask is wrong, monotone in evidence
    flagged: np.ndarray  # (N,) bool: probability >= threshold
    noisy_share: float  # the mixture weight of the noisy (uniform) component
    clean_centre: float  # the clean component's mean evidence
    clean_spread: float  # ... and its standard deviation
    reason: str  # why nothing is flagged ("" when something is)


def fit_flags(
    evidence: np.ndarray,
    copies: np.ndarray,
    *,
    threshold: float = 0.5,
    max_noisy_share: float = 0.5,
) -> FlagFit:
    """Fit the mixture to ``evidence`` ``(N,)``; ``copies`` ``(M,)`` widen the noisy support."""
    e = np.asarray(evidence, dtype=np.float64)
    c = np.asarray(copies, dtype=np.float64)
    if e.ndim != 1 or c.ndim != 1:
        raise ValueError(f"evidence and copies must be 1-D, got {e.shape} and {c.shape}")
    if len(e) < 4:
        raise ValueError(f"the flag needs at least 4 cases, got {len(e)}")
    if len(c) < 2 or np.ptp(c) <= 0:
        raise ValueError("the flag needs at least 2 known-noisy copies that differ")
    if not (np.all(np.isfinite(e)) and np.all(np.isfinite(c))):
        raise ValueError("evidence must be finite (found NaN or infinity)")
    if not 0.0 < threshold < 1.0 or not 0.0 < max_noisy_share <= 1.0:
        raise ValueError("threshold must be in (0, 1) and max_noisy_share in (0, 1]")
    # The noisy component: uniform over every evidence seen, real or copy.
    low, high = min(float(e.min()), float(c.min())), max(float(e.max()), float(c.max()))
    log_noisy = np.full(len(e), -np.log(max(high - low, 1e-9)))
    # The clean spread never falls below a small share of the copies' own, so that a set of
    # near-identical cases cannot make every other case infinitely unlikely.
    floor = 0.05 * float(np.std(c))
    # EM has a local optimum where the clean Gaussian widens over every case: start it from the
    # lowest 100%, 80% and 60% of the cases and keep the fit of highest likelihood.
    fits = [_em(e, log_noisy, lower, floor, max_noisy_share) for lower in START_SHARES]
    share, centre, spread, _ = max(fits, key=lambda fit: fit[3])
    probability = _posterior(e, log_noisy, share, centre, spread)
    flagged = probability >= threshold
    reason = ""
    if not flagged.any():
        reason = (
            f"no case lies beyond what the clean group explains "
            f"(the noisy share fitted {share:.1%}; highest probability "
            f"{float(probability.max()):.2f} < {threshold})"
        )
    return FlagFit(probability, flagged, share, centre, spread, reason)


def _em(
    e: np.ndarray, log_noisy: np.ndarray, lower: float, floor: float, max_share: float
) -> tuple[float, float, float, float]:
    """EM for the clean Gaussian and the noisy share, started from the lowest ``lower`` of the
    cases; returns share, centre, spread and the fit's log-likelihood.
    """
    start = e[e <= np.quantile(e, lower)]
    centre, spread = float(np.median(start)), max(float(np.std(start)), floor)
    max_share = min(max_share, 1.0 - MIN_SHARE)  # the odds share / (1 - share) stay finite
    share = float(np.clip(1.0 - lower, 0.05, max_share))
    for _ in range(MAX_ITERATIONS):
        posterior = _posterior(e, log_noisy, share, centre, spread)
        weight = 1.0 - posterior
        new_share = float(np.clip(posterior.mean(), MIN_SHARE, max_share))
        new_centre = float((weight * e).sum() / max(weight.sum(), 1e-12))
        variance = float((weight * (e - new_centre) ** 2).sum() / max(weight.sum(), 1e-12))
        new_spread = max(float(np.sqrt(variance)), floor)
        moved = abs(new_share - share) + abs(new_centre - centre) + abs(new_spread - spread)
        share, centre, spread = new_share, new_centre, new_spread
        if moved < TOLERANCE:
            break
    density = (1.0 - share) * norm.pdf(e, centre, spread) + share * np.exp(log_noisy)
    return share, centre, spread, float(np.log(np.maximum(density, 1e-300)).sum())


def _posterior(
    evidence: np.ndarray, log_noisy: np.ndarray, share: float, centre: float, spread: float
) -> np.ndarray:
    """Each case's posterior under the noisy component, from a likelihood ratio made monotone in
    the evidence (a running maximum over rising evidence) and zero at or below the clean centre,
    where a case agrees at least as well as the typical clean one.
    """
    log_ratio = log_noisy - norm.logpdf(evidence, centre, spread)
    log_ratio = np.where(evidence <= centre, -np.inf, log_ratio)
    order = np.argsort(evidence, kind="stable")
    monotone = np.empty_like(log_ratio)
    monotone[order] = np.maximum.accumulate(log_ratio[order])
    posterior: np.ndarray = expit(np.log(share / (1.0 - share)) + monotone)
    return posterior
