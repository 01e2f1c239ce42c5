"""A signed-in browser's view of the dashboard, over the ASGI app (the browser tests use
uvicorn)."""

from __future__ import annotations

import re

import httpx
import pytest

from mailcast.accounts import users

PASSWORD = "correct horse battery staple"


class Browser:
    """An httpx client that keeps its cookies, as a browser does, and knows its CSRF token."""

    def __init__(self, app, tenant) -> None:
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
            base_url="http://mailcast.test",
        )
        self.tenant = tenant
        self.csrf = ""

    async def sign_in(self, email: str, password: str = PASSWORD) -> httpx.Response:
        r = await self.client.post("/dashboard/login", data={"email": email, "password": password})
        if r.status_code == 303:
            page = await self.client.get(r.headers["location"])
            self.csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        return r

    async def get(self, path: str, **kw) -> httpx.Response:
        return await self.client.get(path, **kw)

    async def post(
        self, path: str, data: dict | None = None, csrf: bool = True, **kw
    ) -> httpx.Response:
        return await self.client.post(
            path, data={**(data or {}), **({"csrf": self.csrf} if csrf else {})}, **kw
        )


@pytest.fixture
def make_user(sessions, clock):
    async def make(tenant, email: str, role: str = "owner"):
        async with sessions() as session:
            user = await users.create_user(
                session, tenant.account_id, email, users.Role(role), PASSWORD, clock()
            )
            await session.commit()
        return user

    return make


@pytest.fixture
async def dashboard(app, tenant, make_user):
    await make_user(tenant, "owner@acme.example")
    b = Browser(app, tenant)
    assert (await b.sign_in("owner@acme.example")).status_code == 303
    yield b
    await b.client.aclose()


@pytest.fixture
def new_browser(app):
    opened = []

    def make(tenant) -> Browser:
        b = Browser(app, tenant)
        opened.append(b)
        return b

    yield make


CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """Debian's Chromium (Playwright's own download does not work here), headless, without the
    background traffic a closed network refuses."""
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "headless": True,
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    }
