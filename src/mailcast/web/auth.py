"""Sign-in and CSRF for the dashboard, in one place. The signed-in user's account scopes every
call as an API key's does: pages call the services with `signed.principal`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.datastructures import FormData

from mailcast.accounts import users
from mailcast.accounts.users import SignedIn
from mailcast.api.deps import SessionDep
from mailcast.errors import InsufficientScope, MailcastError, NotFound
from mailcast.scopes import Scope

COOKIE = "mailcast_session"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"


class SignInRequired(MailcastError):
    """No valid session: the dashboard answers with the sign-in page (or a redirect to it)."""

    status = 401
    code = "sign_in_required"
    message = "Sign in to continue"


class CsrfRefused(MailcastError):
    status = 403
    code = "csrf"
    message = "This form has expired; reload the page and try again"


def secure_cookies(request: Request) -> bool:
    return bool(request.app.state.settings.base_url.startswith("https://"))


async def current(request: Request, session: SessionDep) -> SignedIn:
    signed = await users.signed_in(session, request.cookies.get(COOKIE), request.app.state.clock())
    if signed is None:
        raise SignInRequired()
    return signed


Signed = Annotated[SignedIn, Depends(current)]


def in_account(signed: SignedIn, account_id: str) -> None:
    """Another account's pages are simply not found."""
    if signed.user.account_id != account_id:
        raise NotFound("No such page")


async def check_header(
    request: Request, signed: SignedIn, needed: Scope = Scope.FULL_ACCESS
) -> None:
    """For a request whose body is a file: the CSRF token comes in the X-CSRF-Token header or the
    query string (`?csrf=`, what a plain form can give), checked before the body is read."""
    given = request.headers.get(CSRF_HEADER) or request.query_params.get(CSRF_FIELD)
    if not users.csrf_matches(signed, given):
        raise CsrfRefused()
    if not signed.principal.allows(needed):
        raise InsufficientScope("Your role does not allow this", {"role": signed.user.role})


async def changing(request: Request, signed: Signed, needed: Scope = Scope.FULL_ACCESS) -> FormData:
    """The form of a request that changes something, once its CSRF token is checked (a form field,
    or the X-CSRF-Token header that htmx requests carry) and the user's role allows the change."""
    form = await request.form(max_fields=200)
    given = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD)
    if not users.csrf_matches(signed, given if isinstance(given, str) else None):
        raise CsrfRefused()
    if not signed.principal.allows(needed):
        raise InsufficientScope("Your role does not allow this", {"role": signed.user.role})
    return form
