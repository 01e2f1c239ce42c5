"""Liquid for user content, bounded: a template may loop and grow its output, but one render
never takes more than `LOOP_ITERATIONS` loop iterations in all, `OUTPUT_CHARACTERS` of output
or `SECONDS` of time, so one account's template cannot hold up another's sending or the API."""

from __future__ import annotations

import time
from contextvars import ContextVar
from io import StringIO
from typing import Any, TextIO

from liquid import BoundTemplate, Environment, RenderContext
from liquid.exceptions import LoopIterationLimitError, ResourceLimitError
from liquid.output import LimitedStringIO

LOOP_ITERATIONS = 50_000
OUTPUT_CHARACTERS = 2_000_000
LOCAL_NAMESPACE = 100_000  # bytes that {% assign %} and {% capture %} may hold
SECONDS = 1.0


class RenderTimeLimitError(ResourceLimitError):
    """The render ran past its time."""


class _Budget:
    __slots__ = ("deadline", "iterations")

    def __init__(self) -> None:
        self.iterations = 0
        self.deadline = time.monotonic() + SECONDS


_budget: ContextVar[_Budget | None] = ContextVar("liquid_budget", default=None)


class _Context(RenderContext):
    def get_buffer(self, buf: TextIO | None = None) -> StringIO:
        """Liquid's limited buffer, without its newline translation: a "\r" or "\r\n" in a
        template or a contact's data is written as it is, as an unlimited render writes it."""
        carry = buf.size if isinstance(buf, LimitedStringIO) else 0
        return LimitedStringIO(limit=OUTPUT_CHARACTERS - carry, newline="")

    def raise_for_loop_limit(self, length: int = 1) -> None:
        """Every loop asks here before it starts: besides Liquid's own check of the nested
        loops, the render's iterations in all, and its time."""
        super().raise_for_loop_limit(length)
        budget = _budget.get()
        if budget is None:
            return
        budget.iterations += length
        if budget.iterations > LOOP_ITERATIONS:
            raise LoopIterationLimitError(
                f"more than {LOOP_ITERATIONS:,} loop iterations", token=None
            )
        if time.monotonic() > budget.deadline:
            raise RenderTimeLimitError(f"rendering took more than {SECONDS:g} s", token=None)


class _Template(BoundTemplate):
    context_class = _Context

    def _get_buffer(self) -> StringIO:
        # The render's own buffer, like the context's (python-liquid 2.3 makes both here).
        return LimitedStringIO(limit=OUTPUT_CHARACTERS, newline="")

    def render(self, *args: Any, **kwargs: Any) -> str:
        token = _budget.set(_Budget()) if _budget.get() is None else None
        try:
            return super().render(*args, **kwargs)
        finally:
            if token is not None:
                _budget.reset(token)


class BoundedEnvironment(Environment):
    template_class = _Template
    loop_iteration_limit = LOOP_ITERATIONS
    output_stream_limit = OUTPUT_CHARACTERS
    local_namespace_limit = LOCAL_NAMESPACE


def limit_name(exc: ResourceLimitError) -> str:
    """The limit an error names, as the API reports it."""
    if isinstance(exc, LoopIterationLimitError):
        return f"loop iteration limit ({LOOP_ITERATIONS:,} a message)"
    if isinstance(exc, RenderTimeLimitError):
        return f"render time limit ({SECONDS:g} s a message)"
    if exc.__class__.__name__ == "OutputStreamLimitError":
        return f"output size limit ({OUTPUT_CHARACTERS:,} characters)"
    if exc.__class__.__name__ == "LocalNamespaceLimitError":
        return f"assigned variables limit ({LOCAL_NAMESPACE:,} bytes)"
    return str(exc)
