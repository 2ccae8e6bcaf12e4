"""docker-compose.yml and the Dockerfile, checked without a Docker daemon (none runs on the
test machines): the compose file is parsed and interpolated as Compose does, and the commands
it runs (Flower's guard, the workers' health checks) are run here for real.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from tests.layering import ROOT

VARIABLE = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


class Missing(Exception):
    """A ``${VAR:?message}`` whose variable is unset or empty."""


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable substitution: ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}``;
    ``$$`` is a literal ``$``.
    """

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.groups()
        value = env.get(name, "")
        if op in (":?", "?") and not value:
            raise Missing(f"{name}: {arg}")
        if op in (":-", "-") and not value:
            return arg
        return value

    parts = text.split("$$")
    return "$".join(VARIABLE.sub(one, part) for part in parts)


def compose(env: dict[str, str]) -> dict[str, Any]:
    return yaml.safe_load(interpolate((ROOT / "docker-compose.yml").read_text(), env))


ENV = {"POSTGRES_PASSWORD": "p4ss-word"}


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return compose(ENV)["services"]


def _flag(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_the_database_has_no_default_password():
    with pytest.raises(Missing, match="POSTGRES_PASSWORD"):
        compose({})
    text = (ROOT / "docker-compose.yml").read_text()
    assert "POSTGRES_PASSWORD:-" not in text
    services = compose(ENV)["services"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == "p4ss-word"
    assert ":p4ss-word@postgres:" in services["api"]["environment"]["SEGAUDIT_DATABASE_URL"]


def test_a_cpu_only_host_runs_audits_on_the_cpu_worker(services):
    default = {n: s for n, s in services.items() if not s.get("profiles")}
    assert "worker-gpu" not in default and "worker-cpu" in default
    queue = services["api"]["environment"]["SEGAUDIT_AUDIT_QUEUE"]
    consumers = [
        _flag(s["command"], "--queues").split(",")
        for s in default.values()
        if s.get("command", [None])[:2] == ["segaudit", "worker"]
    ]
    assert any(queue in queues for queues in consumers), (queue, consumers)
    # With the gpu profile and SEGAUDIT_AUDIT_QUEUE=gpu, the GPU worker takes them.
    gpu = compose({**ENV, "SEGAUDIT_AUDIT_QUEUE": "gpu"})["services"]
    assert gpu["api"]["environment"]["SEGAUDIT_AUDIT_QUEUE"] == "gpu"
    assert gpu["worker-gpu"]["profiles"] == ["gpu"]
    assert _flag(gpu["worker-gpu"]["command"], "--queues") == "gpu"
    assert "gpu" not in _flag(gpu["worker-cpu"]["command"], "--queues").split(",")


def test_the_gpu_worker_sees_its_gpu_as_device_zero(services):
    worker = services["worker-gpu"]
    [device] = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"] and len(device["device_ids"]) == 1
    assert _flag(worker["command"], "--gpu") == "0"
    assert worker["environment"]["SEGAUDIT_DEVICE"] == "cuda"
    advice = (ROOT / "docker-compose.yml").read_text().split("services:")[0]
    assert "device 0" in advice and "keep `--gpu 0`" in advice


def test_flower_is_local_and_needs_a_password(services, tmp_path):
    flower = services["flower"]
    assert flower["profiles"] == ["monitoring"]
    assert [str(p) for p in flower["ports"]] == ["127.0.0.1:5555:5555"]
    assert flower["command"][:2] == ["sh", "-c"] and "--basic-auth=" in flower["command"][2]
    env = {"PATH": os.environ["PATH"], "FLOWER_BASIC_AUTH": ""}
    done = subprocess.run(flower["command"], env=env, capture_output=True, text=True)
    assert done.returncode == 1 and "set FLOWER_BASIC_AUTH" in done.stderr
    # With credentials it goes on to start Flower with them (a stub celery shows the call).
    (tmp_path / "celery").write_text('#!/bin/sh\necho "$@"\n')
    (tmp_path / "celery").chmod(0o755)
    env = {"PATH": f"{tmp_path}:{os.environ['PATH']}", "FLOWER_BASIC_AUTH": "ops:secret"}
    done = subprocess.run(flower["command"], env=env, capture_output=True, text=True)
    assert done.returncode == 0 and "--basic-auth=ops:secret" in done.stdout


def test_every_long_running_service_has_a_health_check_and_a_memory_limit(services):
    for name, service in services.items():
        assert re.fullmatch(r"\d+[mg]", service["deploy"]["resources"]["limits"]["memory"]), name
        if name == "migrate":
            assert service["healthcheck"] == {"disable": True}
            continue
        assert service["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
    for name in ("worker-cpu", "worker-gpu"):
        service = services[name]
        node = _flag(service["command"], "--hostname").split("@")[0]
        check = service["healthcheck"]["test"][1]
        assert "inspect ping" in check and f'"{node}@$(hostname)"' in check


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("SEGAUDIT_TEST_REDIS", "redis://127.0.0.1:6379/15")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"Redis at {url} is not reachable: {exc}")
    return url


def test_the_worker_health_check_loads_the_celery_app(redis_url):
    """The check's ``-A`` names the real Celery app: against a broker with no worker on it,
    celery answers "no nodes replied" rather than failing to load the application.
    """
    check = compose(ENV)["services"]["worker-cpu"]["healthcheck"]["test"][1]
    argv = shlex.split(check.replace("$(hostname)", "nobody-here"))
    argv = [str(Path(sys.executable).with_name("celery")), *argv[1:]]
    argv[argv.index("--timeout") + 1] = "1"
    env = {**os.environ, "SEGAUDIT_BROKER_URL": redis_url}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=ROOT, timeout=60)
    output = done.stdout + done.stderr
    assert "Unable to load celery application" not in output
    assert "No nodes replied" in output or "no nodes replied" in output.lower(), output


def test_uploads_and_storage_are_on_the_data_volume(services):
    for name in ("api", "worker-cpu", "worker-gpu", "migrate"):
        service = services[name]
        assert "storage:/data" in service["volumes"], name
        env = service["environment"]
        assert env["TMPDIR"].startswith("/data/") and env["SEGAUDIT_STORAGE_DIR"].startswith(
            "/data/"
        )
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"TMPDIR=/data/tmp", dockerfile)
    assert "mkdir -p /data/tmp" in dockerfile


def _stages() -> dict[str, str]:
    """The Dockerfile's build stages: name -> its text."""
    parts = re.split(r"^FROM ", (ROOT / "Dockerfile").read_text(), flags=re.M)[1:]
    return {re.match(r"\S+ AS (\w+)", part).group(1): part for part in parts}  # type: ignore[union-attr]


def test_the_image_checks_itself():
    stages = _stages()
    assert re.search(r"^HEALTHCHECK .*\n?.*CMD .*healthz", stages["base"], re.M)
    smoke = {
        name: re.search(r'python -c "([^"]+)"', stages[name]).group(1)  # type: ignore[union-attr]
        for name in ("api", "engine")
    }
    assert "import app.main" in smoke["api"] and "worker" not in smoke["api"]
    assert '! python -c "import torch"' in stages["api"]  # the API image has no engine
    assert "import app.main, worker.celery_app" in smoke["engine"]
    # The smoke tests themselves pass here, as the images' builds run them.
    for code in smoke.values():
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=ROOT)
        assert done.returncode == 0, done.stderr


def test_the_api_runs_from_the_small_image_and_the_workers_from_the_engine_s(services):
    stages = _stages()
    assert list(stages)[-1] == "engine"  # a plain `docker build .` is the full image
    assert (
        "pytorch.org" not in stages["api"] and "image_requirements.py engine" not in stages["api"]
    )
    assert "image_requirements.py engine" in stages["engine"]
    for name in ("api", "migrate", "flower"):
        assert services[name]["build"]["target"] == "api", name
        assert services[name]["image"].startswith("segaudit-api:"), name
    for name in ("worker-cpu", "worker-gpu"):
        assert services[name]["build"]["target"] == "engine", name
        assert services[name]["image"].startswith("segaudit:"), name
        assert services[name]["build"]["args"]["TORCH_VARIANT"] == "cpu"
    assert services["api"]["image"] != services["worker-cpu"]["image"]


def _compose_cli() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


def test_compose_itself_accepts_the_file_and_wants_the_password():
    cli = _compose_cli()
    if cli is None:  # scripts/install-test-services.sh installs Debian's docker-compose
        message = "no docker-compose or docker compose here"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must provide it")
        pytest.skip(message)
    base = {k: v for k, v in os.environ.items() if k != "POSTGRES_PASSWORD"}
    run = [*cli, "-f", str(ROOT / "docker-compose.yml")]
    refused = subprocess.run([*run, "config", "-q"], env=base, capture_output=True, text=True)
    assert refused.returncode != 0 and "POSTGRES_PASSWORD" in refused.stderr
    env = {**base, **ENV}
    done = subprocess.run(
        [*run, "--profile", "gpu", "--profile", "monitoring", "config", "--services"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert set(done.stdout.split()) == set(compose(ENV)["services"])
    # Compose 1 lists every service whatever the profiles; its resolved file keeps them.
    resolved = subprocess.run([*run, "config"], env=env, capture_output=True, text=True)
    services = yaml.safe_load(resolved.stdout)["services"]
    assert (
        services["worker-gpu"]["profiles"] == ["gpu"] and "profiles" not in services["worker-cpu"]
    )
