"""The Celery configuration the issue asks for, the import discipline that keeps CUDA out of a
worker until it trains, and ``segaudit worker`` refusing a queue that does not exist.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from app.queue import RUN_AUDIT
from app.settings import Settings
from tests.worker.conftest import SOURCE_PATH
from worker.celery_app import make_celery


def test_the_app_acknowledges_late_prefetches_one_and_declares_its_queues(tmp_path):
    settings = Settings(data_dir=tmp_path, broker_url="redis://127.0.0.1:6379/0")
    conf = make_celery(settings).conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_create_missing_queues is False
    assert sorted(q.name for q in conf.task_queues) == ["cpu", "gpu"]
    assert conf.task_routes[RUN_AUDIT] == {"queue": "gpu"}
    assert conf.task_soft_time_limit <= conf.task_time_limit
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit


def test_time_limits_must_fit_inside_the_visibility_timeout(tmp_path):
    with pytest.raises(ValueError, match="visibility_timeout_s"):
        Settings(data_dir=tmp_path, audit_time_limit_s=7200, visibility_timeout_s=3600)


def test_loading_the_worker_loads_no_torch(tmp_path):
    code = (
        "import sys, worker.celery_app, worker.tasks, cli.worker, worker.reconcile\n"
        "assert 'segaudit.run_audit' in worker.celery_app.celery.tasks\n"
        "print(','.join(m for m in ('torch', 'monai') if m in sys.modules))"
    )
    env = {"SEGAUDIT_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin", **SOURCE_PATH}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""  # no CUDA can be initialised before a fork


def test_a_worker_refuses_an_unknown_queue(tmp_path):
    env = {"SEGAUDIT_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin", **SOURCE_PATH}
    done = subprocess.run(
        [sys.executable, "-m", "cli", "worker", "--queues", "gpu,gppu"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 2
    assert "unknown queue(s) ['gppu']" in done.stderr and "cpu, gpu" in done.stderr
