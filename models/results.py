"""What an audit says of each case: the one result record, returned by ``run_audit`` and handed
in memory to whatever stores it (the service's data layer, the command line, the benchmark).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class SliceResult:
    """One slice of a 3D case: the teacher's disagreement and the pixels given, predicted and
    at issue.
    """

    slice: int
    dice_gap: float
    given_pixels: int
    predicted_pixels: int
    issue_pixels: int


@dataclass(frozen=True)
class CaseResult:
    """One case: its scores, the per-slice detail (3D) and the masks written for it.

    The paths are relative to the audit's output folder (``cleansed/<case>.<ext>`` ...).
    """

    case: str
    noise_score: float  # graded, in (0, 1): higher = the mask looks more like a known-noisy copy
    flagged: bool  # the label filter's mixture put the case in the noisy component
    ce: float
    dice_gap: float
    dice: tuple[float, ...]  # teacher vs given mask, per foreground class
    changed_fraction: float  # share of pixels where the pseudo label differs from the given mask
    issue_fraction: float  # share of pixels whose issue map value is above 0.5
    figures: Mapping[str, float] = field(default_factory=dict)  # models.figures, by name
    model_uncertain: bool = False  # the teacher is unusually unsure near the objects
    slices: tuple[SliceResult, ...] = ()
    cleansed: Path | None = None
    pseudo_label: Path | None = None
    issue_map: Path | None = None

    def sort_key(self) -> tuple[float, float, float]:
        """Most suspect first: by the evidence (the score's log-odds, never saturated)."""
        return (-self.figures.get("evidence", self.noise_score), -self.noise_score, -self.dice_gap)
