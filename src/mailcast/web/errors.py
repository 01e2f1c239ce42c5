"""The dashboard's answer to an error: a page (or, to a signed-out visitor, the way to sign in)."""

from __future__ import annotations

from urllib.parse import quote

from fastapi.responses import HTMLResponse, RedirectResponse, Response

from mailcast.web.pages import HEADERS, fragment

_TITLES = {
    400: "Bad request",
    401: "Sign in",
    403: "Not allowed",
    404: "Not found",
    409: "Not possible now",
    413: "Too large",
    422: "Please check the form",
    429: "Too many attempts",
    500: "Something went wrong",
}


def error_page(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    body = fragment(
        "error.html", title=_TITLES.get(status, "Error"), message=message, status=status
    )
    return HTMLResponse(body, status_code=status, headers={**HEADERS, **(headers or {})})


def sign_in(path: str, htmx: bool) -> Response:
    target = "/dashboard/login" + (f"?next={quote(path)}" if path.startswith("/dashboard/") else "")
    if htmx:  # htmx follows this header with a full page load
        return Response(status_code=401, headers={"HX-Redirect": target, **HEADERS})
    return RedirectResponse(target, status_code=303, headers=HEADERS)
