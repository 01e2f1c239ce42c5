"""Audiences, contacts, CSV imports, sender domains, API keys and the account in the dashboard."""

from __future__ import annotations

import csv
import io
import re

from mailcast.contacts.imports import Importer
from mailcast.contacts.store import contact_store


async def test_contacts_search_page_and_subscription(dashboard, tenant, worker):
    await tenant.verified_domain()
    audience = await tenant.audience()
    await tenant.post(
        "/v1/contacts",
        json={
            "email": "ada@example.org",
            "first_name": "Ada",
            "metadata": {"city": "London"},
            "audience_id": audience,
        },
    )
    await tenant.post("/v1/contacts", json={"email": "bob@example.org", "audience_id": audience})
    campaign = await tenant.campaign(audience, draft=None, name="Welcome")
    await worker.run_until_idle()
    base = f"/dashboard/company/{tenant.account_id}"
    audiences = await dashboard.get(base + "/audiences")
    assert "Newsletter" in audiences.text and re.search(r'class="num">2<', audiences.text)
    found = await dashboard.get(base + "/contacts", params={"q": "ada"})
    assert "ada@example.org" in found.text and "bob@example.org" not in found.text
    ada = (await tenant.get("/v1/contacts", params={"email": "ada"})).json()["data"][0]
    page = await dashboard.get(f"{base}/contact/{ada['id']}")
    assert (
        "London" in page.text
        and "Newsletter" in page.text
        and "Welcome" in page.text
        and "sent" in page.text
    )
    assert (
        await dashboard.post(f"{base}/contact/{ada['id']}/subscription", {"unsubscribed": "yes"})
    ).status_code == 303
    assert (await tenant.get(f"/v1/contacts/{ada['id']}")).json()["unsubscribed"] is True
    assert (
        await dashboard.post(f"{base}/contact/{ada['id']}/subscription", {"unsubscribed": "no"})
    ).status_code == 303
    assert (await tenant.get(f"/v1/contacts/{ada['id']}")).json()["unsubscribed"] is False
    assert campaign["id"]


async def test_csv_upload_runs_the_import_job(dashboard, tenant, engine, settings, clock):
    base = f"/dashboard/company/{tenant.account_id}"
    audience = await tenant.audience()
    data = b"Email Address,First Name\nann@example.org,Ann\nnot-an-address,X\ncid@example.org,Cid\n"
    r = await dashboard.client.post(
        f"{base}/imports",
        params={"csrf": dashboard.csrf},
        files={"file": ("people.csv", data, "text/csv")},
        data={"audience_id": audience},
    )
    assert r.status_code == 303, r.text
    job_page = r.headers["location"]
    progress = await dashboard.get(job_page + "/progress")
    assert 'hx-trigger="every 1s"' in progress.text and "queued" in progress.text
    assert await Importer(engine, contact_store(engine), settings, clock, "w").run_next()
    progress = await dashboard.get(job_page + "/progress")
    assert "hx-trigger" not in progress.text and re.search(r"data-import-rows>3<", progress.text)
    errors = await dashboard.get(job_page + "/errors.csv")
    assert list(csv.reader(io.StringIO(errors.text)))[1][:2] == ["3", "not-an-address"]
    assert (await tenant.get(f"/v1/audiences/{audience}")).json()["member_count"] == 2
    refused = await dashboard.client.post(
        f"{base}/imports", files={"file": ("x.csv", data, "text/csv")}
    )
    assert refused.status_code == 403  # no CSRF token


async def test_domains_keys_and_account(dashboard, tenant, dns, new_browser, make_user):
    base = f"/dashboard/company/{tenant.account_id}"
    domain = (await tenant.post("/v1/domains", json={"name": "mail.acme.example"})).json()
    page = await dashboard.get(base + "/domains")
    assert "mail.acme.example" in page.text and "mailcast._domainkey.mail.acme.example" in page.text
    assert "not found" in page.text
    for record in domain["dns_records"]:
        dns.publish(record["host"], record["value"])
    assert (await dashboard.post(f"{base}/domain/{domain['id']}/verify")).status_code == 303
    assert (await tenant.get(f"/v1/domains/{domain['id']}")).json()["status"] == "verified"

    created = await dashboard.post(base + "/keys", {"name": "CI", "scope": "read_only"})
    key = re.search(r"data-new-key>(mc_live_[^<]+)<", created.text).group(1)
    assert (
        await tenant.client.get("/v1/campaigns", headers={"Authorization": f"Bearer {key}"})
    ).status_code == 200
    listed = (await tenant.get("/v1/api-keys")).json()["data"]
    key_id = next(k["id"] for k in listed if k["name"] == "CI")
    assert key not in (await dashboard.get(base + "/keys")).text  # shown once
    assert (await dashboard.post(f"{base}/key/{key_id}/revoke")).status_code == 303
    assert (
        await tenant.client.get("/v1/campaigns", headers={"Authorization": f"Bearer {key}"})
    ).status_code == 401

    account = await dashboard.get(base + "/account")
    assert "business" in account.text and re.search(r"data-quota-left>1,000,000<", account.text)
    assert (
        await dashboard.post(base + "/account", {"postal_address": "1 Main St\nSpringfield"})
    ).status_code == 303
    assert (await tenant.get("/v1/account")).json()["postal_address"] == "1 Main St\nSpringfield"

    await make_user(tenant, "editor@acme.example", "editor")
    editor = new_browser(tenant)
    await editor.sign_in("editor@acme.example")
    assert (await editor.get(base + "/keys")).status_code == 403
    assert (
        await editor.post(base + "/keys", {"name": "x", "scope": "full_access"})
    ).status_code == 403
