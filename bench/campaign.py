"""Scenario 1: a campaign end to end, mailcast workers -> Postfix smtp-sink, against Postfix's own
C client (smtp-source) sending same-sized messages over the same number of connections, measured
in the same run.

    python bench/campaign.py [--recipients 100000] [--workers 1] [--db sqlite|postgresql]
                             [--dkim none|rsa|ed25519] [--pool 8] [--verify] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    SECRET,
    bench_tenant,
    cpu_seconds,
    database,
    emit,
    free_port,
    import_readers,
    machine,
    require,
    rss_mb,  # noqa: E402
    smtp_sink,
    smtp_source_rate,
)

LINKS = 40


def html_body() -> str:
    """HTML with 40 tracked links and merge tags, like a real newsletter: with its text part, the
    message a recipient gets is about 24 KB (the size `message_size` measures and the reference
    sends)."""
    paragraph = (
        '<p style="font-family:Arial,sans-serif;font-size:15px;line-height:22px;color:#333">'
        "Hello {{ first_name | default: 'there' }}, here is what happened this month in "
        "{{ metadata.city }}. Lorem ipsum dolor sit amet, consectetur adipiscing elit.</p>"
    )
    items = [
        f'<tr><td>{paragraph}<a href="https://shop.example.com/item/{i}?utm=mail">Item '
        f"{i}</a></td></tr>"
        for i in range(LINKS)
    ]
    return (
        '<html><head><title>News</title></head><body><table width="600" align="center">'
        + "".join(items)
        + '<tr><td><a href="{{ unsubscribe_url }}">Unsubscribe</a></td></tr>'
        "</table></body></html>"
    )


async def prepare(url: str, recipients: int, dkim: str) -> tuple[str, bytes, str]:
    """The campaign's id, the DKIM TXT record its domain publishes, an API key."""
    from mailcast.campaigns import service as campaigns
    from mailcast.campaigns.schemas import CampaignCreate
    from mailcast.contacts.schemas import ImportRow

    tenant = await bench_tenant(
        url, dkim_algorithm="rsa" if dkim == "none" else dkim, dkim_verified=dkim != "none"
    )
    await import_readers(
        tenant,
        recipients,
        lambda i: ImportRow(
            email=f"reader{i}@example.org",
            first_name=f"Reader{i}",
            metadata={"city": f"City{i % 50}"},
        ),
    )
    async with tenant.sessions() as session:
        body = CampaignCreate.model_validate(
            {
                "name": "Bench",
                "subject": "News for {{ first_name }} in {{ metadata.city }}",
                "from": "News <news@news.example.com>",
                "audience_id": tenant.audience_id,
                "html": html_body(),
                "unsubscribe_url": "https://news.example.com/unsubscribe",
                "preview_text": "This month",
                "draft": True,
            }
        )
        campaign = await campaigns.create_campaign(
            session, tenant.settings, tenant.account_id, body, tenant.now
        )
        await session.commit()
    await tenant.engine.dispose()
    return campaign.id, tenant.dkim_record, tenant.api_key


async def message_size(url: str, campaign_id: str, env: dict) -> int:
    """The size of one of the campaign's messages as the workers build it (the reference sends
    messages of this size)."""
    from sqlalchemy import select

    from mailcast.campaigns import service as campaigns
    from mailcast.clock import system_clock
    from mailcast.config import Settings
    from mailcast.db.engine import create_engine, session_factory
    from mailcast.db.models import Contact, Delivery
    from mailcast.delivery.repository import Claimed, Recipient
    from mailcast.delivery.service import Sender
    from mailcast.delivery.store import delivery_store
    from mailcast.delivery.tokens import TokenCodec

    settings = Settings(
        database_url=url, secret_key=env["MAILCAST_SECRET_KEY"], data_dir=env["MAILCAST_DATA_DIR"]
    )
    engine = create_engine(url)
    sessions = session_factory(engine)
    try:
        async with sessions() as session:
            d, c = (
                await session.execute(
                    select(Delivery, Contact)
                    .join(Contact, Contact.id == Delivery.contact_id)
                    .where(Delivery.campaign_id == campaign_id)
                    .limit(1)
                )
            ).one()
        claimed = Claimed(
            id=d.id,
            campaign_id=campaign_id,
            contact_id=c.id,
            email=d.email,
            variant=d.variant,
            attempts=d.attempts,
            lease_id=0,
        )
        sender = Sender(
            sessions,
            settings,
            None,
            system_clock,
            TokenCodec(settings.secret()),
            campaigns,
            delivery_store(engine),
        )
        plans = await sender._plans_for([claimed])
        data, _ = sender.build(
            claimed,
            Recipient(c.first_name, c.last_name, c.attributes, True),
            plans[(campaign_id, d.variant)],
        )
        return len(data)
    finally:
        await engine.dispose()


class ApiProbe:
    """Scenario 4: one client calling the campaign list and get endpoints of a separate
    `mailcast serve` process (over HTTP) back to back while the campaign sends; latencies in ms."""

    def __init__(self, base: str, key: str, campaign_id: str) -> None:
        import threading

        self.base, self.key, self.campaign_id = base, key, campaign_id
        self.latencies: list[float] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import httpx

        with httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {self.key}"}, timeout=30
        ) as client:
            paths = ["/v1/campaigns?limit=20", f"/v1/campaigns/{self.campaign_id}"]
            i = 0
            while not self._stop.is_set():
                start = time.perf_counter()
                try:
                    ok = client.get(paths[i % 2]).status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    self.latencies.append((time.perf_counter() - start) * 1000)
                else:
                    self.errors += 1
                i += 1

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join(timeout=60)
        ordered = sorted(self.latencies) or [0.0]
        return {
            "requests": len(self.latencies),
            "errors": self.errors,
            "p50_ms": ordered[len(ordered) // 2],
            "p95_ms": ordered[int(len(ordered) * 0.95)],
        }


def verify_dump(folder: Path, dkim_record: bytes | None) -> int:
    """Every message smtp-sink wrote: parsed by Python's email package as the multipart message
    it should be and, with DKIM on, verified by dkimpy. Returns how many passed; raises on the first
    that does not."""
    import email
    from email.policy import default

    import dkim

    passed = 0
    for path in sorted(folder.iterdir()):
        lines = path.read_bytes().split(b"\n")
        i = 0
        while lines[i].startswith(b"X-"):  # smtp-sink's own records, then its Received header
            i += 1
        if lines[i].startswith(b"Received:"):
            i += 1
            while lines[i][:1] in (b" ", b"\t"):
                i += 1
        data = b"\r\n".join(lines[i:])
        message = email.message_from_bytes(data, policy=default)
        kinds = [part.get_content_type() for part in message.iter_parts()]
        if (
            kinds != ["text/plain", "text/html"]
            or "/t/o/" not in message.get_body(("html",)).get_content()
        ):
            raise SystemExit(f"{path.name}: not the message it should be ({kinds})")
        if message["List-Unsubscribe-Post"] != "List-Unsubscribe=One-Click":
            raise SystemExit(f"{path.name}: no one-click unsubscribe")
        if dkim_record is not None and not dkim.verify(
            data, dnsfunc=lambda name, timeout=5: dkim_record
        ):
            raise SystemExit(f"{path.name}: the DKIM signature does not verify")
        passed += 1
    return passed


async def start_and_wait(
    url: str, campaign_id: str, spawn, timeout: float
) -> tuple[float, float, int, float, float, float]:
    """Start sending, run the workers, wait for `sent`: (wall seconds, seconds from the first to the
    last accepted message, messages accepted, peak worker RSS in MB, seconds the start took: the
    request's part, the recipients counted and the first chunk queued)."""
    from sqlalchemy import func, select

    from mailcast.accounts import service as accounts
    from mailcast.campaigns import service as campaigns
    from mailcast.config import Settings
    from mailcast.db.engine import create_engine, session_factory
    from mailcast.db.models import Campaign, Delivery

    settings = Settings(database_url=url, monthly_quota_enterprise=10**9)
    engine = create_engine(url)
    sessions = session_factory(engine)
    begun = time.perf_counter()
    async with sessions() as session:
        campaign = await session.get(Campaign, campaign_id)
        account = await accounts.lock_account(session, campaign.account_id)
        await campaigns.start_sending(session, settings, account, campaign, datetime.now(UTC))
        await session.commit()
    started = time.perf_counter()
    start_seconds = started - begun
    procs = spawn()
    peak = {p.pid: 0.0 for p in procs}
    cpu = {p.pid: 0.0 for p in procs}  # the last reading before they are stopped
    try:
        while time.perf_counter() - started < timeout:
            for p in procs:
                peak[p.pid] = max(peak[p.pid], rss_mb(p.pid))
                cpu[p.pid] = cpu_seconds(p.pid) or cpu[p.pid]
            async with sessions() as session:
                status = (
                    await session.execute(select(Campaign.status).where(Campaign.id == campaign_id))
                ).scalar_one()
            if status == "sent":
                break
            await asyncio.sleep(0.25)
        else:
            raise SystemExit("timed out")
        wall = time.perf_counter() - started
        async with sessions() as session:
            first, last, sent = (
                await session.execute(
                    select(
                        func.min(Delivery.sent_at), func.max(Delivery.sent_at), func.count()
                    ).where(Delivery.campaign_id == campaign_id, Delivery.status == "sent")
                )
            ).one()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
        await engine.dispose()
    sending = (last - first).total_seconds() if first and last else wall
    return wall, max(sending, 1e-6), sent, max(peak.values()), start_seconds, sum(cpu.values())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--dkim", choices=["none", "rsa", "ed25519"], default="none")
    parser.add_argument(
        "--verify",
        action="store_true",
        help="smtp-sink keeps every message; each must parse and pass DKIM (slower: for checking)",
    )
    parser.add_argument("--pool", type=int, default=8, help="SMTP connections per worker")
    parser.add_argument(
        "--api",
        action="store_true",
        help="scenario 4: time the campaign list/get API of a separate server while sending",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a small run that only proves the harness works"
    )
    parser.add_argument(
        "--profile", metavar="DIR", help="run the workers under cProfile, one .prof per worker"
    )
    args = parser.parse_args()
    if args.quick:
        args.recipients = 300
    if args.db == "sqlite" and args.workers != 1:
        sys.exit("SQLite runs one worker; use --db postgresql for more")
    require("smtp-sink", "smtp-source")

    with tempfile.TemporaryDirectory() as tmp, database(args.db, Path(tmp)) as url:
        port = free_port()
        t0 = time.perf_counter()
        campaign_id, dkim_record, api_key = asyncio.run(prepare(url, args.recipients, args.dkim))
        setup = time.perf_counter() - t0
        env = {
            **os.environ,
            "MAILCAST_DATABASE_URL": url,
            "MAILCAST_DATA_DIR": tmp,
            "MAILCAST_SMTP_URL": f"smtp://127.0.0.1:{port}",
            "MAILCAST_SMTP_POOL_SIZE": str(args.pool),
            "MAILCAST_WORKER_BATCH_SIZE": "1000",
            "MAILCAST_WORKER_CONCURRENCY": "200",
            "MAILCAST_WORKER_POLL_SECONDS": "0.05",
            "MAILCAST_SECRET_KEY": SECRET,
        }

        api_server = probe = None
        if args.api:
            from tracking import start_server

            api_port = free_port()
            api_server = start_server(
                [
                    sys.executable,
                    "-m",
                    "mailcast.cli",
                    "serve",
                    "--port",
                    str(api_port),
                    "--no-access-log",
                ],
                # The probe measures the API's latency while sending, faster than one key may call.
                f"http://127.0.0.1:{api_port}/healthz",
                {
                    **env,
                    "MAILCAST_EMBEDDED_WORKER": "false",
                    "MAILCAST_RATE_LIMITS_ENABLED": "false",
                },
            )
            probe = ApiProbe(f"http://127.0.0.1:{api_port}", api_key, campaign_id)

        def spawn():
            # --profile DIR: each worker runs under cProfile and leaves DIR/worker-N.prof.
            return [
                subprocess.Popen(
                    [
                        sys.executable,
                        *(
                            ["-m", "cProfile", "-o", f"{args.profile}/worker-{n}.prof"]
                            if args.profile
                            else []
                        ),
                        "-m",
                        "mailcast.cli",
                        "worker",
                    ],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for n in range(args.workers)
            ]

        dump = Path(tempfile.mkdtemp(prefix="mailcast-received-")) if args.verify else None
        with smtp_sink(port, dump):
            if probe:
                probe.start()
            try:
                wall, sending, sent, peak_rss, start_seconds, cpu = asyncio.run(
                    start_and_wait(url, campaign_id, spawn, timeout=3600)
                )
            finally:
                api = probe.stop() if probe else None
                if api_server:
                    api_server.terminate()
                    api_server.wait(timeout=30)
            size = asyncio.run(message_size(url, campaign_id, env))
            reference = smtp_source_rate(
                port, min(args.recipients, 20_000), args.pool * args.workers, size
            )
            if dump:
                for path in dump.iterdir():  # smtp-source's messages are not ours to check
                    if b"From: <bench@news.example.com>" in path.read_bytes()[:2000]:
                        path.unlink()
        try:
            verified = (
                verify_dump(dump, dkim_record if args.dkim != "none" else None) if dump else None
            )
        finally:
            if dump:
                shutil.rmtree(dump, ignore_errors=True)
    rate = sent / sending
    print(f"machine: {machine()}")
    print(
        f"set-up: {args.recipients} contacts and the campaign in {setup:.1f} s ({args.db}); "
        f"the start (recipients counted, first chunk queued) {start_seconds:.2f} s"
    )
    print(
        f"mailcast: {sent} messages in {sending:.1f} s of sending ({wall:.1f} s wall, with "
        "start-up): "
        f"{rate:,.0f} messages/s with {args.workers} worker(s) x {args.pool} connections, DKIM "
        f"{args.dkim}"
    )
    print(
        f"smtp-source (same size, {size:,} bytes a message, same connections): {reference:,.0f} "
        "messages/s"
    )
    print(f"ratio: {rate / reference:.3f}; peak worker RSS {peak_rss:.0f} MB")
    # What a message costs the workers themselves, whatever rate the machine allowed; start-up
    # included.
    print(f"workers' CPU: {cpu:.1f} s, {cpu * 1e6 / max(sent, 1):,.0f} us a message")
    if api is not None:
        print(
            f"API while sending: {api['requests']} list/get requests, p50 {api['p50_ms']:.1f} ms, "
            f"p95 {api['p95_ms']:.1f} ms, {api['errors']} errors"
        )
    if verified is not None:
        print(
            f"verified: {verified} of {sent} messages parse"
            + (" and pass DKIM" if args.dkim != "none" else "")
        )
    emit(
        {
            "scenario": "campaign",
            "recipients": args.recipients,
            "db": args.db,
            "workers": args.workers,
            "dkim": args.dkim,
            "messages_per_second": round(rate, 1),
            "reference_per_second": round(reference, 1),
            "ratio": round(rate / reference, 4),
            "worker_rss_mb": round(peak_rss, 1),
            "wall_seconds": round(wall, 2),
            "start_seconds": round(start_seconds, 3),
            "message_bytes": size,
            "worker_cpu_us_per_message": round(cpu * 1e6 / max(sent, 1), 1),
            **({"verified": verified} if verified is not None else {}),
            **(
                {
                    "api_p50_ms": round(api["p50_ms"], 2),
                    "api_p95_ms": round(api["p95_ms"], 2),
                    "api_requests": api["requests"],
                    "api_errors": api["errors"],
                }
                if api is not None
                else {}
            ),
        }
    )


if __name__ == "__main__":
    main()
