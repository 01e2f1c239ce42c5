"""Shared pieces of the benchmarks: loopback servers, a fresh database, the data set, process
memory. Everything runs on this machine's loopback."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Debian puts smtp-sink and smtp-source in /usr/sbin, which a non-login PATH may lack.
os.environ["PATH"] = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
PG_ADMIN = os.environ.get(
    "MAILCAST_BENCH_PG_ADMIN", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    system = f"{platform.system()} {platform.release()}"
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, {system}"


def require(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        sys.exit(
            f"missing {', '.join(missing)}: run `make bench-deps` (Debian packages postfix and wrk)"
        )


@contextmanager
def smtp_sink(port: int, dump: Path | None = None):
    """Postfix's smtp-sink: accepts and discards mail as fast as the machine allows (or, with
    `dump`, writes each message into that folder: for checking them, not for timing)."""
    options = ["-d", f"{dump}/%H%M%S."] if dump else []
    if dump:
        dump.mkdir(parents=True, exist_ok=True)
        dump.chmod(0o777)  # smtp-sink writes as nobody
    proc = subprocess.Popen(
        ["smtp-sink", "-u", "nobody", *options, f"127.0.0.1:{port}", "2048"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.05)
            if proc.poll() is not None:
                raise SystemExit(f"smtp-sink exited at start (code {proc.returncode})") from None
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def smtp_source_rate(port: int, messages: int, sessions: int, size: int) -> float:
    """Messages per second of Postfix's C client sending same-sized messages over `sessions`
    connections."""
    start = time.perf_counter()
    subprocess.run(
        [
            "smtp-source",
            "-s",
            str(sessions),
            "-m",
            str(messages),
            "-l",
            str(size),
            "-f",
            "bench@news.example.com",
            "-t",
            "sink@example.org",
            f"127.0.0.1:{port}",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return messages / (time.perf_counter() - start)


@contextmanager
def database(kind: str, workdir: Path, explain_ms: int | None = None):
    """A fresh database: a SQLite file, or a new PostgreSQL database dropped afterwards. With
    `explain_ms`, PostgreSQL logs the plan (EXPLAIN ANALYZE) of every statement slower than that
    to its server log (auto_explain)."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
        return
    import asyncpg

    name = f"mailcast_bench_{uuid.uuid4().hex[:10]}"
    admin = PG_ADMIN.replace("postgresql+asyncpg", "postgresql")

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f"CREATE DATABASE {name}"))
    if explain_ms is not None:
        for setting in (
            "session_preload_libraries = 'auto_explain'",
            f"auto_explain.log_min_duration = {explain_ms}",
            "auto_explain.log_analyze = on",
            "auto_explain.log_nested_statements = on",
        ):
            asyncio.run(run(f"ALTER DATABASE {name} SET {setting}"))
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        asyncio.run(run(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def emit(result: dict) -> None:
    """The last line of every scenario: one JSON object for scripts."""
    print(json.dumps(result, sort_keys=False))


@dataclass
class BenchTenant:
    settings: Any
    engine: Any
    sessions: Any
    now: datetime
    account_id: str
    api_key: str
    audience_id: str
    dkim_record: bytes  # the domain's DKIM TXT record, as published


# Every scenario's processes run with this secret key (MAILCAST_SECRET_KEY): the tenant's DKIM
# key is sealed under it, and tracking tokens are made with it.
SECRET = "bench-secret-0123456789abcdef"


async def bench_tenant(
    url: str, dkim_algorithm: str = "rsa", dkim_verified: bool = False
) -> BenchTenant:
    """A migrated database with an enterprise account, its trusted sender domain news.example.com
    and an empty audience: what every scenario starts from. The caller disposes of the engine."""
    from mailcast.accounts import service as accounts
    from mailcast.audiences import service as audiences
    from mailcast.audiences.schemas import AudienceCreate
    from mailcast.config import Settings
    from mailcast.db.engine import create_engine, session_factory
    from mailcast.db.migrate import upgrade
    from mailcast.domains import service as domains

    settings = Settings(database_url=url, monthly_quota_enterprise=10**12, secret_key=SECRET)
    engine = create_engine(url)
    await upgrade(engine)
    sessions = session_factory(engine)
    now = datetime.now(UTC)
    async with sessions() as session:
        account, _, api_key = await accounts.create_account(session, "Bench", "enterprise", now)
        domain = await domains.create_domain(
            session,
            account.id,
            "news.example.com",
            now,
            settings,
            trusted=True,
            dkim_algorithm=dkim_algorithm,
        )
        domain.dkim_verified = dkim_verified
        if not dkim_verified:
            # A lookup that did not find the key: the trusted domain's mail goes unsigned.
            domain.last_checked_at = now
        record = f"v=DKIM1; k={domain.dkim_algorithm}; p={domain.dkim_public_key}".encode()
        audience = await audiences.create_audience(
            session, account.id, AudienceCreate(name="Everyone"), now
        )
        await session.commit()
    return BenchTenant(settings, engine, sessions, now, account.id, api_key, audience.id, record)


async def import_readers(tenant: BenchTenant, count: int, row) -> None:
    """`count` contacts into the tenant's audience through mailcast's own import, 10,000 a
    transaction; `row(i)` makes the i-th ImportRow."""
    from mailcast.contacts import service as contacts

    for start in range(0, count, 10_000):
        rows = [row(i) for i in range(start, min(count, start + 10_000))]
        async with tenant.sessions() as session:
            await contacts.import_contacts(
                session, tenant.account_id, rows, tenant.audience_id, tenant.now, max_rows=10_000
            )
            await session.commit()
