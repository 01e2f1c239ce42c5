"""One settings object for the whole service; every field reads MAILCAST_<NAME>."""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PLANS = ("free", "pro", "business", "enterprise")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MAILCAST_", extra="ignore")

    data_dir: Path = Path("./var")
    # Empty means the embedded default: SQLite at <data_dir>/mailcast.db.
    database_url: str = ""
    base_url: str = "http://127.0.0.1:8025"
    host: str = "127.0.0.1"
    port: int = 8025
    # The key tracking tokens are derived from. Empty means: generated once and kept in
    # <data_dir>/secret_key.
    secret_key: SecretStr = SecretStr("")

    # Campaigns that may exist at once per plan (spec); 0 means unlimited.
    campaign_limit_free: int = 3
    campaign_limit_pro: int = 25
    campaign_limit_business: int = 0
    campaign_limit_enterprise: int = 0
    # marketingEmailsPerMonth per plan. The free plan allows none (spec).
    monthly_quota_pro: int = Field(default=100_000, ge=0)
    monthly_quota_business: int = Field(default=1_000_000, ge=0)
    monthly_quota_enterprise: int = Field(default=10_000_000, ge=0)

    # Request bodies larger than this get 413; the contacts import allows import_max_body_bytes.
    max_body_bytes: int = 1_048_576
    import_max_body_bytes: int = 8 * 1_048_576
    import_max_rows: int = 10_000
    # CSV import jobs (POST /v1/contacts/imports): the largest file taken (413 past it), where the
    # files wait for a worker (a directory every worker can read when they run on several
    # machines; default <data_dir>/imports), records per transaction, and the job's lease.
    import_max_file_bytes: int = Field(default=1024**3, ge=1)
    import_dir: Path | None = None
    import_batch_rows: int = Field(default=5_000, ge=1, le=100_000)
    import_lease_seconds: float = Field(default=30.0, gt=0)
    # A file with more than this left to read is read by a process of its own, ahead of the writes.
    import_reader_process_bytes: int = Field(default=4 * 1_048_576, ge=0)

    # DNS used to verify sender domains: "host[:port]" entries, comma separated. Empty: system
    # resolver.
    dns_nameservers: str = ""
    dns_timeout_seconds: float = 5.0
    # What the SPF record we ask customers to publish includes (e.g. your relay's SPF domain).
    spf_include: str = ""
    dkim_selector: str = "mailcast"

    # Sending. No SMTP URL: messages go to the file outbox (<data_dir>/outbox) and never leave the
    # machine.
    smtp_url: str = ""
    # Relays by sender domain: "example.com=smtp://relay-a:25, other.org=smtps://u:p@relay-b:465".
    smtp_routes: str = ""
    smtp_pool_size: int = Field(default=4, ge=1, le=200)
    smtp_rate_per_second: float = Field(
        default=0.0, ge=0.0, description="Per relay and process; 0 = unlimited"
    )
    smtp_timeout_seconds: float = 60.0
    # A relay whose connections fail this many times in a row is paused (its circuit opens) and
    # probed with one message after 1 s, 2 s, 4 s ... up to the maximum, until it answers.
    smtp_breaker_failures: int = Field(default=5, ge=1, le=1000)
    smtp_breaker_max_seconds: float = Field(default=60.0, gt=0, le=3600)
    outbox_dir: Path | None = None
    # VERP bounce addresses are bounces+<token>@<bounce_domain> (default: the sender's domain).
    bounce_domain: str = ""
    bounce_host: str = "127.0.0.1"
    bounce_port: int = 2525
    # Rate limits, in the `limits` notation ("50/second", "1000/hour"; several joined by ";").
    # Storage: memory:// counts per process; redis://host:6379 shares the counts between processes.
    rate_limits_enabled: bool = True
    rate_limit_storage: str = "memory://"
    rate_limit_key: str = "50/second"  # each API key
    # Each account, by plan (all its keys and dashboard users).
    rate_limit_account_free: str = "5/second"
    rate_limit_account_pro: str = "50/second"
    rate_limit_account_business: str = "100/second"
    rate_limit_account_enterprise: str = "500/second"
    # Failed API key attempts from one client address; past it the address gets 429 without a key
    # lookup.
    rate_limit_failed_keys: str = "20/minute"
    # Dashboard sign-in attempts from one client address.
    rate_limit_sign_in: str = "30/minute"
    # Unsubscribe posts from one client address: high, since mailbox providers post one-click
    # unsubscribes for many people from few addresses, and a refused one is lost.
    rate_limit_unsubscribe: str = "600/minute"
    # The worker loops.
    embedded_worker: bool = True
    worker_batch_size: int = Field(default=200, ge=1, le=10_000)
    # Messages rendered and handed to the relay pool together (each is marked `sending` only once
    # a relay connection is in hand for it).
    worker_concurrency: int = Field(default=50, ge=1, le=10_000)
    # A batch's lease, renewed every third of it while the batch is sent: a dead worker's batch
    # is taken over within this time.
    worker_lease_seconds: int = Field(default=30, ge=10)
    # The recipient snapshot is queued in chunks of this many audience members: the first when
    # sending starts, the next by a worker whenever fewer than two chunks' worth wait unsent.
    queue_fill_chunk: int = Field(default=10_000, ge=1, le=1_000_000)
    worker_poll_seconds: float = 0.5
    retry_base_seconds: int = 60
    retry_max_seconds: int = 3600
    retry_lifetime_hours: float = 72.0
    ab_evaluate_interval_seconds: float = 300.0
    # Resend to non-openers becomes available this long after a campaign finished sending.
    resend_delay_hours: float = Field(default=6.0, ge=0.0)
    # Opens within this many seconds of the send are flagged as machine opens (scanners, proxies).
    machine_open_window_seconds: int = 2
    # Opens and clicks: 0 = each request is answered once its event is committed (group commit);
    # > 0 = answered at once, written every this many seconds and on shutdown (a crash loses at
    # most that interval's events; a clean shutdown loses none).
    tracking_flush_seconds: float = Field(default=0.0, ge=0.0, le=60.0)
    # With tracking_flush_seconds > 0: hits a process buffers before a request waits for a write
    # (~180 bytes each; a crash loses up to this many while hits arrive faster than they are
    # written).
    tracking_max_buffered: int = Field(default=200_000, ge=1_000, le=10_000_000)

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'mailcast.db').as_posix()}"

    def resolved_outbox_dir(self) -> Path:
        return self.outbox_dir or self.data_dir / "outbox"

    def public_url(self, path: str) -> str:
        return self.base_url.rstrip("/") + path

    def campaign_limit(self, plan: str) -> int | None:
        limit = getattr(self, f"campaign_limit_{plan}")
        return limit or None

    def monthly_quota(self, plan: str) -> int:
        if plan == "free":
            return 0
        return int(getattr(self, f"monthly_quota_{plan}"))

    def secret(self) -> bytes:
        """The secret key, creating and persisting one on first use when none is configured."""
        value = self.secret_key.get_secret_value()
        if value:
            return value.encode()
        path = self.data_dir / "secret_key"
        if not path.exists():
            from mailcast.db.engine import private_file

            private_file(path)  # 0600 before the key is in it
            if not path.read_text().strip():
                path.write_text(secrets.token_urlsafe(32))
        return path.read_text().strip().encode()


@lru_cache
def get_settings() -> Settings:
    return Settings()
