import subprocess
import sys

from cli.engine import main
from imaging import layout


def test_help_runs_as_a_module():
    done = subprocess.run(
        [sys.executable, "-m", "cli", "audit", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0 and "--images" in done.stdout


def test_corrupt_audit_evaluate_from_the_command_line(hc18_small, tmp_path, capsys):
    images, masks = hc18_small
    noisy, truth, out = tmp_path / "noisy", tmp_path / "truth.csv", tmp_path / "out"
    assert (
        main(
            [
                "corrupt",
                "--masks",
                str(masks),
                "--out",
                str(noisy),
                "--truth",
                str(truth),
                "--seed",
                "1",
            ]
        )
        == 0
    )
    assert "Corrupted 3 of 8 masks" in capsys.readouterr().out
    rc = main(
        [
            "audit",
            "--images",
            str(images),
            "--masks",
            str(noisy),
            "--out",
            str(out),
            "--epochs",
            "3",
            "--size",
            "32",
            "--quiet",
            "--top",
            "5",
        ]
    )
    printed = capsys.readouterr().out
    assert rc == 0
    assert "Most suspect cases (of 8" in printed and f"Outputs in {out}/" in printed
    assert len([line for line in printed.splitlines() if "_HC " in line]) == 5
    assert (out / layout.RUN).exists()
    rc = main(
        [
            "evaluate",
            "--audit",
            str(out),
            "--truth",
            str(truth),
            "--true-masks",
            str(masks),
            "--given-masks",
            str(noisy),
        ]
    )
    printed = capsys.readouterr().out
    assert (
        rc == 0 and "Detection of the 3 corrupted cases among 8" in printed and "AUROC" in printed
    )
