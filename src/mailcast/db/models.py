"""Database tables. API shapes live in each domain's schemas.py, never here."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    or_,
    text,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from mailcast.statuses import PENDING, DeliveryStatus

from .types import BigIntPK, JSONType, UTCDateTime


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSONType}


def table_of(model: type[Base]) -> Table:
    """A model's table, for Core statements (declarative classes type `__table__` loosely)."""
    return cast(Table, model.__table__)


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    plan: Mapped[str] = mapped_column(String(20))
    # Shown in the footer mailcast adds to a campaign whose body has no unsubscribe link.
    postal_address: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    scope: Mapped[str] = mapped_column(String(20))
    prefix: Mapped[str] = mapped_column(String(20))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class User(Base):
    """Someone who signs in to the dashboard: one account, one role (accounts.users.Role)."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    email: Mapped[str] = mapped_column(String(320), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    password_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    last_login_at: Mapped[datetime | None]


class WebSession(Base):
    """A signed-in browser: the cookie holds a random token, only its SHA-256 is kept."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]  # moves with use, never past created_at + the absolute limit
    last_seen_at: Mapped[datetime]


class LoginFailure(Base):
    """A failed sign-in, kept for the throttle's window (by email and by client address)."""

    __tablename__ = "login_failures"
    __table_args__ = (
        Index("ix_login_failures_email_at", "email", "at"),
        Index("ix_login_failures_address_at", "address", "at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(320))
    address: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime]


class IdempotencyKey(Base):
    """A POST made with an `Idempotency-Key`: what it asked (a hash of its method, path and body)
    and, once answered, the answer, replayed to a retry with the same key for 24 hours."""

    __tablename__ = "idempotency_keys"

    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str | None] = mapped_column(String(64))  # None while the first is running
    status_code: Mapped[int | None] = mapped_column(Integer)  # None: still running
    content_type: Mapped[str | None] = mapped_column(String(100))
    body: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class RelayStatus(Base):
    """A relay the workers could not reach: since when, and the last error. Written by the
    workers when a relay's circuit opens or closes; read by the campaign pages and the API."""

    __tablename__ = "relay_status"

    relay: Mapped[str] = mapped_column(String(300), primary_key=True)  # host:port
    down_since: Mapped[datetime | None]  # None: reachable
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime]


class AccountUsage(Base):
    """Marketing emails counted against the monthly quota, per calendar month (UTC)."""

    __tablename__ = "account_usage"

    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    period: Mapped[str] = mapped_column(String(7), primary_key=True)  # "YYYY-MM"
    marketing_emails: Mapped[int] = mapped_column(Integer, default=0)


class Domain(Base):
    __tablename__ = "domains"
    __table_args__ = (UniqueConstraint("account_id", "name"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(253))
    status: Mapped[str] = mapped_column(String(20))
    dkim_selector: Mapped[str] = mapped_column(String(63))
    dkim_algorithm: Mapped[str] = mapped_column(String(10))
    dkim_private_key: Mapped[str] = mapped_column(Text)
    dkim_public_key: Mapped[str] = mapped_column(Text)  # base64 DER, as published in DNS
    spf_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    dkim_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    dmarc_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    trusted: Mapped[bool] = mapped_column(Boolean, default=False)
    verified_at: Mapped[datetime | None]
    last_checked_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Contact(Base):
    """On PostgreSQL contacts have no foreign key to their account (migration 0015): an import
    would check it for every row. Accounts are never deleted by mailcast.
    The (account, email) key serves every read by account."""

    __tablename__ = "contacts"
    __table_args__ = (
        UniqueConstraint("account_id", "email"),
        ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE").ddl_if(
            dialect="sqlite"
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(40))
    email: Mapped[str] = mapped_column(String(320))
    first_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str | None] = mapped_column(String(200))
    # "metadata" is reserved on declarative classes, hence the attribute name.
    attributes: Mapped[dict[str, Any] | None] = mapped_column("metadata")
    unsubscribed: Mapped[bool] = mapped_column(Boolean, default=False)
    unsubscribed_at: Mapped[datetime | None]
    suppressed_reason: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


# A contact no campaign may mail: unsubscribed, or suppressed (hard bounce, complaint). One
# expression for the index and the reads that use it: PostgreSQL uses a partial index only for a
# condition that matches its own.
CONTACT_UNREACHABLE = or_(Contact.unsubscribed, Contact.suppressed_reason.is_not(None))
# The few contacts no campaign may mail, by id: the non-opener count takes them away from a
# campaign's unopened deliveries instead of joining every contact that may be mailed.
Index(
    "ix_contacts_unreachable",
    Contact.id,
    postgresql_where=CONTACT_UNREACHABLE,
    sqlite_where=CONTACT_UNREACHABLE,
)


class DeletedContact(Base):
    """The id of a deleted contact, and nothing else of it. On PostgreSQL a delivery keeps the id
    of a contact deleted since (see Delivery); reads that must leave such deliveries out without
    joining every contact look the id up here (`campaigns.repository.non_opener_count`)."""

    __tablename__ = "deleted_contacts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    deleted_at: Mapped[datetime]


class ContactImport(Base):
    """A CSV import job: the file waits in the import directory; a worker takes the job under a
    lease it renews, reads the file from `offset` (a record's start, on `line`) and commits each
    batch with the job's progress in the same transaction, so another worker resumes after the
    last batch that was committed, never applying one twice."""

    __tablename__ = "contact_imports"
    __table_args__ = (Index("ix_contact_imports_status", "status", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    audience_id: Mapped[str | None] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20))  # ImportStatus
    path: Mapped[str] = mapped_column(Text)  # the file as the workers read it
    owns_file: Mapped[bool] = mapped_column(
        Boolean, default=True
    )  # delete it when done (an upload)
    filename: Mapped[str | None] = mapped_column(String(255))
    file_bytes: Mapped[int] = mapped_column(BigInteger)
    layout: Mapped[dict[str, Any] | None]  # the header's reading (csvfile.Layout), once read
    offset: Mapped[int] = mapped_column(BigInteger, default=0)
    line: Mapped[int] = mapped_column(BigInteger, default=1)
    rows_read: Mapped[int] = mapped_column(BigInteger, default=0)
    created: Mapped[int] = mapped_column(BigInteger, default=0)
    updated: Mapped[int] = mapped_column(BigInteger, default=0)
    rejected: Mapped[int] = mapped_column(BigInteger, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    lease_owner: Mapped[str | None] = mapped_column(String(80))
    lease_expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]


class ContactImportError(Base):
    """A record an import rejected: its line, the address as written, and why."""

    __tablename__ = "contact_import_errors"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    import_id: Mapped[str] = mapped_column(
        ForeignKey("contact_imports.id", ondelete="CASCADE"), index=True
    )
    line: Mapped[int] = mapped_column(BigInteger)
    email: Mapped[str] = mapped_column(String(320))
    reason: Mapped[str] = mapped_column(Text)


class Audience(Base):
    __tablename__ = "audiences"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class AudienceMember(Base):
    """On PostgreSQL memberships have no foreign keys (migration 0015): two checks a row were half
    of what a large import cost. The code keeps what they kept: deleting a contact or an audience
    deletes its memberships in the same transaction, and whatever adds memberships holds its
    audience and contacts (FOR KEY SHARE, as a key check would) until it commits."""

    __tablename__ = "audience_members"
    __table_args__ = (
        ForeignKeyConstraint(["audience_id"], ["audiences.id"], ondelete="CASCADE").ddl_if(
            dialect="sqlite"
        ),
        ForeignKeyConstraint(["contact_id"], ["contacts.id"], ondelete="CASCADE").ddl_if(
            dialect="sqlite"
        ),
    )

    audience_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    contact_id: Mapped[str] = mapped_column(String(40), primary_key=True, index=True)
    created_at: Mapped[datetime]


class Template(Base):
    __tablename__ = "templates"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str | None] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str | None] = mapped_column(Text)
    engine: Mapped[str] = mapped_column(String(20))
    variables: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Campaign(Base):
    __tablename__ = "campaigns"
    __table_args__ = (
        Index("ix_campaigns_account_status", "account_id", "status"),
        Index("ix_campaigns_status_scheduled_at", "status", "scheduled_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(Text)
    from_address: Mapped[str] = mapped_column(String(400))
    reply_to: Mapped[str | None] = mapped_column(String(400))
    preview_text: Mapped[str | None] = mapped_column(Text)
    # No foreign keys: a sent campaign outlives the audience or template it used.
    audience_id: Mapped[str] = mapped_column(String(40))
    template_id: Mapped[str | None] = mapped_column(String(40))
    html: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str | None] = mapped_column(Text)
    unsubscribe_url: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20))
    scheduled_at: Mapped[datetime | None]
    send_started_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    # Why a scheduled campaign could not start (it went back to draft), for the user to see.
    last_error: Mapped[str | None] = mapped_column(Text)
    # The content as one "email" (the Sequenzy dialect names it); a resend gets a new one.
    email_id: Mapped[str | None] = mapped_column(String(40))
    # Audience rules evaluated when sending starts: [{"type": "not_opened", "campaign_id": ...},
    # ...]
    audience_rules: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)
    ab_test: Mapped[dict[str, Any] | None]
    ab_winner: Mapped[str | None] = mapped_column(String(1))
    ab_winner_evaluated_at: Mapped[datetime | None]
    resent_from_id: Mapped[str | None] = mapped_column(String(40))
    # Where claims start reading this campaign's due deliveries, a key of the queue's order
    # (next_attempt_at, id): the first key of its oldest live lease when the last claim ended.
    # The rows before it were sent long ago; reading past them is what a claim cost grew with
    # (see delivery/repository.py). NULL: the head of the queue.
    queue_from_at: Mapped[datetime | None]
    queue_from_id: Mapped[int | None] = mapped_column(BigInteger)
    # The recipient snapshot, queued in chunks (campaigns/repository.py, `fill_queue`): the
    # audience's members in contact id order, up to `queue_fill_after` (NULL: none yet), are
    # queued; `queue_filled` once all are. `recipients`: how many were eligible when sending
    # started, what the month's quota counted and what the total shows until the queue is full.
    queue_fill_after: Mapped[str | None] = mapped_column(String(40))
    queue_filled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    recipients: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


# Written out in the SQL: a bound parameter cannot match a partial index.
DUE_CONDITION = "status IN ({})".format(", ".join(f"'{status}'" for status in PENDING))


class Delivery(Base):
    """One row per (campaign, contact): the send queue and the audit trail at once.

    On PostgreSQL the table has no foreign keys, which a recipient snapshot would check for every
    row (docs/design.md). The code keeps what they kept: deleting a campaign deletes its deliveries
    (campaigns/repository.py), and a delivery whose contact was deleted keeps the contact's id,
    which then matches no contact (a read that joins contacts counts such a delivery as unreachable;
    one that does not finds the id in DeletedContact). SQLite keeps the keys of its first schema
    (dropping one there means rebuilding the table) and sets the id to NULL; both mean the same to
    the code."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("campaign_id", "contact_id"),
        # The send queue: a campaign's due rows in order, and nothing else (sent rows are most of
        # the table). Partial, so the claim reads a handful of index entries whatever the history.
        Index(
            "ix_deliveries_due",
            "campaign_id",
            "next_attempt_at",
            "id",
            postgresql_where=text(DUE_CONDITION),
            sqlite_where=text(DUE_CONDITION),
        ),
        # Per-campaign counts by status; on PostgreSQL it also carries what the non-opener count
        # reads, so that count never visits the table (an index-only scan).
        Index(
            "ix_deliveries_campaign_status",
            "campaign_id",
            "status",
            postgresql_include=["contact_id", "opened_at"],
        ),
        # A campaign's openers and clickers by time, read without visiting its other deliveries:
        # "did not open" takes the openers' contacts away (the resend estimate and its draft),
        # the dashboard's chart counts both by hour or day. SQLite has no INCLUDE: a key there.
        Index(
            "ix_deliveries_opened",
            "campaign_id",
            "opened_at",
            postgresql_include=["contact_id"],
            postgresql_where=text("opened_at IS NOT NULL"),
        ).ddl_if(dialect="postgresql"),
        Index(
            "ix_deliveries_opened",
            "campaign_id",
            "opened_at",
            "contact_id",
            sqlite_where=text("opened_at IS NOT NULL"),
        ).ddl_if(dialect="sqlite"),
        Index(
            "ix_deliveries_clicked",
            "campaign_id",
            "clicked_at",
            postgresql_where=text("clicked_at IS NOT NULL"),
            sqlite_where=text("clicked_at IS NOT NULL"),
        ),
        ForeignKeyConstraint(["campaign_id"], ["campaigns.id"], ondelete="CASCADE").ddl_if(
            dialect="sqlite"
        ),
        ForeignKeyConstraint(["contact_id"], ["contacts.id"], ondelete="SET NULL").ddl_if(
            dialect="sqlite"
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(String(40))
    contact_id: Mapped[str | None] = mapped_column(String(40))
    email: Mapped[str] = mapped_column(String(320))
    variant: Mapped[str] = mapped_column(String(10), default="a")  # the content it gets: a or b
    # The A/B assignment, never changed: a, b or holdback (holdback rows wait as "held" for the
    # winner).
    ab_group: Mapped[str] = mapped_column(String(10), default="a", server_default="a")
    status: Mapped[str] = mapped_column(String(20), default=DeliveryStatus.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    # Set when the row becomes `sending` (its message about to go on the wire): the worker whose
    # answer `record` accepts, and when the recovery may send it again if that worker is gone.
    lease_owner: Mapped[str | None] = mapped_column(String(80))
    lease_expires_at: Mapped[datetime | None]
    # Its worker died while its message was on the wire, so it was sent again: the recipient may
    # have it twice. At most one such row per relay connection the dead worker held.
    in_doubt: Mapped[bool] = mapped_column(Boolean, server_default=false())
    smtp_response: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(String(255))
    # Every pixel load counts here; only the first (human and machine) open becomes an event row.
    open_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # When a person (not a machine) first opened it; the same fact as its first human open event,
    # kept here so "who opened" is read from an index, not from a join over every open event.
    opened_at: Mapped[datetime | None]
    # The same for a person's first click, and the first complaint and unsubscribe through it:
    # the campaign counts (CampaignCount) follow these four, so no figure counts events.
    clicked_at: Mapped[datetime | None]
    complained_at: Mapped[datetime | None]
    unsubscribed_at: Mapped[datetime | None]
    # When a machine (a privacy proxy, a link scanner) first opened it: no reader, but it shows
    # the message arrived. `machine_opened` counts those with no person's open.
    machine_opened_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]


class CampaignCount(Base):
    """A campaign's figures as additions: they are the sums of its rows. Kept by triggers on
    `deliveries` (migration 0008) in the transaction of every insert, change (of the status or
    of the four `*_at` columns of readers) and delete, whichever code makes it, so the campaign
    list and get read a few rows instead of counting deliveries and events.

    On PostgreSQL each statement that changes counts adds one row (no row is updated, so workers
    recording at once never wait for each other on a counter) and the worker folds a campaign's
    rows into one now and then (`CountStore.fold`). SQLite, one writer at a time, keeps one row per
    campaign and updates it per delivery."""

    __tablename__ = "campaign_counts"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), index=True
    )
    total: Mapped[int] = mapped_column(BigInteger)  # deliveries, in any status
    sent: Mapped[int] = mapped_column(
        BigInteger
    )  # status sent (accepted by the relay, no bounce since)
    bounced: Mapped[int] = mapped_column(BigInteger)
    failed: Mapped[int] = mapped_column(BigInteger)
    unknown: Mapped[int] = mapped_column(BigInteger)
    # deliveries a person opened (or clicked) / clicked, and that brought a complaint / an
    # unsubscribe
    opened: Mapped[int] = mapped_column(BigInteger)
    clicked: Mapped[int] = mapped_column(BigInteger)
    complained: Mapped[int] = mapped_column(BigInteger)
    unsubscribed: Mapped[int] = mapped_column(BigInteger)
    # deliveries a machine opened and no person did (migration 0013)
    machine_opened: Mapped[int] = mapped_column(BigInteger, server_default="0")


class CampaignTestSend(Base):
    """A test message of a campaign (`POST .../test`): kept to limit them per campaign and hour."""

    __tablename__ = "campaign_test_sends"
    __table_args__ = (Index("ix_campaign_test_sends_campaign_at", "campaign_id", "at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(320))
    at: Mapped[datetime]


class DeliveryLease(Base):
    """A worker's claim on one batch of a campaign's due deliveries: one row per batch instead of
    a write to every delivery in it. The batch is every due delivery whose key in the queue's
    order, (next_attempt_at, id), lies from `first` to `last`; while the lease lives, no other
    claim takes a row in that range. Its owner renews it by heartbeat while it sends the batch, and
    deletes it when the batch is done. A lease that ran out is deleted by the next claim of its
    campaign before that claim reads the queue, so its owner, if still alive, finds it gone and
    sends no more of it (see delivery/repository.py)."""

    __tablename__ = "delivery_leases"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), index=True
    )
    owner: Mapped[str] = mapped_column(String(80))
    expires_at: Mapped[datetime]
    first_at: Mapped[datetime]
    first_id: Mapped[int] = mapped_column(BigInteger)
    last_at: Mapped[datetime]
    last_id: Mapped[int] = mapped_column(BigInteger)
    # Its claim found no other lease of the campaign alive: it read every due row from the
    # campaign's start to `last` (its end may move the start there: `end_leases`).
    sole: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_delivery_type", "delivery_id", "type"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(20))  # open, click, bounce, complaint, unsubscribe
    at: Mapped[datetime]
    url: Mapped[str | None] = mapped_column(Text)
    user_agent: Mapped[str | None] = mapped_column(Text)
    machine: Mapped[bool] = mapped_column(Boolean, default=False)
