"""Sender domains: the DNS records to publish, and verification against real DNS."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailcast.clock import Clock
from mailcast.config import Settings
from mailcast.contacts.addresses import normalise_email
from mailcast.db.models import Domain
from mailcast.domains import repository as repo
from mailcast.domains.dns import DnsError, TxtLookup
from mailcast.domains.keys import SEALED, KeySealer, generate_keypair, sealer
from mailcast.errors import Conflict, NotFound, ValidationFailed
from mailcast.ids import new_id

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def _domain_name(name: str) -> str:
    """A sender domain's name as stored (lower case, IDNA). Special-use names (.test, .local,
    .internal, ...) are accepted: operators try mailcast on them before going live. A sender
    domain is usable once verified (DNS, which a local resolver can answer, or --trusted)."""
    value = name.strip().rstrip(".").lower()
    try:
        value = value.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError("not a valid domain name") from None
    labels = value.split(".")
    if (
        len(value) > 253
        or len(labels) < 2
        or not all(_LABEL.match(label) for label in labels)
        or labels[-1].isdigit()
    ):
        raise ValueError("not a valid domain name")
    return value


def normalise_domain_name(name: str) -> str:
    try:
        return _domain_name(name)
    except ValueError:
        raise ValidationFailed.on(
            "name", "invalid domain", "name: not a valid domain name"
        ) from None


def normalise_sender_address(raw: str) -> str:
    """A sender's address (from, reply-to): its local part checked as any address's, its domain
    by the sender-domain rule above, so a domain that can be added can be sent from. (Contacts'
    addresses keep the stricter rule: none at a special-use name.) Raises ValueError."""
    local, at, domain = raw.strip().rpartition("@")
    if not at:
        raise ValueError("An email address must have an @-sign.")
    domain = _domain_name(domain)
    # The local part alone: email-validator judges it beside a stand-in domain that passes.
    local = normalise_email(f"{local}@example.com").rpartition("@")[0]
    return f"{local}@{domain}"


def dkim_host(domain: Domain) -> str:
    return f"{domain.dkim_selector}._domainkey.{domain.name}"


def spf_value(settings: Settings) -> str:
    mechanism = f"include:{settings.spf_include}" if settings.spf_include else "a mx"
    return f"v=spf1 {mechanism} ~all"


def dns_records(domain: Domain, settings: Settings) -> list[dict[str, Any]]:
    records = [
        ("spf", domain.name, spf_value(settings), domain.spf_verified),
        (
            "dkim",
            dkim_host(domain),
            f"v=DKIM1; k={domain.dkim_algorithm}; p={domain.dkim_public_key}",
            domain.dkim_verified,
        ),
        ("dmarc", f"_dmarc.{domain.name}", "v=DMARC1; p=none;", domain.dmarc_verified),
    ]
    return [
        {
            "record": purpose,
            "type": "TXT",
            "host": host,
            "name": host,
            "value": value,
            "verified": ok,
        }
        for purpose, host, value, ok in records
    ]


async def create_domain(
    session: AsyncSession,
    account_id: str,
    name: str,
    now: datetime,
    settings: Settings,
    trusted: bool = False,
    dkim_algorithm: str = "rsa",
) -> Domain:
    name = normalise_domain_name(name)
    if await repo.by_name(session, account_id, name) is not None:
        raise Conflict(f"The domain {name} is already added", {"name": name})
    private_pem, public_b64 = generate_keypair(dkim_algorithm)
    domain = Domain(
        id=new_id("dom"),
        account_id=account_id,
        name=name,
        status="verified" if trusted else "pending",
        dkim_selector=settings.dkim_selector,
        dkim_algorithm=dkim_algorithm,
        dkim_private_key=sealer(settings.secret()).seal(private_pem),
        dkim_public_key=public_b64,
        spf_verified=False,
        dkim_verified=False,
        dmarc_verified=False,
        trusted=trusted,
        verified_at=now if trusted else None,
        created_at=now,
        updated_at=now,
    )
    session.add(domain)
    await session.flush()
    return domain


async def get_domain(session: AsyncSession, account_id: str, domain_id: str) -> Domain:
    domain = await repo.get(session, account_id, domain_id)
    if domain is None:
        raise NotFound("No such domain")
    return domain


async def list_domains(
    session: AsyncSession, account_id: str, limit: int, cursor: str | None
) -> list[Domain]:
    return await repo.list_page(session, account_id, limit, cursor)


async def delete_domain(session: AsyncSession, account_id: str, domain_id: str) -> None:
    if not await repo.delete_one(session, account_id, domain_id):
        raise NotFound("No such domain")


def _tags(record: str) -> dict[str, str]:
    tags = {}
    for part in record.split(";"):
        key, _, value = part.partition("=")
        if key.strip():
            tags[key.strip().lower()] = "".join(value.split())
    return tags


async def _lookup(dns: TxtLookup, name: str, problems: list[str]) -> list[str]:
    try:
        return await dns.txt(name)
    except DnsError as exc:
        problems.append(str(exc))
        return []


async def check_records(
    dns: TxtLookup, settings: Settings, domain: Domain
) -> tuple[dict[str, bool], list[str]]:
    """Look the three records up (concurrently); no database work here."""
    problems: list[str] = []
    spf_txt, dkim_txt, dmarc_txt = await asyncio.gather(
        _lookup(dns, domain.name, problems),
        _lookup(dns, dkim_host(domain), problems),
        _lookup(dns, f"_dmarc.{domain.name}", problems),
    )
    spf = [r for r in spf_txt if r.lower().startswith("v=spf1")]
    include = f"include:{settings.spf_include}".lower() if settings.spf_include else None
    return {
        "spf_verified": bool(spf)
        and (include is None or any(include in r.lower().split() for r in spf)),
        "dkim_verified": any(_tags(r).get("p") == domain.dkim_public_key for r in dkim_txt),
        "dmarc_verified": any(r.replace(" ", "").upper().startswith("V=DMARC1") for r in dmarc_txt),
    }, problems


async def verify_domain(
    sessions: async_sessionmaker[AsyncSession],
    dns: TxtLookup,
    settings: Settings,
    account_id: str,
    domain_id: str,
    clock: Clock,
) -> tuple[Domain, list[str]]:
    """Look the records up and store the outcome. The domain is verified when SPF and DKIM match
    (DMARC is reported).

    DNS can take seconds, so this is its own unit of work: it reads, looks up with no transaction
    open (on SQLite an open transaction holds the database's write lock), then writes and
    commits."""
    async with sessions() as session:
        domain = await get_domain(session, account_id, domain_id)
    results, problems = await check_records(dns, settings, domain)
    async with sessions() as session:
        # Locked: a delete that comes meanwhile waits for this update, or it found the domain gone.
        locked = await repo.get_locked(session, account_id, domain_id)
        if locked is None:
            raise NotFound("No such domain")
        domain = locked
        now = clock()
        for key, value in results.items():
            setattr(domain, key, value)
        if domain.trusted or (domain.spf_verified and domain.dkim_verified):
            if domain.status != "verified":
                domain.verified_at = now
            domain.status = "verified"
        else:
            domain.status = "pending"
            domain.verified_at = None
        domain.last_checked_at = now
        domain.updated_at = now
        await session.commit()
    return domain, problems


def signs_with_dkim(domain: Domain) -> bool:
    """A DKIM record a lookup found matching, or a trusted domain no lookup has judged: the
    operator vouches for its records. A lookup that did not find the key (dkim_verified false
    after a check) stops the signing: a signature that cannot verify harms more than none."""
    return domain.dkim_verified or (domain.trusted and domain.last_checked_at is None)


async def is_verified(session: AsyncSession, account_id: str, name: str) -> bool:
    domain = await repo.by_name(session, account_id, name.lower())
    return domain is not None and domain.status == "verified"


async def seal_stored_keys(
    session: AsyncSession, settings: Settings, previous: list[bytes] | None = None
) -> int:
    """Every DKIM private key sealed under the current secret key: keys stored in clear (before
    keys were sealed) and, with `previous` secret keys, keys sealed under one of them. Returns how
    many were written. Raises KeyUnreadable for a key none of the secret keys opens."""
    keys = KeySealer(settings.secret(), previous or [])
    written = 0
    for domain_id, stored in await repo.private_keys(session):
        sealed = keys.reseal(stored) if previous or not stored.startswith(SEALED) else stored
        if sealed != stored:
            await repo.set_private_key(session, domain_id, sealed)
            written += 1
    return written
