"""Signing in to the dashboard: one answer for every wrong pair, the throttle, CSRF, expiry,
accounts kept apart, and what a viewer may not do."""

from __future__ import annotations


async def test_sign_in_sets_a_safe_cookie_and_leads_home(new_browser, tenant, make_user):
    await make_user(tenant, "ada@acme.example")
    b = new_browser(tenant)
    assert (
        (await b.get("/dashboard/company/x/campaigns"))
        .headers["location"]
        .startswith("/dashboard/login?next=")
    )
    r = await b.sign_in("ADA@acme.example")
    assert (
        r.status_code == 303
        and r.headers["location"] == f"/dashboard/company/{tenant.account_id}/campaigns"
    )
    cookie = r.headers["set-cookie"].lower()
    assert (
        "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie
    )  # http base URL
    page = await b.get(r.headers["location"])
    assert page.status_code == 200 and "Campaigns" in page.text and "ada@acme.example" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert (await b.get("/")).headers["location"] == "/dashboard/"


async def test_wrong_email_and_wrong_password_get_the_same_answer(new_browser, tenant, make_user):
    await make_user(tenant, "ada@acme.example")
    b = new_browser(tenant)
    unknown = await b.sign_in("nobody@acme.example")
    wrong = await b.sign_in("ada@acme.example", "not the password")
    assert unknown.status_code == wrong.status_code == 401
    assert "Wrong email or password" in unknown.text and "Wrong email or password" in wrong.text
    assert "mailcast_session" not in unknown.headers.get("set-cookie", "")


async def test_five_failures_lock_the_email_and_the_address(new_browser, tenant, make_user, clock):
    await make_user(tenant, "ada@acme.example")
    b = new_browser(tenant)
    for _ in range(5):
        assert (await b.sign_in("ada@acme.example", "wrong password!")).status_code == 401
    r = await b.sign_in("ada@acme.example")  # even the right password waits
    assert r.status_code == 429 and 0 < int(r.headers["retry-after"]) <= 15 * 60 + 1
    assert (
        await b.sign_in("other@acme.example", "whatever it is")
    ).status_code == 429  # the same address
    clock.advance(minutes=15, seconds=1)
    assert (await b.sign_in("ada@acme.example")).status_code == 303


async def test_changes_need_the_csrf_token(dashboard, tenant):
    draft = await tenant.campaign()
    path = f"/dashboard/company/{tenant.account_id}/campaign/{draft['id']}/cancel"
    r = await dashboard.post(path, csrf=False)
    assert r.status_code == 403 and "expired" in r.text
    r = await dashboard.client.post(path, data={"csrf": "forged"})
    assert r.status_code == 403
    assert (await tenant.get(f"/v1/campaigns/{draft['id']}")).json()["status"] == "draft"
    r = await dashboard.post(path)
    assert r.status_code == 303
    assert (await tenant.get(f"/v1/campaigns/{draft['id']}")).json()["status"] == "cancelled"


async def test_sessions_expire_and_sign_out_ends_them(dashboard, tenant, clock):
    home = f"/dashboard/company/{tenant.account_id}/campaigns"
    clock.advance(hours=7, minutes=59)
    assert (await dashboard.get(home)).status_code == 200  # used: the idle expiry moves on
    clock.advance(hours=7, minutes=59)
    assert (await dashboard.get(home)).status_code == 200
    clock.advance(hours=8, minutes=1)
    assert (await dashboard.get(home)).status_code == 303  # idle too long
    assert (await dashboard.sign_in("owner@acme.example")).status_code == 303
    assert (await dashboard.post("/dashboard/logout")).status_code == 303
    r = await dashboard.get(home)
    assert r.status_code == 303 and r.headers["location"].startswith("/dashboard/login")


async def test_another_accounts_pages_are_not_found(dashboard, tenant, make_tenant):
    stranger = await make_tenant()
    theirs = await stranger.campaign()
    assert (
        await dashboard.get(f"/dashboard/company/{stranger.account_id}/campaigns")
    ).status_code == 404
    ours = f"/dashboard/company/{tenant.account_id}/campaign/{theirs['id']}"
    assert (await dashboard.get(ours)).status_code == 404
    assert (await dashboard.post(ours + "/cancel")).status_code == 404
    assert (await stranger.get(f"/v1/campaigns/{theirs['id']}")).json()["status"] == "draft"


async def test_a_viewer_reads_but_changes_nothing(new_browser, tenant, make_user):
    await make_user(tenant, "viewer@acme.example", "viewer")
    b = new_browser(tenant)
    await b.sign_in("viewer@acme.example")
    draft = await tenant.campaign()
    base = f"/dashboard/company/{tenant.account_id}/campaign/{draft['id']}"
    review = await b.get(base + "?step=review")
    assert (
        review.status_code == 200
        and "Send now" not in review.text
        and "Send test" not in review.text
    )
    for action in ("send", "cancel", "delete", "test", "schedule", "edit"):
        assert (
            await b.post(f"{base}/{action}", {"confirmed": "yes", "emails": "a@example.org"})
        ).status_code == 403
    assert (await tenant.get(f"/v1/campaigns/{draft['id']}")).json()["status"] == "draft"
    assert (await b.get(f"/dashboard/company/{tenant.account_id}/keys")).status_code in (403, 404)


async def test_user_created_data_is_escaped_everywhere(dashboard, tenant):
    evil = '<img src=x onerror="alert(1)">'
    await tenant.verified_domain()
    audience = await tenant.audience()
    await tenant.post(
        "/v1/contacts", json={"email": "e@example.org", "first_name": evil, "audience_id": audience}
    )
    draft = await tenant.campaign(audience, name=evil, subject="Hi {{ first_name }}")
    for path in (
        f"/dashboard/company/{tenant.account_id}/campaigns",
        f"/dashboard/company/{tenant.account_id}/campaign/{draft['id']}",
        f"/dashboard/company/{tenant.account_id}/campaign/{draft['id']}?step=review",
    ):
        text = (await dashboard.get(path)).text
        assert evil not in text and "&lt;img src=x" in text, path


async def test_the_preview_is_sandboxed(dashboard, tenant):
    draft = await tenant.campaign(html="<p>Hi</p><script>alert(1)</script>")
    base = f"/dashboard/company/{tenant.account_id}/campaign/{draft['id']}"
    review = await dashboard.get(base + "?step=review")
    assert '<iframe class="preview"' in review.text and " sandbox " in review.text
    shown = await dashboard.get(base + "/preview")
    assert shown.status_code == 200 and "<p>Hi</p>" in shown.text
    csp = shown.headers["content-security-policy"]
    assert csp.startswith("sandbox;") and "script-src" not in csp and "default-src 'none'" in csp
