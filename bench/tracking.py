"""Scenario 2: the open pixel and the click redirect under wrk, against mailcast as deployed
(`mailcast serve --workers N --no-access-log`: uvicorn with uvloop and httptools), and a bare
ASGI app serving the same GIF with the same server settings in the same run. After a clean
shutdown every answered hit must be in the database.

    python bench/tracking.py [--db sqlite|postgresql] [--workers 2] [--connections 64]
                             [--duration 10] [--deliveries 10000] [--flush-seconds 1] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import bench_tenant, database, emit, free_port, import_readers, machine, require  # noqa: E402

SECRET = "bench-secret-0123456789abcdef"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"


async def prepare(url: str, deliveries: int) -> list[int]:
    """A sent campaign with `deliveries` recipients and one tracked link; their delivery ids."""
    from sqlalchemy import select, update

    from mailcast.accounts import service as accounts
    from mailcast.campaigns import service as campaigns
    from mailcast.campaigns.schemas import CampaignCreate
    from mailcast.contacts.schemas import ImportRow
    from mailcast.db.models import Delivery

    tenant = await bench_tenant(url)
    now = tenant.now
    await import_readers(tenant, deliveries, lambda i: ImportRow(email=f"reader{i}@example.org"))
    async with tenant.sessions() as session:
        body = CampaignCreate.model_validate({
            "name": "Bench", "subject": "News", "from": "News <news@news.example.com>",
            "audience_id": tenant.audience_id, "draft": True,
            "html": '<p>Hello <a href="https://shop.example.com/deal">the deal</a></p>',
            "unsubscribe_url": "https://news.example.com/unsubscribe",
        })
        campaign = await campaigns.create_campaign(session, tenant.settings, tenant.account_id, body, now)
        account_row = await accounts.lock_account(session, tenant.account_id)
        await campaigns.start_sending(session, tenant.settings, account_row, campaign, now)
        # As if the worker had sent them an hour ago (the pixel of a just-sent message is a machine's).
        await session.execute(update(Delivery).values(status="sent", sent_at=now - timedelta(hours=1)))
        await session.commit()
        ids = list((await session.execute(select(Delivery.id).order_by(Delivery.id))).scalars())
    await tenant.engine.dispose()
    return ids


async def stored(url: str) -> tuple[int, int]:
    """(pixel loads counted, click events) in the database."""
    from sqlalchemy import func, select

    from mailcast.db.engine import create_engine, session_factory
    from mailcast.db.models import Delivery, Event

    engine = create_engine(url)
    async with session_factory(engine)() as session:
        loads = (await session.execute(select(func.coalesce(func.sum(Delivery.open_count), 0)))).scalar_one()
        clicks = (await session.execute(select(func.count()).where(Event.type == "click"))).scalar_one()
    await engine.dispose()
    return int(loads), int(clicks)


def lua_script(folder: Path, name: str, paths: list[str]) -> Path:
    script = folder / f"{name}.lua"
    entries = ",\n".join(f'"{p}"' for p in paths)
    script.write_text(f"""local paths = {{
{entries}
}}
local i = 0
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i], {{["User-Agent"] = "{BROWSER}"}})
end
""")
    return script


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def wrk(url: str, connections: int, duration: int, script: Path | None = None) -> dict:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "10s"]
    if script:
        command += ["-s", str(script)]
    done = subprocess.run([*command, url], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    out = done.stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    return {"requests": requests, "answered": requests - (int(failed.group(1)) if failed else 0),
            "per_second": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p99_ms": float(p99.group(1)) * _UNITS[p99.group(2)],
            "socket_errors": sum(map(int, errors.groups())) if errors else 0}


def wait_for(url: str, proc: subprocess.Popen, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited (code {proc.returncode})")
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer")


def stop(proc: subprocess.Popen) -> None:
    """A clean shutdown: SIGTERM and wait (uvicorn finishes the requests it has)."""
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--workers", type=int, default=2, help="HTTP processes (uvicorn workers)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=int, default=10, help="seconds of each wrk run")
    parser.add_argument("--deliveries", type=int, default=10_000)
    parser.add_argument("--flush-seconds", type=float, default=1.0,
                        help="MAILCAST_TRACKING_FLUSH_SECONDS (0: group commit, answered once committed)")
    parser.add_argument("--quick", action="store_true", help="a small run that only proves the harness works")
    args = parser.parse_args()
    if args.quick:
        args.deliveries, args.duration, args.connections = 200, 1, 8
    require("wrk")

    from mailcast.delivery.tokens import Purpose, TokenCodec

    with tempfile.TemporaryDirectory() as tmp, database(args.db, Path(tmp)) as url:
        ids = asyncio.run(prepare(url, args.deliveries))
        codec = TokenCodec(SECRET.encode())
        pixels = lua_script(Path(tmp), "pixels", [f"/t/o/{codec.encode(i, Purpose.OPEN)}.gif" for i in ids])
        clicks = lua_script(Path(tmp), "clicks", [f"/t/c/{codec.encode(i, Purpose.CLICK, 0)}" for i in ids])
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {**os.environ, "MAILCAST_DATABASE_URL": url, "MAILCAST_DATA_DIR": tmp, "MAILCAST_SECRET_KEY": SECRET,
               "MAILCAST_EMBEDDED_WORKER": "false", "MAILCAST_BASE_URL": base,
               "MAILCAST_TRACKING_FLUSH_SECONDS": str(args.flush_seconds)}
        server = subprocess.Popen([sys.executable, "-m", "mailcast.cli", "serve", "--port", str(port), "--workers",
                                   str(args.workers), "--no-access-log"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(f"{base}/healthz", server)
            pixel = wrk(base, args.connections, args.duration, pixels)
            click = wrk(base, args.connections, args.duration, clicks)
        finally:
            stop(server)
        loads, click_events = asyncio.run(stored(url))

        port = free_port()
        bare = subprocess.Popen([sys.executable, "-m", "uvicorn", "bare_gif:app", "--port", str(port), "--workers",
                                 str(args.workers), "--no-access-log", "--app-dir", str(Path(__file__).parent)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(f"http://127.0.0.1:{port}/", bare)
            reference = wrk(f"http://127.0.0.1:{port}/t/o/x.gif", args.connections, args.duration)
        finally:
            stop(bare)

    ratio = pixel["per_second"] / reference["per_second"]
    print(f"machine: {machine()}")
    writes = f"buffered, flushed every {args.flush_seconds:g} s" if args.flush_seconds else "group commit"
    print(f"mailcast ({args.db}, {args.workers} HTTP processes, {args.connections} connections, "
          f"{len(ids)} deliveries, events {writes}):")
    print(f"  pixel: {pixel['per_second']:,.0f} requests/s, p99 {pixel['p99_ms']:.1f} ms; "
          f"{pixel['answered']} answered, {loads} loads stored after shutdown")
    print(f"  click: {click['per_second']:,.0f} requests/s, p99 {click['p99_ms']:.1f} ms; "
          f"{click['answered']} answered, {click_events} click events stored after shutdown")
    print(f"bare ASGI GIF app (same server settings): {reference['per_second']:,.0f} requests/s, "
          f"p99 {reference['p99_ms']:.1f} ms")
    print(f"ratio pixel / bare: {ratio:.3f}")
    emit({"scenario": "tracking", "db": args.db, "workers": args.workers, "connections": args.connections,
          "flush_seconds": args.flush_seconds,
          "pixel_per_second": round(pixel["per_second"], 1), "pixel_p99_ms": round(pixel["p99_ms"], 2),
          "click_per_second": round(click["per_second"], 1), "click_p99_ms": round(click["p99_ms"], 2),
          "reference_per_second": round(reference["per_second"], 1), "ratio": round(ratio, 4),
          "pixel_answered": pixel["answered"], "pixel_stored": loads,
          "click_answered": click["answered"], "click_stored": click_events})
    if loads < pixel["answered"] or click_events < click["answered"]:
        sys.exit("an answered hit is missing from the database")


if __name__ == "__main__":
    main()
