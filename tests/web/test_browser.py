"""The dashboard in a real browser (Debian's Chromium driven by Playwright) against mailcast served
by uvicorn with its embedded worker and a real SMTP relay: a marketer's path from signing in to
watching a campaign's numbers. Each page is kept as a screenshot (the test's artefacts)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Page, expect

from tests.conftest import LiveServer
from tests.web.conftest import CHROMIUM, PASSWORD

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="needs Debian's chromium (make test installs it)"
)
DOCS = Path(__file__).resolve().parents[2] / "docs"


async def _shot(page: Page, output_path: str, name: str) -> None:
    Path(output_path).mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=f"{output_path}/{name}.png", full_page=True)
    if os.environ.get("MAILCAST_DOCS_SCREENSHOTS") and name in (
        "campaign",
        "review",
    ):  # the README's pictures
        await page.screenshot(path=DOCS / f"dashboard-{name}.png", full_page=True)


@pytest.fixture
async def served(tenant, make_user, settings, clock, relay, engine):
    settings.smtp_url = relay.url
    settings.worker_poll_seconds = 0.05
    await make_user(tenant, "marketer@acme.example")
    await tenant.verified_domain()
    with LiveServer(settings, clock, run_worker=True) as server:
        yield server


async def _sign_in(page: Page, server) -> None:
    await page.goto(f"{server.url}/dashboard/")
    await page.get_by_label("Email").fill("marketer@acme.example")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Campaigns")).to_be_visible()


async def test_review_test_send_and_watch_it_send(
    page: Page, served, tenant, relay, clock, output_path
):
    audience = await tenant.audience(contacts=40)
    await tenant.campaign(
        audience,
        name="Spring sale",
        subject="Spring, {{ first_name }}",
        html='<h1>Hi {{ first_name }}</h1><p><a href="https://shop.example/sale">Sale</a></p>'
        '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>',
    )
    await _sign_in(page, served)
    await _shot(page, output_path, "campaigns")
    await page.get_by_role("link", name="Spring sale").click()
    await expect(page.get_by_role("heading", name=re.compile("Spring sale"))).to_be_visible()
    subject = page.locator('[data-preview="subject"]')
    await expect(subject).to_have_text(re.compile(r"^Spring, User\d+$"))
    name = (await subject.inner_text()).split(", ")[1]
    frame = page.frame_locator("iframe.preview")
    await expect(frame.get_by_role("heading", name=f"Hi {name}")).to_be_visible()
    await expect(page.locator('[data-check="sender_domain"]')).to_contain_text("verified")
    await _shot(page, output_path, "review")

    await page.get_by_label("To (up to 5 addresses, comma separated)").fill("me@acme.example")
    await page.get_by_role("button", name="Send test").click()
    await expect(page.get_by_role("status")).to_contain_text("test is sent")
    assert [m.rcpt_to for m in relay.handler.messages] == ["me@acme.example"]
    assert relay.handler.messages[0].message["Subject"].startswith("[Test] Spring,")
    relay.handler.messages.clear()

    await page.get_by_role("button", name="Send now…").first.click()
    await expect(
        page.get_by_role("heading", name=re.compile("Send .Spring sale. now"))
    ).to_be_visible()
    await _shot(page, output_path, "confirm")
    await page.get_by_role("button", name="Send to 40 recipients").click()
    # The counters move on their own (htmx) until every recipient is sent: no reload.
    await expect(page.locator('[data-figure="sent"]')).to_have_text("40", timeout=20_000)
    assert len(relay.handler.messages) == 40
    await page.reload()
    await expect(page.locator(".status").first).to_have_text("sent")

    # One recipient reads it (a person, minutes later): the open rate shows it.
    clock.advance(minutes=5)
    pixel = re.search(
        r'src="(http://127\.0\.0\.1:8025/t/o/[^"]+)"',
        relay.handler.messages[0].message.get_body(("html",)).get_content(),
    ).group(1)
    async with httpx.AsyncClient() as client:
        r = await client.get(
            pixel.replace("http://127.0.0.1:8025", served.url),
            headers={
                "User-Agent": "Mozilla/5.0 (Macintosh) AppleWebKit/605.1.15 Version/17.0 Safari"
            },
        )
        assert r.status_code == 200
    await page.reload()
    await expect(page.locator('[data-figure="opened"]')).to_have_text("1")
    await expect(page.locator('[data-rate="opened"]')).to_have_text("2.5%")
    await _shot(page, output_path, "campaign")


async def test_pick_a_winner_then_resend_to_non_openers(
    page: Page, served, tenant, clock, output_path
):
    audience = await tenant.audience(contacts=20)
    ab_test = {
        "enabled": True,
        "sample_percent": 50,
        "winner_metric": "open_rate",
        "variant_b": {"subject": "The B subject"},
    }
    campaign = await tenant.campaign(audience, name="Launch", draft=None, ab_test=ab_test)
    await _sign_in(page, served)
    await page.goto(f"{served.url}/dashboard/company/{tenant.account_id}/campaign/{campaign['id']}")
    await expect(page.get_by_text("Holdback: 10 recipients")).to_be_visible(timeout=20_000)
    await page.get_by_role("button", name="Pick B as the winner").click()
    await expect(page.get_by_role("status")).to_contain_text("winner is set")
    await expect(page.locator("tr.winner")).to_contain_text("B")
    await expect(page.locator('[data-figure="sent"]')).to_have_text("20", timeout=20_000)
    await _shot(page, output_path, "ab")
    clock.advance(hours=7)
    await page.reload()
    await page.get_by_role("button", name="Resend to non-openers…").click()
    await expect(page.get_by_role("status")).to_contain_text("draft for the non-openers")
    await expect(
        page.get_by_role("heading", name=re.compile(r"Launch \(Non-openers\)"))
    ).to_be_visible()
    await expect(page.locator('[data-preview="subject"]')).to_have_text("The B subject")
    await expect(page.locator("[data-recipients]")).to_have_text("20")
    await _shot(page, output_path, "resend-review")


async def test_import_a_csv_and_watch_it_finish(page: Page, served, tenant, tmp_path, output_path):
    audience = await tenant.audience(name="Imported")
    lines = ["Email Address,First Name,City"] + [
        f"p{i}@example.org,P{i},C{i % 3}" for i in range(3000)
    ]
    lines[1500] = "not-an-address,Bad,Row"
    path = tmp_path / "list.csv"
    path.write_text("\n".join(lines) + "\n")
    await _sign_in(page, served)
    await page.goto(f"{served.url}/dashboard/company/{tenant.account_id}/imports")
    await page.get_by_label("CSV file").set_input_files(str(path))
    await page.get_by_label("Add everyone to the audience").select_option(label="Imported")
    await page.get_by_role("button", name="Upload and import").click()
    # The progress follows the worker until the end, without a reload.
    await expect(page.locator("[data-import-status]")).to_have_text("done", timeout=30_000)
    await expect(page.locator("[data-import-rows]")).to_have_text("3,000")
    await expect(page.locator("[data-import-rejected]")).to_have_text("1")
    await expect(
        page.get_by_role("link", name=re.compile("Download the rejected rows"))
    ).to_be_visible()
    await _shot(page, output_path, "import")
    assert (await tenant.get(f"/v1/audiences/{audience}")).json()["member_count"] == 2999
    # Every other page, as a marketer reaches it from the top bar.
    for section, shot in (
        ("Audiences", "audiences"),
        ("Contacts", "contacts"),
        ("Domains", "domains"),
        ("API keys", "keys"),
        ("Account", "account"),
    ):
        await (
            page.get_by_role("navigation", name="Sections")
            .get_by_role("link", name=section)
            .click()
        )
        await expect(page.get_by_role("heading", level=1)).to_be_visible()
        await _shot(page, output_path, shot)
        if shot == "contacts":
            await page.get_by_label("Email contains").fill("p0@example")
            await page.get_by_role("button", name="Search").click()
            await page.get_by_role("link", name="p0@example.org").click()
            await expect(page.get_by_role("heading", name="p0@example.org")).to_be_visible()
            await expect(page.get_by_text("Imported")).to_be_visible()
            await _shot(page, output_path, "contact")
