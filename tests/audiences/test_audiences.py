from __future__ import annotations


async def test_crud_and_member_count(tenant):
    r = await tenant.post("/v1/audiences", json={"name": "Newsletter", "description": "Weekly"})
    assert r.status_code == 201
    audience = r.json()
    assert audience["member_count"] == 0 and audience["id"].startswith("aud_")
    ids = [
        (await tenant.post("/v1/contacts", json={"email": f"m{i}@example.org"})).json()["id"]
        for i in range(3)
    ]
    r = await tenant.post(f"/v1/audiences/{audience['id']}/contacts", json={"contact_ids": ids[:2]})
    assert r.json() == {"added": 2}
    r = await tenant.post(f"/v1/audiences/{audience['id']}/contacts", json={"contact_ids": ids})
    assert r.json() == {"added": 1}  # memberships are idempotent
    assert (await tenant.get(f"/v1/audiences/{audience['id']}")).json()["member_count"] == 3
    listed = (await tenant.get(f"/v1/audiences/{audience['id']}/contacts")).json()["data"]
    assert {c["id"] for c in listed} == set(ids)
    r = await tenant.request("DELETE", f"/v1/audiences/{audience['id']}/contacts/{ids[0]}")
    assert r.status_code == 200
    assert (
        await tenant.request("DELETE", f"/v1/audiences/{audience['id']}/contacts/{ids[0]}")
    ).status_code == 404
    assert (await tenant.get(f"/v1/contacts/{ids[0]}")).status_code == 200  # the contact stays
    r = await tenant.request("PATCH", f"/v1/audiences/{audience['id']}", json={"name": "Renamed"})
    assert (
        r.json()["name"] == "Renamed"
        and r.json()["description"] == "Weekly"
        and r.json()["member_count"] == 2
    )
    assert (await tenant.request("DELETE", f"/v1/audiences/{audience['id']}")).status_code == 200
    assert (await tenant.get(f"/v1/contacts/{ids[1]}")).status_code == 200


async def test_adding_foreign_or_unknown_contacts_adds_nothing(make_tenant):
    owner, stranger = await make_tenant(), await make_tenant()
    audience = (await owner.post("/v1/audiences", json={"name": "A"})).json()["id"]
    mine = (await owner.post("/v1/contacts", json={"email": "mine@example.org"})).json()["id"]
    theirs = (await stranger.post("/v1/contacts", json={"email": "theirs@example.org"})).json()[
        "id"
    ]
    r = await owner.post(f"/v1/audiences/{audience}/contacts", json={"contact_ids": [mine, theirs]})
    assert r.status_code == 404 and r.json()["error"]["details"] == {"contact_ids": [theirs]}
    assert (await owner.get(f"/v1/audiences/{audience}")).json()["member_count"] == 0


async def test_deleting_a_contact_or_an_audience_leaves_no_membership(tenant, sessions):
    """No foreign key does it on PostgreSQL: the deletes themselves take the memberships along."""
    from sqlalchemy import func, select

    from mailcast.db.models import AudienceMember

    async def memberships() -> int:
        async with sessions() as session:
            return (
                await session.execute(select(func.count()).select_from(AudienceMember))
            ).scalar_one()

    kept = (await tenant.post("/v1/audiences", json={"name": "Kept"})).json()["id"]
    gone = (await tenant.post("/v1/audiences", json={"name": "Gone"})).json()["id"]
    contacts = [
        (
            await tenant.post(
                "/v1/contacts", json={"email": f"m{i}@example.org", "audience_id": kept}
            )
        ).json()["id"]
        for i in range(3)
    ]
    assert (
        await tenant.post(f"/v1/audiences/{gone}/contacts", json={"contact_ids": contacts})
    ).status_code == 200
    assert await memberships() == 6
    assert (await tenant.request("DELETE", f"/v1/contacts/{contacts[0]}")).status_code == 200
    assert await memberships() == 4
    assert (await tenant.request("DELETE", f"/v1/audiences/{gone}")).status_code == 200
    assert await memberships() == 2
    assert (await tenant.get(f"/v1/audiences/{kept}")).json()["member_count"] == 2
