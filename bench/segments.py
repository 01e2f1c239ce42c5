"""Scenario 3: segments at scale on PostgreSQL. 1,000,000 contacts, 10 campaigns sent to all of them
with 4,000,000 open events between them; then, timed: resend to non-openers of a campaign (the draft
and its estimate: the recipients the draft would have if it started now), the recipient snapshot of
a new campaign to the whole audience (taken when it starts sending: the recipients counted and the
first chunk queued), the queuing of the rest, chunk by chunk (what the workers do as it sends), and
claiming batches of 1,000 due deliveries (what every worker does all day). The bulk data is written
with SQL; the timed parts are mailcast's own functions.

    python bench/segments.py [--contacts 1000000] [--campaigns 10] [--open-rate 0.4]
                             [--chunk N] [--explain MS] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import bench_tenant, database, emit, machine  # noqa: E402


async def run(
    url: str, contacts: int, campaigns_n: int, open_rate: float, chunk: int | None
) -> dict:
    from sqlalchemy import text

    from mailcast.accounts import service as accounts
    from mailcast.campaigns import repository as campaigns_repo
    from mailcast.campaigns import resend
    from mailcast.campaigns import service as campaigns
    from mailcast.campaigns.schemas import CampaignCreate
    from mailcast.db.engine import WORKER_PING_AFTER_IDLE, create_engine, session_factory
    from mailcast.delivery import repository as delivery_repo

    tenant = await bench_tenant(url)
    settings, engine, sessions, now = tenant.settings, tenant.engine, tenant.sessions, tenant.now
    if chunk:
        settings.queue_fill_chunk = chunk
    account_id, audience_id = tenant.account_id, tenant.audience_id
    t0 = time.perf_counter()
    async with sessions() as session:
        params = {"account": account_id, "audience": audience_id, "now": now, "n": contacts}
        await session.execute(
            text(
                "INSERT INTO contacts (id, account_id, email, first_name, unsubscribed, "
                "created_at, updated_at) "
                "SELECT 'con_' || lpad(i::text, 26, '0'), :account, 'reader' || i || "
                "'@example.org', 'Reader' || i, "
                "false, :now, :now FROM generate_series(1, :n) AS i"
            ),
            params,
        )
        await session.execute(
            text(
                "INSERT INTO audience_members (audience_id, contact_id, created_at) "
                "SELECT :audience, 'con_' || lpad(i::text, 26, '0'), :now FROM generate_series(1, "
                ":n) AS i"
            ),
            params,
        )
        await session.commit()
    async with (
        sessions() as session
    ):  # what autovacuum would do after a big import, before it is used
        await session.execute(text("ANALYZE"))
        await session.commit()

    async def new_campaign(name: str):
        async with sessions() as session:
            body = CampaignCreate.model_validate(
                {
                    "name": name,
                    "subject": "News",
                    "from": "News <news@news.example.com>",
                    "audience_id": audience_id,
                    "html": "<p>Hello {{ first_name }}</p>",
                    "unsubscribe_url": "https://news.example.com/u",
                    "draft": True,
                }
            )
            campaign = await campaigns.create_campaign(session, settings, account_id, body, now)
            await session.commit()
            return campaign.id

    async def snapshot(campaign_id: str) -> float:
        """Start sending: the recipient snapshot (the recipients counted, the first chunk
        queued)."""
        async with sessions() as session:
            campaign = await campaigns_repo.get(session, account_id, campaign_id)
            start = time.perf_counter()
            locked = await accounts.lock_account(session, account_id)
            await campaigns.start_sending(session, settings, locked, campaign, now)
            await session.commit()
            return time.perf_counter() - start

    async def fill(campaign_id: str) -> list[tuple[int, float]]:
        """Queue the rest of the snapshot as the workers do, a chunk per transaction: (rows,
        seconds) each."""
        chunks = []
        while True:
            async with sessions() as session:
                start = time.perf_counter()
                queued = await campaigns.fill_queue(session, settings, campaign_id, now)
                await session.commit()
            if queued is None:
                return chunks
            chunks.append((queued, time.perf_counter() - start))

    snapshots, sent = [], []
    for n in range(campaigns_n):
        campaign_id = await new_campaign(f"Past {n}")
        snapshots.append(await snapshot(campaign_id))
        await fill(campaign_id)
        async with sessions() as session:  # as if the workers had sent it, and 40% opened it
            await session.execute(
                text(
                    "UPDATE deliveries SET status = 'sent', sent_at = :sent WHERE campaign_id = :c"
                ),
                {"c": campaign_id, "sent": now - timedelta(days=campaigns_n - n)},
            )
            await session.execute(
                text(  # what the pixel endpoint records: the event and the delivery's first open
                    "WITH opened AS (UPDATE deliveries SET opened_at = :at, open_count = 1 "
                    "WHERE campaign_id = :c AND random() < :rate RETURNING id) "
                    "INSERT INTO events (delivery_id, type, at, machine) SELECT id, 'open', :at, "
                    "false FROM opened"
                ),
                {
                    "c": campaign_id,
                    "at": now - timedelta(days=campaigns_n - n, hours=-2),
                    "rate": open_rate,
                },
            )
            await session.execute(
                text("UPDATE campaigns SET status = 'sent', sent_at = :at WHERE id = :c"),
                {"c": campaign_id, "at": now},
            )
            await session.commit()
        sent.append(campaign_id)
    async with sessions() as session:
        events = (await session.execute(text("SELECT count(*) FROM events"))).scalar_one()
    async with (
        engine.connect() as conn
    ):  # what autovacuum does after that much writing (VACUUM runs outside a transaction)
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("VACUUM ANALYZE"))
    setup = time.perf_counter() - t0

    non_opener = []
    for _ in range(5):
        async with (
            sessions() as session
        ):  # the resend call, rolled back: its estimate is the draft's recipients
            start = time.perf_counter()
            _draft, count = await resend.resend_to_non_openers(
                session,
                settings,
                account_id,
                sent[-1],
                now + timedelta(hours=settings.resend_delay_hours),
            )
            non_opener.append(time.perf_counter() - start)
            await session.rollback()

    measured = await new_campaign("Measured")
    snapshot_seconds = await snapshot(measured)
    fills = await fill(measured)
    claims = []
    # The worker's pool: it pings a connection only after it sat idle (mailcast.db.engine).
    worker_engine = create_engine(url, ping_after_idle=WORKER_PING_AFTER_IDLE)
    worker_sessions = session_factory(worker_engine)
    async with (
        worker_sessions() as session
    ):  # a worker's connection is opened once, at its start: not timed
        await session.execute(text("SELECT 1"))
    for _ in range(min(30, contacts // 1000)):
        async with worker_sessions() as session:
            start = time.perf_counter()
            batch = await delivery_repo.claim(
                session, "bench", datetime.now(UTC), 1000, timedelta(minutes=5)
            )
            await session.commit()
            claims.append(time.perf_counter() - start)
            if len(batch) != 1000:
                raise SystemExit(f"claimed {len(batch)}, not 1,000")
            # what the worker does next (not timed): the batch goes out and leaves the queue
            await session.execute(
                text("UPDATE deliveries SET status = 'sent' WHERE id = ANY(:ids)"),
                {"ids": [d.id for d in batch]},
            )
            await delivery_repo.end_leases(
                session, "bench", {d.lease_id for d in batch}, attempted=True
            )
            await session.commit()
    await worker_engine.dispose()
    await engine.dispose()
    return {
        "setup": setup,
        "events": events,
        "non_opener_count": count,
        "non_opener_s": statistics.median(non_opener),
        "snapshot_s": snapshot_seconds,
        "snapshots_s": snapshots,
        "fill_s": sum(s for _, s in fills),
        "fill_chunks": len(fills),
        "fill_ms_per_1000": statistics.median(
            [s * 1000 / (n / 1000) for n, s in fills if n] or [0.0]
        ),
        "claims": claims,
        "claim_ms_median": statistics.median(claims) * 1000,
        "claim_ms_max": max(claims) * 1000,
        "claim_ms_p95": sorted(claims)[max(0, int(len(claims) * 0.95) - 1)] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--campaigns", type=int, default=10)
    parser.add_argument("--open-rate", type=float, default=0.4)
    parser.add_argument(
        "--chunk", type=int, help="audience members queued at a time (MAILCAST_QUEUE_FILL_CHUNK)"
    )
    parser.add_argument(
        "--explain",
        type=int,
        metavar="MS",
        help="log the plan of every statement slower than MS milliseconds to PostgreSQL's log",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a small run that only proves the harness works"
    )
    args = parser.parse_args()
    if args.quick:
        args.contacts, args.campaigns, args.chunk = 5_000, 2, args.chunk or 1_000
    with (
        tempfile.TemporaryDirectory() as tmp,
        database("postgresql", Path(tmp), args.explain) as url,
    ):
        r = asyncio.run(run(url, args.contacts, args.campaigns, args.open_rate, args.chunk))
    print(f"machine: {machine()}")
    print(
        f"data: {args.contacts:,} contacts, {args.campaigns} sent campaigns, {r['events']:,} open "
        "events "
        f"(built in {r['setup']:.0f} s)"
    )
    print(
        f"resend to non-openers of the last campaign (the estimate: the draft's recipients now): "
        f"{r['non_opener_count']:,} in {r['non_opener_s']:.3f} s (median of 5)"
    )
    print(
        f"recipient snapshot of a new campaign ({args.contacts:,} recipients): "
        f"{r['snapshot_s']:.2f} s "
        f"(the campaigns before it: {min(r['snapshots_s']):.2f}-{max(r['snapshots_s']):.2f} s)"
    )
    print(
        f"the rest queued by the workers' fills: {r['fill_chunks']} chunks in {r['fill_s']:.2f} s "
        f"(median {r['fill_ms_per_1000']:.1f} ms per 1,000 rows)"
    )
    print(
        f"claim of a 1,000 batch: median {r['claim_ms_median']:.1f} ms, p95 "
        f"{r['claim_ms_p95']:.1f} ms, "
        f"max {r['claim_ms_max']:.1f} ms, the first {r['claims'][0] * 1000:.1f} ms "
        f"({len(r['claims'])} batches)"
    )
    emit(
        {
            "scenario": "segments",
            "contacts": args.contacts,
            "campaigns": args.campaigns,
            "open_events": r["events"],
            "non_opener_seconds": round(r["non_opener_s"], 4),
            "snapshot_seconds": round(r["snapshot_s"], 3),
            "fill_seconds": round(r["fill_s"], 3),
            "fill_ms_per_1000": round(r["fill_ms_per_1000"], 2),
            "claim_ms_median": round(r["claim_ms_median"], 2),
            "claim_ms_p95": round(r["claim_ms_p95"], 2),
            "claim_ms_max": round(r["claim_ms_max"], 2),
        }
    )


if __name__ == "__main__":
    main()
