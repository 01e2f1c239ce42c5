"""Every benchmark's --quick run, so the harness never rots. Figures are printed, not asserted."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


SBIN_PATH = f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin"


@pytest.mark.skipif(
    shutil.which("smtp-sink", path=SBIN_PATH) is None,
    reason="needs Postfix's smtp-sink (make bench-deps)",
)
@pytest.mark.parametrize("dkim", ["none", "rsa", "ed25519"])
def test_campaign_quick(dkim):
    # --verify: every message smtp-sink received parses as the multipart message it should be and,
    # signed, passes dkimpy's verification (the fast signer's output is standard DKIM).
    # With DKIM off it also runs scenario 4's API probe against a second server process.
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "campaign.py"),
            "--quick",
            "--dkim",
            dkim,
            "--verify",
            *(["--api"] if dkim == "none" else []),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["scenario"] == "campaign" and figures["recipients"] == 300
    assert {"messages_per_second", "reference_per_second", "ratio", "worker_rss_mb"} <= set(figures)
    assert figures["verified"] == 300
    if dkim == "none":
        assert figures["api_errors"] == 0 and figures["api_requests"] > 0


@pytest.mark.skipif(shutil.which("wrk") is None, reason="needs wrk (make bench-deps)")
def test_tracking_quick():
    # The benchmark itself fails when an answered pixel or click is missing after the shutdown.
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "tracking.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["scenario"] == "tracking"
    assert figures["pixel_stored"] >= figures["pixel_answered"] > 0
    assert figures["click_stored"] >= figures["click_answered"] > 0


def test_segments_quick():
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "segments.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["scenario"] == "segments" and figures["contacts"] == 5000
    assert {"non_opener_seconds", "snapshot_seconds", "claim_ms_median"} <= set(figures)


@pytest.mark.skipif(
    shutil.which("smtp-sink", path=SBIN_PATH) is None,
    reason="needs Postfix's smtp-sink (make bench-deps)",
)
def test_scaleout_quick():
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "scaleout.py"), "--quick", "--workers", "1,2"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert [point["workers"] for point in figures["curve"]] == [1, 2]


@pytest.mark.parametrize("db", ["postgresql", "sqlite"])
def test_imports_quick(db):
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "imports.py"), "--quick", "--db", db],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert (
        figures["scenario"] == "imports" and figures["rows"] == 2000 and figures["created"] > 1900
    )
    assert {"rows_per_second", "update_rows_per_second", "peak_rss_mb"} <= set(figures)


def test_dashboard_quick():
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "dashboard.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["scenario"] == "dashboard" and figures["recipients"] == 2000
    assert {"list_p95_ms", "campaign_p95_ms", "counters_p95_ms"} <= set(figures)
