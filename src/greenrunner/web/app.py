"""``create_app(settings)``: the FastAPI app with the API, the pages and static files."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from rich.console import Console
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from greenrunner import __version__
from greenrunner.errors import GreenRunnerError
from greenrunner.web import api, auth, csrf, pages
from greenrunner.web.limits import BodyLimit, wants_html
from greenrunner.web.service import Service, ServiceError
from greenrunner.web.settings import WebSettings
from greenrunner.web.throttle import GuessLimiter, TokenGuessLimit

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
VENDOR = "/static/vendor"
# The API pages may load only from this server (and inline/data/blob parts of themselves):
# ReDoc's side menu always shows a logo from cdn.redoc.ly, which this keeps from loading.
DOCS_POLICY = "default-src 'self' 'unsafe-inline' data: blob:"


def create_app(
    settings: WebSettings,
    *,
    service: Service | None = None,
    guess_limiter: GuessLimiter | None = None,
) -> FastAPI:
    """The app; it owns ``service`` (made from ``settings`` if not given) and closes it
    on shutdown. ``guess_limiter`` replaces the default limit on wrong tokens (tests give
    one with their own clock)."""
    service = service or Service(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        service.close()

    app = FastAPI(
        title="GreenRunner",
        version=__version__,
        description="Pick the right pre-trained model for your data and use case, spending "
        "little compute. Send `Authorization: Bearer TOKEN` when the server has a token.",
        lifespan=lifespan,
        # Served below from the package's own copies: the defaults load Swagger UI, ReDoc
        # and Google fonts from outside servers, so the pages were blank offline.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.service = service
    app.state.form_tokens = csrf.FormTokens(csrf.load_secret(settings.data_dir))
    app.state.guess_limiter = guess_limiter or GuessLimiter()
    # Where ?token= is honoured (web.auth.credentials): the pages and /login, nothing else.
    app.state.page_routes = (*auth.router.routes, *pages.router.routes)
    app.add_exception_handler(ServiceError, _service_error)  # type: ignore[arg-type]
    app.add_exception_handler(GreenRunnerError, _user_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]
    app.add_middleware(auth.QueryTokenMiddleware)
    app.add_middleware(auth.LoopbackHostMiddleware)
    app.add_middleware(BodyLimit, max_bytes=settings.max_upload_bytes)
    # Added last, so they run first: a locked-out guesser and a cross-site request are
    # refused from their headers, before any body is read.
    app.add_middleware(TokenGuessLimit, cookie=auth.COOKIE, locked_for=auth.locked_for)
    app.add_middleware(csrf.SameOriginOnly)
    app.add_middleware(UnexpectedErrors)  # outermost: it also covers the middlewares
    app.include_router(auth.router)
    app.include_router(api.router)
    app.include_router(pages.router)  # pages check the token themselves, with a page
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    if STATIC.is_dir():  # the package's own folder: never created at run time
        app.mount("/static", StaticFiles(directory=STATIC), name="static")
    _add_docs(app)
    return app


def _add_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` from ``static/vendor``: no request leaves the
    server, so both work offline (the vendored versions are in static/vendor/README.md)."""
    title = f"{app.title} API"
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return _offline(
            get_swagger_ui_html(
                openapi_url=openapi_url,
                title=title,
                swagger_js_url=f"{VENDOR}/swagger-ui/swagger-ui-bundle.js",
                swagger_css_url=f"{VENDOR}/swagger-ui/swagger-ui.css",
                swagger_favicon_url=f"{VENDOR}/swagger-ui/favicon-32x32.png",
                # null: no "valid" badge, which Swagger UI would fetch from validator.swagger.io.
                swagger_ui_parameters={"validatorUrl": None},
            )
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return _offline(
            get_redoc_html(
                openapi_url=openapi_url,
                title=title,
                redoc_js_url=f"{VENDOR}/redoc/redoc.standalone.js",
                redoc_favicon_url=f"{VENDOR}/swagger-ui/favicon-32x32.png",
                with_google_fonts=False,
            )
        )


def _offline(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = DOCS_POLICY
    return page


async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=exc.status)


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """Unknown pages (and other HTTP errors) answer a browser with a page, the API with JSON."""
    if wants_html(request):
        return pages.error_page(request, str(exc.detail), exc.status_code)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def _user_error(_: Request, exc: GreenRunnerError) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=400)


async def _invalid(request: Request, exc: RequestValidationError) -> Response:
    """422 with one readable line in ``detail`` (and FastAPI's list in ``errors``); a page
    (``/experiments/abc``) answers a browser with a page."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else error.get("msg", ""))
    detail = "invalid request: " + "; ".join(parts)
    if wants_html(request):
        return pages.error_page(request, detail, 422)
    return JSONResponse({"detail": detail, "errors": _plain(exc.errors())}, status_code=422)


UNEXPECTED_API = "internal error on the server; the server log has the details"


class UnexpectedErrors:
    """An exception no handler took, on any route or in any middleware: logged with its
    traceback for the operator, answered 500 with a short message (a page for a browser,
    JSON otherwise) and never re-raised, so the connection is not dropped and no traceback
    reaches the client. (Starlette's own handler re-raises, and uvicorn then closes the
    connection: a client on keep-alive saw a reset.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception:
            # repr: the path is the client's text (a newline in it must not forge a line).
            log.exception("%s %r failed", scope.get("method"), scope.get("path"))
            if started:
                return  # part of the answer is out: nothing more can be said
            await _unexpected(scope)(scope, receive, send)


def _unexpected(scope: Scope) -> Response:
    request = Request(scope)
    response: Response = JSONResponse({"detail": UNEXPECTED_API}, status_code=500)
    try:
        if wants_html(request):
            response = pages.error_page(request, pages.UNEXPECTED, 500)
    except Exception:  # the page itself failed: the JSON answer instead
        log.exception("the error page failed too")
    for name, value in csrf.NO_FRAMING:  # what csrf.SameOriginOnly adds to every answer
        response.headers[name.decode()] = value.decode()
    return response


def _plain(errors: object) -> object:
    """FastAPI's error list made JSON-safe (``ctx`` may hold exception objects)."""
    if isinstance(errors, dict):
        return {k: _plain(v) for k, v in errors.items()}
    if isinstance(errors, list | tuple):
        return [_plain(v) for v in errors]
    return errors if isinstance(errors, str | int | float | bool | None) else str(errors)


def serve(settings: WebSettings, console: Console) -> None:
    """Run the app on uvicorn until interrupted (Ctrl-C or SIGTERM stop it gracefully:
    a run in progress ends at its next round and shows as interrupted)."""
    import uvicorn

    app = create_app(settings)
    proxies = list(settings.forwarded_allow_ips)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="info",
        access_log=True,
        # uvicorn trusts X-Forwarded-For/-Proto from 127.0.0.1 by default: any local client
        # could then choose its own address and escape the guess limit. Only the proxies
        # the operator names (--forwarded-allow-ips) are trusted, and none by default.
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies or [],
    )
    auth.redact_access_log()  # after uvicorn configured its loggers
    shown = f"[{settings.host}]" if ":" in settings.host else settings.host
    url = f"http://{shown}:{settings.port}"
    console.print(f"GreenRunner web app at [bold]{url}/[/] (API documentation at {url}/docs)")
    console.print(f"Data folder: {settings.data_dir}")
    if settings.token:
        console.print(f"Access token required: open {url}/login?token=<the token> once.")
    if proxies:
        console.print(f"X-Forwarded-For and X-Forwarded-Proto trusted from: {', '.join(proxies)}")
    uvicorn.Server(config).run()
