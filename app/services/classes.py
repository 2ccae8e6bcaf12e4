"""An annotation set's classes at upload: declared ones refuse masks with other values, and
undeclared ones grow from what the masks hold (``imaging.classes`` holds the rules).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.db.tables import AnnotationSet
from app.errors import ServiceError
from imaging import checks
from imaging.classes import add_names, check_declared, check_declared_names, infer_classes
from imaging.errors import InputError
from models.config import AuditConfig

# Undeclared sets: a mask whose largest value reaches this is taken as mis-encoded (0/255).
INFERRED_LIMIT = AuditConfig().max_classes


@dataclass(frozen=True)
class Held:
    """What one received mask holds: its foreground values, or its DICOM class names."""

    file: str  # as the client named it
    max_label: int
    values: Sequence[int] = ()
    names: Mapping[str, int] | None = None  # DICOM: {segment label or ROI name: class}


def check_classes_of(aset: AnnotationSet, held: Sequence[Held]) -> None:
    """Refuse (422, naming the file) a mask that holds a class the set does not have: with
    declared classes any other value (DICOM: label); without, a mis-encoded mask.
    """
    for item in held:
        try:
            if aset.classes_declared and item.names is not None:
                check_declared_names(item.names, aset.classes, name=item.file)
            elif aset.classes_declared:
                check_declared(item.values, aset.classes, name=item.file)
            else:
                checks.check_label_limit(
                    item.max_label, limit=INFERRED_LIMIT, explicit=False, name=item.file
                )
        except InputError as exc:
            raise ServiceError.invalid_input(exc, file=item.file) from None


def record_classes(session: Session, aset: AnnotationSet, held: Sequence[Held]) -> None:
    """Add the classes the masks brought to an undeclared set (under a row lock where the
    database has one, so two uploads at once both count). Flushes only.
    """
    if aset.classes_declared:
        return
    session.refresh(aset, with_for_update=True)
    classes: Mapping[str, int] = aset.classes or {}
    for item in held:
        if item.names is not None:
            classes = add_names(item.names, classes)
        else:
            classes = infer_classes(item.values, classes)
    if classes != aset.classes:
        aset.classes = dict(classes)
        session.flush()
