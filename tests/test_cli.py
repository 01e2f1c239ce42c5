"""The command line, run as a real process against the test database."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.conftest import _free_tcp_port


@pytest.fixture
def cli(settings):
    env = {
        **os.environ,
        "MAILCAST_DATABASE_URL": settings.database_url,
        "MAILCAST_DATA_DIR": str(settings.data_dir),
        "MAILCAST_SECRET_KEY": "cli-test-secret-0123456789abcdef",
    }

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", "mailcast.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check:
            assert result.returncode == 0, result.stderr
        return result

    return run


async def test_accounts_create_prints_a_working_key(cli, client):
    out = json.loads(cli("accounts", "create", "--name", "Acme", "--plan", "pro").stdout)
    assert out["plan"] == "pro" and out["account_id"].startswith("acc_")
    assert out["api_key"]["scope"] == "full_access"
    r = await client.get(
        "/v1/campaigns", headers={"Authorization": f"Bearer {out['api_key']['key']}"}
    )
    assert r.status_code == 200
    bad = cli("accounts", "create", "--name", "X", "--plan", "platinum", check=False)
    assert bad.returncode == 1 and "plan must be one of" in bad.stderr


async def test_accounts_keep_a_postal_address(cli, client):
    out = json.loads(
        cli(
            "accounts",
            "create",
            "--name",
            "Acme",
            "--plan",
            "pro",
            "--postal-address",
            "Acme Inc\\n1 Main St",
        ).stdout
    )
    assert out["postal_address"] == "Acme Inc\n1 Main St"
    headers = {"Authorization": f"Bearer {out['api_key']['key']}"}
    assert (await client.get("/v1/account", headers=headers)).json()[
        "postal_address"
    ] == "Acme Inc\n1 Main St"
    updated = json.loads(
        cli("accounts", "update", out["account_id"], "--postal-address", "PO Box 7").stdout
    )
    assert updated["postal_address"] == "PO Box 7"
    assert (
        json.loads(cli("accounts", "update", out["account_id"], "--postal-address", "").stdout)[
            "postal_address"
        ]
        is None
    )
    bad = cli("accounts", "update", out["account_id"], "--postal-address", "a\tb", check=False)
    assert bad.returncode == 2 and "postal-address" in bad.stderr
    assert cli("accounts", "update", "acc_missing", "--name", "x", check=False).returncode == 1


async def test_api_keys_create_with_scope(cli, client):
    account = json.loads(cli("accounts", "create", "--name", "Acme").stdout)["account_id"]
    key = json.loads(cli("api-keys", "create", "--account", account, "--scope", "read_only").stdout)
    headers = {"Authorization": f"Bearer {key['key']}"}
    assert (await client.get("/v1/audiences", headers=headers)).status_code == 200
    assert (
        await client.post("/v1/audiences", json={"name": "x"}, headers=headers)
    ).status_code == 403
    assert cli("api-keys", "create", "--account", "acc_missing", check=False).returncode == 1


async def test_domains_add_trusted_is_verified(cli, client):
    created = json.loads(cli("accounts", "create", "--name", "Acme", "--plan", "business").stdout)
    domain = json.loads(
        cli(
            "domains", "add", "--account", created["account_id"], "--trusted", "mail.acme.test"
        ).stdout
    )
    assert domain["status"] == "verified"
    assert {r["record"] for r in domain["dns_records"]} == {"spf", "dkim", "dmarc"}
    untrusted = json.loads(
        cli("domains", "add", "--account", created["account_id"], "other.acme.test").stdout
    )
    assert untrusted["status"] == "pending"


async def test_contacts_import_reports_bad_lines_and_keeps_good_rows(cli, client, tmp_path):
    created = json.loads(cli("accounts", "create", "--name", "Acme").stdout)
    headers = {"Authorization": f"Bearer {created['api_key']['key']}"}
    audience = (await client.post("/v1/audiences", json={"name": "CSV"}, headers=headers)).json()[
        "id"
    ]
    csv_file = tmp_path / "contacts.csv"
    csv_file.write_text(
        "email,first_name,last_name,city\n"
        "ada@example.org,Ada,Lovelace,London\n"
        "not-an-email,Bad,Row,Nowhere\n"
        "grace@example.org,Grace,,Arlington\n"
        '"x@@example.org",Also,Bad,\n'
    )
    result = cli(
        "contacts",
        "import",
        "--account",
        created["account_id"],
        "--audience",
        audience,
        str(csv_file),
    )
    summary = json.loads(result.stdout)
    assert (summary["created"], summary["invalid"], summary["total"]) == (2, 2, 4)
    assert [e["line"] for e in summary["errors"]] == [3, 5]
    assert "line 3" in result.stderr and "line 5" in result.stderr
    members = (await client.get(f"/v1/audiences/{audience}/contacts", headers=headers)).json()[
        "data"
    ]
    by_email = {c["email"]: c for c in members}
    assert set(by_email) == {"ada@example.org", "grace@example.org"}
    assert by_email["ada@example.org"]["metadata"] == {"city": "London"}
    missing = cli(
        "contacts",
        "import",
        "--account",
        created["account_id"],
        "--audience",
        "aud_nope",
        str(csv_file),
        check=False,
    )
    assert missing.returncode == 1 and "No such audience" in missing.stderr


async def test_recount_derives_the_campaign_figures_again(cli, tenant, sessions):
    """The counts a campaign's figures are read from are a cache: lost or wrong, `mailcast
    recount` counts them again from the deliveries."""
    from sqlalchemy import delete, insert

    from mailcast.db.models import CampaignCount

    campaign = await tenant.campaign(await tenant.audience(contacts=7), draft=None)
    other = await tenant.campaign(await tenant.audience(contacts=3), draft=None)
    async with sessions() as session:
        await session.execute(
            delete(CampaignCount).where(CampaignCount.campaign_id == campaign["id"])
        )
        await session.execute(
            insert(CampaignCount).values(
                campaign_id=other["id"],
                total=100,
                sent=5,
                bounced=0,
                failed=0,
                unknown=0,
                opened=9,
                clicked=0,
                complained=0,
                unsubscribed=0,
            )
        )
        await session.commit()
    totals = [
        (await tenant.get(f"/v1/campaigns/{c['id']}/stats")).json()["total"]
        for c in (campaign, other)
    ]
    assert totals == [0, 103]
    assert "counted the deliveries of 2 campaign(s)" in cli("recount").stderr
    for c, n in ((campaign, 7), (other, 3)):
        stats = (await tenant.get(f"/v1/campaigns/{c['id']}/stats")).json()
        assert (stats["total"], stats["sent"], stats["opened"]) == (n, 0, 0)


def test_serve_first_start_prints_a_key_once(tmp_path):
    """What `make run` does: a fresh data dir, SQLite, the first account's key printed once."""
    port = _free_tcp_port()
    env = {**os.environ, "MAILCAST_DATA_DIR": str(tmp_path / "var")}
    env.pop("MAILCAST_DATABASE_URL", None)

    def start() -> tuple[subprocess.Popen, str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mailcast.cli", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    return proc, ""
            except httpx.HTTPError:
                time.sleep(0.1)
        proc.kill()
        raise AssertionError(proc.stderr.read())

    def stop(proc: subprocess.Popen) -> str:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        return out

    proc, _ = start()
    try:
        time.sleep(0.2)
    finally:
        first_out = stop(proc)
    keys = re.findall(r"API key:\s+(mc_live_\S+)", first_out)
    assert len(keys) == 1
    email, password = re.search(r"Email:\s+(\S+)\s+Password:\s+(\S+)", first_out).groups()
    assert "/dashboard/" in first_out
    assert (tmp_path / "var" / "mailcast.db").exists()

    proc, _ = start()
    try:
        r = httpx.get(
            f"http://127.0.0.1:{port}/v1/campaigns", headers={"Authorization": f"Bearer {keys[0]}"}
        )
        assert r.status_code == 200 and r.json()["data"] == []
        assert httpx.get(f"http://127.0.0.1:{port}/docs").status_code == 200
        # The dashboard's first owner signs in with what was printed.
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as browser:
            signed = browser.post("/dashboard/login", data={"email": email, "password": password})
            assert (
                signed.status_code == 303
                and browser.get(signed.headers["location"]).status_code == 200
            )
    finally:
        second_out = stop(proc)
    assert (
        "mc_live_" not in second_out and "Password:" not in second_out
    )  # shown only on the very first start
