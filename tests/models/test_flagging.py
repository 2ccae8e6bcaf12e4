"""The final flag: a clean Gaussian and a noisy component (half the copies' evidence density,
half uniform) on the evidence."""

from __future__ import annotations

import numpy as np
import pytest

from models.flagging import fit_flags


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
