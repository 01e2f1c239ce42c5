"""Addresses as stored and compared: validated syntax (email-validator's rules), lower case."""

from __future__ import annotations

import re

from email_validator import EmailNotValidError, validate_email

# RFC 5322 atext, dot-separated: a local part email-validator takes as it is.
_ATEXT = r"a-zA-Z0-9_!#$%&'*+\-/=?^`{|}~"
_DOT_ATOM = re.compile(f"[{_ATEXT}]+(?:\\.[{_ATEXT}]+)*\\Z")
_MAX_LENGTH = 254

# Domain -> its normalised form (None: not valid). Lists repeat a few domains endlessly, so the
# domain's validation (most of email-validator's cost) is done once per domain.
_DOMAINS: dict[str, str | None] = {}
_DOMAINS_KEPT = 100_000


def normalise_email(raw: str) -> str:
    """The address as stored: what email-validator makes of it, lower case (addresses are matched
    case-insensitively, as every mailbox provider that matters does). Raises ValueError."""
    value = raw.strip()
    local, at, domain = value.rpartition("@")
    if at and value.isascii() and len(value) <= _MAX_LENGTH and _DOT_ATOM.match(local):
        normalised = _domain(domain)
        if normalised is not None:
            return f"{local.lower()}@{normalised}"
    return _validated(value)  # anything else, and every refusal with email-validator's own message


def _domain(domain: str) -> str | None:
    if domain in _DOMAINS:
        return _DOMAINS[domain]
    try:
        normalised: str | None = validate_email(
            f"a@{domain}", check_deliverability=False
        ).domain.lower()
    except EmailNotValidError:
        normalised = None
    if len(_DOMAINS) >= _DOMAINS_KEPT:
        _DOMAINS.clear()
    _DOMAINS[domain] = normalised
    return normalised


def _validated(value: str) -> str:
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    return result.normalized.lower()
