"""Every choice of the audit, as one frozen dataclass with tested defaults (see method.md)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from imaging.classes import check_classes, names_by_value
from imaging.errors import InputError


def _compiles(pattern: str | None) -> bool:
    if pattern is None:
        return True
    try:
        re.compile(pattern)
    except re.error:
        return False
    return True


@dataclass(frozen=True)
class AuditConfig:
    """Hyper-parameters of the self-cleansing audit. Validated on construction."""

    # Preprocessing: every 2D image or slice is padded to a square and resized to size x size;
    # None: from the data's fingerprint (models.fingerprint), reported in run.json.
    size: int | None = None
    # Patches (models.train, models.network): above this working size the network trains on
    # random patch_size x patch_size windows (a third of them centred on a foreground pixel) and
    # predicts with MONAI's sliding-window inferer, so that an epoch costs the same whatever the
    # working size; at or below it, on whole images.
    patch_size: int = 256
    # Network: a MONAI residual U-Net.
    channels: tuple[int, ...] = (16, 32, 64, 128)
    num_res_units: int = 1
    # Training.
    epochs: int = 40
    warmup_epochs: int | None = None  # None: a third of the epochs
    batch_size: int = 4  # small batches: more steps for the same compute on small sets
    learning_rate: float = 2e-3
    lr_schedule: Literal["constant", "cosine"] = (
        "cosine"  # annealed to zero over the epochs; or "constant"
    )
    weight_decay: float = 1e-4
    augment_flips: bool = True
    # Random rotation and zoom (augment_spatial) and gamma and contrast (augment_intensity) of
    # half the training slices each (models.augment, MONAI transforms).
    augment_spatial: bool = False
    augment_intensity: bool = False
    # Mixed precision (bfloat16 autocast) when training on CUDA; the CPU always runs float32.
    amp: bool = True
    seed: int = 0
    # Teacher: EMA of the weights (per optimiser step), flip test-time augmentation.
    ema_decay: float = 0.95
    tta_flips: bool = True
    # Cross-fitting (models.folds): 1 trains one network on every case, as the paper; K >= 2
    # trains K networks, each scoring the fold it never saw. Folds keep the cases of one group
    # together: group_pattern (a regex; its first group, or the match, names a case's group).
    folds: int = 1
    group_pattern: str | None = None
    # Label filter (LFM): disagreement measured within ring_radius px of the objects.
    ring_radius: int = 4
    gmm_min_separation: float = 2.0  # Ashman's D between the two components
    gmm_min_weight: float = 0.03  # the smaller component's share of the cases
    gmm_min_bic_gain: float = 5.0  # how much better (BIC) two components must fit than one
    gmm_max_noisy_weight: float = 0.5  # a "noisy" component larger than this is no clean majority
    clean_prob_momentum: float = 0.5  # smoothing of the clean probability across epochs
    flag_threshold: float = 0.5  # flagged when the smoothed clean probability is below
    degenerate_pass: Literal["hold", "decay"] = (
        "hold"  # a pass with no noisy group: "hold" or "decay" (to clean)
    )
    # The final flag: a case is flagged when the mixture on the graded evidence (a Gaussian
    # clean group and a noisy component blending the copies' evidence density with a uniform,
    # models.flagging) gives it at least this posterior probability of a wrong mask.
    flag_probability: float = 0.5
    # The noisy component's weight on the known-noisy copies' evidence density; the rest is
    # uniform over the evidence seen. None: fitted with the mixture, between a quarter and three
    # quarters (models.flagging); 0: uniform only, the flag before 2026-12-07.
    flag_copies_weight: float | None = None
    filter_every: int = 2  # epochs between label-filter passes after the warm-up
    filter_tta: bool = False  # flip TTA in those passes (the final pass follows tta_flips)
    # The judge (models.train.refit_judge): after training, a copy of the teacher is trained
    # judge_epochs more epochs on every case's given mask, and it, not the jointly supervised
    # teacher, measures the figures that score and flag the cases (0: the teacher judges).
    judge_epochs: int = 4
    judge_learning_rate: float = 5e-4
    # Label cleansing (LCM).
    confidence: float = 0.8  # teacher probability above which its class replaces the given one
    min_component_fraction: float = 0.1  # smaller components (vs. the class's largest) are specks
    fill_holes: bool = True
    single_object_classes: tuple[int, ...] | None = None  # None: inferred from the given masks
    # Joint supervision.
    # "auto": on where every class the masks draw is one object per mask, off where masks
    # hold many objects (models.train.uses_joint_supervision); "off": the warm-up lasts to the
    # last epoch: every case trains on its given mask until the filter's one pass before it.
    joint_supervision: Literal["auto", "on", "off"] = "auto"
    lambda_max: float = 1.0
    lambda_ramp_epochs: int = 5
    weight_by_clean_prob: bool = True
    # Input.
    min_cases: int = 8
    num_classes: int | None = None  # None: inferred as the largest mask value + 1
    max_classes: int = 32  # inferred class counts above this are taken as a mis-encoded mask
    # The service's audit this run is, named in the DICOM outputs' series descriptions so that
    # two audits' SEGs tell apart; the worker sets it (over any value given), None stand-alone.
    audit_id: int | None = None
    # Declared classes {name: mask value} (imaging.classes): masks with other values are refused,
    # and the names label the outputs. None: named class_<v> (or by DICOM segment labels).
    classes: dict[str, int] | None = None

    def __post_init__(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(f"invalid audit config: {message}")

        need(
            self.size is None or (self.size >= 32 and self.size % 8 == 0),
            f"size must be >= 32 and a multiple of 8, got {self.size}",
        )
        need(
            self.patch_size >= 32 and self.patch_size % 8 == 0,
            f"patch_size must be >= 32 and a multiple of 8, got {self.patch_size}",
        )
        need(
            len(self.channels) >= 2 and all(c > 0 for c in self.channels),
            f"channels must be 2+ positive ints, got {self.channels}",
        )
        for switch in (f.name for f in fields(self) if f.type == "bool"):
            value = getattr(self, switch)
            need(isinstance(value, bool), f"{switch} must be true or false, got {value!r}")
        need(self.epochs >= 2, f"epochs must be >= 2, got {self.epochs}")
        need(
            1 <= self.warmup < self.epochs,
            f"warmup_epochs must be in 1..epochs-1, got {self.warmup}",
        )
        need(
            self.lr_schedule in ("constant", "cosine"),
            f"lr_schedule must be constant or cosine, got '{self.lr_schedule}'",
        )
        need(
            self.joint_supervision in ("auto", "on", "off"),
            f"joint_supervision must be auto, on or off, got '{self.joint_supervision}'",
        )
        need(
            self.degenerate_pass in ("hold", "decay"),
            f"degenerate_pass must be hold or decay, got '{self.degenerate_pass}'",
        )
        need(1 <= self.folds <= 10, f"folds must be in 1..10, got {self.folds}")
        need(_compiles(self.group_pattern), f"group_pattern is no regex: {self.group_pattern!r}")
        need(0 <= self.judge_epochs <= 100, f"judge_epochs must be 0..100, got {self.judge_epochs}")
        need(self.judge_learning_rate > 0, "judge_learning_rate must be > 0")
        need(self.filter_every >= 1, f"filter_every must be >= 1, got {self.filter_every}")
        need(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        need(self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}")
        need(0.0 <= self.ema_decay < 1.0, f"ema_decay must be in [0, 1), got {self.ema_decay}")
        need(self.ring_radius >= 0, f"ring_radius must be >= 0, got {self.ring_radius}")
        need(self.gmm_min_separation >= 0, "gmm_min_separation must be >= 0")
        need(0.0 <= self.gmm_min_weight < 0.5, "gmm_min_weight must be in [0, 0.5)")
        need(0.5 <= self.gmm_max_noisy_weight <= 1.0, "gmm_max_noisy_weight must be in [0.5, 1]")
        need(0.0 <= self.clean_prob_momentum < 1.0, "clean_prob_momentum must be in [0, 1)")
        need(0.0 < self.flag_probability < 1.0, "flag_probability must be in (0, 1)")
        need(
            self.flag_copies_weight is None or 0.0 <= self.flag_copies_weight <= 1.0,
            "flag_copies_weight must be in [0, 1] (or None: fitted)",
        )
        need(0.0 < self.flag_threshold < 1.0, "flag_threshold must be in (0, 1)")
        need(
            0.5 <= self.confidence <= 1.0, f"confidence must be in [0.5, 1], got {self.confidence}"
        )
        need(0.0 <= self.min_component_fraction < 1.0, "min_component_fraction must be in [0, 1)")
        need(self.lambda_max >= 0, "lambda_max must be >= 0")
        need(self.lambda_ramp_epochs >= 1, "lambda_ramp_epochs must be >= 1")
        need(
            self.min_cases >= 4,
            f"min_cases must be >= 4 (the mixture needs cases), got {self.min_cases}",
        )
        need(self.num_classes is None or self.num_classes >= 2, "num_classes must be >= 2")
        need(self.max_classes >= 2, "max_classes must be >= 2")
        need(self.audit_id is None or self.audit_id >= 1, "audit_id must be >= 1")
        if self.classes is not None:
            try:
                declared = check_classes(self.classes)
            except InputError as exc:
                raise ValueError(f"invalid audit config: {exc.detail}") from None
            top = max(declared.values())
            need(
                self.num_classes is None or top < self.num_classes,
                f"num_classes is {self.num_classes} but class value {top} is declared",
            )

    @property
    def class_limit(self) -> int | None:
        """K (background included) as given: ``num_classes``, else the largest declared class
        value + 1; None: inferred from the masks (their largest value + 1).
        """
        if self.num_classes is not None or not self.classes:
            return self.num_classes
        return max(self.classes.values()) + 1

    @property
    def class_names(self) -> dict[int, str]:
        """The declared classes as ``{value: name}`` (``{}`` when none are declared)."""
        return names_by_value(self.classes)

    @property
    def warmup(self) -> int:
        """Warm-up epochs in effect."""
        return self.warmup_epochs if self.warmup_epochs is not None else max(1, self.epochs // 3)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def check_keys(cls, data: Mapping[str, Any]) -> None:
        """Refuse keys that name no field (the one check of unknown audit parameters)."""
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"invalid audit config: unknown audit parameters {unknown}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditConfig:
        cls.check_keys(data)
        values = dict(data)
        for key in ("channels", "single_object_classes"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)
