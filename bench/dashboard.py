"""Scenario 7: the dashboard at scale, on PostgreSQL. An account with 1,000 campaigns, one of them
sent to 1,000,000 recipients with 400,000 opens and 40,000 clicks (written with SQL); then, timed
from a signed-in client over loopback against `mailcast serve`: the campaign list, the big
campaign's page (counters, the chart of opens and clicks, clicks per link), its review step, and
the live counters' fragment. The reference in the same run: `/healthz` of the same server (what
any request costs before any page work).

    python bench/dashboard.py [--recipients 1000000] [--campaigns 1000] [--requests 40] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SECRET, bench_tenant, database, emit, free_port, machine  # noqa: E402
from tracking import start_server  # noqa: E402

PASSWORD = "bench password 0123"


async def prepare(url: str, recipients: int, campaigns: int) -> tuple[str, str]:
    """(account, the big campaign's id)."""
    from sqlalchemy import text

    from mailcast.accounts import users

    tenant = await bench_tenant(url)
    now = tenant.now - timedelta(hours=30)
    p = {
        "account": tenant.account_id,
        "audience": tenant.audience_id,
        "now": now,
        "n": recipients,
        "campaigns": campaigns,
    }
    async with tenant.sessions() as session:
        await users.create_user(
            session, tenant.account_id, "bench@example.com", users.Role.OWNER, PASSWORD, now
        )
        await session.execute(
            text(
                "INSERT INTO contacts (id, account_id, email, first_name, unsubscribed, "
                "created_at, updated_at) "
                "SELECT 'con_' || lpad(i::text, 26, '0'), :account, 'reader' || i || "
                "'@example.org', 'Reader' || i, "
                "false, :now, :now FROM generate_series(1, :n) AS i"
            ),
            p,
        )
        await session.execute(
            text(
                "INSERT INTO audience_members (audience_id, contact_id, created_at) "
                "SELECT :audience, 'con_' || lpad(i::text, 26, '0'), :now FROM generate_series(1, "
                ":n) AS i"
            ),
            p,
        )
        await session.execute(
            text(
                "INSERT INTO campaigns (id, account_id, name, subject, from_address, audience_id, "
                "html, unsubscribe_url, "
                "status, send_started_at, sent_at, created_at, updated_at, queue_filled, email_id) "
                "SELECT 'camp_' || lpad(i::text, 26, '0'), :account, 'Campaign ' || i, 'News ' || "
                "i, "
                "'News <news@news.example.com>', :audience, '<p>Hello {{ first_name }} "
                '<a href="https://shop.example.com/a">A</a> <a '
                'href="https://shop.example.com/b">B</a></p>\', '
                "'https://news.example.com/u', CASE WHEN i % 4 = 0 THEN 'draft' ELSE 'sent' END, "
                "CASE WHEN i % 4 = 0 THEN NULL ELSE CAST(:now AS timestamptz) END, "
                "CASE WHEN i % 4 = 0 THEN NULL ELSE CAST(:now AS timestamptz) END, :now, :now, "
                "true, 'email_' || i "
                "FROM generate_series(1, :campaigns) AS i"
            ),
            p,
        )
        big = f"camp_{campaigns - 1:026d}"  # a sent one (i % 4 != 0)
        await session.execute(
            text(
                "INSERT INTO deliveries (campaign_id, contact_id, email, variant, ab_group, "
                "status, attempts, created_at, "
                "updated_at, sent_at, open_count, opened_at, clicked_at) "
                "SELECT :big, 'con_' || lpad(i::text, 26, '0'), 'reader' || i || '@example.org', "
                "'a', 'a', 'sent', 1, "
                ":now, :now, :now, CASE WHEN i % 5 < 2 THEN 1 ELSE 0 END, "
                "CASE WHEN i % 5 < 2 THEN CAST(:now AS timestamptz) + (i % 1440) * interval '1 "
                "minute' END, "
                "CASE WHEN i % 25 = 0 THEN CAST(:now AS timestamptz) + (i % 1440) * interval '1 "
                "minute' END "
                "FROM generate_series(1, :n) AS i"
            ),
            {**p, "big": big},
        )
        await session.execute(
            text(
                "INSERT INTO events (delivery_id, type, at, url, machine) SELECT id, 'click', "
                "clicked_at, "
                "CASE WHEN id % 2 = 0 THEN 'https://shop.example.com/a' ELSE "
                "'https://shop.example.com/b' END, false "
                "FROM deliveries WHERE campaign_id = :big AND clicked_at IS NOT NULL"
            ),
            {"big": big},
        )
        await session.commit()
    async with tenant.engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("VACUUM ANALYZE"))
    await tenant.engine.dispose()
    return tenant.account_id, big


def timed(client: httpx.Client, path: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        r = client.get(path)
        out.append(time.perf_counter() - start)
        if r.status_code != 200:
            raise SystemExit(f"{path}: {r.status_code} {r.text[:500]}")
    return out


def p95(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.95) - 1)] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--campaigns", type=int, default=1_000)
    parser.add_argument("--requests", type=int, default=40, help="timed requests of each page")
    parser.add_argument(
        "--quick", action="store_true", help="a small run that only proves the harness works"
    )
    args = parser.parse_args()
    if args.quick:
        args.recipients, args.campaigns, args.requests = 2_000, 20, 5
    with tempfile.TemporaryDirectory() as tmp, database("postgresql", Path(tmp)) as url:
        t0 = time.perf_counter()
        account, big = asyncio.run(prepare(url, args.recipients, args.campaigns))
        setup = time.perf_counter() - t0
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "MAILCAST_DATABASE_URL": url,
            "MAILCAST_DATA_DIR": tmp,
            "MAILCAST_SECRET_KEY": SECRET,
            "MAILCAST_EMBEDDED_WORKER": "false",
            "MAILCAST_BASE_URL": base,
        }
        server = start_server(
            [sys.executable, "-m", "mailcast.cli", "serve", "--port", str(port), "--no-access-log"],
            f"{base}/healthz",
            env,
        )
        try:
            with httpx.Client(base_url=base, timeout=60) as client:
                signed = client.post(
                    "/dashboard/login", data={"email": "bench@example.com", "password": PASSWORD}
                )
                assert signed.status_code == 303, signed.text
                home = f"/dashboard/company/{account}"
                pages = {
                    "healthz": "/healthz",
                    "list": f"{home}/campaigns",
                    "campaign": f"{home}/campaign/{big}",
                    "review": f"{home}/campaign/{big}?step=review",
                    "counters": f"{home}/campaign/{big}/counters",
                }
                # Each page once before the timing: the process's first use, and the big campaign's
                # chart and clicks per link read (then kept a while: campaigns/insights.py).
                cold = {name: timed(client, path, 1)[0] for name, path in pages.items()}
                page = client.get(pages["campaign"]).text
                opened = re.search(r'data-figure="opened">([\d,]+)<', page).group(1)
                times = {name: timed(client, path, args.requests) for name, path in pages.items()}
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"machine: {machine()}")
    print(
        f"data: {args.campaigns:,} campaigns, one sent to {args.recipients:,} recipients with "
        f"{opened} opened "
        f"(built in {setup:.0f} s)"
    )
    for name, values in times.items():
        print(
            f"{name:>9}: median {statistics.median(values) * 1000:6.1f} ms, p95 {p95(values):6.1f} "
            "ms "
            f"({len(values)} requests)"
        )
    print(
        "the first request of each (the campaign page reads its chart and links then): "
        + ", ".join(f"{name} {seconds * 1000:.0f} ms" for name, seconds in cold.items())
    )
    reference = statistics.median(times["healthz"]) * 1000
    print(f"reference: /healthz median {reference:.1f} ms")
    emit(
        {
            "scenario": "dashboard",
            "campaigns": args.campaigns,
            "recipients": args.recipients,
            **{f"{name}_p95_ms": round(p95(values), 1) for name, values in times.items()},
            **{
                f"{name}_median_ms": round(statistics.median(values) * 1000, 1)
                for name, values in times.items()
            },
            **{f"{name}_first_ms": round(seconds * 1000, 1) for name, seconds in cold.items()},
        }
    )


if __name__ == "__main__":
    main()
