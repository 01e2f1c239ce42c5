"""Builds the transport the settings describe."""

from __future__ import annotations

import logging

from mailcast.config import Settings
from mailcast.delivery.transport import (
    Breaker,
    FileOutbox,
    RelayConfig,
    Router,
    SmtpRelay,
    Transport,
)

log = logging.getLogger("mailcast.delivery")


def _relay(url: str, settings: Settings) -> SmtpRelay:
    return SmtpRelay(
        RelayConfig.from_url(url),
        pool_size=settings.smtp_pool_size,
        rate_per_second=settings.smtp_rate_per_second or None,
        timeout=settings.smtp_timeout_seconds,
        breaker=Breaker(settings.smtp_breaker_failures, settings.smtp_breaker_max_seconds),
    )


def relay_for(settings: Settings, sender_domain: str) -> str | None:
    """The name of the relay a sender domain's mail goes to (None: the file outbox)."""
    url = parse_routes(settings.smtp_routes).get(sender_domain.lower()) or settings.smtp_url
    return RelayConfig.from_url(url).name if url else None


def parse_routes(spec: str) -> dict[str, str]:
    routes = {}
    for entry in filter(None, (e.strip() for e in spec.split(","))):
        domain, sep, url = entry.partition("=")
        if not sep or not domain.strip() or not url.strip():
            raise ValueError(f"MAILCAST_SMTP_ROUTES entry {entry!r} is not domain=smtp://...")
        routes[domain.strip().lower()] = url.strip()
    return routes


def build_transport(settings: Settings) -> tuple[Transport, str]:
    """(transport, one line saying where mail goes)."""
    routes = parse_routes(settings.smtp_routes)
    if settings.smtp_url:
        default: Transport = _relay(settings.smtp_url, settings)
        where = f"mail goes to the SMTP relay {RelayConfig.from_url(settings.smtp_url).host}"
    else:
        default = FileOutbox(settings.resolved_outbox_dir())
        where = (
            "NO SMTP RELAY CONFIGURED: mail is not leaving this machine; every message is written "
            f"to {settings.resolved_outbox_dir()} (set MAILCAST_SMTP_URL to send)"
        )
    if routes:
        relays: dict[str, Transport] = {
            domain: _relay(url, settings) for domain, url in routes.items()
        }
        where += f"; senders on {', '.join(sorted(relays))} use their own relays"
        return Router(default, relays), where
    return default, where
