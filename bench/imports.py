"""Scenario 6: contact imports at migration scale. A CSV of N rows (email, first and last name,
three metadata columns; 1% invalid addresses, 1% addresses repeated) is imported into an empty
account by `mailcast contacts import` (a real process: the import job run by the command line),
then the same file again over the contacts it made (every row an update). The reference, in the
same run: PostgreSQL's own `\\copy` of the same file into an unindexed table (psql).

    python bench/imports.py [--rows 1000000] [--db postgresql|sqlite] [--batch N] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, SECRET, bench_tenant, database, emit, machine, rss_mb  # noqa: E402


def write_file(path: Path, rows: int) -> None:
    rng = random.Random(7)
    domains = [
        "gmail.com",
        "yahoo.com",
        "outlook.com",
        "hotmail.com",
        "icloud.com",
        "proton.me",
        "gmx.de",
    ]
    domains += [f"company{i}.example" for i in range(5000)]
    with path.open("w", newline="") as out:
        out.write("Email Address,First Name,Last Name,City,Plan,Signup Source\n")
        for i in range(rows):
            r = rng.random()
            if r < 0.01:
                email = f"broken{i}@@nowhere"
            elif r < 0.02 and i:
                j = rng.randrange(i)
                email = f"reader{j}@{domains[j % len(domains)]}"
            else:
                email = f"reader{i}@{domains[i % len(domains)]}"
            out.write(
                f'{email},First{i},Last{i},City{i % 97},{"pro" if i % 3 else "free"},"web, form '
                f'{i % 5}"\n'
            )


def run_import(
    url: str, data_dir: Path, account: str, audience: str, path: Path, batch: int | None
) -> tuple[dict, float, float]:
    """The command's summary, and the peak RSS in MB of the importing process, and of it and its
    reading process together (sampled every 50 ms)."""
    env = {
        **os.environ,
        "MAILCAST_DATABASE_URL": url,
        "MAILCAST_DATA_DIR": str(data_dir),
        "MAILCAST_SECRET_KEY": SECRET,
    }
    if batch:
        env["MAILCAST_IMPORT_BATCH_ROWS"] = str(batch)
    summary_file = data_dir / f"summary-{time.monotonic_ns()}.json"
    peak = [0.0, 0.0]  # the importing process; it and its reading process together

    def sample(pid: int) -> None:
        while proc.poll() is None:
            own = rss_mb(pid)
            peak[0] = max(peak[0], own)
            peak[1] = max(peak[1], own + sum(rss_mb(child) for child in _children(pid)))
            time.sleep(0.05)

    with summary_file.open(
        "w"
    ) as out_file:  # a file, not a pipe: the summary can outgrow a pipe's buffer
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mailcast.cli",
                "contacts",
                "import",
                "--account",
                account,
                "--audience",
                audience,
                str(path),
            ],
            env=env,
            stdout=out_file,
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
        )
        sampler = threading.Thread(target=sample, args=(proc.pid,), daemon=True)
        sampler.start()
        status = proc.wait()
        sampler.join()
    out = summary_file.read_text()
    if status != 0:
        raise SystemExit(f"the import failed: {out[-2000:]}")
    return json.loads(out), peak[0], peak[1]


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


async def job_seconds(url: str, import_id: str) -> float:
    from sqlalchemy import select

    from mailcast.db.engine import create_engine
    from mailcast.db.models import ContactImport

    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            started, finished = (
                await conn.execute(
                    select(ContactImport.started_at, ContactImport.finished_at).where(
                        ContactImport.id == import_id
                    )
                )
            ).one()
    finally:
        await engine.dispose()
    return (finished - started).total_seconds()


def psql_copy_seconds(url: str, path: Path) -> float | None:
    if shutil.which("psql") is None:
        return None
    dsn = url.replace("postgresql+asyncpg", "postgresql")
    subprocess.run(
        [
            "psql",
            dsn,
            "-qc",
            "CREATE TABLE copy_reference (email text, first_name text, last_name text, "
            "city text, plan text, source text)",
        ],
        check=True,
    )
    start = time.perf_counter()
    subprocess.run(
        ["psql", dsn, "-qc", f"\\copy copy_reference FROM '{path}' WITH (FORMAT csv, HEADER true)"],
        check=True,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--db", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument(
        "--batch", type=int, help="records per transaction (MAILCAST_IMPORT_BATCH_ROWS)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a small run that only proves the harness works"
    )
    args = parser.parse_args()
    if args.quick:
        args.rows = 2_000
    with tempfile.TemporaryDirectory() as tmp, database(args.db, Path(tmp)) as url:
        workdir = Path(tmp)
        path = workdir / "contacts.csv"
        write_file(path, args.rows)
        tenant = asyncio.run(_tenant(url))
        first, first_rss, first_tree = run_import(
            url, workdir, tenant[0], tenant[1], path, args.batch
        )
        first_s = asyncio.run(job_seconds(url, first["import_id"]))
        again, again_rss, again_tree = run_import(
            url, workdir, tenant[0], tenant[1], path, args.batch
        )
        again_s = asyncio.run(job_seconds(url, again["import_id"]))
        reference = psql_copy_seconds(url, path) if args.db == "postgresql" else None
    rate, rate_again = args.rows / first_s, args.rows / again_s
    print(f"machine: {machine()}")
    print(
        f"file: {args.rows:,} rows; into an empty account ({args.db}): created "
        f"{first['created']:,}, updated "
        f"{first['updated']:,}, rejected {first['invalid']:,} in {first_s:.2f} s: {rate:,.0f} "
        "rows/s, "
        f"peak RSS {first_rss:.0f} MB (with its reading process {first_tree:.0f} MB)"
    )
    print(
        f"the same file again (updates): updated {again['updated']:,}, created "
        f"{again['created']:,} in "
        f"{again_s:.2f} s: {rate_again:,.0f} rows/s, peak RSS {again_rss:.0f} MB (with its reading "
        "process "
        f"{again_tree:.0f} MB)"
    )
    figures = {
        "scenario": "imports",
        "db": args.db,
        "rows": args.rows,
        "rows_per_second": round(rate),
        "update_rows_per_second": round(rate_again),
        "seconds": round(first_s, 3),
        "update_seconds": round(again_s, 3),
        "peak_rss_mb": round(max(first_rss, again_rss), 1),
        "peak_rss_with_reader_mb": round(max(first_tree, again_tree), 1),
        "created": first["created"],
        "rejected": first["invalid"],
    }
    if reference:
        copy_rate = args.rows / reference
        print(
            f"reference: psql \\copy of the same file into an unindexed table: {reference:.2f} s, "
            f"{copy_rate:,.0f} rows/s; ratio {rate / copy_rate:.3f} (updates "
            f"{rate_again / copy_rate:.3f})"
        )
        figures.update(
            reference_rows_per_second=round(copy_rate),
            ratio=round(rate / copy_rate, 3),
            update_ratio=round(rate_again / copy_rate, 3),
        )
    emit(figures)


async def _tenant(url: str) -> tuple[str, str]:
    tenant = await bench_tenant(url)
    await tenant.engine.dispose()
    return tenant.account_id, tenant.audience_id


if __name__ == "__main__":
    main()
