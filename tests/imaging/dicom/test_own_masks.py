"""segaudit's own SEGs beside the original ones (a cleansed SEG pushed back to the PACS, then
exported again with the study): the pairing keeps the original and says it left the others out;
a series that only segaudit's SEG references keeps it.
"""

from __future__ import annotations

import numpy as np
import pydicom

from imaging import layout
from imaging.dicom.cases import find_pairs
from imaging.write import write_array
from tests.imaging.dicom.builders import write_cases


def test_the_original_mask_wins_over_segaudit_s_own(tmp_path, built):
    cases = built[:3]
    images, masks = write_cases(cases, tmp_path / "images", tmp_path / "masks")
    pairs, _ = find_pairs(images, masks)
    given = {p.case_id: p.read_mask() for p in pairs}
    for pair in pairs:  # a cleansed SEG (all background) of every case, beside its original
        mask = given[pair.case_id]
        write_array(
            masks / "cleansed" / f"{pair.case_id}.dcm",
            np.zeros_like(mask.array),
            mask.geometry,
            kind=layout.CLEANSED,
        )
    assert pydicom.dcmread(next((masks / "cleansed").iterdir())).Manufacturer == "segaudit"

    again, notes = find_pairs(images, masks)  # was duplicate_case
    assert {p.case_id for p in again} == set(given)
    for pair in again:
        assert pair.mask_path.parent == masks  # the original, not masks/cleansed/
        assert np.array_equal(pair.read_mask().array, given[pair.case_id].array)
    assert any("left out 3 masks that segaudit wrote" in n for n in notes), notes


def test_a_series_with_only_segaudit_s_mask_keeps_it(tmp_path, built):
    images, masks = write_cases(built[:2], tmp_path / "images", tmp_path / "masks")
    (first, second), _ = find_pairs(images, masks)
    mask = first.read_mask()
    cleansed = tmp_path / "cleansed"
    write_array(cleansed / "a.dcm", mask.array, mask.geometry, kind=layout.CLEANSED)
    second.mask_path.rename(cleansed / "b.dcm")  # an original for the other series
    pairs, notes = find_pairs(images, cleansed)
    assert {p.case_id for p in pairs} == {first.case_id, second.case_id}
    assert not any("segaudit wrote" in n for n in notes)
    by_case = {p.case_id: p for p in pairs}
    assert np.array_equal(by_case[first.case_id].read_mask().array, mask.array)
