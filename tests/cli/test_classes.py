"""``--classes`` on ``segaudit audit`` (the engine) and ``segaudit submit`` (the service)."""

from __future__ import annotations

import csv
import json

import pytest

from cli.engine import main
from imaging import layout
from tests.cli.test_submit import service, submit  # noqa: F401 (service: a fixture)

TINY = ["--epochs", "2", "--size", "32", "--seed", "0", "--device", "cpu", "--quiet"]


def audit(images, masks, out, *extra):
    return main(
        ["audit", "--images", str(images), "--masks", str(masks), "--out", str(out), *TINY, *extra]
    )


def test_the_engine_names_its_outputs_by_the_declared_classes(hc18_small, tmp_path, capsys):
    images, masks = hc18_small
    assert audit(images, masks, tmp_path / "out", "--classes", "head=1") == 0
    with (tmp_path / "out" / layout.SCORES).open() as f:
        header = next(csv.reader(f))
    assert "dice_head" in header and not any("class_1" in c for c in header)
    run = json.loads((tmp_path / "out" / layout.RUN).read_text())
    assert run["inputs"]["classes"] == {"head": 1} and run["config"]["classes"] == {"head": 1}


def test_the_engine_refuses_a_mask_outside_the_declared_classes(hc18_small, tmp_path, capsys):
    images, masks = hc18_small
    assert audit(images, masks, tmp_path / "out", "--classes", "skull=2") == 2
    err = capsys.readouterr().err
    assert "[mask_out_of_range]" in err and "skull=2" in err and ".png" in err
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit) as caught:
        audit(images, masks, tmp_path / "out", "--classes", "head")
    assert caught.value.code == 2 and "not NAME=VALUE" in capsys.readouterr().err


def test_submit_declares_the_classes_on_its_annotation_set(
    service,  # noqa: F811
    hc18,
    monkeypatch,
    capsys,
):
    images, masks = hc18
    monkeypatch.setenv("SEGAUDIT_API_KEY", service.key)
    folders = ["--images", images[0].parent, "--masks", masks[0].parent]
    code, out, err = submit(capsys, service, *folders, "--dataset", "one", "--classes", "head=1")
    assert code == 0, err
    [dataset] = service.get("/v1/datasets")["items"]
    [aset] = service.get(f"/v1/datasets/{dataset['id']}/annotation-sets")["items"]
    assert aset["classes"] == {"head": 1} and aset["classes_declared"] is True
    [queued] = service.get("/v1/audits")["items"]
    assert queued["parameters"]["classes"] == {"head": 1}

    # Its own dataset name: the default one is dated to the second, and two runs may share it.
    code, _, err = submit(capsys, service, *folders, "--dataset", "two", "--classes", "skull=2")
    assert code == 2 and "mask_out_of_range" in err and "skull=2" in err
    assert "deleted dataset" in err and service.get("/v1/datasets")["total"] == 1
