from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter


def put_and_patch(router: APIRouter, path: str, endpoint: Callable, **kwargs) -> None:
    """Register an update under both PUT (what the sendry SDK sends) and PATCH (the spec), each
    with its own operation id. Both are partial updates: fields left out are left as they are."""
    for method in ("PUT", "PATCH"):
        router.add_api_route(path, endpoint, methods=[method], name=f"{endpoint.__name__}_{method.lower()}", **kwargs)
