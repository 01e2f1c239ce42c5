from __future__ import annotations

import pytest

from mailcast.delivery.transports import build_transport
from mailcast.worker.runner import Worker
from tests.smtpserver import LoopbackRelay


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
