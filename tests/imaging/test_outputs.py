"""What written NIfTI and NRRD files say about themselves: made by segaudit (not the input's
description), and an issue map with none of the input's label meaning.
"""

from __future__ import annotations

import nibabel as nib
import nrrd
import numpy as np

from imaging import __version__, layout
from imaging.formats import issue_map_target, read_mask
from imaging.write import write_array
from tests.conftest import MR


def _nifti_input(path):
    label, header = nrrd.read(str(MR / "brain1_label.nrrd"))
    affine = np.eye(4)
    affine[:3, :3] = np.asarray(header["space directions"], float).T
    img = nib.Nifti1Image(label.astype(np.uint8), affine)
    img.header["descrip"] = b"rater A, second pass"
    img.header["aux_file"] = b"lut.txt"
    img.header.set_intent("label")
    img.header.extensions.append(nib.nifti1.Nifti1Extension(6, b"a comment from rater A"))
    nib.save(img, str(path))
    return label


def test_nifti_outputs_say_segaudit_made_them(tmp_path):
    label = _nifti_input(tmp_path / "case.nii.gz")
    given = read_mask(tmp_path / "case.nii.gz", case="case")
    for kind in (layout.CLEANSED, layout.ISSUE_MAPS):
        out = tmp_path / kind / "case.nii.gz"
        write_array(out, given.array, given.geometry, kind=kind)
        header = nib.load(str(out)).header
        descrip = header["descrip"].tobytes().rstrip(b"\0").decode()
        assert descrip.startswith(f"segaudit {__version__}") and "rater A" not in descrip
        assert header["aux_file"].tobytes().strip(b"\0") == b""
        assert len(header.extensions) == 0
        assert np.allclose(nib.load(str(out)).affine, given.geometry.affine)
        assert np.array_equal(np.asarray(nib.load(str(out)).dataobj), label)
        intent = header.get_intent()[0]
        if kind == layout.CLEANSED:
            assert "cleansed mask" in descrip and intent == "label"
        else:
            assert "issue map" in descrip and intent == "none"


def test_an_issue_map_drops_slicer_segment_fields(tmp_path):
    label, header = nrrd.read(str(MR / "brain1_label.nrrd"))
    header.update(
        {
            "content": "rater A",
            "Segment0_ID": "Segment_1",
            "Segment0_Name": "tumour",
            "Segment0_LabelValue": "1",
            "Segmentation_MasterRepresentation": "Binary labelmap",
        }
    )
    source = tmp_path / "case.seg.nrrd"
    nrrd.write(str(source), label, header=header)
    given = read_mask(source, case="case")

    cleansed = tmp_path / "cleansed" / "case.seg.nrrd"
    write_array(cleansed, given.array, given.geometry, kind=layout.CLEANSED)
    _, written = nrrd.read(str(cleansed))
    assert written["content"] == f"segaudit {__version__} cleansed mask"
    assert written["Segment0_Name"] == "tumour"  # the same classes: their names stay

    ext, geometry = issue_map_target(".seg.nrrd", given.geometry)
    assert ext == ".nrrd"
    issues = tmp_path / "issue_maps" / f"case{ext}"
    write_array(issues, (given.array > 0).astype(np.uint8) * 255, geometry, kind=layout.ISSUE_MAPS)
    _, written = nrrd.read(str(issues))
    assert written["content"] == f"segaudit {__version__} issue map"
    assert not [k for k in written if k.startswith("Segment")]
    assert np.allclose(np.asarray(written["space directions"]), header["space directions"])
