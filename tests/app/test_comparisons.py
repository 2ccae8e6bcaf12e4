"""Comparisons of annotation sets through the API, on PostgreSQL and SQLite: real hc18 masks,
edited with a known answer, compared by the worker's own job function (as a worker runs it).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from app.db.tables import Comparison, ComparisonRow, ComparisonSet
from app.queue import RUN_COMPARISON
from models.compare import worst_distance
from tests.app.conftest import Loaded, load_dataset
from tests.app.test_audits import broker_messages
from worker.comparisons import run_comparison_job
from worker.pipeline import Outcome

SHIFT = 6  # pixels; hc18 PNGs have a spacing of 1 mm


def edited_masks(masks: list[Path], dest: Path, edit: dict[int, str]) -> list[Path]:
    """Copies of ``masks`` with case ``i`` edited: ``shift`` (right by SHIFT px), ``extra``
    (a second object of class 1), ``class2`` (a patch of class 2) or ``lose2`` (no class 2).
    """
    dest.mkdir(parents=True)
    out = []
    for i, path in enumerate(masks):
        mask = np.asarray(Image.open(path)).astype(np.uint8)
        how = edit.get(i)
        if how == "shift":
            mask = np.roll(mask, SHIFT, axis=1)
        elif how == "extra":
            mask = mask.copy()
            mask[10:40, 10:40] = 1
        elif how == "class2":
            mask = mask.copy()
            mask[500:530, 760:790] = 2
        Image.fromarray(mask).save(dest / path.name)
        out.append(dest / path.name)
    return out


def add_set(api, loaded: Loaded, name: str, masks: list[Path]) -> int:
    created = api.post(
        f"/v1/datasets/{loaded.dataset_id}/annotation-sets", json={"name": name}
    ).json()
    added = api.upload(
        f"/v1/datasets/{loaded.dataset_id}/annotation-sets/{created['id']}/masks", masks
    )
    assert added.status_code == 201, added.text
    return int(created["id"])


def run(api, comparison_id: int) -> Outcome:
    return run_comparison_job(
        comparison_id, sessions=api.sessions, store=api.store, settings=api.settings
    )


def counts(api) -> tuple[int, int, int]:
    with api.sessions() as session:
        return tuple(
            int(session.scalar(select(func.count()).select_from(t)) or 0)
            for t in (Comparison, ComparisonSet, ComparisonRow)
        )


@pytest.fixture
def loaded(api, hc18):
    return load_dataset(api, *hc18)


def test_two_sets_compared_case_by_case_with_the_known_answers(api, hc18, loaded, tmp_path):
    images, masks = hc18
    # Case 0 shifted, case 1 with an object team-a lacks, case 2 with a class team-a lacks.
    b = add_set(
        api,
        loaded,
        "team-b",
        edited_masks(masks, tmp_path / "b", {0: "shift", 1: "extra", 2: "class2"}),
    )
    created = api.post(
        "/v1/comparisons", role="reviewer", json={"annotation_set_ids": [loaded.set_id, b]}
    )
    assert created.status_code == 202, created.text
    comparison = created.json()
    assert comparison["status"] == "queued" and comparison["cases"] == 9
    assert comparison["annotation_set_ids"] == [loaded.set_id, b]
    [message] = broker_messages(api)
    assert message["queue"] == api.settings.cpu_queue
    assert message["headers"]["task"] == RUN_COMPARISON
    args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
    assert args == [comparison["id"]] and kwargs == {}

    assert run(api, comparison["id"]) is Outcome.succeeded
    assert run(api, comparison["id"]) is Outcome.skipped  # a redelivered message changes nothing
    done = api.get(f"/v1/comparisons/{comparison['id']}").json()
    assert done["status"] == "succeeded" and done["error"] is None
    assert done["progress"] == {**done["progress"], "cases_done": 9, "percent": 100.0}
    assert done["consensus_set_id"] is None and "staple" not in done["summary"]
    [pair] = done["summary"]["pairs"]
    assert (pair["set_a"], pair["set_b"]) == (loaded.set_id, b)
    first, second = pair["classes"]["1"], pair["classes"]["2"]
    assert (first["scored"], first["objects_only_in_b"], first["objects_only_in_a"]) == (9, 1, 0)
    assert (second["missing_in_a"], second["absent"]) == (1, 8)
    assert second["dice_mean"] == 0.0  # one case, scored worst: not NaN, not left out

    rows = api.get(f"/v1/comparisons/{comparison['id']}/cases", params={"limit": 50}).json()
    assert rows["total"] == 9 * 2  # nine cases, classes 1 and 2, one pair
    items = rows["items"]
    assert [r["rank"] for r in items] == list(range(1, 19))
    names = [m.stem for m in masks]
    worst = worst_distance((540, 800), (1.0, 1.0))
    top = items[0]  # a class one set lacks disagrees most
    assert (top["case"], top["label"], top["status"]) == (names[2], 2, "missing_in_a")
    assert (top["dice"], top["p95_distance_mm"], top["disagreement"]) == (0.0, worst, 1.0)
    assert (top["objects_b"], top["only_in_b"]) == (1, 1)
    by_case = {(r["case"], r["label"]): r for r in items}
    shifted = by_case[(names[0], 1)]
    assert shifted["p95_distance_mm"] == pytest.approx(SHIFT, rel=0.01)
    assert 0 < shifted["mean_distance_mm"] < SHIFT and shifted["dice"] < 0.99
    assert items[1]["case"] == names[0]  # then the shifted case
    extra = by_case[(names[1], 1)]
    assert (extra["objects_a"], extra["objects_b"], extra["only_in_b"]) == (1, 2, 1)
    same = by_case[(names[5], 1)]
    assert same["dice"] == pytest.approx(1.0) and same["p95_distance_mm"] == 0.0
    absent = [r for r in items if r["status"] == "absent"]
    assert len(absent) == 8 and items[-8:] == absent  # ranked last, not scored
    assert all(r["dice"] is None and r["disagreement"] is None for r in absent)
    assert done["summary"]["most_disagreement"][0]["case"] == names[2]

    # Pages never overlap; filters by case and by status.
    pages = [
        api.get(
            f"/v1/comparisons/{comparison['id']}/cases", params={"limit": 7, "offset": o}
        ).json()
        for o in (0, 7, 14)
    ]
    assert [r["rank"] for p in pages for r in p["items"]] == list(range(1, 19))
    one = api.get(f"/v1/comparisons/{comparison['id']}/cases", params={"case": names[0]}).json()
    assert one["total"] == 2 and {r["case"] for r in one["items"]} == {names[0]}
    missing = api.get(
        f"/v1/comparisons/{comparison['id']}/cases", params={"status": "missing_in_a"}
    ).json()
    assert [r["case"] for r in missing["items"]] == [names[2]]
    listed = api.get("/v1/comparisons", params={"dataset_id": loaded.dataset_id}).json()
    assert [c["id"] for c in listed["items"]] == [comparison["id"]]


def test_a_set_against_an_identical_one_agrees_everywhere(api, hc18, loaded, tmp_path):
    images, masks = hc18
    copy = add_set(api, loaded, "copy", edited_masks(masks, tmp_path / "copy", {}))
    comparison = api.post(
        "/v1/comparisons", role="reviewer", json={"annotation_set_ids": [loaded.set_id, copy]}
    ).json()
    assert run(api, comparison["id"]) is Outcome.succeeded
    rows = api.get(f"/v1/comparisons/{comparison['id']}/cases").json()["items"]
    assert len(rows) == 9
    assert all(r["dice"] == pytest.approx(1.0) for r in rows)
    assert all(r["mean_distance_mm"] == 0.0 and r["p95_distance_mm"] == 0.0 for r in rows)
    assert all(r["only_in_a"] == r["only_in_b"] == 0 for r in rows)


def test_three_sets_store_the_staple_consensus_as_a_candidate_set(api, hc18, loaded, tmp_path):
    images, masks = hc18
    twin = add_set(api, loaded, "twin", edited_masks(masks, tmp_path / "twin", {}))
    odd_edits = dict.fromkeys(range(0, 9, 2), "shift") | dict.fromkeys(range(1, 9, 2), "extra")
    odd = add_set(api, loaded, "odd", edited_masks(masks, tmp_path / "odd", odd_edits))
    ids = [loaded.set_id, twin, odd]
    comparison = api.post(
        "/v1/comparisons", role="reviewer", json={"annotation_set_ids": ids}
    ).json()
    assert run(api, comparison["id"]) is Outcome.succeeded
    done = api.get(f"/v1/comparisons/{comparison['id']}").json()
    assert len(done["summary"]["pairs"]) == 3
    consensus_id = done["consensus_set_id"]
    assert consensus_id is not None
    assert done["summary"]["staple"]["annotation_set_id"] == consensus_id
    agreement = {
        s["annotation_set_id"]: s["classes"]["1"] for s in done["summary"]["staple"]["sets"]
    }
    assert agreement[loaded.set_id] == agreement[twin] == {"sensitivity": 1.0, "specificity": 1.0}
    assert agreement[odd]["sensitivity"] < 0.99 and agreement[odd]["specificity"] < 1.0

    # An ordinary annotation set of the dataset, one mask per case, equal to the majority's.
    aset = api.get(f"/v1/datasets/{loaded.dataset_id}/annotation-sets/{consensus_id}").json()
    assert aset["name"] == f"STAPLE consensus of team-a, twin, odd (comparison {comparison['id']})"
    assert aset["masks"] == 9
    stored = api.get(
        f"/v1/datasets/{loaded.dataset_id}/annotation-sets/{consensus_id}/masks"
    ).json()
    by_name = {m.name: m for m in masks}
    for mask in stored["items"]:
        assert mask["file"]["format"] == "png" and mask["max_label"] == 1
        got = np.asarray(Image.open(api.store.path(mask["file"]["sha256"])))
        given = np.asarray(Image.open(by_name[mask["file"]["name"]]))
        assert np.array_equal(got, given), mask["case"]
    # It can be compared again, like any set.
    again = api.post(
        "/v1/comparisons",
        role="reviewer",
        json={"annotation_set_ids": [consensus_id, loaded.set_id]},
    )
    assert again.status_code == 202, again.text


def test_sets_of_two_datasets_are_refused_with_nothing_written(api, hc18, loaded):
    images, masks = hc18
    other = load_dataset(api, images[:3], masks[:3], name="hc18-other")
    response = api.post(
        "/v1/comparisons",
        role="reviewer",
        json={"annotation_set_ids": [loaded.set_id, other.set_id]},
    )
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "wrong_dataset"
    assert f"dataset {other.dataset_id}" in body["detail"] and "one dataset" in body["detail"]
    assert counts(api) == (0, 0, 0) and broker_messages(api) == []


@pytest.mark.parametrize(
    ("ids", "code", "words"),
    [
        (lambda s: [s], "invalid_request", "at least 2"),
        (lambda s: [s, s], "invalid_request", "more than once"),
        (lambda s: [s, 2**31 - 1], "not_found", "no annotation set 2147483647"),
        (lambda s: [s, 2**31], "invalid_request", "annotation_set_ids"),
    ],
)
def test_bad_requests_are_refused_with_nothing_written(api, loaded, ids, code, words):
    response = api.post(
        "/v1/comparisons", role="reviewer", json={"annotation_set_ids": ids(loaded.set_id)}
    )
    assert response.status_code in (404, 422)
    assert response.json()["code"] == code and words in response.json()["detail"]
    assert counts(api) == (0, 0, 0) and broker_messages(api) == []


def test_sets_with_no_case_in_common_are_refused(api, hc18, loaded, tmp_path):
    images, masks = hc18
    created = api.post(
        f"/v1/datasets/{loaded.dataset_id}/annotation-sets", json={"name": "empty"}
    ).json()
    response = api.post(
        "/v1/comparisons",
        role="reviewer",
        json={"annotation_set_ids": [loaded.set_id, created["id"]]},
    )
    assert response.status_code == 422 and response.json()["code"] == "too_few_cases"
    assert counts(api) == (0, 0, 0)


def test_roles_and_projects(api, hc18, loaded, tmp_path):
    images, masks = hc18
    b = add_set(api, loaded, "team-b", edited_masks(masks, tmp_path / "b", {0: "shift"}))
    body = {"annotation_set_ids": [loaded.set_id, b]}
    for role in ("viewer", "annotator"):
        refused = api.post("/v1/comparisons", role=role, json=body)
        assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    # Another project's key sees none of these sets, and no comparison of this project.
    foreign = api.post("/v1/comparisons", role="other", json=body)
    assert foreign.status_code == 404 and foreign.json()["code"] == "not_found"
    assert counts(api) == (0, 0, 0)
    comparison = api.post("/v1/comparisons", role="reviewer", json=body).json()
    assert run(api, comparison["id"]) is Outcome.succeeded
    for url in (f"/v1/comparisons/{comparison['id']}", f"/v1/comparisons/{comparison['id']}/cases"):
        assert api.get(url, role="viewer").status_code == 200
        hidden = api.get(url, role="other")
        assert hidden.status_code == 404 and hidden.json()["code"] == "not_found"
        assert api.client.get(url).status_code == 401
    assert api.get("/v1/comparisons", role="other").json()["total"] == 0
    assert api.get("/v1/comparisons/99999").status_code == 404


def test_a_broker_that_refuses_the_task_fails_the_comparison(api_factory, hc18, tmp_path):
    api = api_factory(broker_url="redis://127.0.0.1:1/0")  # nothing listens there
    loaded = load_dataset(api, *hc18)
    copy = add_set(api, loaded, "copy", edited_masks(hc18[1], tmp_path / "copy", {}))
    response = api.post(
        "/v1/comparisons", role="reviewer", json={"annotation_set_ids": [loaded.set_id, copy]}
    )
    assert response.status_code == 503 and response.json()["code"] == "broker_unavailable"
    [comparison] = api.get("/v1/comparisons").json()["items"]
    assert comparison["status"] == "failed"
    assert comparison["error"]["code"] == "broker_unavailable"
    assert run(api, comparison["id"]) is Outcome.skipped


def test_a_mask_missing_from_the_store_fails_the_comparison_naming_it(api, hc18, loaded, tmp_path):
    images, masks = hc18
    b = add_set(api, loaded, "team-b", edited_masks(masks, tmp_path / "b", {0: "shift"}))
    comparison = api.post(
        "/v1/comparisons", role="reviewer", json={"annotation_set_ids": [loaded.set_id, b]}
    ).json()
    listed = api.get(f"/v1/datasets/{loaded.dataset_id}/annotation-sets/{b}/masks").json()["items"]
    api.store.path(listed[0]["file"]["sha256"]).unlink()
    assert run(api, comparison["id"]) is Outcome.failed
    failed = api.get(f"/v1/comparisons/{comparison['id']}").json()
    assert failed["status"] == "failed" and failed["error"]["code"] == "not_found"
    assert listed[0]["file"]["name"] in failed["error"]["message"]
    assert counts(api)[2] == 0  # no rows


def test_3d_volumes_use_their_slice_spacing_and_keep_their_format(api, mr, tmp_path):
    import nrrd

    images, masks = mr
    loaded = load_dataset(api, images, masks, name="mr")
    shifted = tmp_path / "shifted"
    shifted.mkdir()
    for path in masks:
        label, header = nrrd.read(str(path))
        nrrd.write(str(shifted / path.name), np.roll(label, 1, axis=2), header=header)
    twin = add_set(api, loaded, "twin", masks)
    moved = add_set(api, loaded, "moved", sorted(shifted.iterdir()))
    ids = [loaded.set_id, twin, moved]
    created = api.post("/v1/comparisons", role="reviewer", json={"annotation_set_ids": ids})
    assert run(api, created.json()["id"]) is Outcome.succeeded
    comparison = api.get(f"/v1/comparisons/{created.json()['id']}").json()
    rows = api.get(f"/v1/comparisons/{comparison['id']}/cases", params={"status": "scored"}).json()[
        "items"
    ]
    slice_mm = {"brain1": 6.5, "breast1": 2.1}  # the NRRDs' slice spacing
    for row in rows:
        if row["set_b_id"] == moved:  # one slice apart: the p95 distance is one slice
            assert row["p95_distance_mm"] == pytest.approx(slice_mm[row["case"]], rel=1e-6)
        else:
            assert row["dice"] == pytest.approx(1.0) and row["p95_distance_mm"] == 0.0
    assert len(rows) == 2 * 3
    # The consensus is NRRD on each volume's grid, equal to the two sets that agree.
    stored = api.get(
        f"/v1/datasets/{loaded.dataset_id}/annotation-sets/{comparison['consensus_set_id']}/masks"
    ).json()["items"]
    assert sorted(m["file"]["name"] for m in stored) == ["brain1.nrrd", "breast1.nrrd"]
    for mask in stored:
        got, header = nrrd.read(str(api.store.path(mask["file"]["sha256"])))
        given, given_header = nrrd.read(str(tmp_path / "mr" / "masks" / mask["file"]["name"]))
        assert np.array_equal(got, given)
        assert np.allclose(header["space directions"], given_header["space directions"])
        assert np.allclose(header["space origin"], given_header["space origin"])


def test_a_comparison_covers_the_cases_masked_in_every_set_when_it_was_made(
    api, hc18, loaded, tmp_path
):
    images, masks = hc18
    copies = edited_masks(masks, tmp_path / "b", {})
    created = api.post(
        f"/v1/datasets/{loaded.dataset_id}/annotation-sets", json={"name": "partial"}
    ).json()
    upload = f"/v1/datasets/{loaded.dataset_id}/annotation-sets/{created['id']}/masks"
    assert api.upload(upload, copies[:5]).status_code == 201
    body = {"annotation_set_ids": [loaded.set_id, created["id"]]}
    comparison = api.post("/v1/comparisons", role="reviewer", json=body).json()
    assert comparison["cases"] == 5
    assert api.upload(upload, copies[5:]).status_code == 201  # after it was made: not in it
    assert run(api, comparison["id"]) is Outcome.succeeded
    rows = api.get(f"/v1/comparisons/{comparison['id']}/cases").json()
    assert sorted(r["case"] for r in rows["items"]) == sorted(m.stem for m in masks[:5])
    done = api.get(f"/v1/comparisons/{comparison['id']}").json()
    assert done["summary"]["cases"] == 5 and done["progress"]["cases_done"] == 5
