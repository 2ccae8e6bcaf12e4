"""The QA dashboard at ``/ui``: server-rendered pages over the same services as the API.

The API key is asked once (``/ui/login``) and kept in an HttpOnly, SameSite=Strict cookie that
only ``/ui`` gets; it is checked by the API's own ``get_principal`` and roles by its ``require``.
Pages without a valid key go to the login page; the JSON actions answer 401/403 as the API does.
None of these routes is in the OpenAPI document: they are the dashboard, not the API.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from markupsafe import Markup
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy.orm import Session
from starlette.templating import Jinja2Templates

from app.api.deps import (
    Remembered,
    RememberedDep,
    SessionDep,
    StoreDep,
    principal_of,
    require,
)
from app.api.params import DbId
from app.api.routes.review_loop import send_zip
from app.db.enums import AuditStatus, Decision, Role, Undecided
from app.db.tables import Audit
from app.errors import Invalid, NotFound, Unauthorized
from app.schemas import AuditOut, ResultOut, ReviewCreate, ReviewOut
from app.services import (
    audits,
    dashboard,
    datasets,
    exports,
    renders,
    resolve,
    results,
    reviews,
)
from app.services.annotations import get_annotation_set
from app.services.keys import Principal
from app.ui import charts
from imaging.errors import ErrorCode
from models.figure_names import FIGURES

router = APIRouter(prefix="/ui", include_in_schema=False)

HERE = Path(__file__).resolve().parents[2] / "ui"
templates = Jinja2Templates(directory=HERE / "templates")
STATIC = {"ui.js": "text/javascript", "ui.css": "text/css"}
COOKIE = "segaudit_key"
PAGE = 50  # results per page
WINDOWS = {  # CT presets (HU) and the automatic window, as (center, width)
    "auto": (None, None),
    "ct-soft": (40.0, 400.0),
    "ct-lung": (-600.0, 1500.0),
    "ct-bone": (400.0, 1800.0),
    "ct-brain": (40.0, 80.0),
}


def _cookie_key(request: Request) -> str | None:
    return request.cookies.get(COOKIE)


CookieKey = Annotated[str | None, Depends(_cookie_key)]


def _signed_in(session: SessionDep, key: CookieKey, remembered: RememberedDep) -> Principal | None:
    """The cookie's principal, by the API's own key check; None sends a page to the login."""
    try:
        return principal_of(session, key, remembered)
    except Unauthorized:
        return None


SignedIn = Annotated[Principal | None, Depends(_signed_in)]


def _actor(role: Role) -> Callable[[Session, str | None, Remembered], Principal]:
    """For a JSON action: the cookie's principal with ``role`` or above (401/403 as the API)."""

    def actor(session: SessionDep, key: CookieKey, remembered: RememberedDep) -> Principal:
        return require(role)(principal_of(session, key, remembered))

    return actor


ViewerActor = Annotated[Principal, Depends(_actor(Role.viewer))]
AnnotatorActor = Annotated[Principal, Depends(_actor(Role.annotator))]
ReviewerActor = Annotated[Principal, Depends(_actor(Role.reviewer))]


def _login() -> RedirectResponse:
    return RedirectResponse("/ui/login", status_code=303)


def _page(request: Request, name: str, principal: Principal | None, **context: Any) -> Response:
    return templates.TemplateResponse(
        request,
        name,
        {
            "principal": principal,
            "can_review": principal is not None and principal.may(Role.reviewer),
            "can_annotate": principal is not None and principal.may(Role.annotator),
            **context,
        },
    )


@router.get("/static/{name}")
def static(name: str) -> FileResponse:
    if name not in STATIC:
        raise NotFound(ErrorCode.NOT_FOUND, f"no dashboard file named '{name}'")
    return FileResponse(HERE / "static" / name, media_type=STATIC[name])


@router.get("/login")
def login_page(request: Request) -> Response:
    return _page(request, "login.html", None, error=None)


@router.post("/login")
def login(
    request: Request,
    session: SessionDep,
    remembered: RememberedDep,
    key: Annotated[str, Form()] = "",
) -> Response:
    """Check the key as the API does; keep it in an HttpOnly cookie for ``/ui`` only."""
    try:
        principal_of(session, key.strip(), remembered)
    except Unauthorized as exc:
        response = _page(request, "login.html", None, error=exc.detail)
        response.status_code = 401
        return response
    response = RedirectResponse("/ui", status_code=303)
    response.set_cookie(
        COOKIE,
        key.strip(),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/ui",
    )
    return response


@router.post("/logout")
def logout() -> Response:
    response = _login()
    response.delete_cookie(COOKIE, path="/ui")
    return response


@router.get("")
def home(request: Request, session: SessionDep, principal: SignedIn) -> Response:
    """The project's datasets, annotation sets and audits."""
    if principal is None:
        return _login()
    lines = dashboard.overview(session, principal.project_id)
    return _page(request, "home.html", principal, lines=lines)


class Filters(BaseModel):
    """The results table's query: sort, filters and page."""

    sort: str = "-noise_score"
    flagged: bool | None = None
    review: dashboard.ReviewState | None = None
    min_score: float | None = Field(default=None, ge=0, le=1)
    max_score: float | None = Field(default=None, ge=0, le=1)
    page: int = Field(default=1, ge=1, le=1_000_000)

    def query(self, **changes: Any) -> str:
        """This query string with ``changes`` (a new sort goes back to page 1)."""
        values = {**self.model_dump(exclude_none=True), **changes}
        if "sort" in changes:
            values["page"] = 1
        return urlencode(
            {k: str(v).lower() if isinstance(v, bool) else v for k, v in values.items()}
        )


def _blank_to_none(request: Request) -> Filters:
    """The filters from the query; a filter form's empty fields mean "any"."""
    given = {k: v for k, v in request.query_params.items() if v != "" and k in Filters.model_fields}
    try:
        return Filters.model_validate(given)
    except ValidationError as exc:
        wrong = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        message = f"the table's query is not valid ({wrong})"
        raise Invalid(ErrorCode.INVALID_PARAMETERS, message) from None


def _audit(session: Session, principal: Principal, audit_id: int) -> Audit:
    return audits.get_audit(session, principal.project_id, audit_id)


@router.get("/audits/{audit_id}")
def audit_page(
    request: Request,
    audit_id: DbId,
    session: SessionDep,
    principal: SignedIn,
    filters: Annotated[Filters, Depends(_blank_to_none)],
) -> Response:
    """An audit: live status, and once it succeeded its summary, charts and results table."""
    if principal is None:
        return _login()
    audit = _audit(session, principal, audit_id)
    status = AuditOut.of(audit, audits.count_cases(session, audit))
    context: dict[str, Any] = {"audit": audit, "status": status, "filters": filters}
    if audit.status == AuditStatus.succeeded:
        page = dashboard.result_page(
            session,
            audit,
            sort=filters.sort,
            flagged=filters.flagged,
            review=filters.review,
            min_score=filters.min_score,
            max_score=filters.max_score,
            limit=PAGE,
            offset=(filters.page - 1) * PAGE,
        )
        history = results.run_history(audit)
        names = results.class_names_of(audit)
        context.update(
            rows=[ResultOut.of(r, names) for r in page.items],
            total=page.total,
            pages=max(1, -(-page.total // PAGE)),
            count=dashboard.review_count(session, audit),
            queue=dashboard.review_queue(session, audit),
            histogram=Markup(
                charts.histogram(
                    dashboard.scores(session, audit),
                    mixture=(audit.summary or {}).get("mixture"),
                )
            ),
            curves=[
                Markup(charts.curve(name, [h.get(name) for h in history]))
                for name in ("loss", "flagged", "separation")
            ]
            if history
            else [],
            policies=list(Undecided),
            sorts=[*dashboard.COLUMNS, *FIGURES],
            decided={
                case_id: word.review.decision
                for case_id, word in reviews.latest_words(session, audit).items()
                if word.review is not None
            },
        )
    return _page(request, "audit.html", principal, **context)


@router.get("/audits/{audit_id}/status")
def audit_status(audit_id: DbId, session: SessionDep, principal: ViewerActor) -> AuditOut:
    """The audit's status and progress, for the page's live view."""
    audit = _audit(session, principal, audit_id)
    return AuditOut.of(audit, audits.count_cases(session, audit))


@router.post("/audits/{audit_id}/cancel")
def cancel(audit_id: DbId, session: SessionDep, principal: AnnotatorActor) -> AuditOut:
    audit = audits.cancel_audit(session, _audit(session, principal, audit_id))
    return AuditOut.of(audit, audits.count_cases(session, audit))


@router.get("/audits/{audit_id}/review")
def start_review(audit_id: DbId, session: SessionDep, principal: SignedIn) -> Response:
    """The first case of the review queue (flagged, not reviewed, by rank)."""
    if principal is None:
        return _login()
    queue = dashboard.review_queue(session, _audit(session, principal, audit_id))
    if not queue:
        return RedirectResponse(f"/ui/audits/{audit_id}?done=1", status_code=303)
    first = quote(queue[0][0], safe="")
    return RedirectResponse(f"/ui/audits/{audit_id}/cases/{first}", status_code=303)


def _worst(slices: list[dict[str, Any]] | None) -> int:
    """The slice with the most pixels at issue (then the largest gap): shown first."""
    if not slices:
        return 0
    best = max(slices, key=lambda s: (s.get("issue_pixels", 0), s.get("dice_gap", 0)))
    return int(best.get("slice", 0))


@router.get("/audits/{audit_id}/cases/{case}")
def case_page(
    request: Request,
    audit_id: DbId,
    case: str,
    session: SessionDep,
    store: StoreDep,
    principal: SignedIn,
) -> Response:
    """A case: its layers, slices, figures, history and reviews; the review keys."""
    if principal is None:
        return _login()
    audit = _audit(session, principal, audit_id)
    result = results.get_result(session, audit, case)
    files = {name: dashboard.layer_file(session, audit, case, name) for name in renders.LAYERS}
    stored = {name: file for name, file in files.items() if file is not None}
    layers = [n for n in renders.LAYERS if n in stored and renders.drawable(stored[n])]
    undrawn = [file.name for n, file in stored.items() if n not in layers]
    image = files["image"]
    depth = renders.depth(store, image) if image is not None and "image" in layers else 1
    queue = dashboard.review_queue(session, audit)
    names = [name for name, _ in queue]
    position = names.index(case) if case in names else None
    after = [name for name, rank in queue if rank > result.rank]
    before = [name for name, rank in queue if rank < result.rank]
    found = results.case_history(session, principal.project_id, result.case_id)
    notes = resolve.history_notes(session, result.case_id, [a for _, a in found])
    return _page(
        request,
        "case.html",
        principal,
        audit=audit,
        result=ResultOut.of(result, results.class_names_of(audit)),
        row=result,
        layers=layers,
        undrawn=undrawn,
        depth=depth,
        worst=_worst(result.slices),
        slices=result.slices or [],
        windows=list(WINDOWS),
        next_case=after[0] if after else None,
        previous_case=before[-1] if before else None,
        position=position,
        queue_size=len(queue),
        history=[(r, a, notes[a.id]) for r, a in found],
        reviews=reviews.list_reviews(session, result),
        decisions=list(Decision),
    )


@router.get("/audits/{audit_id}/cases/{case}/layers/{layer}.png")
def layer_png(
    audit_id: DbId,
    case: str,
    layer: renders.Layer,
    session: SessionDep,
    store: StoreDep,
    principal: ViewerActor,
    z: Annotated[int, Query(ge=0, le=100_000)] = 0,
    window: Literal["auto", "ct-soft", "ct-lung", "ct-bone", "ct-brain"] = "auto",
    center: float | None = None,
    width: float | None = None,
) -> FileResponse:
    """One layer of one plane as a PNG (cached by content); ``center``/``width`` override
    the ``window`` preset.
    """
    audit = _audit(session, principal, audit_id)
    file = dashboard.layer_file(session, audit, case, layer)
    if file is None:
        raise NotFound(ErrorCode.NOT_FOUND, f"audit {audit.id} stored no {layer} for '{case}'")
    preset = WINDOWS[window]
    chosen = renders.Window(
        center if center is not None else preset[0], width if width is not None else preset[1]
    )
    path = renders.render(store, layer, file, z=z, window=chosen)
    return FileResponse(
        path, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"}
    )


@router.post("/audits/{audit_id}/cases/{case}/review", status_code=201)
def review(
    audit_id: DbId, case: str, body: ReviewCreate, session: SessionDep, principal: ReviewerActor
) -> ReviewOut:
    """Record a decision (as POST /v1/audits/{id}/cases/{case}/review)."""
    audit = _audit(session, principal, audit_id)
    row = reviews.add_review(
        session, principal, audit, case, decision=body.decision, comment=body.comment
    )
    return ReviewOut.of(row)


class ResolveBody(BaseModel):
    policy: Undecided


@router.post("/audits/{audit_id}/resolve", status_code=201)
def resolve_audit(
    audit_id: DbId,
    body: ResolveBody,
    session: SessionDep,
    store: StoreDep,
    principal: ReviewerActor,
) -> JSONResponse:
    """Resolve the audit's decisions into a new set (as POST /v1/audits/{id}/resolve)."""
    audit = _audit(session, principal, audit_id)
    aset, _ = resolve.resolve(session, store, principal, audit, policy=body.policy)
    download = f"/ui/datasets/{aset.dataset_id}/sets/{aset.id}/export"
    return JSONResponse({"id": aset.id, "name": aset.name, "download": download}, status_code=201)


@router.get("/datasets/{dataset_id}/sets/{set_id}/export")
def export_set(
    dataset_id: DbId, set_id: DbId, session: SessionDep, store: StoreDep, principal: ViewerActor
) -> FileResponse:
    """An annotation set's zip (as GET /v1/datasets/{id}/annotation-sets/{id}/export)."""
    dataset = datasets.get_dataset(session, principal.project_id, dataset_id)
    aset = get_annotation_set(session, dataset, set_id)
    return send_zip(store, lambda folder: exports.export_set(session, store, aset, folder))
