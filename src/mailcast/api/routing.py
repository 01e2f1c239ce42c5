from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter

from mailcast.api.schemas import ErrorOut, SequenzyErrorOut

# Documented on every /v1 operation, so clients (and contract tests) know the error shape.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": description}
    for status, description in {
        401: "Missing, malformed, unknown or revoked API key",
        403: "The key's scope is too weak, or a plan limit or the monthly quota says no",
        404: "No such resource in this account",
        409: "The resource's state does not allow this",
        413: "The request body is too large",
        422: "The request is invalid",
        429: "A rate limit was reached (rate_limited); Retry-After says when to try again",
    }.items()
}

# The Sequenzy dialect (/api/v1) answers with the statuses its SDK maps (api/errors.py).
SEQUENZY_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": SequenzyErrorOut, "description": description}
    for status, description in {
        400: (
            "Refused: too early (code too_early), not sent (not_sent), a plan limit, "
            "or an invalid request"
        ),
        401: (
            "Missing, unknown or revoked API key, or one whose scope is too weak "
            "(insufficient_scope)"
        ),
        404: "No such campaign in this account",
        429: (
            "A rate limit was reached (rate_limited, retryable); Retry-After says when to try again"
        ),
        500: "An unexpected error (retryable)",
    }.items()
}


def put_and_patch(
    router: APIRouter, path: str, endpoint: Callable[..., Any], **kwargs: Any
) -> None:
    """Register an update under both PUT (what the sendry SDK sends) and PATCH (the spec), each
    with its own operation id. Both are partial updates: fields left out are left as they are."""
    for method in ("PUT", "PATCH"):
        router.add_api_route(
            path, endpoint, methods=[method], name=f"{endpoint.__name__}_{method.lower()}", **kwargs
        )
