"""Progress as the audit row shows it: one percent over the phases, an ETA, a bounded rate."""

from __future__ import annotations

import pytest

from worker.progress import Eta, Throttle, percent_done


def test_percent_rises_through_the_phases_of_a_run():
    epochs, steps = 4, 3
    reports = [("load", 0, i, 8) for i in range(1, 9)]
    reports += [
        ("warmup" if e == 1 else "train", e, s, steps)
        for e in range(1, epochs + 1)
        for s in range(1, steps + 1)
    ]
    reports += [("judge", epochs, i, 6) for i in range(1, 7)]
    reports += [("score", epochs, i, 8) for i in range(1, 9)]
    reports += [("write", epochs, i, 8) for i in range(1, 9)]
    values = [percent_done(phase, epoch, epochs, step, n) for phase, epoch, step, n in reports]
    assert values == sorted(values) and len(set(values)) == len(values)
    assert values[0] > 0 and values[-1] == 100.0
    assert percent_done("train", 2, 4, 3, 3) == pytest.approx(5 + 65 * 2 / 4)


def test_eta_comes_from_the_training_rate_of_this_attempt():
    eta = Eta()
    assert eta.update("load", 4.0, now=0.0) is None  # loading says nothing about training
    assert eta.update("train", 50.0, now=10.0) is None  # resumed half way: the first sample
    assert eta.update("train", 60.0, now=20.0) == pytest.approx(40.0)  # 10 %/10 s, 40 % left
    assert eta.update("write", 100.0, now=30.0) == 0.0


def test_throttle_lets_a_report_through_per_interval_and_per_phase():
    throttle = Throttle(2.0)
    due = [throttle.due(p, t) for p, t in [("train", 0), ("train", 1), ("train", 2.5)]]
    assert due == [True, False, True]
    assert throttle.due("score", 2.6)  # a new phase is written at once
    assert Throttle(0.0).due("train", 0) and Throttle(0.0).due("train", 0)
