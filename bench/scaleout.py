"""Scenario 5: the campaign scenario on PostgreSQL with 1, 2 and 4 `mailcast worker` processes;
prints the curve (messages/s and the speed-up over one worker).

    python bench/scaleout.py [--recipients 20000] [--workers 1,2,4] [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, machine  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipients", type=int, default=20_000)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument(
        "--quick", action="store_true", help="a small run that only proves the harness works"
    )
    args = parser.parse_args()
    curve = []
    for workers in [int(w) for w in args.workers.split(",")]:
        command = [
            sys.executable,
            str(Path(__file__).parent / "campaign.py"),
            "--db",
            "postgresql",
            "--workers",
            str(workers),
            *(["--quick"] if args.quick else ["--recipients", str(args.recipients)]),
        ]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"campaign.py with {workers} workers failed: {done.stderr}")
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        curve.append(
            {
                "workers": workers,
                "messages_per_second": figures["messages_per_second"],
                "ratio": figures["ratio"],
                "worker_rss_mb": figures["worker_rss_mb"],
            }
        )
    base = curve[0]["messages_per_second"]
    print(f"machine: {machine()}")
    for point in curve:
        print(
            f"{point['workers']} worker(s): {point['messages_per_second']:,.0f} messages/s "
            f"(x{point['messages_per_second'] / base:.2f}), ratio to smtp-source "
            f"{point['ratio']:.3f}, "
            f"peak RSS {point['worker_rss_mb']:.0f} MB"
        )
    emit(
        {
            "scenario": "scaleout",
            "db": "postgresql",
            "recipients": 300 if args.quick else args.recipients,
            "curve": curve,
        }
    )


if __name__ == "__main__":
    main()
