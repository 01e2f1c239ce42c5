"""A relay that is down pauses its queue: a few connection failures open its circuit, the rest of
the batch waits without an attempt counted, the campaign says since when the relay is
unreachable, and once a probe gets through everyone receives the message once."""

from __future__ import annotations

from sqlalchemy import func, select

from mailcast.db.models import Delivery
from mailcast.delivery.transport import Breaker, RelayConfig, SmtpRelay
from mailcast.worker.runner import Worker

N = 60
POOL = 4


async def test_a_relay_down_pauses_the_queue_and_the_campaign_says_so(
    tenant, sessions, settings, clock, relay
):
    audience = await tenant.audience(contacts=N)
    campaign = await tenant.campaign(audience, draft=None)
    settings.smtp_url = relay.url  # the API names the campaign's relay from the same settings
    await relay.kill()  # nothing listens on its port any more
    transport = SmtpRelay(
        RelayConfig.from_url(relay.url),
        pool_size=POOL,
        breaker=Breaker(3, 30.0, monotonic=lambda: clock().timestamp(), wall=clock),
    )
    worker = Worker(sessions, settings, transport, clock, worker_id="test-worker")
    down_at = clock()
    try:
        assert await worker.sender.send_batch() == N
        async with sessions() as session:
            tried, waiting = (
                await session.execute(
                    select(
                        func.count().filter(Delivery.attempts > 0),
                        func.count().filter(Delivery.attempts == 0),
                    ).where(Delivery.campaign_id == campaign["id"], Delivery.status == "deferred")
                )
            ).one()
        # Only the connections that opened the circuit were attempts; the rest were not tried.
        assert tried == 3 and tried + waiting == N
        shown = (await tenant.get(f"/v1/campaigns/{campaign['id']}")).json()
        assert shown["status"] == "sending" and shown["stats"]["sent_count"] == 0
        assert shown["relay_unreachable_since"] == down_at.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        assert (
            "refused" in shown["relay_error"].lower() or "connect" in shown["relay_error"].lower()
        )
        listed = (await tenant.get("/v1/campaigns")).json()["data"]
        assert listed[0]["relay_unreachable_since"] == shown["relay_unreachable_since"]

        # While the circuit is open the worker claims nothing.
        clock.advance(seconds=0.5)
        assert await worker.sender.send_batch() == 0

        await relay.start()
        clock.advance(seconds=120)  # past the probe's backoff and the first attempts' retry
        for _ in range(5):
            await worker.run_until_idle()
            clock.advance(seconds=2)  # rows paused while the probe was out wait a second or two
        counts = relay.handler.counts()
        assert len(counts) == N and set(counts.values()) == {1}
        shown = (await tenant.get(f"/v1/campaigns/{campaign['id']}")).json()
        assert shown["status"] == "sent" and shown["relay_unreachable_since"] is None
        assert shown["relay_error"] is None
    finally:
        await transport.close()
