"""Cross-fitting folds: which cases each network trains on, and which network scores each case.

With ``folds`` K >= 2 the audit trains K networks; network k trains on every case outside fold k
and scores the cases of fold k, so no case is judged by a network that learnt its mask. Folds
never split a group: the cases of one patient (or one fetus, one slide) share a fold, because a
network that saw a sibling case would recognise the rest. Groups come from ``group_pattern``, a
regular expression searched in each case id (its first capture group, or the whole match, names
the group; a case it does not match is a group of its own). With K = 1 there is one network,
trained on every case and scoring every case, as in the paper.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from imaging.errors import ErrorCode, InputError

MIN_TRAIN_CASES = 4  # a network needs at least this many cases outside its fold


def case_group(case_id: str, pattern: re.Pattern[str] | None) -> str:
    """The group of one case: the pattern's first capture group (or match), else the case."""
    if pattern is None:
        return case_id
    found = pattern.search(case_id)
    if found is None:
        return case_id
    return found.group(1) if pattern.groups else found.group(0)


@dataclass(frozen=True)
class FoldPlan:
    """The folds of one audit. ``fold[i]`` is case i's fold; ``networks`` how many are trained."""

    fold: np.ndarray  # (N,) int, in 0..networks-1; all zeros without cross-fitting
    networks: int
    groups: int

    @property
    def cross_fitted(self) -> bool:
        return self.networks > 1

    def trains_on(self, network: int) -> list[int]:
        """The indices of the cases network ``network`` trains on."""
        if not self.cross_fitted:
            return list(range(len(self.fold)))
        return [i for i, f in enumerate(self.fold.tolist()) if f != network]

    def scorer(self, case: int) -> int:
        """The network that scores case ``case``: the one that did not train on it."""
        return int(self.fold[case])

    def to_dict(self) -> dict[str, object]:
        return {
            "folds": self.networks,
            "groups": self.groups,
            "fold_sizes": [int((self.fold == k).sum()) for k in range(self.networks)],
        }


def plan_folds(
    case_ids: Sequence[str], folds: int, group_pattern: str | None, *, seed: int
) -> FoldPlan:
    """Deal whole groups into ``folds`` folds of near-equal case counts (largest groups first,
    ties in a seeded order, each to the fold with the fewest cases so far).
    """
    n = len(case_ids)
    if folds <= 1:
        return FoldPlan(np.zeros(n, dtype=np.int64), 1, n)
    pattern = re.compile(group_pattern) if group_pattern else None
    groups = [case_group(c, pattern) for c in case_ids]
    sizes = Counter(groups)
    if len(sizes) < folds:
        raise InputError(
            ErrorCode.TOO_FEW_CASES,
            f"cross-fitting with {folds} folds needs at least {folds} groups of cases; "
            f"group_pattern {group_pattern!r} finds {len(sizes)}",
        )
    rng = np.random.default_rng(seed)
    names = sorted(sizes)
    tiebreak = dict(zip(names, rng.permutation(len(names)).tolist(), strict=True))
    load = [0] * folds
    fold_of: dict[str, int] = {}
    for name in sorted(names, key=lambda g: (-sizes[g], tiebreak[g])):
        target = min(range(folds), key=lambda k: (load[k], k))
        fold_of[name] = target
        load[target] += sizes[name]
    plan = FoldPlan(np.array([fold_of[g] for g in groups], dtype=np.int64), folds, len(sizes))
    smallest = min(len(plan.trains_on(k)) for k in range(folds))
    if smallest < MIN_TRAIN_CASES:
        raise InputError(
            ErrorCode.TOO_FEW_CASES,
            f"cross-fitting with {folds} folds leaves a network only {smallest} cases to train "
            f"on (at least {MIN_TRAIN_CASES}); use fewer folds or more cases",
        )
    return plan
