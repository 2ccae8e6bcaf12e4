"""The classes of an annotation set, written once: a class is a name and the mask value that
stands for it (``{"head": 1}``), value 0 being the background.

Declared classes are checked here (``check_classes``), parsed from the command line's
``head=1,brain=2`` (``parse_classes``), inferred as ``class_<v>`` from the values a mask holds
where none are declared (``infer_classes``), and a mask's values are held against them
(``check_declared``). The service's upload checks, the engine and the command line call these.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import numpy as np

from imaging.errors import ErrorCode, InputError

# A name is used in column names (``dice_<name>``) and DICOM segment labels (LO, 64 chars).
CLASS_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
MAX_VALUE = 65535  # label maps are at most uint16
NAME_RULE = "1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"


def check_classes(classes: Mapping[str, int], *, what: str = "classes") -> dict[str, int]:
    """Check declared classes ``{name: value}``; returns them ordered by value.

    Raises ``InputError`` (``invalid_classes``) when a name breaks ``NAME_RULE``, a value is not
    an integer in 1..65535, or two names share a value.
    """
    if not classes:
        raise InputError(ErrorCode.INVALID_CLASSES, f"{what}: declare at least one class")
    seen: dict[int, str] = {}
    for name, value in classes.items():
        if not isinstance(name, str) or not CLASS_NAME.fullmatch(name):
            raise InputError(
                ErrorCode.INVALID_CLASSES, f"{what}: class name {name!r} must be {NAME_RULE}"
            )
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_VALUE:
            raise InputError(
                ErrorCode.INVALID_CLASSES,
                f"{what}: class '{name}' has value {value!r}; a class value is an integer mask "
                f"value in 1..{MAX_VALUE} (0 is the background)",
            )
        if value in seen:
            raise InputError(
                ErrorCode.INVALID_CLASSES,
                f"{what}: classes '{seen[value]}' and '{name}' share the value {value}",
            )
        seen[value] = name
    return {seen[v]: v for v in sorted(seen)}


def parse_classes(text: str) -> dict[str, int]:
    """``head=1,brain=2`` as checked classes (``check_classes``)."""
    classes: dict[str, int] = {}
    for part in (p.strip() for p in text.split(",")):
        name, sep, value = part.partition("=")
        if not sep or not value.strip().lstrip("-").isdigit():
            raise InputError(
                ErrorCode.INVALID_CLASSES,
                f"--classes: '{part}' is not NAME=VALUE; write e.g. head=1,brain=2",
            )
        if name.strip() in classes:
            raise InputError(
                ErrorCode.INVALID_CLASSES, f"--classes: class '{name.strip()}' is named twice"
            )
        classes[name.strip()] = int(value)
    return check_classes(classes, what="--classes")


def class_name(value: int) -> str:
    """The inferred name of mask value ``value``."""
    return f"class_{value}"


def infer_classes(values: Iterable[int], known: Mapping[str, int] | None = None) -> dict[str, int]:
    """``known`` extended by ``class_<v>`` for each foreground value in ``values`` it lacks."""
    classes = dict(known or {})
    have = set(classes.values())
    for value in sorted({int(v) for v in values} - have - {0}):
        name = class_name(value)
        while name in classes:  # a declared name that happens to read class_<v>
            name += "_"
        classes[name] = value
    return dict(sorted(classes.items(), key=lambda item: item[1]))


def add_names(named: Mapping[str, int], known: Mapping[str, int]) -> dict[str, int]:
    """``known`` extended by each class of ``named`` whose name it lacks (DICOM classes, matched
    by segment label or ROI name), at its own value where that is free, else the next one.
    """
    classes = dict(known)
    for name, value in sorted(named.items(), key=lambda item: item[1]):
        if name not in classes:
            free = value not in classes.values()
            classes[name] = value if free else max(classes.values()) + 1
    return dict(sorted(classes.items(), key=lambda item: item[1]))


def named_classes(labels: Mapping[int, str]) -> dict[str, int]:
    """Classes ``{name: value}`` from free-text labels ``{value: label}`` (DICOM segment labels,
    ROI names): each label made a valid name (other characters as ``_``), ``class_<v>`` where
    nothing is left, a repeated name suffixed with its value.
    """
    classes: dict[str, int] = {}
    for value in sorted(labels):
        name = re.sub(r"[^A-Za-z0-9_.\-]+", "_", labels[value].strip()).strip("_.-")[:64]
        name = name or class_name(value)
        if name in classes:
            name = f"{name[:56]}_{value}"
        classes[name] = value
    return classes


def names_by_value(classes: Mapping[str, int] | None) -> dict[int, str]:
    """``{value: name}``: what ``models.outputs.class_label`` and the SEG writer take."""
    return {int(v): n for n, v in (classes or {}).items()}


def mask_values(mask: np.ndarray) -> list[int]:
    """The foreground values present in a mask of class indices, ascending."""
    if mask.dtype == bool:
        return [1] if mask.any() else []
    flat = mask.ravel()
    if not np.issubdtype(flat.dtype, np.integer):  # integral floats (checked before)
        flat = flat.astype(np.int64)
    if flat.size and flat.min() >= 0 and flat.max() <= MAX_VALUE:  # a count beats a sort
        return [int(v) for v in np.flatnonzero(np.bincount(flat)) if v != 0]
    return [int(v) for v in np.unique(flat) if v != 0]


def check_declared_names(
    names: Iterable[str], classes: Mapping[str, int], *, name: str, case: str | None = None
) -> None:
    """Every segment label or ROI name of DICOM mask ``name`` must be a declared class."""
    stray = [n for n in names if n not in classes]
    if not stray:
        return
    raise InputError(
        ErrorCode.MASK_OUT_OF_RANGE,
        f"mask {name} holds the segments or ROIs {', '.join(stray)}, which no declared class "
        f"names (declared: {', '.join(classes)}); DICOM classes are matched by segment label "
        "or ROI name",
        case=case,
    )


def check_declared(
    values: Iterable[int], classes: Mapping[str, int], *, name: str, case: str | None = None
) -> None:
    """Every foreground value of mask ``name`` must be a declared class value."""
    allowed = set(classes.values())
    stray = sorted({int(v) for v in values} - allowed - {0})
    if not stray:
        return
    shown = ", ".join(str(v) for v in stray[:5]) + (" ..." if len(stray) > 5 else "")
    declared = ", ".join(f"{n}={v}" for n, v in classes.items())
    raise InputError(
        ErrorCode.MASK_OUT_OF_RANGE,
        f"mask {name} holds the value{'s' if len(stray) > 1 else ''} {shown}, which no declared "
        f"class has (declared: {declared}; 0 is the background); fix the mask or declare the "
        "class on a new annotation set",
        case=case,
    )
