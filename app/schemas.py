"""Request and response shapes of the API (what OpenAPI shows, with examples)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr

from app.api.params import MAX_ID, DbIdField
from app.db.enums import AuditStatus, Decision, LabelTag, MaskSource, Role, Undecided
from app.db.tables import ApiKey, Audit, Case, Correction, Mask, ResultRow, Review, StoredFile
from app.services.result_rows import public_summary
from app.services.results import ListedResult
from imaging.classes import CLASS_NAME, MAX_VALUE, NAME_RULE
from models.config import AuditConfig
from models.figure_names import describe, disagreement_kind
from models.outputs import class_label, named_column
from models.outputs import worst_slice as outputs_worst_slice
from models.results import SliceResult

T = TypeVar("T")
NAME = Field(min_length=1, max_length=200, examples=["hc18-train"])


class ErrorOut(BaseModel):
    """Every error: a stable code, a sentence saying what to fix, and the file at fault if any."""

    code: str
    detail: str
    file: str | None = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "code": "unsupported_format",
                    "detail": "scan.jpg: unsupported file type '.jpg' (supported: .nii, ...)",
                    "file": "scan.jpg",
                }
            ]
        }
    )


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int = Field(description="rows in all pages")
    limit: int
    offset: int


class FileOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str = Field(examples=["000_HC.png"])
    format: str = Field(examples=["png"])
    size_bytes: int
    sha256: str

    @classmethod
    def of(cls, row: StoredFile) -> FileOut:
        return cls.model_validate(row)


# Keys


class KeyCreate(BaseModel):
    role: Role = Field(examples=["annotator"])
    name: str = Field(default="", max_length=100, examples=["alice"])


class KeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    role: Role
    prefix: str = Field(description="the key's first characters, to tell keys apart")
    created_at: dt.datetime
    revoked_at: dt.datetime | None

    @classmethod
    def of(cls, row: ApiKey) -> KeyOut:
        return cls.model_validate(row)


class KeyCreated(KeyOut):
    key: str = Field(description="the key itself: shown this once, only its hash is kept")


# Datasets, cases, annotation sets, masks


class DatasetCreate(BaseModel):
    name: str = NAME
    description: str = Field(default="", max_length=10_000, examples=["HC18 training set"])


class DatasetOut(BaseModel):
    id: int
    name: str
    description: str
    cases: int = Field(description="number of cases (images)")
    created_at: dt.datetime


# A DICOM case's labels (imaging.dicom.labels), on every case endpoint that shows them.
PatientLabels = Annotated[
    dict[str, str] | None,
    Field(
        examples=[{"patient_id": "12345", "study_date": "20240131", "series_number": "2"}],
        description="a DICOM case's patient-facing labels (Patient ID and Name, birth date, "
        "study and series dates, descriptions, accession number, UIDs), for reviewer and admin "
        "keys only; null for other keys and for image files. DICOM case names are pseudonyms.",
    ),
]


class CaseOut(BaseModel):
    id: int
    name: str = Field(
        examples=["000_HC", "3f9a1c2b-7d4e0012"],
        description="the image's file name without extension; for DICOM, a pseudonym from "
        "the study and series UIDs (`<study hash>-<series hash>`)",
    )
    image: FileOut
    shape: list[int] = Field(examples=[[540, 800]], description="(H, W) or (X, Y, Z)")
    spacing: list[float]
    channels: int
    created_at: dt.datetime
    patient_labels: PatientLabels = None

    @classmethod
    def of(cls, case: Case, *, labels: bool = False) -> CaseOut:
        """The case; with its patient labels when ``labels`` (the caller may see them)."""
        return cls(
            id=case.id,
            name=case.name,
            image=FileOut.of(case.image),
            shape=case.shape,
            spacing=case.spacing,
            channels=case.channels,
            created_at=case.created_at,
            patient_labels=case.dicom_labels if labels else None,
        )


class CasesAdded(BaseModel):
    count: int
    cases: list[CaseOut]
    notes: list[str] = Field(
        default_factory=list,
        description="DICOM: what the upload left out and why (files that are not DICOM, "
        "DICOMDIRs, objects that are not images or masks)",
    )


ClassName = Annotated[str, Field(pattern=f"^{CLASS_NAME.pattern}$", description=NAME_RULE)]
ClassValue = Annotated[int, Field(ge=1, le=MAX_VALUE)]


class AnnotationSetCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200, examples=["annotator-a"])
    description: str = Field(default="", max_length=10_000, examples=["first pass, team A"])
    classes: dict[ClassName, ClassValue] | None = Field(
        default=None,
        max_length=MAX_VALUE,
        examples=[{"head": 1}],
        description="the classes its masks may hold, {name: mask value} (0 is the background): "
        "a mask with any other value is refused at upload (DICOM: matched by segment label or "
        "ROI name). Omitted: inferred from the masks as they arrive (class_<value>, or the "
        "DICOM segment labels / ROI names)",
    )


class LineageOut(BaseModel):
    """Where a resolved set came from."""

    audit_id: int
    parent_set_id: int = Field(description="the audited annotation set")
    policy: Undecided = Field(description="what the resolve did with undecided cases")
    resolved_by: str = Field(description="the name of the key that resolved")
    key_id: int | None
    resolved_at: dt.datetime
    sources: dict[MaskSource, int] = Field(
        description="cases per mask source: original, cleansed, corrected, excluded"
    )


class AnnotationSetOut(BaseModel):
    id: int
    dataset_id: int
    name: str
    description: str
    masks: int = Field(description="number of masks uploaded")
    tag: LabelTag = Field(
        default=LabelTag.original,
        description="MONAI Label's label tag: original (uploaded) or final (resolved)",
    )
    lineage: LineageOut | None = Field(default=None, description="resolved sets only")
    classes: dict[str, int] = Field(
        default_factory=dict,
        description="{name: mask value}: declared, or inferred from the masks uploaded so far",
    )
    classes_declared: bool = Field(
        default=False, description="whether the classes were declared when the set was created"
    )
    created_at: dt.datetime


class MaskOut(BaseModel):
    id: int
    case_id: int
    case: str
    file: FileOut
    max_label: int = Field(description="the largest class index in the mask")
    created_at: dt.datetime

    @classmethod
    def of(cls, mask: Mask) -> MaskOut:
        return cls(
            id=mask.id,
            case_id=mask.case_id,
            case=mask.case.name,
            file=FileOut.of(mask.file),
            max_label=mask.max_label,
            created_at=mask.created_at,
        )


class MasksAdded(BaseModel):
    count: int
    masks: list[MaskOut]
    notes: list[str] = Field(
        default_factory=list,
        description="DICOM: what the upload left out and why (files that are not DICOM, "
        "DICOMDIRs, objects that are not images or masks)",
    )


# DICOMweb

UID = Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)*$", max_length=64, examples=["1.2.840.1"])]


class DicomwebServer(BaseModel):
    """A DICOMweb server: its root URL (one of SEGAUDIT_DICOMWEB_SERVERS) and credentials."""

    url: str = Field(min_length=1, max_length=2000, examples=["https://pacs.example.org/dicom-web"])
    user: str | None = Field(default=None, max_length=200, description="HTTP basic auth")
    password: SecretStr | None = Field(default=None, max_length=1000, description="never stored")


class DicomwebPull(DicomwebServer):
    study_uid: UID = Field(description="the Study Instance UID to retrieve")
    series_uids: list[UID] = Field(
        default_factory=list, max_length=1000, description="only these series (default: all)"
    )


class DicomwebPush(DicomwebServer):
    cases: list[str] | None = Field(
        default=None, max_length=100_000, description="only these cases (default: all)"
    )


class DicomwebPushed(BaseModel):
    url: str
    cases: list[str] = Field(description="the cases whose cleansed masks were stored")
    instances: list[str] = Field(description="SOP Instance UIDs the server stored")


# Audits


def _no_unknown_parameters(value: Any) -> Any:
    if isinstance(value, dict):
        AuditConfig.check_keys(value)
        for key, item in value.items():
            numbers = item if isinstance(item, list | tuple) else [item]
            for n in numbers:
                if isinstance(n, int) and not isinstance(n, bool) and abs(n) > MAX_ID:
                    raise ValueError(
                        f"invalid audit config: {key} {n} is out of range (at most {MAX_ID})"
                    )
    return value


class AuditCreate(BaseModel):
    dataset_id: DbIdField
    annotation_set_id: DbIdField
    parameters: Annotated[AuditConfig, BeforeValidator(_no_unknown_parameters)] = Field(
        default_factory=AuditConfig,
        description="the audit's hyper-parameters (models.config.AuditConfig); all optional",
    )

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"dataset_id": 1, "annotation_set_id": 2, "parameters": {"epochs": 40}}]
        }
    )


class ProgressOut(BaseModel):
    phase: str | None = Field(description="load, warmup, train, judge, score, write or done")
    epoch: int | None
    epochs: int | None
    percent: float | None
    eta_seconds: float | None
    loss: float | None
    flagged: int | None
    heartbeat_at: dt.datetime | None


class FailureOut(BaseModel):
    code: str | None
    message: str | None


class AuditOut(BaseModel):
    id: int
    dataset_id: int
    annotation_set_id: int
    status: AuditStatus
    cases: int
    parameters: dict[str, Any]
    progress: ProgressOut
    summary: dict[str, Any] | None = Field(
        description="when succeeded: cases, flagged, mean/max noise_score, durations"
    )
    error: FailureOut | None
    attempts: int
    task_id: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 7,
                    "dataset_id": 1,
                    "annotation_set_id": 2,
                    "status": "running",
                    "cases": 60,
                    "parameters": {"epochs": 40, "size": 128},
                    "progress": {
                        "phase": "train",
                        "epoch": 12,
                        "epochs": 40,
                        "percent": 30.0,
                        "eta_seconds": 210.0,
                        "loss": 0.31,
                        "flagged": 9,
                        "heartbeat_at": "2026-01-05T10:00:00Z",
                    },
                    "summary": None,
                    "error": None,
                    "attempts": 1,
                    "task_id": "1f0c...",
                    "created_at": "2026-01-05T09:58:00Z",
                    "started_at": "2026-01-05T09:58:02Z",
                    "finished_at": None,
                }
            ]
        }
    )

    @classmethod
    def of(cls, audit: Audit, cases: int) -> AuditOut:
        failed = audit.error_code is not None or audit.error_message is not None
        return cls(
            id=audit.id,
            dataset_id=audit.dataset_id,
            annotation_set_id=audit.annotation_set_id,
            status=AuditStatus(audit.status),
            cases=cases,
            parameters=audit.parameters,
            progress=ProgressOut(
                phase=audit.phase,
                epoch=audit.epoch,
                epochs=audit.epochs,
                percent=audit.percent,
                eta_seconds=audit.eta_seconds,
                loss=audit.loss,
                flagged=audit.flagged,
                heartbeat_at=audit.heartbeat_at,
            ),
            summary=None if audit.summary is None else public_summary(audit.summary),
            error=FailureOut(code=audit.error_code, message=audit.error_message)
            if failed
            else None,
            attempts=audit.attempts,
            task_id=audit.task_id,
            created_at=audit.created_at,
            started_at=audit.started_at,
            finished_at=audit.finished_at,
        )


# Results and reviews


class ResultOut(BaseModel):
    """One case's row of the audit's scores.csv."""

    case_id: int
    case: str
    rank: int = Field(description="1 = most suspect")
    noise_score: float = Field(
        description="graded in (0, 1): how much more the mask looks like a known-noisy copy "
        "than like the audit's surest masks (the ranking's order; not a calibrated probability)"
    )
    clean_prob: float = Field(description="1 - noise_score")
    flagged: bool = Field(description="the label filter's mixture put the case in the noisy group")
    model_uncertain: bool | None = Field(
        default=None,
        description="the network is unusually unsure near the objects: a hard or unusual image; "
        "it does not enter the score, and a wrong mask can raise it too",
    )
    ce: float
    dice_gap: float
    dice: list[float] = Field(description="teacher vs given mask, per foreground class 1..K-1")
    dice_by_class: dict[str, float] = Field(
        default_factory=dict, description="the same, by class name (the audit's classes)"
    )
    changed_fraction: float
    issue_fraction: float
    figures: dict[str, float] = Field(
        default_factory=dict,
        description="every shape-aware figure by name (docs/method.md): evidence, boundary_*, "
        "area_ratio, centroid_shift, boundary_iou_gap, missing_*, extra_*, "
        "confident_disagreement, uncertainty, given_pixels, predicted_pixels, and given_mm, "
        "predicted_mm (mm², mm³ for a volume) where the format has a spacing; per class as "
        "<figure>_<class name> (class_<c> where the class has no declared name)",
    )
    disagreement: str = Field(
        default="", description="the kind of disagreement in words (as in scores.csv)"
    )
    disagreement_kind: str = Field(
        default="",
        description="for machines: missing_object, extra_object, boundary joined by '+', or agrees",
    )
    worst_slice: int | None = Field(
        default=None, description="3D only: the slice where the teacher disagrees most"
    )

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "case_id": 12,
                    "case": "042_HC",
                    "rank": 1,
                    "noise_score": 0.97,
                    "clean_prob": 0.03,
                    "flagged": True,
                    "ce": 1.8,
                    "dice_gap": 0.62,
                    "dice": [0.38],
                    "changed_fraction": 0.21,
                    "issue_fraction": 0.19,
                    "model_uncertain": False,
                    "figures": {"evidence": 3.5, "boundary_mean": -0.12, "missing_objects": 0.0},
                }
            ]
        }
    )

    @classmethod
    def of(
        cls, result: ResultRow | ListedResult, class_names: Mapping[int, str] | None = None
    ) -> ResultOut:
        """``class_names`` (``{value: name}``) name the per-class figures."""
        figures = result.figures or {}
        return cls(
            case_id=result.case_id,
            case=result.case_name,
            rank=result.rank,
            noise_score=result.noise_score,
            clean_prob=1.0 - result.noise_score,
            flagged=result.flagged,
            ce=result.ce,
            dice_gap=result.dice_gap,
            dice=result.dice,
            dice_by_class={
                class_label(c, class_names): d for c, d in enumerate(result.dice, start=1)
            },
            changed_fraction=result.changed_fraction,
            issue_fraction=result.issue_fraction,
            model_uncertain=result.model_uncertain,
            figures={named_column(k, class_names): v for k, v in figures.items()},
            disagreement=describe(figures),
            disagreement_kind=disagreement_kind(figures),
            worst_slice=_worst_slice(result.slices),
        )


def _worst_slice(slices: list[dict[str, Any]] | None) -> int | None:
    worst = outputs_worst_slice([SliceResult(**s) for s in slices or ()])
    return None if worst is None else worst.slice


class ReviewCreate(BaseModel):
    decision: Decision = Field(examples=["accept_cleansed"])
    comment: str = Field(default="", max_length=10_000, examples=["boundary fixed, looks right"])


class ReviewOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    audit_id: int
    case_id: int
    decision: Decision
    comment: str
    reviewer: str = Field(description="the name of the key that reviewed")
    key_id: int | None
    created_at: dt.datetime

    @classmethod
    def of(cls, row: Review) -> ReviewOut:
        return cls.model_validate(row)


class ResultDetail(ResultOut):
    slices: list[dict[str, Any]] | None = Field(description="3D only: per-slice figures")
    files: dict[str, str] = Field(description="download paths of the case's masks")
    reviews: list[ReviewOut]
    corrections: list[CorrectionOut] = Field(
        default_factory=list, description="corrected masks uploaded for the case, oldest first"
    )
    patient_labels: PatientLabels = None


class HistoryItem(BaseModel):
    audit_id: int
    annotation_set_id: int
    annotation_set_name: str = ""
    annotation_set_tag: LabelTag = Field(
        default=LabelTag.original, description="final: the audit scored a resolved set"
    )
    mask_source: MaskSource | None = Field(
        default=None, description="resolved sets: where the audited mask of the case came from"
    )
    decision: Decision | None = Field(
        default=None, description="the case's latest decision in this audit, if any"
    )
    audit_status: AuditStatus
    audit_created_at: dt.datetime
    result: ResultOut


# The review loop: corrections, resolving an audit, the cases sent back


class CorrectionOut(BaseModel):
    id: int
    audit_id: int
    case_id: int
    case: str
    file: FileOut
    max_label: int
    comment: str
    author: str = Field(description="the name of the key that uploaded it")
    key_id: int | None
    created_at: dt.datetime

    @classmethod
    def of(cls, row: Correction) -> CorrectionOut:
        return cls(
            id=row.id,
            audit_id=row.audit_id,
            case_id=row.case_id,
            case=row.case.name,
            file=FileOut.of(row.file),
            max_label=row.max_label,
            comment=row.comment,
            author=row.author,
            key_id=row.key_id,
            created_at=row.created_at,
        )


class ResolveCreate(BaseModel):
    policy: Undecided = Field(
        description="for cases no decision settles (none, or needs_rework without a "
        "correction): keep_original, accept_flagged (flagged cases take the cleansed mask) or "
        "exclude",
        examples=["accept_flagged"],
    )
    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="the new set's name (default: <audited set>-final-audit<id>)",
    )
    description: str = Field(default="", max_length=10_000)


class ReworkOut(BaseModel):
    """A case sent back: its latest decision is needs_rework, with no correction since."""

    case_id: int
    case: str
    review: ReviewOut


class Deleted(BaseModel):
    """What a DELETE removed."""

    deleted: str = Field(description="dataset, annotation_set, mask or audit")
    id: int
    blobs_removed: int = Field(description="stored files no other record used, now removed")


# Comparisons of annotation sets


class ComparisonCreate(BaseModel):
    annotation_set_ids: list[DbIdField] = Field(
        min_length=2,
        max_length=10,
        description="two to ten annotation sets of one dataset; with three or more, a STAPLE "
        "consensus is stored as a new annotation set",
        examples=[[2, 3, 4]],
    )


class ComparisonProgressOut(BaseModel):
    cases_done: int
    percent: float | None
    heartbeat_at: dt.datetime | None


class ComparisonOut(BaseModel):
    id: int
    dataset_id: int
    annotation_set_ids: list[int] = Field(description="in the order the request named them")
    status: AuditStatus
    cases: int = Field(description="cases with a mask in every set when it was created")
    progress: ComparisonProgressOut
    summary: dict[str, Any] | None = Field(
        description="when succeeded: per pair of sets and class, Dice and distances (mm) "
        "averaged over the cases (a class one set lacks counts with the worst scores, one "
        "absent from both is left out), the cases that disagree most, and with three or more "
        "sets `staple`: the consensus set's id and each set's sensitivity and specificity"
    )
    consensus_set_id: int | None = Field(description="the STAPLE consensus set (3+ sets)")
    error: FailureOut | None
    attempts: int
    task_id: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None


class ComparisonRowOut(BaseModel):
    """One case, class and pair of sets; distances are symmetric surface distances in mm."""

    rank: int = Field(description="1 = the row that disagrees most")
    case_id: int
    case: str
    label: int = Field(description="the class index")
    set_a_id: int
    set_b_id: int
    status: str = Field(
        description="scored, missing_in_a / missing_in_b (the worst scores: Dice 0, distances "
        "the image's diagonal in mm) or absent (in neither: not scored)"
    )
    dice: float | None
    mean_distance_mm: float | None
    p95_distance_mm: float | None
    objects_a: int = Field(description="connected components of the class in set a's mask")
    objects_b: int
    only_in_a: int = Field(description="objects of set a that overlap nothing in set b")
    only_in_b: int
    disagreement: float | None = Field(description="1 - dice; None when absent")
