"""The graded evidence (models.calibration) on figures with a known answer."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from models.calibration import calibrate

NAMES = ("a", "b", "c")


def sets(seed: int = 0):
    rng = np.random.default_rng(seed)
    clean = rng.gamma(2.0, 0.02, size=(40, 3))
    noisy = rng.gamma(2.0, 0.02, size=(10, 3)) + rng.uniform(0.1, 0.4, size=(10, 1))
    real = np.concatenate([clean, noisy])
    reference = np.arange(0, 40, 2)
    copies = real[np.repeat(reference, 5)] + rng.uniform(0.05, 0.5, size=(100, 1))
    return real, copies, reference


def test_evidence_ranks_the_noisy_cases_first_and_is_graded():
    real, copies, reference = sets()
    c = calibrate(real, copies, names=NAMES, reference=reference)
    truth = np.r_[np.zeros(40), np.ones(10)].astype(bool)
    assert roc_auc_score(truth, c.evidence) > 0.95
    assert len(np.unique(c.evidence)) == len(real)  # no ties between different figures
    assert c.synthetic == 100 and c.separation > 0.9
    assert set(c.weights) == set(NAMES) and all(w > 0 for w in c.weights.values())


def test_bad_shapes_are_refused():
    real, copies, reference = sets()
    with pytest.raises(ValueError, match="must be"):
        calibrate(real, copies[:, :2], names=NAMES, reference=reference)
    with pytest.raises(ValueError, match="names"):
        calibrate(real, copies, names=NAMES[:2], reference=reference)
    with pytest.raises(ValueError, match="copies"):
        calibrate(real, copies[:0], names=NAMES, reference=reference)


def test_reference_cases_are_the_surest_and_copies_come_from_cases_with_objects():
    from models.scoring import reference_cases

    # Ten cases, disagreement rising with the index; the five surest hold no object.
    disagreement = np.arange(10.0)[:, None] * np.ones((1, 2))
    assert reference_cases(disagreement).tolist() == [0, 1, 2, 3, 4]
    holds = np.arange(10) >= 5
    assert reference_cases(disagreement, eligible=holds).tolist() == [5, 6, 7, 8, 9]
    only_two = np.isin(np.arange(10), [3, 8])
    assert reference_cases(disagreement, eligible=only_two).tolist() == [3, 8]


def test_noise_score_keeps_the_order_where_expit_would_tie():
    from scipy.special import expit

    from models.calibration import noise_score

    evidence = [38.0, 40.0, 80.0, 1e6]
    assert len({float(expit(e)) for e in evidence}) == 1  # all 1.0 in double precision
    scores = [noise_score(e) for e in evidence]
    assert scores == sorted(scores) and len(set(scores)) == 4 and all(0 < s < 1 for s in scores)
    assert noise_score(0.0) == 0.5 and noise_score(-3.0) == pytest.approx(1 - noise_score(3.0))
