from __future__ import annotations


async def test_crud(tenant):
    r = await tenant.post(
        "/v1/templates",
        json={
            "name": "Welcome",
            "subject": "Hi {{ first_name }}",
            "html": "<p>{{ first_name | default: 'there' }}</p>",
            "variables": {"first_name": {"type": "string"}},
        },
    )
    assert r.status_code == 201, r.text
    t = r.json()
    assert t["engine"] == "liquid" and t["id"].startswith("tmpl_")
    r = await tenant.request(
        "PUT", f"/v1/templates/{t['id']}", json={"text": "Hi {{ first_name }}"}
    )
    assert r.json()["text"] == "Hi {{ first_name }}" and r.json()["html"] == t["html"]
    assert [x["id"] for x in (await tenant.get("/v1/templates")).json()["data"]] == [t["id"]]
    assert (await tenant.request("DELETE", f"/v1/templates/{t['id']}")).status_code == 200
    assert (await tenant.get(f"/v1/templates/{t['id']}")).status_code == 404


async def test_syntax_is_validated_on_save(tenant):
    r = await tenant.post("/v1/templates", json={"name": "Bad", "html": "<p>{% for x in %}</p>"})
    assert r.status_code == 422
    assert r.json()["error"]["details"][0]["field"] == "html"
    assert "syntax" in r.json()["error"]["message"]
    assert (await tenant.post("/v1/templates", json={"name": "Empty"})).status_code == 422
    t = (await tenant.post("/v1/templates", json={"name": "Ok", "text": "fine"})).json()
    r = await tenant.request("PATCH", f"/v1/templates/{t['id']}", json={"text": "{{ broken"})
    assert r.status_code == 422
    assert (await tenant.get(f"/v1/templates/{t['id']}")).json()["text"] == "fine"
    r = await tenant.post(
        "/v1/templates", json={"name": "React", "html": "<p/>", "engine": "react"}
    )
    assert r.status_code == 422
