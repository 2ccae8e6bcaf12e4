"""The final flag: a clean Gaussian and a noisy component (a blend of the copies' evidence
density and a uniform, the blend fitted) on the evidence."""

from __future__ import annotations

import numpy as np
import pytest

from models.flagging import COPIES_WEIGHT_RANGE, fit_flags


def _sets(rng: np.random.Generator, clean: int, noisy: int) -> tuple[np.ndarray, np.ndarray]:
    """Evidence of ``clean`` + ``noisy`` cases, and of 200 known-noisy copies."""
    evidence = np.concatenate([rng.normal(-3.0, 1.5, clean), rng.normal(5.0, 2.5, noisy)])
    return evidence, rng.normal(5.0, 2.5, 200)


def test_a_noisy_share_is_found_and_flagged_with_few_mistakes(rng):
    evidence, copies = _sets(rng, 36, 24)
    fit = fit_flags(evidence, copies)
    truth = np.arange(60) >= 36
    assert 0.3 <= fit.noisy_share <= 0.5, fit.noisy_share
    assert (fit.flagged & truth).sum() >= 22  # recall >= 0.9
    assert (fit.flagged & ~truth).sum() <= 2  # precision >= 0.9
    assert fit.clean_centre == pytest.approx(-3.0, abs=0.8)
    assert fit.reason == ""


def test_a_clean_set_gets_almost_no_flags_and_says_why(rng):
    evidence, copies = _sets(rng, 200, 0)
    fit = fit_flags(evidence, copies)
    assert fit.flagged.sum() <= 4, np.sort(fit.probability)[-5:]  # 2% of 200
    assert fit.noisy_share < 0.05


def test_with_nothing_flagged_the_reason_names_the_highest_probability(rng):
    fit = fit_flags(rng.normal(0.0, 1.0, 40), rng.normal(2.0, 1.0, 100))
    assert not fit.flagged.any()
    assert "no case lies beyond what the clean group explains" in fit.reason


def test_the_probability_is_monotone_in_the_evidence_and_zero_below_the_clean_centre(rng):
    evidence, copies = _sets(rng, 40, 20)
    # A case far beyond every copy stays at least as suspect as the others.
    evidence = np.append(evidence, 60.0)
    fit = fit_flags(evidence, copies)
    order = np.argsort(evidence)
    assert np.all(np.diff(fit.probability[order]) >= 0)
    assert fit.probability[-1] == fit.probability.max() and fit.flagged[-1]
    assert np.all(fit.probability[evidence <= fit.clean_centre] == 0.0)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_errors_close_to_the_clean_group_are_found_where_the_copies_lie(seed):
    """As on nuclei at 200 cases: the wrong masks a few units above the clean group, where the
    copies lie. The uniform component alone is too thin there to beat a widened clean Gaussian
    and flags nothing; with the copies' density the noisy group is found."""
    rng = np.random.default_rng(seed)
    evidence = np.concatenate([rng.normal(-2.0, 1.5, 120), rng.normal(3.0, 1.5, 80)])
    copies = rng.normal(3.0, 1.5, 200)
    truth = np.arange(200) >= 120
    fit = fit_flags(evidence, copies)
    assert (fit.flagged & truth).sum() >= 68, fit.noisy_share  # recall >= 0.85
    assert (fit.flagged & ~truth).sum() <= 10
    assert not fit_flags(evidence, copies, copies_weight=0.0).flagged.any()
    clean = fit_flags(rng.normal(-2.0, 1.5, 200), copies)
    assert clean.flagged.sum() <= 4  # 2% of a clean set of the same kind


def test_the_noisy_share_never_passes_the_clean_majority_bound(rng):
    evidence, copies = _sets(rng, 10, 50)
    fit = fit_flags(evidence, copies, max_noisy_share=0.5)
    assert fit.noisy_share <= 0.5


@pytest.mark.parametrize(
    ("evidence", "copies", "message"),
    [
        (np.zeros(3), np.arange(5.0), "at least 4 cases"),
        (np.zeros((4, 2)), np.arange(5.0), "1-D"),
        (np.arange(6.0), np.ones(5), "copies that differ"),
        (np.array([0.0, 1.0, np.nan, 2.0]), np.arange(5.0), "finite"),
    ],
)
def test_bad_input_is_refused_with_the_reason(evidence, copies, message):
    with pytest.raises(ValueError, match=message):
        fit_flags(evidence, copies)


def test_a_copies_weight_outside_0_1_is_refused():
    with pytest.raises(ValueError, match="copies_weight must be in"):
        fit_flags(np.arange(6.0), np.arange(5.0), copies_weight=1.5)


def test_the_copies_density_alone_stays_finite_far_from_every_copy():
    evidence = np.concatenate([np.linspace(-3.0, 1.0, 30), [400.0]])
    copies = np.linspace(2.0, 6.0, 50)
    with np.errstate(divide="raise", invalid="raise"):  # no log of zero on the way
        fit = fit_flags(evidence, copies, copies_weight=1.0)
    assert np.all(np.isfinite(fit.probability))
    assert fit.probability[-1] == fit.probability.max()  # monotone: the farthest case is kept


def _forty(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 40-case set, 16 wrong masks drawn where the copies lie, overlapping the clean group's
    tail (as hc18's 40-case cells with large errors); evidence, copies, truth."""
    rng = np.random.default_rng(seed)
    evidence = np.concatenate([rng.normal(-2.0, 1.7, 24), rng.normal(4.0, 2.5, 16)])
    return evidence, rng.normal(4.0, 3.0, 120), np.arange(40) >= 24


@pytest.mark.parametrize("seed", [11, 14, 21])
def test_a_noisy_group_like_the_copies_is_found_where_a_fixed_half_flagged_none(seed):
    """A noisy component fixed at half the copies' density, half spread thin, lost these sets to
    one clean Gaussian widened over every case; fitting the blend finds the wrong masks."""
    evidence, copies, truth = _forty(seed)
    assert not fit_flags(evidence, copies, copies_weight=0.5).flagged.any()
    fit = fit_flags(evidence, copies)
    assert (fit.flagged & truth).sum() >= 13  # recall >= 0.8
    assert (fit.flagged & ~truth).sum() <= 2
    assert fit.copies_weight == pytest.approx(COPIES_WEIGHT_RANGE[1])


def test_fitting_the_blend_raises_recall_and_keeps_clean_sets_quiet():
    fixed = fitted = clean = 0
    for seed in range(30):
        evidence, copies, truth = _forty(seed)
        fixed += int((fit_flags(evidence, copies, copies_weight=0.5).flagged & truth).sum())
        fitted += int((fit_flags(evidence, copies).flagged & truth).sum())
        clean_set = np.random.default_rng(100 + seed).normal(-2.0, 1.7, 40)
        clean += int(fit_flags(clean_set, copies).flagged.sum())
    assert fitted >= fixed + 0.05 * 30 * 16, (fixed, fitted)  # recall up by 5 points or more
    assert clean <= 0.02 * 30 * 40, clean  # at most 2% of the clean cases


def test_the_copies_weight_is_fitted_inside_its_bounds_or_kept_when_given(rng):
    # Wrong masks far beyond every copy: the uniform part explains them, the weight falls to its
    # lower bound and never to 0.
    evidence = np.concatenate([rng.normal(-2.0, 1.0, 30), rng.uniform(15.0, 40.0, 15)])
    copies = rng.normal(3.0, 1.0, 120)
    fit = fit_flags(evidence, copies)
    assert fit.copies_weight == pytest.approx(COPIES_WEIGHT_RANGE[0])
    assert fit.flagged[30:].all() and not fit.flagged[:30].any()
    assert fit_flags(evidence, copies, copies_weight=0.3).copies_weight == 0.3
