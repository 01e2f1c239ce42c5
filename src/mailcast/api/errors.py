"""Every error leaves the API in one shape per dialect: under /v1 (and everywhere else)
{"error": {"code", "message", "details"}}; under /api/v1, the Sequenzy dialect,
{"success": false, "error", "code", "issues", "retryable"} with the statuses its SDK maps."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from mailcast.errors import (
    CampaignNotSent,
    InsufficientScope,
    MailcastError,
    ResendTooEarly,
    problem,
)

log = logging.getLogger("mailcast.api")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
}


SEQUENZY_PREFIX = "/api/v1/"
DASHBOARD_PREFIX = "/dashboard"


class ErrorPages(Protocol):
    """How the dashboard answers an error: a page, or the way to sign in."""

    def error_page(
        self, status: int, message: str, headers: dict[str, str] | None = None
    ) -> Response: ...

    def sign_in(self, path: str, htmx: bool) -> Response: ...


# The dashboard's, given by `install` (the dashboard is built on this package, not below it).
_pages: ErrorPages | None = None


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


# The Sequenzy SDK turns 400, 401, 404 and 500 into its own error classes and anything else into a
# bare ApiError, so each refusal is answered with the mapped status closest to its meaning.
_SEQUENZY_BY_CLASS: dict[type[MailcastError], tuple[int, str]] = {
    ResendTooEarly: (400, "too_early"),
    CampaignNotSent: (400, "not_sent"),
    InsufficientScope: (401, "insufficient_scope"),
}
_SEQUENZY_STATUS = {403: 400, 405: 400, 409: 400, 413: 400, 415: 400, 422: 400}
_RETRYABLE = {"too_early", "rate_limited"}  # and every 5xx


def _sequenzy(
    status: int, code: str, message: str, details: Any, headers: dict[str, str] | None = None
) -> JSONResponse:
    issues = None
    if (
        isinstance(details, list)
        and details
        and all(isinstance(d, dict) and "field" in d for d in details)
    ):
        issues = [{"path": d["field"], "message": d.get("message", "")} for d in details[:10]]
    body = {
        "success": False,
        "error": message,
        "code": code,
        "issues": issues,
        "retryable": code in _RETRYABLE or status >= 500,
    }
    return JSONResponse(body, status_code=_SEQUENZY_STATUS.get(status, status), headers=headers)


def respond(
    path: str,
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """An error in the dialect of the path it answers (the dashboard's: a page)."""
    if _pages is not None and path.startswith(DASHBOARD_PREFIX):
        return _pages.error_page(status, message, headers)
    if path.startswith(SEQUENZY_PREFIX):
        return _sequenzy(status, code, message, details, headers)
    return JSONResponse(error_body(code, message, details), status_code=status, headers=headers)


def error_response(exc: MailcastError, path: str = "") -> Response:
    if path.startswith(SEQUENZY_PREFIX):
        for cls in type(exc).__mro__:
            if cls in _SEQUENZY_BY_CLASS:
                status, code = _SEQUENZY_BY_CLASS[cls]
                return _sequenzy(status, code, exc.message, exc.details, exc.headers)
    return respond(path, exc.status, exc.code, exc.message, exc.details, exc.headers)


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or str(loc[0] if loc else "request")


def validation_details(errors: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [
        {**problem(_field(tuple(e.get("loc", ()))), e.get("msg", "")), "type": e.get("type", "")}
        for e in errors
    ]


async def _mailcast_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MailcastError)  # registered for this class only
    if (
        _pages is not None
        and request.url.path.startswith(DASHBOARD_PREFIX)
        and exc.code == "sign_in_required"
    ):
        return _pages.sign_in(request.url.path, "hx-request" in request.headers)
    return error_response(exc, request.url.path)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)  # registered for this class only
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        return respond(request.url.path, 422, "invalid_json", "The request body is not valid JSON")
    details = validation_details(errors)
    first = details[0] if details else problem("request", "invalid")
    message = f"{first['field']}: {first['message']}"
    if len(details) > 1:
        message += f" (and {len(details) - 1} more)"
    return respond(request.url.path, 422, "validation_error", message, details)


# FastAPI's answer when reading a JSON body fails for another reason than its syntax (a nesting
# too deep for the parser): still a body that is not usable JSON.
_BODY_UNPARSABLE = "There was an error parsing the body"


def route_methods(routes: Iterable[Any]) -> list[tuple[Any, set[str]]]:
    """(path pattern, methods) of every route with methods: what `Allow` is made from."""
    return [
        (route.path_regex, set(route.methods))
        for route in routes
        if getattr(route, "methods", None) and getattr(route, "path_regex", None) is not None
    ]


def _allowed(request: Request) -> str:
    """Every method some route of this path takes (Starlette's 405 names only the first route's)."""
    path = request.url.path
    methods = {
        m
        for pattern, found in request.app.state.route_methods
        if pattern.match(path)
        for m in found
    }
    return ", ".join(sorted(methods))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)  # registered for this class only
    if exc.status_code == 400 and exc.detail == _BODY_UNPARSABLE:
        return respond(request.url.path, 422, "invalid_json", "The request body is not valid JSON")
    code = _HTTP_CODES.get(exc.status_code, "error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed(request)
    return respond(request.url.path, exc.status_code, code, message, headers=headers or None)


async def _integrity_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, IntegrityError)  # registered for this class only
    # A uniqueness race that the service's own check could not see (two requests at once).
    log.info("integrity error answered as 409: %s", exc.orig)
    return respond(
        request.url.path, 409, "conflict", "The request conflicts with the current state; retry it"
    )


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return respond(request.url.path, 500, "internal_error", "An unexpected error occurred")


def install(app: FastAPI, pages: ErrorPages | None = None) -> None:
    """The handlers of every error; `pages`: how paths under /dashboard answer."""
    global _pages
    _pages = pages
    app.add_exception_handler(MailcastError, _mailcast_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(IntegrityError, _integrity_error)
    app.add_exception_handler(Exception, _unexpected)
