"""scripts/demo.sh (``make demo``) hands the API key to ``segaudit submit`` through
``SEGAUDIT_API_KEY``, never on its command line, where ``ps`` and shell history would show it.
A stand-in ``segaudit`` records how each command was called; the real one is tested elsewhere.
"""

from __future__ import annotations

import json
import os
import subprocess

from tests.layering import ROOT

STAND_IN = r"""#!/usr/bin/env python3
import json, os, sys, time
with open(os.environ["CALLS"], "a") as f:
    f.write(json.dumps({"argv": sys.argv[1:], "key": os.environ.get("SEGAUDIT_API_KEY")}) + "\n")
cmd = sys.argv[1]
if cmd == "corrupt":  # as the real one, it makes the demo's folder
    os.makedirs(sys.argv[sys.argv.index("--out") + 1])
elif cmd == "keys":
    print("sk-demo-secret")
elif cmd == "serve":
    url_file = sys.argv[sys.argv.index("--url-file") + 1]
    open(url_file, "w").write("http://127.0.0.1:9")
    time.sleep(30)
"""


def test_the_demo_passes_the_key_in_the_environment_only(tmp_path):
    (tmp_path / "bin").mkdir()
    stand_in = tmp_path / "bin" / "segaudit"
    stand_in.write_text(STAND_IN)
    stand_in.chmod(0o755)
    calls = tmp_path / "calls.jsonl"
    env = {
        "PATH": os.environ["PATH"],
        "BIN": str(tmp_path / "bin"),
        "DEMO": "build/demo-test",  # the script makes it under the working folder
        "CALLS": str(calls),
        "SEGAUDIT_API_KEY": "",  # whatever the caller's shell holds is not what submit gets
    }
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "demo.sh")],
        env={**env, "SAMPLE": str(ROOT / "data" / "sample" / "hc18")},
        cwd=work,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    recorded = [json.loads(line) for line in calls.read_text().splitlines()]
    [submit] = [c for c in recorded if c["argv"][0] == "submit"]
    assert submit["key"] == "sk-demo-secret"
    assert not any("sk-demo-secret" in arg for c in recorded for arg in c["argv"])
    assert "--api-key" not in submit["argv"] and "--wait" in submit["argv"]
