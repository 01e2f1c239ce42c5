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


@pytest.mark.skipif(shutil.which("smtp-sink", path=SBIN_PATH) is None,
                    reason="needs Postfix's smtp-sink (make bench-deps)")
@pytest.mark.parametrize("dkim", ["none", "rsa", "ed25519"])
def test_campaign_quick(dkim):
    # --verify: every message smtp-sink received parses as the multipart message it should be and,
    # signed, passes dkimpy's verification (the fast signer's output is standard DKIM).
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "campaign.py"), "--quick", "--dkim", dkim,
                             "--verify"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr + result.stdout
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["scenario"] == "campaign" and figures["recipients"] == 300
    assert {"messages_per_second", "reference_per_second", "ratio", "worker_rss_mb"} <= set(figures)
    assert figures["verified"] == 300
