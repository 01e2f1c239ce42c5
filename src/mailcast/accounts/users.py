"""Dashboard users: who may sign in to an account's dashboard, with which role, and their
sessions. Passwords are hashed with Argon2id; a session is a random token in an HttpOnly cookie,
of which only the SHA-256 is kept."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.ext.asyncio import AsyncSession

from mailcast.accounts import repository as repo
from mailcast.contacts.addresses import normalise_email
from mailcast.db.models import User, WebSession
from mailcast.errors import Conflict, MailcastError, NotFound, RateLimited, ValidationFailed
from mailcast.ids import new_id
from mailcast.scopes import Principal, Scope

_HASHER = PasswordHasher()
# Checked against when the email is unknown, so both failures cost the same time.
_DUMMY_HASH = _HASHER.hash("no such user: a password nobody has")
MIN_PASSWORD = 10
FAILURES_ALLOWED = 5
FAILURE_WINDOW = timedelta(minutes=15)
SESSION_IDLE = timedelta(hours=8)
SESSION_LIMIT = timedelta(days=7)
_TOUCH_EVERY = timedelta(minutes=1)


class Role(StrEnum):
    OWNER = "owner"  # everything, users and API keys included
    EDITOR = "editor"  # everything but users and API keys
    VIEWER = "viewer"  # reads only, like a read_only key


_SCOPES = {
    Role.OWNER: Scope.FULL_ACCESS,
    Role.EDITOR: Scope.FULL_ACCESS,
    Role.VIEWER: Scope.READ_ONLY,
}


class WrongCredentials(MailcastError):
    status = 401
    code = "unauthorized"
    message = "Wrong email or password"


@dataclass(frozen=True)
class SignedIn:
    """A signed-in user: what a page may do is what this principal's scope allows."""

    user: User
    session: WebSession

    @property
    def role(self) -> Role:
        return Role(self.user.role)

    @property
    def principal(self) -> Principal:
        return Principal(
            account_id=self.user.account_id, key_id=f"user:{self.user.id}", scope=_SCOPES[self.role]
        )

    @property
    def manages_access(self) -> bool:
        """Users and API keys are the owner's."""
        return self.role is Role.OWNER


def _password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise ValidationFailed.on("password", f"at least {MIN_PASSWORD} characters")
    return _HASHER.hash(password)


def _email(raw: str) -> str:
    try:
        return normalise_email(raw)
    except ValueError as exc:
        raise ValidationFailed.on("email", str(exc)) from None


async def create_user(
    session: AsyncSession, account_id: str, email: str, role: Role, password: str, now: datetime
) -> User:
    if await repo.get_account(session, account_id) is None:
        raise NotFound("No such account")
    email = _email(email)
    if await repo.user_by_email(session, email) is not None:
        raise Conflict(f"A user with the email {email} exists already", {"email": email})
    user = User(
        id=new_id("usr"),
        account_id=account_id,
        email=email,
        role=Role(role).value,
        password_hash=_password(password),
        created_at=now,
        updated_at=now,
    )
    session.add(user)
    await session.flush()
    return user


async def set_password(session: AsyncSession, email: str, password: str, now: datetime) -> User:
    """A new password; every session of the user ends."""
    user = await repo.user_by_email(session, _email(email))
    if user is None:
        raise NotFound("No such user")
    user.password_hash = _password(password)
    user.updated_at = now
    await repo.delete_web_sessions_of(session, user.id)
    await session.flush()
    return user


def new_password() -> str:
    return secrets.token_urlsafe(15)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def sign_in(
    session: AsyncSession, email: str, password: str, address: str, now: datetime
) -> tuple[str, WebSession]:
    """A new session's token (for the cookie) and the session. The same answer for an unknown
    email and a wrong password; after FAILURES_ALLOWED failures for one email or from one address
    within FAILURE_WINDOW, RateLimited until the oldest of them leaves the window."""
    try:
        email = normalise_email(email)
    except ValueError:
        email = email.strip().lower()[:320]
    since = now - FAILURE_WINDOW
    by_email, by_address = await repo.failures_since(session, email, address, since)
    if by_email >= FAILURES_ALLOWED or by_address >= FAILURES_ALLOWED:
        oldest = await repo.oldest_failure_since(session, email, address, since) or now
        retry = max(1, int((oldest + FAILURE_WINDOW - now).total_seconds()) + 1)
        raise RateLimited(
            "Too many failed sign-ins; try again later", {"retry_after": retry}, retry_after=retry
        )
    user = await repo.user_by_email(session, email)
    try:
        _HASHER.verify(user.password_hash if user else _DUMMY_HASH, password)
        if user is None:
            raise VerificationError
    except (VerificationError, InvalidHashError):
        await repo.add_failure(session, email, address, now, since)
        raise WrongCredentials() from None
    if _HASHER.check_needs_rehash(user.password_hash):
        user.password_hash = _HASHER.hash(password)
    user.last_login_at = now
    await repo.clear_failures(session, email)
    token = secrets.token_urlsafe(32)
    web = WebSession(
        id=_digest(token),
        user_id=user.id,
        csrf=secrets.token_urlsafe(32),
        created_at=now,
        expires_at=now + SESSION_IDLE,
        last_seen_at=now,
    )
    session.add(web)
    await session.flush()
    return token, web


async def signed_in(session: AsyncSession, token: str | None, now: datetime) -> SignedIn | None:
    """The session of a cookie's token, if it has not expired (its idle expiry moves on with
    use)."""
    if not token:
        return None
    found = await repo.web_session(session, _digest(token))
    if found is None:
        return None
    web, user = found
    if web.expires_at <= now:
        await repo.delete_web_session(session, web.id)
        return None
    if now - web.last_seen_at >= _TOUCH_EVERY:
        web.last_seen_at = now
        web.expires_at = min(now + SESSION_IDLE, web.created_at + SESSION_LIMIT)
    return SignedIn(user, web)


async def sign_out(session: AsyncSession, token: str | None) -> None:
    if token:
        await repo.delete_web_session(session, _digest(token))


def csrf_matches(signed: SignedIn, given: str | None) -> bool:
    return bool(given) and secrets.compare_digest(signed.session.csrf, given or "")
