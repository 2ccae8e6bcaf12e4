"""The label cleansing module (LCM): pseudo low-noise labels from a teacher's probabilities.

Arrays: ``probs`` is ``(K, *spatial)`` (softmax over K classes), ``given`` is ``(*spatial)``
class indices, with spatial ``(H, W)`` or ``(D, H, W)`` for a stack of slices. Where the teacher
is confident its class is taken; elsewhere the given label is kept. With ``whole_objects`` (the
final repair; training keeps the pixel rule), an object the annotator did not draw is then added
whole where the teacher is sure of part of it (its extent is the teacher's most likely class, as
no annotator boundary exists to keep); one drawn where the teacher finds none is removed whole
where the teacher is sure of that over the whole object.
Each class is then cleaned: holes filled (per slice), new specks dropped, and only the largest
component kept for classes that are one object.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import ndimage


def _check(probs: np.ndarray, given: np.ndarray) -> None:
    if probs.ndim != given.ndim + 1 or probs.shape[1:] != given.shape:
        raise ValueError(f"probs must be (K, *spatial) for given {given.shape}, got {probs.shape}")
    if probs.shape[0] < 2:
        raise ValueError(f"probs needs at least 2 classes, got {probs.shape[0]}")
    if given.size and (given.min() < 0 or given.max() >= probs.shape[0]):
        raise ValueError(f"given labels must lie in 0..{probs.shape[0] - 1}")


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    if mask.ndim == 2:
        filled: np.ndarray = ndimage.binary_fill_holes(mask)
        return filled
    return np.stack([ndimage.binary_fill_holes(s) for s in mask])


def _open(mask: np.ndarray, radius: int) -> np.ndarray:
    """``mask`` without the parts a disc of ``radius`` does not fit in (per slice for stacks)."""
    grid = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    disc = grid[0] ** 2 + grid[1] ** 2 <= radius**2
    if mask.ndim == 2:
        opened: np.ndarray = ndimage.binary_opening(mask, structure=disc)
        return opened
    return np.stack([ndimage.binary_opening(s, structure=disc) for s in mask])


def _whole_objects(
    probs: np.ndarray, given: np.ndarray, pseudo: np.ndarray, confidence: float
) -> np.ndarray:
    """``pseudo`` with each object-level edit carried to the whole object.

    The confidence rule adds only the core of an object the annotator missed (its boundary is
    where the teacher is unsure) and leaves a rim of an object drawn where there is none.
    - An object the teacher finds of class c (its most likely class) that lies mostly outside
      the given c is added whole where the rule added part of it: no annotator boundary exists
      there to keep, so its extent is the teacher's.
    - A given object of class c that lies mostly outside the teacher's c is removed whole where
      the rule removed part of it and the teacher is sure of that as a whole: its mean
      probability of not c over the object reaches ``confidence``, and it holds no more than
      half of any teacher's object of c. Erasing what the annotator drew asks for more than a
      sure core; a given object the teacher merely under-segments (a loose mask around a small
      prediction) keeps the pixel rule.
    Objects the annotator and the teacher share keep the pixel rule: the annotator's boundary
    stays where the teacher is unsure.
    """
    top = probs.argmax(axis=0)
    out = pseudo.copy()
    for c in range(1, probs.shape[0]):
        found, drawn = top == c, given == c
        teacher, n_found = ndimage.label(found)
        annotator, n_drawn = ndimage.label(drawn)
        per_found, per_drawn = np.arange(1, n_found + 1), np.arange(1, n_drawn + 1)
        # The teacher's objects: mostly outside the given c, and where the rule added some c.
        found_size = ndimage.sum_labels(found, teacher, per_found)
        found_inside = ndimage.sum_labels(drawn, teacher, per_found)
        added = ndimage.sum_labels((pseudo == c) & ~drawn, teacher, per_found) > 0
        add = (found_inside < found_size / 2) & added
        # The given objects: mostly outside the teacher's c, where the rule removed some c, the
        # teacher sure over the whole object, and holding most of no teacher's object (that
        # would be the teacher's object drawn too loose, not one drawn where there is none).
        drawn_size = ndimage.sum_labels(drawn, annotator, per_drawn)
        drawn_inside = ndimage.sum_labels(found, annotator, per_drawn)
        removed = ndimage.sum_labels((pseudo != c) & drawn, annotator, per_drawn) > 0
        sure = 1.0 - np.asarray(ndimage.mean(probs[c], annotator, per_drawn)) >= confidence
        held = _per_pixel(found_inside > found_size / 2, teacher) & drawn
        holder = ndimage.sum_labels(held, annotator, per_drawn) > 0
        remove = (drawn_inside < drawn_size / 2) & removed & sure & ~holder
        out = np.where(_per_pixel(add, teacher) & (pseudo == given) & ~drawn, top, out)
        out = np.where(_per_pixel(remove, annotator) & (pseudo == c) & ~found, top, out)
    return out


def _per_pixel(per_object: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """A per-object flag (objects 1..n) spread over the pixels of ``labels`` (0: none)."""
    flags: np.ndarray = np.concatenate([[False], per_object])[labels]
    return flags


def cleanse(
    probs: np.ndarray,
    given: np.ndarray,
    *,
    confidence: float = 0.8,
    single_object_classes: Iterable[int] = (),
    min_component_fraction: float = 0.1,
    fill_holes: bool = True,
    sliver: int = 0,
    whole_objects: bool = False,
) -> np.ndarray:
    """Return the pseudo label ``(*spatial)``, in ``given``'s dtype.

    A minimal edit: the given label stays wherever the teacher is not confident, and edits
    narrower than ``2 * sliver + 1`` pixels (in-plane) are dropped, so the annotator's boundary
    is kept where the teacher only disagrees by less than it can resolve. ``whole_objects``
    carries object-level edits to the whole object (``_whole_objects``).
    """
    _check(probs, given)
    if not 0.5 <= confidence <= 1.0:
        raise ValueError(f"confidence must be in [0.5, 1], got {confidence}")
    if sliver < 0:
        raise ValueError(f"sliver must be >= 0, got {sliver}")
    single = set(single_object_classes)
    pseudo = np.where(probs.max(axis=0) >= confidence, probs.argmax(axis=0), given)
    if sliver:
        edited = _open(pseudo != given, sliver)
        pseudo = np.where(edited, pseudo, given)
    if whole_objects:
        pseudo = _whole_objects(probs, given, pseudo, confidence)
    for c in range(1, probs.shape[0]):
        mask = pseudo == c
        if not mask.any():
            continue
        if fill_holes:
            holes = _fill_holes(mask) & (pseudo == 0)
            pseudo[holes] = c
            mask |= holes
        labels, count = ndimage.label(mask)
        if count <= 1:
            continue
        sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, count + 1))
        keep = np.zeros(count + 1, bool)
        if c in single:
            keep[1 + int(np.argmax(sizes))] = True
        else:
            overlap = ndimage.sum_labels(given == c, labels, index=np.arange(1, count + 1))
            from_given = overlap >= sizes / 2  # objects the annotator drew are never specks
            keep[1:] = (sizes >= min_component_fraction * sizes.max()) | from_given
        pseudo[mask & ~keep[labels]] = 0
    return pseudo.astype(given.dtype, copy=False)


def issue_map(probs: np.ndarray, given: np.ndarray) -> np.ndarray:
    """Per-pixel probability that the given label is wrong, ``1 - p(given)``, as uint8 0..255."""
    _check(probs, given)
    p_given: np.ndarray = np.take_along_axis(probs, given[None].astype(np.int64), axis=0)[0]
    return np.clip(np.rint((1.0 - p_given) * 255.0), 0, 255).astype(np.uint8)


def infer_single_object_classes(
    masks: Iterable[np.ndarray], num_classes: int, *, share: float = 0.9
) -> tuple[int, ...]:
    """Classes drawn as one connected object in at least ``share`` of the masks that hold them."""
    present = np.zeros(num_classes, int)
    single = np.zeros(num_classes, int)
    for mask in masks:
        for c in range(1, num_classes):
            component = mask == c
            if component.any():
                present[c] += 1
                single[c] += ndimage.label(component)[1] == 1
    return tuple(c for c in range(1, num_classes) if present[c] and single[c] >= share * present[c])
