"""The final flag: the label filter's two-component mixture on the graded evidence, as a
probability per case.

Input is the ``(N,)`` evidence of the real cases and the ``(M,)`` evidence of the known-noisy
copies (``models.calibration``; the same model scores both). The real cases are modelled as
``(1 - share) * clean + share * noisy``: the clean component is a Gaussian whose centre, spread
and share are fitted by EM. The noisy component is a blend of two fixed shapes: the copies'
evidence density (a Gaussian kernel estimate), weighed ``copies_weight``, and the uniform over
every evidence seen (the real cases' and the copies'), the rest. The copies say where wrong masks
lie on this data: on nuclei at 200 cases the corrupted masks lay a few units above the clean
group, where the copies lay, and a uniform component alone, spread as far as the farthest copy,
was too thin there to win against a clean Gaussian widened over both (about half the wrong masks
found). The uniform part assumes nothing about the errors' shape, which differs from set to set
and from the copies' (an annotator who skipped half the nuclei lies far beyond most copies).

How much of the noisy component follows the copies is fitted by the same EM, inside
``COPIES_WEIGHT_RANGE`` (a quarter to three quarters: neither shape is ever dropped), unless a
weight is given. A fixed half lost whole 40-case sets: with 16 wrong masks of 40 lying where the
copies lay, one clean Gaussian widened over every case explained them better than a clean group
and a noisy component half spread thin, and nothing was flagged. Each case's posterior under the
noisy component is its ``noise_probability``; it is flagged at ``threshold``. The probability is
monotone in the evidence (a case beyond the copies keeps at least the posterior of those below
it) and 0 at or below the clean centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit
from scipy.stats import gaussian_kde, norm

MAX_ITERATIONS = 500
TOLERANCE = 1e-8
START_SHARES = (1.0, 0.8, 0.6)  # EM starts from the lowest cases' share
MIN_SHARE = 1e-6  # the noisy share stays inside (0, 1), so that its log-odds stay finite
# The noisy component's weight on the copies' density (the rest uniform), fitted inside these
# bounds when no weight is given.
COPIES_WEIGHT_RANGE = (0.25, 0.75)


@dataclass(frozen=True)
class FlagFit:
    probability: np.ndarray  # (N,) posterior that the case's mask is wrong, monotone in evidence
    flagged: np.ndarray  # (N,) bool: probability >= threshold
    noisy_share: float  # the mixture weight of the noisy component
    clean_centre: float  # the clean component's mean evidence
    clean_spread: float  # ... and its standard deviation
    copies_weight: float  # the noisy component's weight on the copies' density (the rest uniform)
    reason: str  # why nothing is flagged ("" when something is)


def fit_flags(
    evidence: np.ndarray,
    copies: np.ndarray,
    *,
    threshold: float = 0.5,
    max_noisy_share: float = 0.5,
    copies_weight: float | None = None,
) -> FlagFit:
    """Fit the mixture to ``evidence`` ``(N,)``; the noisy component's density is the copies'
    ``(M,)`` (a Gaussian kernel density) weighed ``copies_weight``, and the uniform over every
    evidence seen for the rest. ``copies_weight`` None: fitted inside ``COPIES_WEIGHT_RANGE``."""
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
    if copies_weight is not None and not 0.0 <= copies_weight <= 1.0:
        raise ValueError(f"copies_weight must be in [0, 1], got {copies_weight}")
    bounds = COPIES_WEIGHT_RANGE if copies_weight is None else (copies_weight, copies_weight)
    # The noisy component's two shapes: where the copies lie, and uniform over every evidence
    # seen.
    low, high = min(float(e.min()), float(c.min())), max(float(e.max()), float(c.max()))
    shapes = _Shapes(
        learnt=_density(c)(e) if bounds[1] > 0 else np.zeros(len(e)),
        uniform=np.full(len(e), 1.0 / max(high - low, 1e-9)),
        bounds=bounds,
    )
    # The clean spread never falls below a small share of the copies' own, so that a set of
    # near-identical cases cannot make every other case infinitely unlikely.
    floor = 0.05 * float(np.std(c))
    # EM has a local optimum where the clean Gaussian widens over every case: start it from the
    # lowest 100%, 80% and 60% of the cases and keep the fit of highest likelihood.
    fits = [_em(e, shapes, lower, floor, max_noisy_share) for lower in START_SHARES]
    share, centre, spread, weight, _ = max(fits, key=lambda fit: fit[4])
    probability = _posterior(e, shapes.log_noisy(weight), share, centre, spread)
    flagged = probability >= threshold
    reason = ""
    if not flagged.any():
        reason = (
            f"no case lies beyond what the clean group explains "
            f"(the noisy share fitted {share:.1%}; highest probability "
            f"{float(probability.max()):.2f} < {threshold})"
        )
    return FlagFit(probability, flagged, share, centre, spread, weight, reason)


def _density(copies: np.ndarray) -> gaussian_kde:
    """The copies' evidence density: a Gaussian kernel of Silverman's robust bandwidth (a few
    copies far out must not smooth the bulk away)."""
    spread = float(np.std(copies))
    quartiles = np.percentile(copies, [25, 75])
    robust = min(spread, float(quartiles[1] - quartiles[0]) / 1.349) or spread
    bandwidth = 0.9 * robust * len(copies) ** -0.2
    return gaussian_kde(copies, bw_method=bandwidth / spread)


@dataclass(frozen=True)
class _Shapes:
    """The noisy component's two densities at each case's evidence, and the bounds of the
    weight on the first."""

    learnt: np.ndarray  # (N,) the copies' kernel density
    uniform: np.ndarray  # (N,) the uniform density
    bounds: tuple[float, float]

    def density(self, weight: float) -> np.ndarray:
        noisy: np.ndarray = weight * self.learnt + (1.0 - weight) * self.uniform
        return noisy

    def log_noisy(self, weight: float) -> np.ndarray:
        # (floored: at weight 1 the kernel density underflows far from every copy)
        logs: np.ndarray = np.log(np.maximum(self.density(weight), 1e-300))
        return logs


def _em(
    e: np.ndarray, shapes: _Shapes, lower: float, floor: float, max_share: float
) -> tuple[float, float, float, float, float]:
    """EM for the clean Gaussian, the noisy share and the copies' weight inside the noisy
    component, started from the lowest ``lower`` of the cases; returns share, centre, spread,
    weight and the fit's log-likelihood.
    """
    start = e[e <= np.quantile(e, lower)]
    centre, spread = float(np.median(start)), max(float(np.std(start)), floor)
    max_share = min(max_share, 1.0 - MIN_SHARE)  # the odds share / (1 - share) stay finite
    share = float(np.clip(1.0 - lower, 0.05, max_share))
    weight = float(np.clip(0.5, *shapes.bounds))
    for _ in range(MAX_ITERATIONS):
        posterior = _posterior(e, shapes.log_noisy(weight), share, centre, spread)
        # The noisy posterior split between its two shapes: the copies' share of it.
        learnt = posterior * weight * shapes.learnt / np.maximum(shapes.density(weight), 1e-300)
        new_weight = float(np.clip(learnt.sum() / max(posterior.sum(), 1e-12), *shapes.bounds))
        clean = 1.0 - posterior
        new_share = float(np.clip(posterior.mean(), MIN_SHARE, max_share))
        new_centre = float((clean * e).sum() / max(clean.sum(), 1e-12))
        variance = float((clean * (e - new_centre) ** 2).sum() / max(clean.sum(), 1e-12))
        new_spread = max(float(np.sqrt(variance)), floor)
        moved = (
            abs(new_share - share)
            + abs(new_centre - centre)
            + abs(new_spread - spread)
            + abs(new_weight - weight)
        )
        share, centre, spread, weight = new_share, new_centre, new_spread, new_weight
        if moved < TOLERANCE:
            break
    density = (1.0 - share) * norm.pdf(e, centre, spread) + share * shapes.density(weight)
    return share, centre, spread, weight, float(np.log(np.maximum(density, 1e-300)).sum())


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
