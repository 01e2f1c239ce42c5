"""Templates are bounded: a loop, an output or a render time past the limits is refused when
the content is saved (422 naming the limit) and fails only that delivery when it is sent."""

from __future__ import annotations

import time

import pytest

from mailcast.delivery.render import RenderError, compile_variant, recipient_context, render
from mailcast.templates.bounded import LOOP_ITERATIONS, OUTPUT_CHARACTERS

LOOP = "{% for i in (1..3000000) %}x{% endfor %}"
NESTED = "{% for i in (1..1000) %}{% for j in (1..1000) %}x{% endfor %}{% endfor %}"
SEQUENTIAL = "".join("{% for i in (1..5000) %}{% endfor %}" for _ in range(20))
GROWING = (
    "{% assign s = 'xxxxxxxxxx' %}{% for i in (1..30) %}{% assign s = s | append: s %}"
    "{% endfor %}{{ s }}"
)


@pytest.mark.parametrize(
    "html, limit",
    [
        (LOOP, "loop iteration limit"),
        (NESTED, "loop iteration limit"),
        (SEQUENTIAL, "loop iteration limit"),
        (GROWING, "assigned variables"),
    ],
)
async def test_a_campaign_over_a_limit_is_refused_naming_it(tenant, html, limit):
    await tenant.verified_domain()
    audience = await tenant.audience(contacts=1)
    r = await tenant.post(
        "/v1/campaigns", json=tenant.campaign_body(audience, html=f"<p>{html}</p>")
    )
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert any(d["field"] == "html" and limit in d["message"] for d in error["details"]), error


async def test_a_template_over_a_limit_is_refused(tenant):
    r = await tenant.post(
        "/v1/templates", json={"name": "Loop", "subject": "Hi", "html": f"<p>{NESTED}</p>"}
    )
    assert r.status_code == 422 and "loop iteration limit" in r.text


async def test_a_link_may_not_hold_liquid_tags(tenant):
    await tenant.verified_domain()
    audience = await tenant.audience(contacts=1)
    html = '<a href="https://shop.example.com/{% for i in (1..10) %}{{ i }}{% endfor %}">Shop</a>'
    r = await tenant.post("/v1/campaigns", json=tenant.campaign_body(audience, html=html))
    assert r.status_code == 422 and "merge tags" in r.text
    html = '<a href="https://shop.example.com/?who={{ email }}">Shop</a>'
    assert (
        await tenant.post("/v1/campaigns", json=tenant.campaign_body(audience, html=html))
    ).status_code == 201


def test_a_loop_that_depends_on_the_contact_fails_that_delivery_quickly():
    """What a trial render cannot see (the loop's length is the contact's data) stops at the limit
    while sending: the delivery fails with the limit named, in a bounded time."""
    compiled = compile_variant(
        "Hi", "<p>{% for i in (1..metadata.n) %}{{ i }}{% endfor %}</p>", None, None
    )
    context = recipient_context("a@example.org", None, None, {"n": 10_000_000}, "https://x.test/u")
    started = time.monotonic()
    with pytest.raises(RenderError, match="loop iteration limit"):
        render(compiled, context, [], None)
    assert time.monotonic() - started < 1.0
    fine = recipient_context(
        "a@example.org", None, None, {"n": LOOP_ITERATIONS // 2}, "https://x.test/u"
    )
    assert render(compiled, fine, [], None).html.count("</p>") == 1


def test_output_is_bounded():
    source = "{% for i in (1..40000) %}" + "y" * 100 + "{% endfor %}"
    compiled = compile_variant("Hi", None, source, None)
    with pytest.raises(RenderError, match=f"output size limit \\({OUTPUT_CHARACTERS:,}"):
        render(
            compiled,
            recipient_context("a@example.org", None, None, None, "https://x.test/u"),
            [],
            None,
        )
