"""The engine's progress reports as the audit row shows them: one percent over all phases, an
ETA, and a limit on how often they are written.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Each phase's share of the run, in percent: training, then scoring every case at its own
# resolution with its known-noisy copies (about half as long as training on 2D images).
SPANS: dict[str, tuple[float, float]] = {
    "load": (0.0, 5.0),
    "warmup": (5.0, 70.0),
    "train": (5.0, 70.0),
    "judge": (70.0, 74.0),  # the judge's refit: a tenth of the epochs (models.train.refit_judge)
    "score": (74.0, 96.0),
    "write": (96.0, 100.0),
}
TRAINING = ("warmup", "train")


def percent_done(phase: str, epoch: int, epochs: int, step: int, steps: int) -> float:
    """How far the run is, 0..100, from one report (``epoch`` and ``step`` are 1-based)."""
    low, high = SPANS.get(phase, (0.0, 100.0))
    if phase in TRAINING and epochs > 0 and steps > 0:
        fraction = (epoch - 1 + step / steps) / epochs
    else:
        fraction = step / steps if steps > 0 else 1.0
    return low + (high - low) * min(max(fraction, 0.0), 1.0)


@dataclass
class Eta:
    """Seconds left, from the rate since this attempt's first training report (loading is
    fast and says little about training; a resumed run starts part way).
    """

    start: tuple[float, float] | None = None  # (time, percent) of the first training report

    def update(self, phase: str, percent: float, now: float) -> float | None:
        if self.start is None:
            if phase in TRAINING:
                self.start = (now, percent)
            return None
        began, base = self.start
        if percent <= base:
            return None
        return round((now - began) * (100.0 - percent) / (percent - base), 1)


@dataclass
class Throttle:
    """Lets a report through at most every ``interval`` seconds, and at every change of phase."""

    interval: float
    last: float = field(default=float("-inf"))
    phase: str | None = None

    def due(self, phase: str, now: float) -> bool:
        if phase != self.phase or now - self.last >= self.interval:
            self.last, self.phase = now, phase
            return True
        return False
