"""Domain errors. Each carries the HTTP status and machine code the API answers with;
the core raises them, only the API layer turns them into responses."""

from __future__ import annotations

from typing import Any, Self


class MailcastError(Exception):
    status: int = 400
    code: str = "bad_request"
    message: str = "Bad request"
    headers: dict[str, str] | None = None

    def __init__(self, message: str | None = None, details: Any = None) -> None:
        self.message = message or self.message
        self.details = details
        super().__init__(self.message)


class Unauthorized(MailcastError):
    status = 401
    code = "unauthorized"
    message = "Missing or invalid API key"


class InsufficientScope(MailcastError):
    status = 403
    code = "insufficient_scope"
    message = "This API key's scope does not allow this action"


class PlanLimitReached(MailcastError):
    status = 403
    code = "plan_limit_reached"


class QuotaExceeded(MailcastError):
    status = 403
    code = "quota_exceeded"


class NotFound(MailcastError):
    status = 404
    code = "not_found"
    message = "Not found"


class Conflict(MailcastError):
    status = 409
    code = "conflict"


class InvalidTransition(Conflict):
    code = "invalid_transition"


class CampaignNotSent(InvalidTransition):
    """An operation that needs a sent campaign (resend to non-openers)."""


class ResendTooEarly(Conflict):
    """Resend to non-openers before the delay after sending has passed."""


class PayloadTooLarge(MailcastError):
    status = 413
    code = "payload_too_large"


class RateLimited(MailcastError):
    status = 429
    code = "rate_limited"

    def __init__(
        self, message: str | None = None, details: Any = None, retry_after: int = 1
    ) -> None:
        super().__init__(message, details)
        self.headers = {"Retry-After": str(retry_after)}


class UnsupportedMediaType(MailcastError):
    status = 415
    code = "unsupported_media_type"


def problem(field: str, message: str) -> dict[str, str]:
    """One entry of an error's `details`: which field of the request, and what is wrong with it."""
    return {"field": field, "message": message}


class ValidationFailed(MailcastError):
    status = 422
    code = "validation_error"
    message = "Invalid request"

    @classmethod
    def on(cls, field: str, message: str, summary: str | None = None) -> Self:
        """One field is wrong: the error's message is `summary`, by default "field: message"."""
        return cls(summary or f"{field}: {message}", [problem(field, message)])


class DomainNotVerified(ValidationFailed):
    code = "domain_not_verified"
