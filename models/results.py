"""What an audit says of each case: the one result record, returned by ``run_audit`` and handed
in memory to whatever stores it (the service's data layer, the command line, the benchmark).
"""

from __future__ import annotations

from dataclasses import dataclass
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
    noise_score: float  # 1 - clean probability: higher = more likely noisy
    flagged: bool
    ce: float
    dice_gap: float
    dice: tuple[float, ...]  # teacher vs given mask, per foreground class
    changed_fraction: float  # share of pixels where the pseudo label differs from the given mask
    issue_fraction: float  # share of pixels whose issue map value is above 0.5
    slices: tuple[SliceResult, ...] = ()
    cleansed: Path | None = None
    pseudo_label: Path | None = None
    issue_map: Path | None = None

    def sort_key(self) -> tuple[float, float, float]:
        """Most suspect first."""
        return (-self.noise_score, -self.dice_gap, -self.ce)
