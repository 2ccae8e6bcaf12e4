"""The tables. Every resource belongs to a project, through its dataset where it has one."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db.base import Base, UTCDateTime, utcnow
from app.db.enums import AuditStatus, Decision, LabelTag, MaskSource, Role, Undecided, one_of
from models.agreement import ClassStatus


def _created() -> Mapped[dt.datetime]:
    return mapped_column(UTCDateTime(), default=utcnow)


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[dt.datetime] = _created()


class ApiKey(Base):
    """A key is shown once; only its SHA-256 is kept (keys are 256-bit random, not passwords)."""

    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint(one_of("role", Role), name="role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    role: Mapped[str] = mapped_column(String(16))
    prefix: Mapped[str] = mapped_column(String(16))  # the key's start, to tell keys apart
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = _created()
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    project: Mapped[Project] = relationship()


class StoredFile(Base):
    """A file in the content-addressed store (``storage/blobs/<sha[:2]>/<sha>``), by its name."""

    __tablename__ = "files"

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(255))  # e.g. case7.nii.gz: the format comes from it
    format: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = _created()


class Dataset(Base):
    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = _created()


class Case(Base):
    """One image of a dataset; its name is the file name without extension."""

    __tablename__ = "cases"
    __table_args__ = (UniqueConstraint("dataset_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    image_file_id: Mapped[int] = mapped_column(ForeignKey("files.id"))
    shape: Mapped[list[int]] = mapped_column(JSON)  # spatial: (H, W) or (X, Y, Z)
    spacing: Mapped[list[float]] = mapped_column(JSON)
    affine: Mapped[list[list[float]]] = mapped_column(JSON)  # 4x4
    channels: Mapped[int] = mapped_column(Integer)
    # A DICOM series' patient-facing labels (imaging.dicom.labels), shown to reviewers and
    # admins only; None for image files. Never put into the name, a log or an error.
    dicom_labels: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[dt.datetime] = _created()

    image: Mapped[StoredFile] = relationship()

    @property
    def is_3d(self) -> bool:
        return len(self.shape) == 3


class AnnotationSet(Base):
    """One set of masks for a dataset's cases: an annotator, a team, a re-annotation, or the
    set resolved from an audit's decisions (tag ``final``, its lineage in ``resolutions``).
    """

    __tablename__ = "annotation_sets"
    __table_args__ = (
        UniqueConstraint("dataset_id", "name"),
        CheckConstraint(one_of("tag", LabelTag), name="tag"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    tag: Mapped[str] = mapped_column(
        String(16), default=LabelTag.original, server_default=LabelTag.original.value
    )
    # {name: mask value} (imaging.classes): declared at creation, or inferred from the masks as
    # they arrive (class_<v>, or DICOM segment labels / ROI names).
    classes: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    classes_declared: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = _created()


class Mask(Base):
    """A case's mask in one annotation set. An audited set's masks stay: audits refer to them."""

    __tablename__ = "masks"
    __table_args__ = (UniqueConstraint("annotation_set_id", "case_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    annotation_set_id: Mapped[int] = mapped_column(ForeignKey("annotation_sets.id"), index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    file_id: Mapped[int] = mapped_column(ForeignKey("files.id"))
    max_label: Mapped[int] = mapped_column(Integer)  # the largest class index in the mask
    created_at: Mapped[dt.datetime] = _created()

    case: Mapped[Case] = relationship()
    file: Mapped[StoredFile] = relationship()


class Audit(Base):
    """An audit job. ``status`` only moves by compare-and-set (``app.services.state``)."""

    __tablename__ = "audits"
    __table_args__ = (CheckConstraint(one_of("status", AuditStatus), name="status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), index=True)
    annotation_set_id: Mapped[int] = mapped_column(ForeignKey("annotation_sets.id"), index=True)
    created_by_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)  # AuditConfig.to_dict()
    status: Mapped[str] = mapped_column(String(16), default=AuditStatus.queued, index=True)
    task_id: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Progress, written by the worker.
    phase: Mapped[str | None] = mapped_column(String(16))
    epoch: Mapped[int | None] = mapped_column(Integer)
    epochs: Mapped[int | None] = mapped_column(Integer)
    percent: Mapped[float | None] = mapped_column(Float)
    eta_seconds: Mapped[float | None] = mapped_column(Float)
    loss: Mapped[float | None] = mapped_column(Float)
    flagged: Mapped[int | None] = mapped_column(Integer)
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = _created()
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class AuditMask(Base):
    """The masks an audit was asked to check, fixed when it is created."""

    __tablename__ = "audit_masks"

    audit_id: Mapped[int] = mapped_column(ForeignKey("audits.id"), primary_key=True)
    mask_id: Mapped[int] = mapped_column(ForeignKey("masks.id"), primary_key=True)


class ResultRow(Base):
    """One case's result in one audit (``models.results.CaseResult``), with its stored masks."""

    __tablename__ = "case_results"
    __table_args__ = (
        UniqueConstraint("audit_id", "case_id"),
        # One per sort of the case listing (app.services.results.SORTS; "case" uses the
        # cases' (dataset_id, name) key): a page is read in index order, never sorted whole.
        Index("ix_case_results_audit_id_noise_score", "audit_id", "noise_score"),
        Index("ix_case_results_audit_id_rank", "audit_id", "rank"),
        Index("ix_case_results_audit_id_dice_gap", "audit_id", "dice_gap"),
        Index("ix_case_results_audit_id_changed_fraction", "audit_id", "changed_fraction"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    audit_id: Mapped[int] = mapped_column(ForeignKey("audits.id"))
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    rank: Mapped[int] = mapped_column(Integer)
    noise_score: Mapped[float] = mapped_column(Float)  # graded, in (0, 1); higher = more suspect
    flagged: Mapped[bool]
    ce: Mapped[float] = mapped_column(Float)
    dice_gap: Mapped[float] = mapped_column(Float)
    dice: Mapped[list[float]] = mapped_column(JSON)  # per foreground class 1..K-1
    changed_fraction: Mapped[float] = mapped_column(Float)
    issue_fraction: Mapped[float] = mapped_column(Float)
    slices: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)  # 3D: slices.csv rows
    figures: Mapped[dict[str, float] | None] = mapped_column(JSON)  # models.figures, by name
    model_uncertain: Mapped[bool | None]
    cleansed_file_id: Mapped[int | None] = mapped_column(ForeignKey("files.id"))
    pseudo_label_file_id: Mapped[int | None] = mapped_column(ForeignKey("files.id"))
    issue_map_file_id: Mapped[int | None] = mapped_column(ForeignKey("files.id"))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    case: Mapped[Case] = relationship()

    @property
    def case_name(self) -> str:
        return self.case.name


# The review loop: corrected masks, and the sets resolved from an audit's decisions.


class Correction(Base):
    """A corrected mask uploaded for one case of an audit (by a reviewer, or by an annotator
    where the case's latest decision is ``needs_rework``). Added, never changed.
    """

    __tablename__ = "corrections"
    __table_args__ = (Index("ix_corrections_audit_id_case_id", "audit_id", "case_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    audit_id: Mapped[int] = mapped_column(ForeignKey("audits.id"))
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    file_id: Mapped[int] = mapped_column(ForeignKey("files.id"))
    max_label: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str] = mapped_column(Text, default="")
    key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    author: Mapped[str] = mapped_column(String(100))  # the key's name when it uploaded
    created_at: Mapped[dt.datetime] = _created()

    case: Mapped[Case] = relationship()
    file: Mapped[StoredFile] = relationship()


class Resolution(Base):
    """The lineage of a resolved annotation set: the audit and set it came from, the policy
    for undecided cases, who resolved it and when. (A table of its own rather than columns of
    ``annotation_sets``: audits refer to sets, so sets referring to audits would make a cycle.)
    """

    __tablename__ = "resolutions"
    __table_args__ = (CheckConstraint(one_of("policy", Undecided), name="policy"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    annotation_set_id: Mapped[int] = mapped_column(ForeignKey("annotation_sets.id"), unique=True)
    parent_set_id: Mapped[int] = mapped_column(ForeignKey("annotation_sets.id"), index=True)
    audit_id: Mapped[int] = mapped_column(ForeignKey("audits.id"), index=True)
    policy: Mapped[str] = mapped_column(String(20))
    key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    resolved_by: Mapped[str] = mapped_column(String(100))  # the key's name when it resolved
    created_at: Mapped[dt.datetime] = _created()


class ResolvedCase(Base):
    """Where a resolved set took one case's mask from: the case's latest decision (if any),
    the correction used (``source`` corrected), and the resolved set's mask (None: excluded).
    """

    __tablename__ = "resolved_cases"
    __table_args__ = (CheckConstraint(one_of("source", MaskSource), name="source"),)

    resolution_id: Mapped[int] = mapped_column(ForeignKey("resolutions.id"), primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), primary_key=True)
    source: Mapped[str] = mapped_column(String(16))
    mask_id: Mapped[int | None] = mapped_column(ForeignKey("masks.id"))  # None: excluded
    review_id: Mapped[int | None] = mapped_column(ForeignKey("reviews.id"))
    correction_id: Mapped[int | None] = mapped_column(ForeignKey("corrections.id"))

    case: Mapped[Case] = relationship()


class Review(Base):
    """A reviewer's decision on one case of one audit. Reviews are added, never changed."""

    __tablename__ = "reviews"
    __table_args__ = (
        CheckConstraint(one_of("decision", Decision), name="decision"),
        Index("ix_reviews_audit_id_case_id", "audit_id", "case_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    audit_id: Mapped[int] = mapped_column(ForeignKey("audits.id"))
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    decision: Mapped[str] = mapped_column(String(20))
    comment: Mapped[str] = mapped_column(Text, default="")
    key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    reviewer: Mapped[str] = mapped_column(String(100))  # the key's name when it reviewed
    created_at: Mapped[dt.datetime] = _created()


class Comparison(Base):
    """A comparison of two or more annotation sets of one dataset: a job on the ``cpu`` queue.
    ``status`` moves like an audit's (``AuditStatus``), only by compare-and-set.
    """

    __tablename__ = "comparisons"
    __table_args__ = (CheckConstraint(one_of("status", AuditStatus), name="status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), index=True)
    created_by_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    status: Mapped[str] = mapped_column(String(16), default=AuditStatus.queued, index=True)
    task_id: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cases: Mapped[int] = mapped_column(Integer)  # cases with a mask in every set, fixed at creation
    cases_done: Mapped[int] = mapped_column(Integer, default=0)
    percent: Mapped[float | None] = mapped_column(Float)
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # With three or more sets: STAPLE's consensus, stored as a new annotation set.
    consensus_set_id: Mapped[int | None] = mapped_column(ForeignKey("annotation_sets.id"))
    created_at: Mapped[dt.datetime] = _created()
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class ComparisonSet(Base):
    """The annotation sets a comparison compares, in the order the request named them."""

    __tablename__ = "comparison_sets"
    __table_args__ = (UniqueConstraint("comparison_id", "position"),)

    comparison_id: Mapped[int] = mapped_column(ForeignKey("comparisons.id"), primary_key=True)
    annotation_set_id: Mapped[int] = mapped_column(
        ForeignKey("annotation_sets.id"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer)


class ComparisonRow(Base):
    """One case, class and pair of sets of a comparison (``models.agreement.ClassScore``);
    ``rank`` 1 is the row that disagrees most.
    """

    __tablename__ = "comparison_rows"
    __table_args__ = (
        UniqueConstraint("comparison_id", "case_id", "label", "set_a_id", "set_b_id"),
        CheckConstraint(one_of("status", ClassStatus), name="status"),
        Index("ix_comparison_rows_comparison_id_rank", "comparison_id", "rank"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    comparison_id: Mapped[int] = mapped_column(ForeignKey("comparisons.id"))
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    label: Mapped[int] = mapped_column(Integer)
    set_a_id: Mapped[int] = mapped_column(ForeignKey("annotation_sets.id"))
    set_b_id: Mapped[int] = mapped_column(ForeignKey("annotation_sets.id"))
    status: Mapped[str] = mapped_column(String(16))
    dice: Mapped[float | None] = mapped_column(Float)  # None when absent from both
    mean_distance_mm: Mapped[float | None] = mapped_column(Float)
    p95_distance_mm: Mapped[float | None] = mapped_column(Float)
    objects_a: Mapped[int] = mapped_column(Integer)
    objects_b: Mapped[int] = mapped_column(Integer)
    only_in_a: Mapped[int] = mapped_column(Integer)
    only_in_b: Mapped[int] = mapped_column(Integer)
    disagreement: Mapped[float | None] = mapped_column(Float)  # 1 - dice
    rank: Mapped[int] = mapped_column(Integer)

    case: Mapped[Case] = relationship()
