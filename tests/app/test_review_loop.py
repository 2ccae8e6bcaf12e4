"""The review loop through the API on real hc18 masks: decisions of each kind, corrected masks
by a reviewer and an annotator, a resolve with each policy, the exports checked pixel for pixel
against the decisions, and a re-audit of the resolved set whose history shows both scores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.app.conftest import Loaded, load_dataset
from tests.app.review_data import SCORES, correct, decide, finish, png_bytes, read_png, unzip

# Per case (hc18's nine, in name order), what each resolve must take; see the decisions below.
# 0: none (not flagged); 1: accept_cleansed; 2: keep_original; 3: needs_rework, then an
# annotator's correction; 4: accept_cleansed, then keep_original; 5: needs_rework (flagged);
# 6: a reviewer's correction, then accept_cleansed; 7: none (flagged); 8: a reviewer's
# correction, no decision.
SETTLED = {
    1: "cleansed",
    2: "original",
    3: "corrected",
    4: "original",
    6: "cleansed",
    8: "corrected",
}
OPEN = {  # cases 0, 5 and 7, by policy
    "keep_original": {0: "original", 5: "original", 7: "original"},
    "accept_flagged": {0: "original", 5: "cleansed", 7: "cleansed"},
    "exclude": {0: "excluded", 5: "excluded", 7: "excluded"},
}


def fixed(like: np.ndarray, i: int) -> np.ndarray:
    """A corrected mask for case ``i``: a box of class 1, unlike the given or cleansed mask."""
    out = np.zeros_like(like)
    out[100 + 10 * i : 300, 150:500] = 1
    return out


@pytest.fixture
def reviewed(api, hc18, tmp_path):
    images, masks = hc18
    loaded = load_dataset(api, images, masks)
    out = tmp_path / "out"
    audit_id = finish(api, loaded, masks, out, SCORES)
    names = [m.stem for m in masks]
    given = {m.stem: read_png(m) for m in masks}
    arrays = {
        "original": given,
        "cleansed": {m.stem: read_png(out / "cleansed" / m.name) for m in masks},
        "corrected": {names[i]: fixed(given[names[i]], i) for i in (3, 6, 8)},
    }
    assert not np.array_equal(arrays["original"][names[1]], arrays["cleansed"][names[1]])

    decide(api, audit_id, names[1], "accept_cleansed")
    decide(api, audit_id, names[2], "keep_original")
    decide(api, audit_id, names[3], "needs_rework")
    decide(api, audit_id, names[4], "accept_cleansed")
    decide(api, audit_id, names[4], "keep_original")
    decide(api, audit_id, names[5], "needs_rework")
    for i in (6, 8):
        fix = png_bytes(arrays["corrected"][names[i]])
        made = correct(api, audit_id, names[i], f"fix-{i}.png", fix)
        assert made.status_code == 201, made.text
    decide(api, audit_id, names[6], "accept_cleansed")  # overrules the correction before it
    return loaded, audit_id, names, arrays, masks


def test_corrections_and_the_cases_sent_back(api, reviewed):
    loaded, audit_id, names, arrays, _ = reviewed
    rework = api.get(f"/v1/audits/{audit_id}/rework")
    assert [r["case"] for r in rework.json()] == [names[3], names[5]]
    assert rework.json()[0]["review"]["decision"] == "needs_rework"

    # An annotator may correct a case sent back, and only such a case.
    refused = correct(
        api, audit_id, names[1], "a.png", png_bytes(arrays["original"][names[1]]), "annotator"
    )
    assert refused.status_code == 403 and refused.json()["code"] == "not_in_rework"
    assert "accept_cleansed" in refused.json()["detail"]
    undecided = correct(
        api, audit_id, names[0], "a.png", png_bytes(arrays["original"][names[0]]), "annotator"
    )
    assert undecided.status_code == 403 and undecided.json()["code"] == "not_in_rework"
    fix = png_bytes(arrays["corrected"][names[3]])
    made = correct(api, audit_id, names[3], "redo.png", fix, "annotator")
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["author"] == "alpha-annotator" and body["case"] == names[3]
    assert body["file"]["name"] == f"{names[3]}.png" and body["max_label"] == 1
    assert [r["case"] for r in api.get(f"/v1/audits/{audit_id}/rework").json()] == [names[5]]

    detail = api.get(f"/v1/audits/{audit_id}/cases/{names[3]}").json()
    assert [r["decision"] for r in detail["reviews"]] == ["needs_rework"]
    assert [c["author"] for c in detail["corrections"]] == ["alpha-annotator"]
    assert api.get(f"/v1/audits/{audit_id}/cases/{names[4]}").json()["corrections"] == []
    viewer = correct(api, audit_id, names[3], "redo.png", fix, "viewer")
    assert viewer.status_code == 403 and viewer.json()["code"] == "forbidden"


@pytest.mark.parametrize("policy", list(OPEN))
def test_resolve_takes_each_case_as_decided(api, reviewed, policy):
    loaded, audit_id, names, arrays, _ = reviewed
    fix = png_bytes(arrays["corrected"][names[3]])
    assert correct(api, audit_id, names[3], "redo.png", fix, "annotator").status_code == 201
    made = api.post(f"/v1/audits/{audit_id}/resolve", role="reviewer", json={"policy": policy})
    assert made.status_code == 201, made.text
    aset = made.json()
    want = {names[i]: s for i, s in {**SETTLED, **OPEN[policy]}.items()}
    counts = {
        s: sum(v == s for v in want.values())
        for s in ("original", "cleansed", "corrected", "excluded")
    }
    assert aset["tag"] == "final" and aset["name"] == f"team-a-final-audit{audit_id}"
    assert aset["masks"] == 9 - counts["excluded"]
    lineage = aset["lineage"]
    assert lineage["audit_id"] == audit_id and lineage["parent_set_id"] == loaded.set_id
    assert lineage["policy"] == policy and lineage["resolved_by"] == "alpha-reviewer"
    assert lineage["sources"] == counts
    url = f"/v1/datasets/{loaded.dataset_id}/annotation-sets"
    listed = api.get(url).json()["items"]
    assert [(s["id"], s["tag"]) for s in listed] == [
        (loaded.set_id, "original"),
        (aset["id"], "final"),
    ]

    members, manifest = unzip(api.get(f"{url}/{aset['id']}/export"))
    assert [r["case"] for r in manifest] == names
    assert {r["case"]: r["source"] for r in manifest} == want
    kept = {r["file"] for r in manifest if r["source"] != "excluded"}
    assert set(members) == kept
    for row in manifest:
        case, source = row["case"], row["source"]
        if source == "excluded":
            assert row["file"] == ""
            continue
        assert row["file"] == f"labels/final/{case}.png"
        assert np.array_equal(read_png(members[row["file"]]), arrays[source][case]), (case, source)
    rows = {r["case"]: r for r in manifest}
    assert (rows[names[1]]["decision"], rows[names[1]]["settled_by"]) == (
        "accept_cleansed",
        "decision",
    )
    assert rows[names[1]]["reviewer"] == "alpha-reviewer"
    assert (rows[names[3]]["reviewer"], rows[names[3]]["settled_by"]) == (
        "alpha-annotator",
        "correction",
    )
    assert rows[names[3]]["decision"] == "needs_rework"
    assert rows[names[8]]["decision"] == "" and rows[names[8]]["settled_by"] == "correction"
    assert rows[names[5]]["decision"] == "needs_rework"
    for i in (0, 5, 7):
        assert rows[names[i]]["settled_by"] == f"policy:{policy}"
        assert rows[names[i]]["reviewer"] == "alpha-reviewer"
    assert rows[names[4]]["time"] > rows[names[1]]["time"]  # the later decision's time
    assert not list(api.store.tmp.iterdir())  # the zip was removed after sending


def test_the_original_and_cleansed_tags_download_too(api, reviewed, tmp_path):
    loaded, audit_id, names, arrays, masks = reviewed
    url = f"/v1/datasets/{loaded.dataset_id}/annotation-sets/{loaded.set_id}/export"
    members, manifest = unzip(api.get(url))
    assert members == {f"labels/original/{m.name}": m.read_bytes() for m in masks}
    assert {r["source"] for r in manifest} == {"original"}
    assert {r["decision"] for r in manifest} == {""}

    members, manifest = unzip(api.get(f"/v1/audits/{audit_id}/labels/cleansed"))
    out = tmp_path / "out" / "cleansed"
    assert members == {f"labels/cleansed/{m.name}": (out / m.name).read_bytes() for m in masks}
    decisions = {r["case"]: r["decision"] for r in manifest}
    assert decisions[names[1]] == "accept_cleansed" and decisions[names[4]] == "keep_original"
    assert decisions[names[0]] == ""


def test_the_resolved_set_audited_again(api, reviewed, tmp_path):
    loaded, first, names, arrays, _ = reviewed
    made = api.post(
        f"/v1/audits/{first}/resolve",
        role="reviewer",
        json={"policy": "accept_flagged", "name": "v2"},
    )
    assert made.status_code == 201, made.text
    final_id = made.json()["id"]
    members, _ = unzip(
        api.get(f"/v1/datasets/{loaded.dataset_id}/annotation-sets/{final_id}/export")
    )
    folder = tmp_path / "final"
    folder.mkdir()
    paths = []
    for member, data in sorted(members.items()):
        path = folder / Path(member).name
        path.write_bytes(data)
        paths.append(path)
    again = [0.1, 0.2, 0.1, 0.3, 0.1, 0.8, 0.2, 0.15, 0.1]  # one flag remains: case 5
    second = finish(
        api, Loaded(loaded.dataset_id, final_id, loaded.case_ids), paths, tmp_path / "again", again
    )
    audit = api.get(f"/v1/audits/{second}").json()
    assert audit["annotation_set_id"] == final_id and audit["summary"]["flagged"] == 1

    for i, source, decision in (
        (7, "cleansed", None),
        (1, "cleansed", "accept_cleansed"),
        (0, "original", None),
    ):
        history = api.get(f"/v1/cases/{loaded.case_ids[names[i]]}/history").json()
        assert [h["audit_id"] for h in history] == [first, second]
        assert [h["result"]["noise_score"] for h in history] == [
            pytest.approx(SCORES[i]),
            pytest.approx(again[i]),
        ]
        assert [h["annotation_set_tag"] for h in history] == ["original", "final"]
        assert [h["annotation_set_name"] for h in history] == ["team-a", "v2"]
        assert [h["mask_source"] for h in history] == [None, source]
        assert history[0]["decision"] == decision and history[1]["decision"] is None
