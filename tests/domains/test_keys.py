"""DKIM private keys at rest: sealed under the secret key, sealed when found in clear, and sealed
again under a new secret key by `mailcast domains reseal-keys`."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select

from mailcast.db.models import Domain
from mailcast.domains import repository as domains_repo
from mailcast.domains import service as domains
from mailcast.domains.keys import KeySealer, KeyUnreadable, generate_keypair


async def _stored(sessions, domain_id: str) -> str:
    async with sessions() as session:
        return (
            await session.execute(select(Domain.dkim_private_key).where(Domain.id == domain_id))
        ).scalar_one()


def _public_of(pem: str) -> str:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


async def test_a_new_domain_s_private_key_is_stored_sealed(tenant, sessions, settings):
    domain = (await tenant.post("/v1/domains", json={"name": "sealed.example.com"})).json()
    stored = await _stored(sessions, domain["id"])
    assert stored.startswith("fernet:") and "PRIVATE KEY" not in stored
    pem = KeySealer(settings.secret()).open(stored)
    async with sessions() as session:
        row = await session.get(Domain, domain["id"])
    assert _public_of(pem) == row.dkim_public_key  # the key whose public half is published
    with pytest.raises(KeyUnreadable, match="reseal-keys"):
        KeySealer(b"another secret key entirely").open(stored)


async def test_a_key_stored_in_clear_is_sealed_and_signs_the_same(tenant, sessions, settings):
    domain = (await tenant.post("/v1/domains", json={"name": "legacy.example.com"})).json()
    pem, _ = generate_keypair("rsa")
    async with sessions() as session:  # as a database from before keys were sealed holds it
        await domains_repo.set_private_key(session, domain["id"], pem)
        await session.commit()
    async with sessions() as session:
        assert await domains.seal_stored_keys(session, settings) >= 1
        await session.commit()
    stored = await _stored(sessions, domain["id"])
    assert stored.startswith("fernet:") and KeySealer(settings.secret()).open(stored) == pem
    async with sessions() as session:  # sealed keys are left as they are
        assert await domains.seal_stored_keys(session, settings) == 0


def _cli(
    settings, secret: str, *args: str, previous: str | None = None
) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "MAILCAST_DATABASE_URL": settings.database_url,
        "MAILCAST_DATA_DIR": str(settings.data_dir),
        "MAILCAST_SECRET_KEY": secret,
    }
    env.pop("MAILCAST_PREVIOUS_SECRET_KEY", None)
    if previous is not None:
        env["MAILCAST_PREVIOUS_SECRET_KEY"] = previous
    return subprocess.run(
        [sys.executable, "-m", "mailcast.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_reseal_keys_after_the_secret_key_changed(client, sessions, settings):
    old, new = "the-old-secret-key-0123456789abcdef", "the-new-secret-key-0123456789abcdef"
    account = _cli(settings, old, "accounts", "create", "--name", "Rotating", "--plan", "business")
    account_id = json.loads(account.stdout)["account_id"]
    added = _cli(settings, old, "domains", "add", "--account", account_id, "rotate.example.com")
    domain_id = json.loads(added.stdout)["id"]
    pem = KeySealer(old.encode()).open(await _stored(sessions, domain_id))

    wrong = _cli(
        settings, new, "domains", "reseal-keys", previous="not-the-secret-key-it-was-sealed-under"
    )
    assert wrong.returncode == 1 and "cannot be opened" in wrong.stderr
    assert (
        KeySealer(old.encode()).open(await _stored(sessions, domain_id)) == pem
    )  # nothing was written

    done = _cli(settings, new, "domains", "reseal-keys", previous=old)
    assert done.returncode == 0 and "sealed" in done.stderr, done.stderr
    stored = await _stored(sessions, domain_id)
    assert KeySealer(new.encode()).open(stored) == pem
    with pytest.raises(KeyUnreadable):
        KeySealer(old.encode()).open(stored)


async def test_a_key_the_secret_key_cannot_open_pauses_its_campaign(
    tenant, sessions, settings, worker, relay
):
    settings.smtp_url = relay.url
    await tenant.verified_domain()  # trusted: its messages are signed
    campaign = await tenant.campaign(await tenant.audience(contacts=3), draft=None)
    async with sessions() as session:
        domain = await domains_repo.by_name(session, tenant.account_id, "news.example.com")
        pem = KeySealer(settings.secret()).open(domain.dkim_private_key)
        # as if the secret key changed and nobody resealed the keys
        await domains_repo.set_private_key(
            session, domain.id, KeySealer(b"a secret key of another day").seal(pem)
        )
        await session.commit()
    await worker.run_until_idle()
    shown = (await tenant.get(f"/v1/campaigns/{campaign['id']}")).json()
    assert shown["status"] == "paused" and "reseal-keys" in shown["last_error"]
    assert (
        relay.handler.messages == [] and shown["stats"]["failed_count"] == 0
    )  # nothing lost, nothing unsigned

    async with sessions() as session:
        assert (
            await domains.seal_stored_keys(session, settings, [b"a secret key of another day"]) == 1
        )
        await session.commit()
    assert (await tenant.post(f"/v1/campaigns/{campaign['id']}/resume")).status_code == 200
    await worker.run_until_idle()
    assert (await tenant.get(f"/v1/campaigns/{campaign['id']}")).json()["status"] == "sent"
    assert len(relay.handler.messages) == 3 and all(
        b"DKIM-Signature:" in m.data for m in relay.handler.messages
    )
