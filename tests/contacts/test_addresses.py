"""The address normaliser's shortcut (a plain local part, a domain validated once) gives exactly
what email-validator gives: the same address, or a refusal with the same message."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from mailcast.contacts.addresses import normalise_email


def _reference(raw: str) -> str:
    try:
        return validate_email(raw.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        return f"error: {exc}"


def _ours(raw: str) -> str:
    try:
        return normalise_email(raw)
    except ValueError as exc:
        return f"error: {exc}"


_local = st.text(alphabet="aZ09._-+!#$%&'*/=?^`{|}~\"(),:;<>@[\\] é", min_size=0, max_size=70)
_label = st.sampled_from(
    [
        "example",
        "EXAMPLE",
        "xn--bcher-kva",
        "a",
        "-bad",
        "bad-",
        "ex_ample",
        "b\u00fccher",
        "123",
        "x" * 64,
        "test",
        "local",
        "localhost",
        "invalid",
        "co",
        "",
        "1a",
    ]
)
_domain = st.lists(_label, min_size=1, max_size=4).map(".".join)


@settings(max_examples=3000, deadline=None)
@given(local=_local, domain=_domain, space=st.sampled_from(["", " ", "\t"]))
def test_the_shortcut_agrees_with_email_validator(local, domain, space):
    raw = f"{space}{local}@{domain}{space}"
    assert _ours(raw) == _reference(raw)
    assert _ours(raw) == _reference(raw)  # the second time the domain comes from the cache


@given(raw=st.text(max_size=80))
def test_any_text_agrees_with_email_validator(raw):
    assert _ours(raw) == _reference(raw)


def test_common_addresses():
    assert normalise_email("  Ada.Lovelace+news@Example.ORG ") == "ada.lovelace+news@example.org"
    assert normalise_email("a@xn--bcher-kva.de") == "a@bücher.de"
    assert normalise_email("x" * 64 + "@example.org").startswith("x" * 64)
