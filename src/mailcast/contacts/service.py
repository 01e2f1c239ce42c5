"""Contacts: one per address per account; unsubscribes and suppressions live here."""

from __future__ import annotations

import json
from datetime import datetime
from itertools import islice
from typing import Any

import ijson
from sqlalchemy.ext.asyncio import AsyncSession

from mailcast.audiences import repository as audiences_repo
from mailcast.contacts import repository as repo
from mailcast.contacts.addresses import normalise_email
from mailcast.contacts.schemas import (
    ContactCreate,
    ContactUpdate,
    ImportResult,
    ImportRow,
    ImportRowError,
)
from mailcast.db.models import Contact, DeletedContact
from mailcast.errors import Conflict, NotFound, ValidationFailed
from mailcast.ids import new_id

MAX_METADATA_BYTES = 16_384


def _email_or_422(raw: str, field: str = "email") -> str:
    try:
        return normalise_email(raw)
    except ValueError as exc:
        raise ValidationFailed.on(field, str(exc)) from exc


def check_metadata(metadata: dict[str, Any] | None, field: str = "metadata") -> None:
    if metadata is None:
        return
    if len(json.dumps(metadata)) > MAX_METADATA_BYTES:
        raise ValueError(f"{field} is larger than {MAX_METADATA_BYTES} bytes")


def _metadata_or_422(metadata: dict[str, Any] | None) -> None:
    try:
        check_metadata(metadata)
    except ValueError as exc:
        raise ValidationFailed.on("metadata", str(exc), str(exc)) from exc


async def create_contact(
    session: AsyncSession, account_id: str, body: ContactCreate, now: datetime
) -> Contact:
    email = _email_or_422(body.email)
    _metadata_or_422(body.metadata)
    if body.audience_id and not await audiences_repo.hold(session, account_id, body.audience_id):
        raise NotFound("No such audience", {"audience_id": body.audience_id})
    if await repo.by_email(session, account_id, email) is not None:
        raise Conflict(f"A contact with the email {email} already exists", {"email": email})
    contact = Contact(
        id=new_id("ct"),
        account_id=account_id,
        email=email,
        first_name=body.first_name,
        last_name=body.last_name,
        attributes=body.metadata,
        unsubscribed=body.unsubscribed,
        unsubscribed_at=now if body.unsubscribed else None,
        created_at=now,
        updated_at=now,
    )
    session.add(contact)
    await session.flush()
    if body.audience_id:
        await audiences_repo.add_members(session, body.audience_id, [contact.id], now)
    return contact


async def get_contact(session: AsyncSession, account_id: str, contact_id: str) -> Contact:
    contact = await repo.get(session, account_id, contact_id)
    if contact is None:
        raise NotFound("No such contact")
    return contact


async def list_contacts(
    session: AsyncSession,
    account_id: str,
    limit: int,
    cursor: str | None,
    email: str | None,
    audience_id: str | None,
) -> list[Contact]:
    if audience_id and await audiences_repo.get(session, account_id, audience_id) is None:
        raise NotFound("No such audience", {"audience_id": audience_id})
    return await repo.list_page(
        session, account_id, limit, cursor, email=email, audience_id=audience_id
    )


async def update_contact(
    session: AsyncSession, account_id: str, contact_id: str, body: ContactUpdate, now: datetime
) -> Contact:
    contact = await get_contact(session, account_id, contact_id)
    fields = body.model_fields_set
    if "email" in fields:
        if body.email is None:
            raise ValidationFailed.on("email", "cannot be null")
        email = _email_or_422(body.email)
        if email != contact.email:
            if await repo.by_email(session, account_id, email) is not None:
                raise Conflict(f"A contact with the email {email} already exists", {"email": email})
            contact.email = email
    if "first_name" in fields:
        contact.first_name = body.first_name
    if "last_name" in fields:
        contact.last_name = body.last_name
    if "metadata" in fields:
        _metadata_or_422(body.metadata)
        contact.attributes = body.metadata
    if "unsubscribed" in fields:
        if body.unsubscribed is None:
            raise ValidationFailed.on("unsubscribed", "cannot be null")
        if body.unsubscribed and not contact.unsubscribed:
            contact.unsubscribed_at = now
        if not body.unsubscribed:
            contact.unsubscribed_at = None
        contact.unsubscribed = body.unsubscribed
    contact.updated_at = now
    await session.flush()
    return contact


async def delete_contact(
    session: AsyncSession, account_id: str, contact_id: str, now: datetime
) -> None:
    """Deletes the contact and its memberships; its deliveries stay (a campaign's record), and its
    id is kept in `deleted_contacts` (see DeletedContact)."""
    if not await repo.delete_one(session, account_id, contact_id):
        raise NotFound("No such contact")
    session.add(DeletedContact(id=contact_id, account_id=account_id, deleted_at=now))
    await session.flush()


def json_rows_over(body: bytes, field: str, limit: int) -> bool:
    """Whether the JSON object `body` holds more than `limit` items in its array `field`, read as
    a stream: at most `limit + 1` items are built, one at a time. A body that is not such JSON
    is not judged here (False): decoding it reports what is wrong."""
    try:
        return sum(1 for _ in islice(ijson.items(body, f"{field}.item"), limit + 1)) > limit
    except ijson.JSONError:
        return False


def too_many_rows(max_rows: int) -> ValidationFailed:
    return ValidationFailed.on(
        "contacts", f"at most {max_rows} rows", f"contacts: at most {max_rows} rows per import"
    )


async def import_contacts(
    session: AsyncSession,
    account_id: str,
    rows: list[ImportRow],
    audience_id: str | None,
    now: datetime,
    max_rows: int,
    first_index: int = 0,
) -> ImportResult:
    """Create or update contacts by address. Invalid rows are reported and skipped; the rest are
    kept.

    An import never re-subscribes an unsubscribed contact (`unsubscribed: false` is ignored for
    existing contacts): only an explicit contact update can. Metadata is merged key by key."""
    if len(rows) > max_rows:
        raise too_many_rows(max_rows)
    if audience_id and not await audiences_repo.hold(session, account_id, audience_id):
        raise NotFound("No such audience", {"audience_id": audience_id})
    given, errors, repeats = _by_address(rows, first_index)
    existing = await repo.by_emails(session, account_id, list(given))
    changes = _changes(account_id, given, existing, now)
    await repo.write_import(session, changes)
    if audience_id:
        await audiences_repo.add_members(session, audience_id, changes.contact_ids, now)
    return ImportResult(
        created=len(changes.inserts),
        updated=len(changes.updates) + repeats,
        invalid=len(errors),
        total=len(rows),
        errors=errors,
    )


def _by_address(
    rows: list[ImportRow], first_index: int
) -> tuple[dict[str, dict[str, Any]], list[ImportRowError], int]:
    """The fields each valid address was given (a repeated address's rows merged, in order), the
    invalid rows, and how many rows repeated an address."""
    errors: list[ImportRowError] = []
    given: dict[str, dict[str, Any]] = {}
    repeats = 0
    for offset, row in enumerate(rows):
        try:
            email = normalise_email(row.email)
            check_metadata(row.metadata)
        except ValueError as exc:
            errors.append(
                ImportRowError(index=first_index + offset, email=row.email[:320], message=str(exc))
            )
            continue
        fields = {k: getattr(row, k) for k in row.model_fields_set if k != "email"}
        if email in given:
            repeats += 1
            _merge(given[email], fields)
        else:
            given[email] = fields
    return given, errors, repeats


def _changes(
    account_id: str,
    given: dict[str, dict[str, Any]],
    existing: dict[str, Contact],
    now: datetime,
) -> repo.ImportChanges:
    """The rows to insert and the updates of existing contacts that the fields given make."""
    changes = repo.ImportChanges()
    for email, fields in given.items():
        contact = existing.get(email)
        if contact is None:
            contact_id = new_id("ct")
            unsubscribed = bool(fields.get("unsubscribed"))
            changes.inserts.append(
                {
                    "id": contact_id,
                    "account_id": account_id,
                    "email": email,
                    "first_name": fields.get("first_name"),
                    "last_name": fields.get("last_name"),
                    "attributes": fields.get("metadata"),
                    "unsubscribed": unsubscribed,
                    "unsubscribed_at": now if unsubscribed else None,
                    "suppressed_reason": None,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        else:
            contact_id = contact.id
            values: dict[str, Any] = {"id": contact.id, "updated_at": now}
            for key in ("first_name", "last_name"):
                if key in fields:
                    values[key] = fields[key]
            if fields.get("metadata") is not None:
                values["attributes"] = {**(contact.attributes or {}), **fields["metadata"]}
            if fields.get("unsubscribed") and not contact.unsubscribed:
                values["unsubscribed"] = True
                values["unsubscribed_at"] = now
            changes.updates.append(values)
        changes.contact_ids.append(contact_id)
    return changes


def _merge(into: dict[str, Any], later: dict[str, Any]) -> None:
    for key, value in later.items():
        if key == "metadata" and value is not None and into.get("metadata") is not None:
            into["metadata"] = {**into["metadata"], **value}
        else:
            into[key] = value
