import numpy as np
import pytest

from models.label_filter import ashman_d, fit_label_filter, log_scale


def test_bimodal_disagreements_split_into_clean_and_noisy(rng):
    clean = rng.normal([0.1, 0.05], 0.02, size=(42, 2))
    noisy = rng.normal([0.6, 0.4], 0.08, size=(18, 2))
    result = fit_label_filter(np.vstack([clean, noisy]), seed=0)
    assert not result.degenerate
    assert result.separation > 2.0
    assert np.all(result.clean_prob[:42] > 0.9)
    assert np.all(result.clean_prob[42:] < 0.1)
    assert result.noisy_weight == pytest.approx(18 / 60, abs=0.03)


def test_one_dimensional_figures_work_too(rng):
    x = np.concatenate([rng.normal(0, 1, 50), rng.normal(8, 1, 10)])
    prob = fit_label_filter(x).clean_prob
    assert (prob[:50] > 0.5).all() and (prob[50:] < 0.5).all()


def test_unimodal_set_flags_nothing(rng):
    result = fit_label_filter(rng.normal(0.2, 0.05, size=(60, 2)), seed=0)
    assert result.degenerate
    assert result.reason
    assert np.all(result.clean_prob == 1.0)


def test_skewed_unimodal_set_flags_nothing(rng):
    # A single lognormal cloud: long-tailed, but one population.
    x = np.log(rng.lognormal(mean=-2.0, sigma=0.4, size=(80, 1)))
    assert fit_label_filter(x).degenerate


def test_identical_figures_flag_nothing():
    result = fit_label_filter(np.full((10, 2), 0.3))
    assert result.degenerate and np.all(result.clean_prob == 1.0)


def test_cases_that_agree_better_than_the_clean_mean_are_clean(rng):
    clean = rng.normal(0.0, 1.0, size=(40, 1))
    noisy = rng.normal(6.0, 3.0, size=(20, 1))  # wide: its tail reaches far left
    x = np.vstack([clean, noisy, [[-6.0]]])
    assert fit_label_filter(x).clean_prob[-1] == 1.0


@pytest.mark.parametrize(
    ("features", "message"),
    [
        (np.zeros((3, 2)), "at least 4 cases"),
        (np.zeros((2, 2, 2)), "shape (N,) or (N, F)"),
        (np.array([[0.1], [np.nan], [0.2], [0.3]]), "finite"),
        (np.zeros((5, 0)), "at least one figure"),
    ],
)
def test_invalid_input_raises_a_useful_value_error(features, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        fit_label_filter(features)


def test_ashman_d_matches_the_one_dimensional_formula():
    d = ashman_d(np.array([0.0]), np.array([[1.0]]), np.array([4.0]), np.array([[1.0]]))
    assert d == pytest.approx(4.0)


def test_a_few_unusually_easy_cases_are_not_a_clean_majority(rng):
    easy = rng.normal(-6.0, 0.05, size=(3, 2))
    rest = rng.normal(0.0, 1.0, size=(27, 2))
    result = fit_label_filter(np.vstack([easy, rest]), seed=0)
    assert result.degenerate and "no clean majority" in result.reason


def test_log_scale_keeps_perfect_agreement_near_the_clean_group(rng):
    clean = rng.uniform(0.02, 0.05, size=(20, 2))
    scaled = log_scale(np.vstack([clean, [[0.0, 0.0]], [[0.8, 0.9]]]))
    spread = scaled[:20].max(axis=0) - scaled[:20].min(axis=0)
    assert np.all(scaled[:20].min(axis=0) - scaled[20] < 2 * spread)  # zero is not an outlier
    assert np.all(scaled[21] - scaled[:20].max(axis=0) > 2 * spread)  # real noise still is
    with pytest.raises(ValueError, match=">= 0"):
        log_scale(np.array([[-0.1], [0.2]]))
