"""Request body limit, enforced before the body is parsed.

FastAPI parses a multipart upload into a temporary file before a route sees it, so the
route cannot stop a 10 GB upload; this ASGI middleware refuses it by its Content-Length,
or, for a body sent without one, as soon as the bytes read pass the limit.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from greenrunner.web.archive import mb

# Room for the multipart envelope (boundaries, part headers) around the file itself.
ENVELOPE = 1 << 20


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes + ENVELOPE
        self.upload_limit = max_bytes

    def _refusal(self, scope: Scope) -> Response:
        message = (
            f"the upload is over the limit of {mb(self.upload_limit)}; upload fewer or "
            "smaller files, or start the server with a higher --max-upload-mb"
        )
        request = Request(scope)
        if wants_html(request):  # a form posted by a browser gets a page, not JSON
            from greenrunner.web.pages import error_page

            return error_page(request, message, 413)
        return JSONResponse({"detail": message}, status_code=413)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._refusal(scope)(scope, receive, send)
            return
        seen = 0
        started = responded = False

        async def counted() -> Message:
            nonlocal seen, responded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes and not responded:
                    # Answer now and tell the app the client left: it stops reading, and
                    # whatever it answers to that is dropped below.
                    if not started:
                        await self._refusal(scope)(scope, receive, send)
                    responded = True
                    return {"type": "http.disconnect"}
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            if responded:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counted, watched)


def wants_html(request: Request) -> bool:
    """A browser navigating (not the API, not a script asking for JSON)."""
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get(
        "accept", ""
    )
