"""A/B tests: deterministic, exactly sized assignment; results; the winner (picked by hand or by
the evaluator) and the release of the holdback with the winning content."""

from __future__ import annotations

import hashlib
import math
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any, Literal, cast

from sqlalchemy.ext.asyncio import AsyncSession

from mailcast.campaigns import repository as repo
from mailcast.campaigns.lifecycle import Status
from mailcast.campaigns.schemas import AbResults, AbTest, VariantResult
from mailcast.db.models import Campaign
from mailcast.errors import Conflict, InvalidTransition, NotFound, ValidationFailed
from mailcast.templates import repository as templates_repo
from mailcast.templates.syntax import check_fields
from mailcast.variants import content as content
from mailcast.variants import enabled as enabled


def stored(ab: AbTest | None) -> dict[str, Any] | None:
    return ab.model_dump() if ab is not None else None


async def check(session: AsyncSession, account_id: str, values: dict[str, Any]) -> None:
    """`values`: the campaign's content fields, with the A/B test as stored."""
    ab = values.get("ab_test")
    if not ab or not ab.get("variant_b"):
        return
    b = ab["variant_b"]
    b_template = None
    if b.get("template_id"):
        b_template = await templates_repo.get(session, account_id, b["template_id"])
        if b_template is None:
            raise NotFound("No such template", {"template_id": b["template_id"]})
    check_fields(
        **{
            f"ab_test.variant_b.{k}": b.get(k)
            for k in ("subject", "html", "text_content", "preview_text")
        }
    )
    if ab.get("enabled") and ab.get("winner_metric") == "open_rate":
        # Opens are seen through the pixel, which only an HTML part carries.
        a_template = (
            await templates_repo.get(session, account_id, values["template_id"])
            if values.get("template_id")
            else None
        )
        a_html = values.get("html") or (a_template.html if a_template else None)
        b_html = b.get("html") or (b_template.html if b_template else None) or a_html
        missing = [name for name, html in (("A", a_html), ("B", b_html)) if not html]
        if missing:
            message = (
                f"variant {' and '.join(missing)} would have no HTML part, so its opens could not "
                "be measured; give it HTML or pick click_rate"
            )
            raise ValidationFailed.on("ab_test.winner_metric", message)


async def freeze(session: AsyncSession, campaign: Campaign) -> None:
    """At send start, variant B's template fills the body fields B does not set itself (as a
    campaign's template fills A's)."""
    if not enabled(campaign):
        return
    ab = dict(campaign.ab_test or {})
    b = dict(ab.get("variant_b") or {})
    if b.get("template_id"):
        template = await templates_repo.get(session, campaign.account_id, b["template_id"])
        if template is not None:
            for field, value in (("html", template.html), ("text_content", template.text)):
                if b.get(field) is None:
                    b[field] = value
    ab["variant_b"] = b
    campaign.ab_test = ab


def _half_up(x: Fraction) -> int:
    return math.floor(x + Fraction(1, 2))


def sizes(total: int, sample_percent: float, split_percent: float) -> tuple[int, int, int]:
    """(variant A, variant B, holdback): the sample is round(total x sample%), B is round(sample x
    split%), rounding half up, exactly for the decimal the client wrote (33.5, not a binary
    float)."""
    sample = (
        total if sample_percent >= 100 else _half_up(total * Fraction(str(sample_percent)) / 100)
    )
    b = _half_up(sample * Fraction(str(split_percent)) / 100)
    return sample - b, b, total - sample


def _rank(campaign_id: str, contact_id: str | None, delivery_id: int) -> bytes:
    return hashlib.sha256(f"{campaign_id}:{contact_id or delivery_id}".encode()).digest()


async def assign(session: AsyncSession, campaign: Campaign) -> None:
    """Deterministic by a hash of (campaign, contact), exact in size."""
    if not enabled(campaign):
        return
    rows = await repo.recipients_for_assignment(session, campaign.id)
    ordered = [
        delivery_id for delivery_id, _ in sorted(rows, key=lambda r: _rank(campaign.id, r[1], r[0]))
    ]
    test = campaign.ab_test or {}
    n_a, n_b, _ = sizes(len(ordered), test["sample_percent"], test["split_percent"])
    await repo.set_groups(session, ordered[n_a : n_a + n_b], "b", "b", None)
    await repo.set_groups(session, ordered[n_a + n_b :], "holdback", "a", "held")


def _rates(counts: dict[str, int]) -> VariantResult:
    sent = counts["sent"]
    return VariantResult(
        sent=sent,
        opened=counts["opened"],
        clicked=counts["clicked"],
        open_rate=round(counts["opened"] / sent, 4) if sent else 0.0,
        click_rate=round(counts["clicked"] / sent, 4) if sent else 0.0,
    )


async def results(session: AsyncSession, campaign: Campaign) -> AbResults:
    ab = campaign.ab_test or {}
    counts = await repo.variant_results(session, campaign.id)
    return AbResults(
        enabled=bool(ab.get("enabled")),
        variant_a=_rates(counts["a"]),
        variant_b=_rates(counts["b"]),
        winner_variant=cast(Literal["a", "b"] | None, campaign.ab_winner),
        winner_evaluated_at=campaign.ab_winner_evaluated_at,
        winner_metric=ab.get("winner_metric"),
        holdback_total=counts["holdback"]["total"],
        sample_percent=ab.get("sample_percent", 100),
        split_percent=ab.get("split_percent", 50),
        evaluate_after_minutes=ab.get("evaluate_after_minutes", 60),
    )


def decide(result: AbResults, metric: str) -> str:
    """Higher rate wins; ties go to "a"."""
    a = getattr(result.variant_a, metric)
    b = getattr(result.variant_b, metric)
    return "b" if b > a else "a"


async def pick_winner(
    session: AsyncSession, campaign: Campaign, variant: str, now: datetime
) -> int:
    """Set the winner once and release the holdback with its content; returns how many were
    released."""
    if not enabled(campaign):
        raise Conflict("This campaign has no A/B test", {"ab_test": None})
    if campaign.status not in (Status.SENDING.value, Status.PAUSED.value, Status.SENT.value):
        raise InvalidTransition(
            f"A winner can be picked once the test is sending; this campaign is {campaign.status}",
            {"status": campaign.status},
        )
    if campaign.ab_winner or not await repo.set_winner(session, campaign.id, variant, now):
        await session.refresh(campaign)
        raise Conflict(
            f"The winner is already picked: variant {campaign.ab_winner}",
            {"winner_variant": campaign.ab_winner},
        )
    campaign.ab_winner, campaign.ab_winner_evaluated_at = variant, now
    return await repo.release_holdback(session, campaign.id, variant, now)


def evaluation_due(campaign: Campaign, now: datetime) -> bool:
    ab = campaign.ab_test or {}
    return (
        enabled(campaign)
        and ab.get("winner_metric") is not None
        and ab.get("sample_percent", 100) < 100
        and campaign.send_started_at is not None
        and now
        >= campaign.send_started_at + timedelta(minutes=ab.get("evaluate_after_minutes", 60))
    )
