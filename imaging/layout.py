"""The names of what an audit writes into its output folder (read by people, the service's
export and the benchmark alike).
"""

from __future__ import annotations

SCORES = "scores.csv"
SLICES = "slices.csv"
RUN = "run.json"
MODEL = "model.pt"
CLEANSED = "cleansed"
PSEUDO = "pseudo_labels"
ISSUE_MAPS = "issue_maps"
ALL_OUTPUTS = (SCORES, SLICES, RUN, MODEL, CLEANSED, ISSUE_MAPS, PSEUDO)
