"""Options that more than one command takes."""

from __future__ import annotations

import argparse

from imaging.classes import parse_classes
from imaging.errors import InputError

CLASSES_HELP = (
    "the classes the masks may hold, NAME=VALUE,... (e.g. head=1,brain=2; 0 is the background): "
    "a mask with another value is refused, and the names label scores.csv and the outputs "
    "(default: class_<value> for each value found)"
)


def classes_option(text: str) -> dict[str, int]:
    """``--classes head=1,brain=2`` as ``{"head": 1, "brain": 2}`` (an argparse ``type``)."""
    try:
        return parse_classes(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(exc.detail) from None
