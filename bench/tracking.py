"""Scenario 2: the open pixel and the click redirect under wrk, against mailcast as deployed
(`mailcast serve --workers N --no-access-log`: uvicorn with uvloop and httptools), and a bare
ASGI app serving the same GIF with the same server settings in the same run. After a clean
shutdown every answered hit must be in the database.

    python bench/tracking.py [--db sqlite|postgresql] [--workers 2] [--connections 64]
                             [--duration 10] [--rounds 3] [--deliveries 10000]
                             [--flush-seconds 1] [--quick]

Two rates are reported for each endpoint: requests answered per second while wrk runs, and hits
answered *and written* per second (the run's hits over the run's time plus the time until the
last of them is in the database). With buffered writes the first can run ahead of the second:
a run shorter than the buffer's capacity is answered without waiting for any write.
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
from common import SECRET, bench_tenant, database, emit, free_port, import_readers, machine, require  # noqa: E402

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
        body = CampaignCreate.model_validate(
            {
                "name": "Bench",
                "subject": "News",
                "from": "News <news@news.example.com>",
                "audience_id": tenant.audience_id,
                "draft": True,
                "html": '<p>Hello <a href="https://shop.example.com/deal">the deal</a></p>',
                "unsubscribe_url": "https://news.example.com/unsubscribe",
            }
        )
        campaign = await campaigns.create_campaign(
            session, tenant.settings, tenant.account_id, body, now
        )
        account_row = await accounts.lock_account(session, tenant.account_id)
        await campaigns.start_sending(session, tenant.settings, account_row, campaign, now)
        # As if the worker had sent them an hour ago (the pixel of a just-sent message is a
        # machine's).
        await session.execute(
            update(Delivery).values(status="sent", sent_at=now - timedelta(hours=1))
        )
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
        loads = (
            await session.execute(select(func.coalesce(func.sum(Delivery.open_count), 0)))
        ).scalar_one()
        clicks = (
            await session.execute(select(func.count()).where(Event.type == "click"))
        ).scalar_one()
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
    return {
        "requests": requests,
        "answered": requests - (int(failed.group(1)) if failed else 0),
        "per_second": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p99_ms": float(p99.group(1)) * _UNITS[p99.group(2)],
        "socket_errors": sum(map(int, errors.groups())) if errors else 0,
    }


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


def written_within(url: str, kind: int, answered: int, timeout: float = 120) -> float:
    """Seconds until `answered` hits of `kind` (0: pixel loads, 1: clicks) are in the database."""
    start = time.perf_counter()
    while asyncio.run(stored(url))[kind] < answered:
        if time.perf_counter() - start > timeout:
            raise SystemExit(
                f"after {timeout:.0f} s only {asyncio.run(stored(url))[kind]} of {answered} hits "
                "are written"
            )
        time.sleep(0.05)
    return time.perf_counter() - start


def phase(runs: list[dict]) -> dict:
    """Several wrk runs as one: requests per second over their summed time, the worst p99."""
    seconds = sum(r["requests"] / r["per_second"] for r in runs)
    answered = sum(r["answered"] for r in runs)
    written = sum(r.get("write_seconds", 0.0) for r in runs)
    return {
        "answered": answered,
        "per_second": sum(r["requests"] for r in runs) / seconds,
        "p99_ms": max(r["p99_ms"] for r in runs),
        "write_seconds": written,
        "sustained_per_second": answered / (seconds + written),
    }


def start_server(command: list[str], url: str, env: dict | None = None) -> subprocess.Popen:
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(url, proc)
    except BaseException:
        proc.kill()
        raise
    return proc


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--workers", type=int, default=2, help="HTTP processes (uvicorn workers)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=int, default=10, help="seconds of each wrk run")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="pixel runs, each right after a run of the bare app (the machine's speed drifts)",
    )
    parser.add_argument("--deliveries", type=int, default=10_000)
    parser.add_argument(
        "--flush-seconds",
        type=float,
        default=1.0,
        help="MAILCAST_TRACKING_FLUSH_SECONDS (0: group commit, answered once committed)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a small run that only proves the harness works"
    )
    args = parser.parse_args()
    if args.quick:
        args.deliveries, args.duration, args.connections, args.rounds = 200, 1, 8, 1
    require("wrk")

    from mailcast.delivery.tokens import Purpose, TokenCodec

    with tempfile.TemporaryDirectory() as tmp, database(args.db, Path(tmp)) as url:
        ids = asyncio.run(prepare(url, args.deliveries))
        codec = TokenCodec(SECRET.encode())
        pixels = lua_script(
            Path(tmp), "pixels", [f"/t/o/{codec.encode(i, Purpose.OPEN)}.gif" for i in ids]
        )
        clicks = lua_script(
            Path(tmp), "clicks", [f"/t/c/{codec.encode(i, Purpose.CLICK, 0)}" for i in ids]
        )
        port, bare_port = free_port(), free_port()
        base, bare_base = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{bare_port}"
        env = {
            **os.environ,
            "MAILCAST_DATABASE_URL": url,
            "MAILCAST_DATA_DIR": tmp,
            "MAILCAST_SECRET_KEY": SECRET,
            "MAILCAST_EMBEDDED_WORKER": "false",
            "MAILCAST_BASE_URL": base,
            "MAILCAST_TRACKING_FLUSH_SECONDS": str(args.flush_seconds),
        }
        server = start_server(
            [
                sys.executable,
                "-m",
                "mailcast.cli",
                "serve",
                "--port",
                str(port),
                "--workers",
                str(args.workers),
                "--no-access-log",
            ],
            f"{base}/healthz",
            env,
        )
        bare = None
        try:
            bare = start_server(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "bare_gif:app",
                    "--port",
                    str(bare_port),
                    "--workers",
                    str(args.workers),
                    "--no-access-log",
                    "--app-dir",
                    str(Path(__file__).parent),
                ],
                f"{bare_base}/",
            )
            # Both servers are up; one is idle while wrk drives the other. Each pixel run follows a
            # reference run and is followed by the wait until its hits are written, so the write
            # of one run's hits never falls into the next run (the reference's or its own).
            references, pixel_runs, answered = [], [], 0
            for _ in range(args.rounds):
                references.append(wrk(bare_base, args.connections, args.duration, pixels))
                run = wrk(base, args.connections, args.duration, pixels)
                answered += run["answered"]
                run["write_seconds"] = written_within(url, 0, answered)
                pixel_runs.append(run)
            click_run = wrk(base, args.connections, args.duration, clicks)
            click_run["write_seconds"] = written_within(url, 1, click_run["answered"])
        finally:
            stop(server)
            if bare is not None:
                stop(bare)
        loads, click_events = asyncio.run(stored(url))

    pixel, reference, click = phase(pixel_runs), phase(references), phase([click_run])
    ratio = pixel["per_second"] / reference["per_second"]
    sustained_ratio = pixel["sustained_per_second"] / reference["per_second"]
    print(f"machine: {machine()}")
    writes = (
        f"buffered, flushed every {args.flush_seconds:g} s"
        if args.flush_seconds
        else "group commit"
    )
    print(
        f"mailcast ({args.db}, {args.workers} HTTP processes, {args.connections} connections, "
        f"{len(ids)} deliveries, events {writes}; {args.rounds} pixel runs of {args.duration} s, "
        "each "
        f"after one of the bare app):"
    )
    for name, figures, count in (("pixel", pixel, loads), ("click", click, click_events)):
        print(
            f"  {name}: {figures['per_second']:,.0f} requests/s answered, p99 "
            f"{figures['p99_ms']:.1f} ms; "
            f"all written {figures['write_seconds']:.2f} s after the runs ended: "
            f"{figures['sustained_per_second']:,.0f} hits/s answered and written; "
            f"{figures['answered']} answered, {count} stored after shutdown"
        )
    print(
        f"bare ASGI GIF app (same server settings, same requests): {reference['per_second']:,.0f} "
        "requests/s, "
        f"p99 {reference['p99_ms']:.1f} ms"
    )
    print(f"ratio pixel / bare: {ratio:.3f} answered, {sustained_ratio:.3f} answered and written")
    emit(
        {
            "scenario": "tracking",
            "db": args.db,
            "workers": args.workers,
            "connections": args.connections,
            "flush_seconds": args.flush_seconds,
            "deliveries": len(ids),
            "rounds": args.rounds,
            "pixel_per_second": round(pixel["per_second"], 1),
            "pixel_p99_ms": round(pixel["p99_ms"], 2),
            "pixel_sustained_per_second": round(pixel["sustained_per_second"], 1),
            "pixel_write_seconds": round(pixel["write_seconds"], 2),
            "click_per_second": round(click["per_second"], 1),
            "click_p99_ms": round(click["p99_ms"], 2),
            "click_sustained_per_second": round(click["sustained_per_second"], 1),
            "reference_per_second": round(reference["per_second"], 1),
            "ratio": round(ratio, 4),
            "sustained_ratio": round(sustained_ratio, 4),
            "pixel_answered": pixel["answered"],
            "pixel_stored": loads,
            "click_answered": click["answered"],
            "click_stored": click_events,
        }
    )
    if loads < pixel["answered"] or click_events < click["answered"]:
        sys.exit("an answered hit is missing from the database")


if __name__ == "__main__":
    main()
