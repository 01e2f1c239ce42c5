"""Test fixtures: a real database (SQLite always, PostgreSQL when MAILCAST_TEST_DATABASE_URL is
set; the whole suite runs once per backend), the ASGI app over httpx, a fixed clock, a DNS
server on loopback, and uvicorn on loopback for end-to-end tests."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import text

from mailcast.accounts import service as accounts
from mailcast.app import create_app
from mailcast.clock import FixedClock
from mailcast.config import Settings
from mailcast.db.engine import create_engine, is_sqlite, session_factory
from mailcast.db.migrate import upgrade
from mailcast.db.models import Base
from mailcast.delivery.transports import build_transport
from mailcast.domains import service as domains
from mailcast.domains.dns import Resolver
from mailcast.scopes import Scope
from mailcast.worker.runner import Worker
from tests.dnsserver import LoopbackDns
from tests.smtpserver import LoopbackRelay

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

BACKENDS = ["sqlite"] + (["postgresql"] if os.environ.get("MAILCAST_TEST_DATABASE_URL") else [])


@pytest.fixture(scope="session", params=BACKENDS)
def db_url(request, tmp_path_factory) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'mailcast.db'}"
    return os.environ["MAILCAST_TEST_DATABASE_URL"]


@pytest.fixture(scope="session")
async def engine(db_url):
    engine = create_engine(db_url)
    if not is_sqlite(db_url):
        # The test database is the suite's own: start from an empty schema every run.
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    await upgrade(engine)
    yield engine
    await engine.dispose()


@pytest.fixture(autouse=True)
async def _clean_tables(request):
    yield
    if "engine" not in request.fixturenames:
        return
    engine = request.getfixturevalue("engine")
    async with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            await conn.execute(table.delete())


@pytest.fixture
async def sessions(engine):
    return session_factory(engine)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture(scope="session")
def dns_server():
    server = LoopbackDns()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def dns(dns_server):
    dns_server.clear()
    yield dns_server
    dns_server.clear()


@pytest.fixture
def settings(tmp_path, db_url, dns_server) -> Settings:
    # Rate limits off: tests call faster than any client should; tests/api/test_rate_limits.py turns
    # them on.
    return Settings(
        data_dir=tmp_path,
        database_url=db_url,
        dns_nameservers=dns_server.nameserver,
        dns_timeout_seconds=2.0,
        secret_key="test-secret-key-0123456789abcdef",
        rate_limits_enabled=False,
    )


@pytest.fixture
async def app(settings, engine, clock, dns_server):
    return create_app(
        settings,
        engine=engine,
        clock=clock,
        dns=Resolver(dns_server.nameserver, settings.dns_timeout_seconds),
    )


@pytest.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://mailcast.test") as c:
        yield c


@dataclass
class Tenant:
    """An account seen through the API with one key, plus shortcuts to build its resources."""

    account_id: str
    key: str
    client: httpx.AsyncClient
    sessions: object
    clock: FixedClock
    settings: Settings
    domain_name: str = ""
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}"}

    async def request(
        self, method: str, path: str, key: str | None = None, **kwargs
    ) -> httpx.Response:
        return await self.client.request(method, path, headers=self.auth(key), **kwargs)

    async def get(self, path: str, **kwargs) -> httpx.Response:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs) -> httpx.Response:
        return await self.request("POST", path, **kwargs)

    async def key_with(self, scope: Scope) -> str:
        async with self.sessions() as session:
            _, raw = await accounts.create_api_key(
                session, self.account_id, scope.value, scope, self.clock()
            )
            await session.commit()
        return raw

    async def verified_domain(self, name: str = "news.example.com") -> str:
        async with self.sessions() as session:
            await domains.create_domain(
                session, self.account_id, name, self.clock(), self.settings, trusted=True
            )
            await session.commit()
        self.domain_name = name
        return name

    async def audience(self, contacts: int = 0, name: str = "Newsletter") -> str:
        r = await self.post("/v1/audiences", json={"name": name})
        assert r.status_code == 201, r.text
        audience_id = r.json()["id"]
        if contacts:
            rows = [
                {"email": f"user{i}@{audience_id[-8:]}.example.org", "first_name": f"User{i}"}
                for i in range(contacts)
            ]
            r = await self.post(
                "/v1/contacts/import", json={"contacts": rows, "audience_id": audience_id}
            )
            assert r.status_code == 200, r.text
        return audience_id

    def campaign_body(self, audience_id: str, **overrides) -> dict:
        body = {
            "name": "March Newsletter",
            "subject": "What's new in March, {{ first_name | default: 'friend' }}",
            "from": f"Newsletter <news@{self.domain_name or 'news.example.com'}>",
            "audience_id": audience_id,
            "html": "<h1>March</h1><p>Hello {{ first_name }}</p>",
            "unsubscribe_url": "https://acme.example/unsubscribe",
            "draft": True,
        }
        body.update(overrides)
        return {k: v for k, v in body.items() if v is not None}

    async def campaign(self, audience_id: str | None = None, **overrides) -> dict:
        if not self.domain_name:
            await self.verified_domain()
        if audience_id is None:
            audience_id = await self.audience(contacts=3)
        r = await self.post("/v1/campaigns", json=self.campaign_body(audience_id, **overrides))
        assert r.status_code == 201, r.text
        return r.json()


@pytest.fixture
def make_tenant(client, sessions, clock, settings):
    async def make(plan: str = "business") -> Tenant:
        async with sessions() as session:
            account, _key, raw = await accounts.create_account(
                session, f"Tenant {plan}", plan, clock()
            )
            await session.commit()
        return Tenant(account.id, raw, client, sessions, clock, settings)

    return make


@pytest.fixture
async def tenant(make_tenant) -> Tenant:
    return await make_tenant()


def _free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """uvicorn serving a fresh app (its own engine) on loopback, in a thread; `run_worker`: with
    the embedded worker, as `mailcast serve` runs it."""

    def __init__(self, settings: Settings, clock: FixedClock, run_worker: bool = False) -> None:
        import uvicorn

        self.port = _free_tcp_port()
        self.url = f"http://127.0.0.1:{self.port}"
        app = create_app(settings, clock=clock, run_worker=run_worker)
        self.server = uvicorn.Server(
            uvicorn.Config(
                app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
            )
        )
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()), daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


@pytest.fixture
def live_server(settings, clock, engine):
    with LiveServer(settings, clock) as server:
        yield server


@pytest.fixture
async def relay():
    server = await LoopbackRelay().start()
    yield server
    await server.stop()


@pytest.fixture
async def worker(sessions, settings, clock, relay):
    settings.smtp_url = relay.url
    transport, _ = build_transport(settings)
    yield Worker(sessions, settings, transport, clock, worker_id="test-worker")
    await transport.close()
