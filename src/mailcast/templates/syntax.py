"""Merge tags are Liquid (python-liquid: no code execution). Content is checked when saved."""

from __future__ import annotations

from liquid.exceptions import LiquidError, ResourceLimitError

from mailcast.errors import ValidationFailed, problem
from mailcast.templates.bounded import BoundedEnvironment, limit_name
from mailcast.templates.links import tracked_links

ENV = BoundedEnvironment()


def _links(source: str, html: bool) -> list[str]:
    return tracked_links(source, None) if html else tracked_links(None, source)


# What a trial render at save time fills in: a template over the limits for a plain contact is
# refused then, not found out while sending.
_TRIAL = {
    "email": "someone@example.org",
    "first_name": "Someone",
    "last_name": "Example",
    "metadata": {},
    "unsubscribe_url": "https://example.org/u/token",
    "postal_address": "1 Main Street",
}


def check_fields(**sources: str | None) -> None:
    """422 listing every field whose merge tags do not parse."""
    problems = []
    for field, source in sources.items():
        if not source:
            continue
        try:
            template = ENV.from_string(source)
        except LiquidError as exc:
            first_line = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
            problems.append(problem(field, f"template syntax error: {first_line}"))
            continue
        try:
            template.render(**_TRIAL)
        except ResourceLimitError as exc:
            problems.append(problem(field, f"the template exceeds the {limit_name(exc)}"))
        except LiquidError:
            pass  # an error that depends on a contact's data is that delivery's, when it is sent
        if field.split(".")[-1] in ("html", "text", "text_content") and any(
            "{%" in link for link in _links(source, field.endswith("html"))
        ):
            # A click finds its target by rendering the link for that person: merge tags only.
            problems.append(
                problem(field, "a link's address may use {{ merge tags }}, not {% tags %}")
            )
    if problems:
        raise ValidationFailed(f"{problems[0]['field']}: {problems[0]['message']}", problems)
