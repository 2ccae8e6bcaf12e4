"""The dashboard in real Chromium against a live server with two real audits' results (see
``conftest.py``): sign-in, the results table, overlays, keyboard review, a volume's slices,
roles, and the accessibility basics (keyboard reach, labels, text contrast).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from sqlalchemy import select

from app.db.tables import Case, Review
from tests.ui.conftest import SHOTS, Site, sign_in


def shot(element: Any) -> np.ndarray:
    with Image.open(io.BytesIO(element.screenshot())) as image:
        return np.asarray(image.convert("RGB")).astype(np.int16)


def layer_alpha(page: Any, url: str, size: tuple[int, int]) -> np.ndarray:
    """The alpha (0..255) of a layer's PNG, fetched with the page's cookie, at ``size`` (W, H)."""
    response = page.request.get(url)
    assert response.status == 200, response.text()
    with Image.open(io.BytesIO(response.body())) as image:
        alpha = image.convert("RGBA").getchannel("A")
        return np.asarray(alpha.resize(size, Image.Resampling.NEAREST))


def scores(page: Any) -> list[float]:
    return [float(t) for t in page.locator("#results tbody tr td:nth-child(3)").all_inner_texts()]


def test_a_key_opens_the_dashboard_and_lists_the_datasets(page, site: Site):
    page.goto(f"{site.url}/ui/audits/{site.hc18}")
    assert page.url == f"{site.url}/ui/login"  # no key: the login page, nothing else
    sign_in(page, site, "viewer")
    assert "key=" not in page.url
    cookies = page.context.cookies()
    assert [(c["name"], c["httpOnly"], c["sameSite"]) for c in cookies] == [
        ("segaudit_key", True, "Strict")
    ]
    assert page.evaluate("document.cookie") == ""  # scripts cannot read it
    text = page.locator("main").inner_text()
    assert "hc18 · 12 cases" in text and "mr · 9 cases" in text
    page.get_by_role("link", name=f"audit {site.hc18}").click()
    page.wait_for_url(f"**/ui/audits/{site.hc18}")
    assert page.get_by_role("heading", name=f"Audit {site.hc18}").is_visible()


def test_a_wrong_key_is_refused(page, site: Site):
    page.goto(f"{site.url}/ui/login")
    page.get_by_label("API key").fill("sa_not-a-key")
    with page.expect_response(f"{site.url}/ui/login") as answer:
        page.get_by_role("button", name="Open the dashboard").click()
    assert answer.value.status == 401
    assert "not valid" in page.get_by_role("alert").inner_text()
    assert page.context.cookies() == []
    assert page.request.get(f"{site.url}/ui/audits/{site.hc18}/status").status == 401


def test_results_sort_filter_and_charts(page, site: Site):
    sign_in(page, site, "viewer")
    page.goto(f"{site.url}/ui/audits/{site.hc18}")
    assert page.locator("#st-status").inner_text() == "succeeded"
    ranked = scores(page)
    assert len(ranked) == 12 and ranked == sorted(ranked, reverse=True)
    page.get_by_role("link", name="Noise score ↓").click()  # sort ascending
    page.wait_for_url("**sort=noise_score**")
    assert scores(page) == sorted(ranked)
    page.get_by_label("Flag", exact=True).select_option("true")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url("**flagged=true**")
    flags = page.locator("#results tbody tr td:nth-child(4)").all_inner_texts()
    assert flags and set(flags) == {"yes"}
    assert len(flags) < 12
    reviewed = page.locator("#reviewed-count").inner_text()
    assert reviewed.startswith(f"0 of {len(flags)}")
    page.get_by_label("Flag", exact=True).select_option("")
    page.get_by_label("Score from").fill("0.5")
    page.get_by_label("Sort by").select_option("-boundary_abs")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url("**min_score=0.5**")
    assert all(s >= 0.5 for s in scores(page)) and len(scores(page)) < 12
    chart = page.locator("svg.chart").first
    assert chart.locator("rect.bar").count() > 0 and chart.locator("line.threshold").count() == 1
    assert chart.locator("polyline.mixture").count() == 1
    assert page.locator("svg.chart polyline.series").count() == 3  # loss, flagged, separation
    page.goto(f"{site.url}/ui/audits/{site.hc18}")
    page.screenshot(path=str(SHOTS / "results-page.png"), full_page=True)


def _top_case(site: Site) -> str:
    """The hc18 case with the most pixels at issue that has a given mask to show (a mask
    corrupted by "missing" may have none left).
    """
    from app.db.tables import ResultRow

    with site.sessions() as session:
        rows = session.execute(
            select(Case.name, ResultRow.figures)
            .join(ResultRow, ResultRow.case_id == Case.id)
            .where(ResultRow.audit_id == site.hc18)
            .order_by(ResultRow.issue_fraction.desc())
        ).all()
    return next(name for name, figures in rows if (figures or {}).get("given_pixels", 0) > 0)


def test_overlays_toggle_where_their_masks_are(page, site: Site):
    sign_in(page, site, "viewer")
    case = _top_case(site)
    page.goto(f"{site.url}/ui/audits/{site.hc18}/cases/{case}")
    stage = page.locator(".panel-blended .stage")
    page.wait_for_function(READY)
    base = f"{site.url}/ui/audits/{site.hc18}/cases/{case}/layers"
    for layer, label in (
        ("given", "Given mask"),
        ("cleansed", "Cleansed mask"),
        ("issue", "Issue map"),
    ):
        before = shot(stage)
        height, width = before.shape[:2]
        alpha = layer_alpha(page, f"{base}/{layer}.png?z=0", (width, height))
        clear = alpha > 40  # where the layer shows plainly (the issue map fades with its value)
        assert clear.any(), f"{layer} has no pixels to show"
        page.get_by_label(label, exact=True).uncheck()
        after = shot(stage)
        changed = np.abs(after - before).sum(axis=2) > 12
        assert changed[clear].mean() > 0.3, f"hiding {layer} changed too little where it is"
        if (alpha == 0).any():
            assert changed[alpha == 0].mean() < 0.01, f"hiding {layer} changed pixels outside it"
        page.get_by_label(label, exact=True).check()
        assert np.abs(shot(stage) - before).sum(axis=2).max() <= 12
    # Fading: half opacity lands between shown and hidden.
    shown = shot(stage)
    page.get_by_label("Given mask opacity").fill("0")
    hidden = shot(stage)
    assert np.abs(hidden - shown).sum() > 0
    page.get_by_label("Given mask opacity").fill("100")
    page.get_by_label("View", exact=True).select_option("side")
    assert page.locator(".panel-side").first.is_visible()
    assert not page.locator(".panel-blended").is_visible()
    page.get_by_label("View", exact=True).select_option("blended")
    page.get_by_role("button", name="Zoom in").click()
    assert "scale(1.5)" in stage.get_attribute("style")
    stage.hover()
    page.mouse.down()
    page.mouse.move(300, 300)
    page.mouse.up()
    assert "translate(0px, 0px)" not in stage.get_attribute("style")  # panned


def test_three_cases_reviewed_by_keyboard(page, site: Site):
    sign_in(page, site, "reviewer")
    page.goto(f"{site.url}/ui/audits/{site.hc18}/review")
    decided = []
    for key, decision in (("a", "accept_cleansed"), ("k", "keep_original"), ("r", "needs_rework")):
        page.wait_for_url("**/cases/**")
        case = page.url.rsplit("/", 1)[1]
        if not decided:  # the README's picture of a case, as a reviewer sees it
            page.wait_for_function(READY)
            page.get_by_label("Issue map opacity").fill("35")
            page.screenshot(path=str(SHOTS / "case-page.png"), full_page=True)
        if decision == "needs_rework":
            page.keyboard.press("c")
            page.keyboard.type("the boundary cuts the skull")
            page.locator("#comment").blur()
        with page.expect_response(
            lambda r: r.url.endswith("/review") and r.request.method == "POST"
        ) as answer:
            page.keyboard.press(key)
        assert answer.value.status == 201
        page.wait_for_url(lambda url, case=case: not url.endswith(f"/{case}"))
        decided.append((case, decision))
    with site.sessions() as session:
        stored = session.execute(
            select(Case.name, Review.decision, Review.reviewer, Review.comment)
            .join(Case, Case.id == Review.case_id)
            .where(Review.audit_id == site.hc18)
            .order_by(Review.id)
        ).all()
    assert [(c, d) for c, d, _, _ in stored] == decided
    assert {r for _, _, r, _ in stored} == {"ui-reviewer"}
    assert stored[-1][3] == "the boundary cuts the skull"
    page.goto(f"{site.url}/ui/audits/{site.hc18}")
    assert page.locator("#reviewed-count").inner_text().startswith("3 of")
    page.get_by_label("Cases no decision settles").select_option("keep_original")
    page.get_by_role("button", name="Resolve into a final set").click()
    link = page.locator("#resolve-download")
    link.wait_for()
    with page.expect_download() as download:
        link.click()
    assert download.value.suggested_filename.endswith(".zip")


def test_a_volume_slice_slider(page, site: Site):
    sign_in(page, site, "viewer")
    page.goto(f"{site.url}/ui/audits/{site.mr}/review")  # no flagged case: back to the audit
    page.goto(f"{site.url}/ui/audits/{site.mr}?sort=rank")
    page.locator("a.case-link").first.click()
    page.wait_for_url("**/cases/**")
    slider = page.get_by_label("Slice", exact=True)
    assert slider.get_attribute("max") == "4"
    worst = int(slider.input_value())
    assert worst == int(page.locator("#worst").get_attribute("data-z"))
    assert page.locator("#slices tbody tr").count() == 5
    stage = page.locator(".panel-blended .stage")
    image = page.locator('.panel-blended img[data-layer="image"]')
    before = shot(stage)
    slider.focus()
    page.keyboard.press("ArrowLeft" if worst else "ArrowRight")
    moved = worst - 1 if worst else worst + 1
    page.wait_for_function(f"document.getElementById('slice-value').textContent == '{moved}'")
    assert f"z={moved}" in image.get_attribute("src")
    page.wait_for_function(READY)
    assert np.abs(shot(stage) - before).sum() > 0  # another slice, another picture
    page.get_by_role("button", name=f"Worst slice ({worst})").click()
    assert slider.input_value() == str(worst)
    page.get_by_label("Window", exact=True).select_option("ct-soft")
    assert "window=ct-soft" in image.get_attribute("src")
    src = image.evaluate("img => img.src")  # absolute
    for layer in ("image", "given", "cleansed", "issue"):
        response = page.request.get(src.replace("image.png", f"{layer}.png"))
        assert response.status == 200 and response.headers["content-type"] == "image/png"


def test_a_viewer_sees_no_review_buttons_and_is_refused(page, site: Site):
    sign_in(page, site, "viewer")
    page.goto(f"{site.url}/ui/audits/{site.hc18}/cases/{_top_case(site)}")
    assert page.locator("button.decide").count() == 0
    assert page.locator("#comment").count() == 0
    with site.sessions() as session:
        before = len(session.scalars(select(Review)).all())
    page.keyboard.press("a")
    page.wait_for_timeout(300)
    forced = page.request.post(
        site.url + page.locator("#review-panel").get_attribute("data-url"),
        data={"decision": "accept_cleansed", "comment": ""},
    )
    assert forced.status == 403 and forced.json()["code"] == "forbidden"
    with site.sessions() as session:
        assert len(session.scalars(select(Review)).all()) == before
    page.goto(f"{site.url}/ui/audits/{site.hc18}")
    assert page.locator("#start-review").count() == 0 and page.locator("#resolve").count() == 0


HERE = Path(__file__).parent


def script(name: str) -> str:
    """A function of ``tests/ui/<name>.js`` for ``page.evaluate`` (its comment lines left out)."""
    lines = (HERE / f"{name}.js").read_text().splitlines()
    return "\n".join(line for line in lines if not line.startswith("//"))


CONTRAST, CONTROLS, FOCUSED, READY = (
    script(n) for n in ("contrast", "controls", "focused", "ready")
)


def test_every_control_is_labelled_reachable_and_readable(page, site: Site):
    sign_in(page, site, "reviewer")
    case = _top_case(site)
    for path in (
        "/ui",
        f"/ui/audits/{site.hc18}",
        f"/ui/audits/{site.mr}/cases/brain1_z05",
        f"/ui/audits/{site.hc18}/cases/{case}",
    ):
        page.goto(f"{site.url}{path}")
        controls = page.evaluate(CONTROLS)
        assert controls, path
        unnamed = [c for c in controls if not c["name"]]
        assert not unnamed, f"{path}: controls without a label: {unnamed}"
        page.evaluate("document.activeElement && document.activeElement.blur()")
        page.locator("body").focus()
        reached = set()
        for _ in range(len(controls) + 5):
            page.keyboard.press("Tab")
            reached.add(page.evaluate(FOCUSED))
        missing = [c for c in controls if f"{c['tag']}|{c['id'] or c['name']}" not in reached]
        assert not missing, f"{path}: not reached by Tab: {missing}"
        assert page.evaluate(CONTRAST) == [], path
    # The checks catch what they look for: faint text, and a control with no name.
    page.evaluate(
        "document.body.insertAdjacentHTML('beforeend', "
        '\'<p style="color:#aaaaaa">faint</p><button type="button"></button>\')'
    )
    assert [f for f in page.evaluate(CONTRAST) if "faint" in f]
    assert [c for c in page.evaluate(CONTROLS) if not c["name"]]
