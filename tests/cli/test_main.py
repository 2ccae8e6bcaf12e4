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
