"""The lifecycle as a user drives it over HTTP: random action sequences (Hypothesis) against a
real uvicorn server never reach a state the transition table forbids, and concurrent requests
cannot both move one campaign."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select

from mailcast.campaigns import repository as campaigns_repo
from mailcast.campaigns.lifecycle import ALLOWED, Status
from mailcast.db.models import Delivery

# The spec's lifecycle, written out independently of the code's table: action -> {from: to}.
EXPECTED = {
    "send": {"draft": "sending", "scheduled": "sending"},
    "schedule": {"draft": "scheduled", "scheduled": "scheduled"},
    "pause": {"sending": "paused"},
    "resume": {"paused": "sending"},
    "cancel": {"draft": "cancelled", "scheduled": "cancelled", "paused": "cancelled"},
}
EDITABLE = {"draft", "scheduled"}
DELETABLE = {"draft", "cancelled"}


def make_machine(base_url: str, key: str, campaign_body: dict, future: str):
    class Lifecycle(RuleBasedStateMachine):
        campaigns = Bundle("campaigns")

        def __init__(self) -> None:
            super().__init__()
            self.http = httpx.Client(
                base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
            )
            self.model: dict[str, str] = {}

        def teardown(self) -> None:
            self.http.close()

        def _observe(
            self, cid: str, before: str, response: httpx.Response, expected: str | None
        ) -> None:
            if expected is None:
                assert response.status_code == (404 if before == "deleted" else 409), response.text
                return
            assert response.status_code == 200, response.text
            after = response.json()["status"]
            assert after == expected
            assert after == before or Status(after) in ALLOWED[Status(before)]
            self.model[cid] = after

        @rule(target=campaigns, mode=st.sampled_from(["draft", "scheduled", "now"]))
        def create(self, mode: str) -> str:
            body = dict(campaign_body)
            if mode == "draft":
                body["draft"] = True
            elif mode == "scheduled":
                body["scheduled_at"] = future
            r = self.http.post("/v1/campaigns", json=body)
            assert r.status_code == 201, r.text
            expected = {"draft": "draft", "scheduled": "scheduled", "now": "sending"}[mode]
            assert r.json()["status"] == expected
            self.model[r.json()["id"]] = expected
            return r.json()["id"]

        @rule(cid=campaigns, action=st.sampled_from(sorted(EXPECTED)))
        def act(self, cid: str, action: str) -> None:
            before = self.model[cid]
            body = {"scheduled_at": future} if action == "schedule" else None
            r = self.http.post(f"/v1/campaigns/{cid}/{action}", json=body)
            self._observe(cid, before, r, EXPECTED[action].get(before))

        @rule(cid=campaigns)
        def update(self, cid: str) -> None:
            before = self.model[cid]
            r = self.http.patch(f"/v1/campaigns/{cid}", json={"name": "Edited"})
            self._observe(cid, before, r, before if before in EDITABLE else None)

        @rule(cid=campaigns)
        def delete(self, cid: str) -> None:
            before = self.model[cid]
            r = self.http.delete(f"/v1/campaigns/{cid}")
            if before in DELETABLE:
                assert r.status_code == 200, r.text
                self.model[cid] = "deleted"
            else:
                assert r.status_code == (404 if before == "deleted" else 409), r.text

        @invariant()
        def server_agrees(self) -> None:
            listed = {
                c["id"]: c["status"]
                for c in self.http.get("/v1/campaigns", params={"limit": 100}).json()["data"]
            }
            # Earlier examples' campaigns stay in the database; this machine's are the newest.
            assert {cid: listed.get(cid, "deleted") for cid in self.model} == self.model

    return Lifecycle


async def test_random_action_sequences_respect_the_table(tenant, live_server, clock):
    await tenant.verified_domain()
    audience = await tenant.audience(contacts=2)
    body = tenant.campaign_body(audience)
    body.pop("draft")
    future = (clock() + timedelta(days=2)).isoformat()
    machine = make_machine(live_server.url, tenant.key, body, future)
    # The server runs in its own thread; blocking this loop while Hypothesis drives it is fine.
    run_state_machine_as_test(
        machine,
        settings=hsettings(
            max_examples=25,
            stateful_step_count=12,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )


async def _delivery_count(sessions, cid: str) -> int:
    async with sessions() as session:
        stmt = select(func.count()).select_from(Delivery).where(Delivery.campaign_id == cid)
        return (await session.execute(stmt)).scalar_one()


async def test_concurrent_sends_move_the_campaign_once(tenant, sessions):
    await tenant.verified_domain()
    audience = await tenant.audience(contacts=5)
    c = await tenant.campaign(audience)
    results = await asyncio.gather(
        *[tenant.post(f"/v1/campaigns/{c['id']}/send") for _ in range(6)]
    )
    assert sorted(r.status_code for r in results) == [200] + [409] * 5
    assert await _delivery_count(sessions, c["id"]) == 5  # queued once, not six times


async def test_concurrent_pause_and_cancel(tenant):
    await tenant.verified_domain()
    audience = await tenant.audience(contacts=2)
    c = await tenant.campaign(audience, draft=None)
    results = await asyncio.gather(
        *[tenant.post(f"/v1/campaigns/{c['id']}/pause") for _ in range(5)]
    )
    assert sorted(r.status_code for r in results) == [200] + [409] * 4
    results = await asyncio.gather(
        tenant.post(f"/v1/campaigns/{c['id']}/resume"),
        tenant.post(f"/v1/campaigns/{c['id']}/cancel"),
    )
    codes = [r.status_code for r in results]
    assert sorted(codes) == [200, 409]
    final = (await tenant.get(f"/v1/campaigns/{c['id']}")).json()["status"]
    assert final == ("sending" if codes[0] == 200 else "cancelled")


async def test_guarded_update_under_interleaved_transactions(tenant, sessions, engine):
    """Two transactions decide on the same observed status; only the first write wins."""
    if engine.dialect.name == "sqlite":
        pytest.skip(
            "SQLite serialises whole transactions (BEGIN IMMEDIATE); they cannot interleave"
        )
    await tenant.verified_domain()
    c = await tenant.campaign(await tenant.audience(contacts=1))
    async with sessions() as first, sessions() as second:
        assert (await campaigns_repo.get(first, tenant.account_id, c["id"])).status == "draft"
        assert (await campaigns_repo.get(second, tenant.account_id, c["id"])).status == "draft"
        assert await campaigns_repo.compare_and_set(
            first, c["id"], Status.DRAFT, {"status": "cancelled"}
        )
        await first.commit()
        assert not await campaigns_repo.compare_and_set(
            second, c["id"], Status.DRAFT, {"status": "sending"}
        )
        await second.rollback()
    assert (await tenant.get(f"/v1/campaigns/{c['id']}")).json()["status"] == "cancelled"
