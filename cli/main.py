"""``segaudit COMMAND ...``: dispatches each command to its module in ``cli/``.

Each command module exposes ``main(argv) -> int`` and parses its own options. A module is imported
only when its command runs, so ``segaudit keys create`` never loads torch and ``segaudit audit``
never loads the web stack.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Sequence

# command -> (module with main(argv), one line of help)
COMMANDS: dict[str, tuple[str, str]] = {
    "audit": ("cli.engine", "find noisy masks in a folder and cleanse them"),
    "segment": ("cli.engine", "segment new images with an audit's model.pt"),
    "corrupt": ("cli.engine", "make a noisy copy of true masks, for evaluation"),
    "evaluate": ("cli.engine", "score a finished audit against known noise"),
    "bench": ("cli.bench", "compare the audit with its peers on corrupted real data"),
    "pacs": ("cli.pacs", "pull a study from a DICOMweb server, push cleansed masks back"),
    "db": ("cli.admin", "apply the service's database migrations (db upgrade)"),
    "keys": ("cli.admin", "create, list and revoke the service's API keys"),
    "storage": ("cli.admin", "remove crash leftovers: stale staging, unnamed blobs (storage gc)"),
    "serve": ("cli.serve", "serve the REST API (--embedded: with a local worker, no servers)"),
    "worker": ("cli.worker", "run audits from the task queues (one worker per GPU)"),
    "submit": ("cli.submit", "upload a dataset to the service, audit it, download the export"),
}

# What the `engine` extra installs (pyproject.toml); the base install has none of it. The
# commands of these modules need it (the worker's tasks import it when they run).
ENGINE_MODULES = ("torch", "monai", "sklearn")
ENGINE_COMMANDS = ("cli.engine", "cli.bench", "cli.worker")


def _missing_engine() -> str | None:
    """The first module of the engine that cannot be imported here, if any."""
    for name in ENGINE_MODULES:
        try:
            found = importlib.util.find_spec(name)
        except ImportError:
            found = None
        if found is None:
            return name
    return None


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [
        "usage: segaudit COMMAND [options]   (segaudit COMMAND --help for its options)",
        "       segaudit --version",
        "",
    ]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    if args[0] in ("-V", "--version"):
        from imaging import __version__  # no torch, no web stack

        print(f"segaudit {__version__}")
        return 0
    command = args[0]
    if command not in COMMANDS:
        print(f"segaudit: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    # Every command logs in one format, and a library's repeated note (highdicom's empty frame,
    # once per DICOM case) is said once per process; serve and worker set their own level.
    from app import logs  # standard library only: no web stack, no torch

    logs.configure("WARNING")
    module_name = COMMANDS[command][0]
    missing = _missing_engine() if module_name in ENGINE_COMMANDS else None
    if missing:  # e.g. `segaudit audit` or `segaudit worker` in the API-only image
        print(
            f"segaudit {command} needs the audit engine, which is not installed here "
            f"(no {missing}): pip install 'segaudit[engine]', or run it in the workers' image",
            file=sys.stderr,
        )
        return 2
    module = importlib.import_module(module_name)
    return int(module.main(args))


if __name__ == "__main__":
    sys.exit(main())
