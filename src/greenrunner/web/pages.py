"""The web app's pages: set-up, staging, results, history and compare (server-rendered).

Each page is a thin route over :class:`~greenrunner.web.service.Service`; what a page shows
is computed in :mod:`greenrunner.web.pageviews`. Forms post to page routes (not the JSON
API), so every screen works without JavaScript and every refusal comes back as the same page
with the message in ``#error``; app.js only adds live slider labels, progress polling and
the charts. No page shows a traceback: unexpected errors are logged and answered with a
short message.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from functools import wraps
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import IO, Any

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from greenrunner.errors import GreenRunnerError
from greenrunner.report import significant
from greenrunner.web import auth, csrf
from greenrunner.web import pageviews as pv
from greenrunner.web.db import STATUSES
from greenrunner.web.service import Service, get_service
from greenrunner.web.views import (
    Conflict,
    ExperimentRequest,
    ExperimentView,
    NotFound,
    Paging,
    Rejected,
    ServiceError,
)

log = logging.getLogger(__name__)

router = APIRouter()

TEMPLATES = Path(__file__).parent / "templates"
UNEXPECTED = "Something went wrong on the server; the server log has the details."
NEEDS_TOKEN = (
    "This server needs its access token. Open /login?token=TOKEN once in this browser (type or "
    "paste it into the address bar), with the token the server was started with (--token or "
    "GREENRUNNER_TOKEN)."
)


def _asset_version() -> str:
    # Appended to static URLs so a browser does not keep an old app.js after an upgrade.
    try:
        return version("greenrunner")
    except PackageNotFoundError:  # running from a source tree without installing
        return "dev"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # every value from a user (use case, file names) is escaped
        undefined=jinja2.StrictUndefined,  # a typo in a template fails its test, loudly
        trim_blocks=True,
        lstrip_blocks=True,
    )
    asset = _asset_version()
    env.globals["static_url"] = lambda path: f"/static/{path}?v={asset}"
    # Every link goes through page_url: the one place to add a prefix if the app is ever
    # served below a path behind a proxy.
    env.globals["page_url"] = lambda path: path
    env.globals["budget_text"] = pv.budget_text
    env.filters["thousands"] = lambda x, digits=0: "–" if x is None else f"{x:,.{digits}f}"
    env.filters["pct"] = lambda x, digits=1: "–" if x is None else f"{x * 100:.{digits}f}%"
    env.filters["num"] = lambda x, fmt="{:.3f}": "–" if x is None else fmt.format(x)
    # Sizes and MACs span orders of magnitude (0.0005 MMACs to 20,000): significant digits.
    env.filters["sig"] = lambda x: "–" if x is None else significant(x)
    env.filters["tojson_script"] = _json_for_script
    # Messages from the library are also log lines, without a closing full stop; on a page
    # they end with one. (Not capitalised: many start with a model or file name.)
    env.filters["sentence"] = lambda text: str(text).rstrip(". ") + "."
    return env


def _json_for_script(value: Any) -> Markup:
    """JSON safe inside ``<script type="application/json">``: no ``</script>`` break-out."""
    text = json.dumps(value, allow_nan=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text)


templates = Jinja2Templates(env=_environment())


def render(
    request: Request, name: str, context: Mapping[str, Any], status_code: int = 200
) -> HTMLResponse:
    # Every page carries the form token (its forms post it; base.html has it for scripts).
    token, new_cookie = csrf.page_token(request)
    base: dict[str, Any] = {"nav": "", "error": None, "csrf_token": token}
    response = templates.TemplateResponse(
        request, name, {**base, **context}, status_code=status_code
    )
    if new_cookie is not None:
        csrf.set_cookie(response, request, new_cookie)
    return response


def error_page(request: Request, message: str, status_code: int) -> HTMLResponse:
    return render(request, "error.html", {"error": message}, status_code)


Handler = Callable[..., Awaitable[Response]]


def no_tracebacks(handler: Handler) -> Handler:
    """Refuse a request without the server's token; answer a service refusal, and an HTTP
    error raised on the way (Starlette's for a form it cannot parse: no multipart boundary,
    too many fields, a field too large), with its message and status; anything else with a
    short message (logged with its traceback for the operator, never shown to the user)."""

    @wraps(handler)
    async def wrapped(request: Request, *args: Any, **kwargs: Any) -> Response:
        # The API checks the token with a dependency that answers JSON; a page answers with
        # a page that says how to log in.
        if not auth.token_ok(request):
            return error_page(request, NEEDS_TOKEN, 401)
        try:
            return await handler(request, *args, **kwargs)
        except ServiceError as exc:
            return error_page(request, str(exc), exc.status)
        except GreenRunnerError as exc:
            return error_page(request, str(exc), 400)
        except StarletteHTTPException as exc:
            page = error_page(request, str(exc.detail), exc.status_code)
            page.headers.update(exc.headers or {})
            return page
        except Exception:
            # repr: the path is the client's text (a newline must not forge a log line).
            log.exception("page %r failed", request.url.path)
            return error_page(request, UNEXPECTED, 500)

    return wrapped


def _service(request: Request) -> Service:
    return get_service(request)


def _see(url: str) -> RedirectResponse:
    # 303: the browser follows a form post with a GET, so reloading does not post again.
    return RedirectResponse(url, status_code=303)


# --- set-up -------------------------------------------------------------------------------
DEFAULT_FORM: dict[str, Any] = {
    "repository": "objectnet-sim",
    "dataset": "",
    "use_case": "",
    "strategy": "default",
    "budget": "0.1",
    "budget_unit": "calls",
    "seed": "0",
}


async def _setup_page(
    request: Request, form: Mapping[str, Any], error: str | None = None, status_code: int = 200
) -> HTMLResponse:
    service = _service(request)
    repositories = await run_in_threadpool(service.list_repositories)
    datasets = await run_in_threadpool(service.list_datasets)
    return render(
        request,
        "setup.html",
        {
            "nav": "setup",
            "repositories": repositories,
            "datasets": datasets,
            "strategies": service.strategies(),
            "form": {**DEFAULT_FORM, **form},
            "max_upload_bytes": service.settings.max_upload_bytes,
            "error": error,
        },
        status_code,
    )


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
@no_tracebacks
async def setup(request: Request) -> Response:
    return await _setup_page(request, {})


def _upload(field: object) -> UploadFile | None:
    """The uploaded file of a form field; None when the user chose no file (browsers still
    send the field, with an empty name)."""
    if isinstance(field, UploadFile) and field.filename:
        return field
    return None


@router.post("/", response_class=HTMLResponse, include_in_schema=False)
@no_tracebacks
async def create(request: Request) -> Response:
    service = _service(request)
    raw = await request.form()
    form = {k: str(raw.get(k) or "") for k in DEFAULT_FORM}
    try:
        if not csrf.form_ok(request, raw):
            # Before any upload is looked at; the page comes back with what was typed.
            chosen = any(_upload(raw.get(k)) for k in ("repository_file", "dataset_file"))
            again = " (choose the zip files again: a browser cannot keep them)" if chosen else ""
            return await _setup_page(request, form, csrf.REFUSED_FORM + again, 403)
        repo_file, data_file = _upload(raw.get("repository_file")), _upload(raw.get("dataset_file"))
        if repo_file is not None:
            repo = await _add(service.add_repository_zip, repo_file, "model repository")
            form["repository"] = repo.id  # kept selected if a later step fails
        if data_file is not None:
            data = await _add(service.add_dataset_zip, data_file, "dataset")
            form["dataset"] = data.id
        try:
            seed = int(form["seed"] or "0")
        except ValueError:
            raise Rejected(f"seed must be a whole number from 0; got {form['seed']!r}") from None
        view = await run_in_threadpool(
            service.create_experiment,
            ExperimentRequest(
                repository=form["repository"],
                dataset=form["dataset"] or None,
                use_case=form["use_case"],
                strategy=form["strategy"] or "default",
                budget=form["budget"].strip(),
                budget_unit=form["budget_unit"] or "calls",
                seed=seed,
            ),
        )
    except ServiceError as exc:
        return await _setup_page(request, form, str(exc), exc.status)
    except GreenRunnerError as exc:
        return await _setup_page(request, form, str(exc), 400)
    finally:
        await raw.close()
    return _see(f"/experiments/{view.id}/staging")


async def _add(add: Callable[[str, IO[bytes]], Any], upload: UploadFile, what: str) -> Any:
    try:
        return await run_in_threadpool(add, upload.filename or "upload.zip", upload.file)
    except ServiceError as exc:
        # Say which of the two uploads was refused: the message may not name it.
        raise type(exc)(f"the {what} upload {upload.filename!r} was refused: {exc}") from None


# --- staging ------------------------------------------------------------------------------
def _staging(
    request: Request, view: ExperimentView, error: str | None = None, status_code: int = 200
) -> HTMLResponse:
    return render(
        request,
        "staging.html",
        {
            "exp": view,
            "metrics": pv.metric_rows(view),
            "suggestion": {
                "justification": "",
                "tradeoffs": {},
                "notes": [],
                **(view.suggestion or {}),
            },
            "budget_text": pv.budget_text(view.budget),
            "error": error,
        },
        status_code,
    )


@router.get("/experiments/{experiment_id}/staging", include_in_schema=False)
@no_tracebacks
async def staging(request: Request, experiment_id: int) -> Response:
    view = await run_in_threadpool(_service(request).get_experiment, experiment_id)
    if view.status != "staging":
        return _see(f"/experiments/{experiment_id}")  # its weights are fixed now
    return _staging(request, view)


@router.post("/experiments/{experiment_id}/start", include_in_schema=False)
@no_tracebacks
async def start(request: Request, experiment_id: int) -> Response:
    service = _service(request)
    view = await run_in_threadpool(service.get_experiment, experiment_id)
    if view.status != "staging":
        return _see(f"/experiments/{experiment_id}")  # a second click, or the back button
    raw = await request.form()
    weights = pv.posted_weights({k: str(v) for k, v in raw.items()}, view)
    if not csrf.form_ok(request, raw):
        # The sliders keep where the user moved them.
        shown = {k: v for k, v in weights.items() if math.isfinite(v)}
        edited = dataclasses.replace(view, weights={**view.weights, **shown})
        return _staging(request, edited, csrf.REFUSED_FORM, 403)
    try:
        if weights:
            view = await run_in_threadpool(service.set_weights, experiment_id, weights)
        await run_in_threadpool(service.start_run, experiment_id)
    except Conflict:
        return _see(f"/experiments/{experiment_id}")
    except ServiceError as exc:
        return _staging(request, view, str(exc), exc.status)
    return _see(f"/experiments/{experiment_id}")


# --- results ------------------------------------------------------------------------------
@router.get("/experiments/{experiment_id}", response_class=HTMLResponse, include_in_schema=False)
@no_tracebacks
async def results(request: Request, experiment_id: int) -> Response:
    view = await run_in_threadpool(_service(request).get_experiment, experiment_id)
    return _results(request, view)


def _results(
    request: Request, view: ExperimentView, error: str | None = None, status_code: int = 200
) -> HTMLResponse:
    result = view.result
    return render(
        request,
        "results.html",
        {
            "nav": "history",
            "exp": view,
            "live": view.status in pv.LIVE,
            "progress": pv.progress(view),
            "budget_text": pv.budget_text(view.budget),
            "result": result,
            "top3": pv.top_rows(result) if result else [],
            "savings": pv.savings(result) if result else None,
            "energy": pv.energy(result) if result else None,
            "benchmark": pv.benchmark(view),
            "failed": pv.failed_models(result) if result else [],
            "stop_reason": pv.stop_reason(result) if result else "",
            "chart_data": pv.chart_data(view),
            # A failed run's message, or a refused resume; both belong in #error.
            "error": error or (view.error if view.status == "failed" else None),
        },
        status_code,
    )


@router.post("/experiments/{experiment_id}/resume", include_in_schema=False)
@no_tracebacks
async def resume(request: Request, experiment_id: int) -> Response:
    service = _service(request)
    if not csrf.form_ok(request, await request.form()):
        view = await run_in_threadpool(service.get_experiment, experiment_id)
        return _results(request, view, csrf.REFUSED_FORM, 403)
    try:
        await run_in_threadpool(service.resume, experiment_id)
    except Conflict as exc:
        view = await run_in_threadpool(service.get_experiment, experiment_id)
        return _results(request, view, str(exc), exc.status)
    return _see(f"/experiments/{experiment_id}")


# --- history and compare ------------------------------------------------------------------
@router.get("/history", response_class=HTMLResponse, include_in_schema=False)
@no_tracebacks
async def history(request: Request) -> Response:
    # A page at a time, as the API lists: ?status=done&offset=50 (refusals name the rule).
    paging = Paging.parse(request.query_params)
    page = await run_in_threadpool(_service(request).list_experiments, paging)
    return render(
        request,
        "history.html",
        {
            "nav": "history",
            "rows": [pv.history_row(item) for item in page.items],
            "pages": pv.history_pages(page),
            "statuses": STATUSES,
        },
    )


@router.get("/compare", response_class=HTMLResponse, include_in_schema=False)
@no_tracebacks
async def compare(request: Request) -> Response:
    try:
        ids = pv.parse_ids(request.query_params.getlist("ids"))
    except ValueError as exc:
        raise Rejected(f"cannot compare: {exc}; pick experiments on the history page") from None
    if not ids:
        raise Rejected("pick at least one experiment to compare on the history page")
    service = _service(request)
    views = []
    for experiment_id in ids:
        try:
            views.append(await run_in_threadpool(service.get_experiment, experiment_id))
        except NotFound as exc:
            raise NotFound(f"cannot compare: {exc}") from None
    columns = [pv.compare_column(v) for v in views]
    metrics = list(dict.fromkeys(m for c in columns for m in c["weights"]))
    return render(
        request, "compare.html", {"nav": "history", "columns": columns, "metrics": metrics}
    )
