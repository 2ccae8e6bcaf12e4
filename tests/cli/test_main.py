import subprocess
import sys

from cli.main import COMMANDS, main


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in COMMANDS)


def test_unknown_command_is_an_error(capsys):
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err
    assert main([]) == 2


def test_console_entry_point_dispatches_to_the_owner():
    done = subprocess.run(
        [sys.executable, "-m", "cli", "bench", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0 and "--instances" in done.stdout


# ``segaudit audit`` with its engine replaced by what it ends with for DICOM: a SEG written
# for each case (all background, so highdicom notes each one); training is tested elsewhere.
WRITES_EMPTY_SEGS = """
import sys
from pathlib import Path

import numpy as np

import cli.engine
from cli.main import main
from imaging import layout
from imaging.dicom.cases import find_pairs
from imaging.errors import ErrorCode, InputError
from imaging.write import write_array


def run_audit(images, masks, out, *args, **kwargs):
    pairs, _ = find_pairs(Path(images), Path(masks))
    for pair in pairs:
        mask = pair.read_mask()
        empty = np.zeros_like(mask.array)
        write_array(Path(out) / f"{pair.case_id}.dcm", empty, mask.geometry, kind=layout.PSEUDO)
    raise InputError(ErrorCode.TOO_FEW_CASES, f"wrote {len(pairs)} SEGs")


cli.engine.run_audit = run_audit
images, masks, out = sys.argv[1:]
sys.exit(main(["audit", "--images", images, "--masks", masks, "--out", out, "--quiet"]))
"""


def test_a_library_s_repeated_note_is_said_once_per_command(tmp_path):
    from tests.imaging.dicom.builders import slab_cases, write_cases

    images, masks = write_cases(slab_cases()[:3], tmp_path / "images", tmp_path / "masks")
    done = subprocess.run(
        [sys.executable, "-c", WRITES_EMPTY_SEGS, str(images), str(masks), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "wrote 3 SEGs" in done.stderr, done.stderr
    assert len(list((tmp_path / "out").glob("*.dcm"))) == 3
    notes = [line for line in done.stderr.splitlines() if "empty image" in line]
    assert len(notes) == 1, done.stderr
    assert " WARNING highdicom" in notes[0]  # in the service's one log format
