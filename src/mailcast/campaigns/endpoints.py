from __future__ import annotations

from datetime import datetime
from html import escape as html_escape
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from sqlalchemy.ext.asyncio import AsyncSession

from mailcast.api.deps import (
    ClockDep,
    FullKey,
    PageDep,
    ReadKey,
    SendKey,
    SessionDep,
    SettingsDep,
)
from mailcast.api.pagination import Page, page_of
from mailcast.api.routing import ERROR_RESPONSES, SEQUENZY_ERROR_RESPONSES, put_and_patch
from mailcast.api.schemas import Deleted, ErrorOut
from mailcast.campaigns import ab, checks, preview, resend, service
from mailcast.campaigns.counts import Stats
from mailcast.campaigns.lifecycle import Status
from mailcast.campaigns.schemas import (
    AbResults,
    CampaignCreate,
    CampaignOut,
    CampaignStatsOut,
    CampaignUpdate,
    PickWinner,
    RenderOut,
    ResendCampaign,
    ResendOut,
    ScheduleRequest,
    SequenzyCheckOut,
    SequenzyEntity,
    SequenzyIssue,
    SequenzyMergeTag,
    SequenzyRenderOut,
    SequenzyRenderRequest,
    SequenzyResendOut,
    SequenzyTestOut,
    SequenzyTestRequest,
    StatsOut,
    TestSendOut,
    TestSendRequest,
    TestSentOut,
)
from mailcast.clock import Clock
from mailcast.config import Settings
from mailcast.db.models import Campaign
from mailcast.delivery.deps import CodecDep, TransportDep
from mailcast.delivery.tokens import TokenCodec
from mailcast.delivery.transport import Outcome

router = APIRouter(prefix="/v1/campaigns", tags=["Campaigns"], responses=ERROR_RESPONSES)


def _out(c: Campaign, s: Stats, outage: tuple[datetime, str | None] | None = None) -> CampaignOut:
    return CampaignOut(
        id=c.id,
        name=c.name,
        subject=c.subject,
        from_=c.from_address,
        reply_to=c.reply_to,
        preview_text=c.preview_text,
        audience_id=c.audience_id,
        template_id=c.template_id,
        html=c.html,
        text=c.text,
        unsubscribe_url=c.unsubscribe_url,
        status=Status(c.status),
        scheduled_at=c.scheduled_at,
        send_started_at=c.send_started_at,
        sent_at=c.sent_at,
        cancelled_at=c.cancelled_at,
        last_error=c.last_error,
        ab_test=c.ab_test,
        audience_rules=c.audience_rules or [],
        resent_from_id=c.resent_from_id,
        email_id=c.email_id,
        stats=CampaignStatsOut(
            total_recipients=s.total,
            sent_count=s.sent,
            delivered_count=s.delivered,
            opened_count=s.opened,
            clicked_count=s.clicked,
            bounced_count=s.bounced,
            complained_count=s.complained,
            unsubscribed_count=s.unsubscribed,
            failed_count=s.failed,
            unknown_count=s.unknown,
            machine_opened_count=s.machine_opened,
        ),
        created_at=c.created_at,
        updated_at=c.updated_at,
        relay_unreachable_since=outage[0] if outage else None,
        relay_error=outage[1] if outage else None,
    )


async def _one(session: AsyncSession, settings: Settings, campaign: Campaign) -> CampaignOut:
    outages = await service.relay_outages(session, settings, [campaign])
    return _out(
        campaign, (await service.stats(session, [campaign]))[campaign.id], outages.get(campaign.id)
    )


@router.post("", status_code=201, response_model=CampaignOut)
async def create_campaign(
    body: CampaignCreate,
    principal: FullKey,
    session: SessionDep,
    clock: ClockDep,
    settings: SettingsDep,
) -> CampaignOut:
    """Create a campaign. `scheduled_at` in the future schedules it; without it the campaign starts
    sending at once, unless `draft` is true. `from` must be on a verified domain of the account.
    Plan limits (403 `plan_limit_reached`) and the monthly quota (403 `quota_exceeded`) apply."""
    campaign = await service.create_campaign(session, settings, principal.account_id, body, clock())
    return await _one(session, settings, campaign)


@router.get("", response_model=Page[CampaignOut])
async def list_campaigns(
    principal: ReadKey,
    session: SessionDep,
    page: PageDep,
    settings: SettingsDep,
    status: Annotated[Status | None, Query()] = None,
) -> Page[CampaignOut]:
    rows = await service.list_campaigns(
        session, principal.account_id, page.limit, page.cursor, status
    )
    items, has_more, cursor = page_of(rows, page.limit)
    stats = await service.stats(session, items)
    outages = await service.relay_outages(session, settings, items)
    return Page[CampaignOut](
        data=[_out(c, stats[c.id], outages.get(c.id)) for c in items],
        has_more=has_more,
        next_cursor=cursor,
    )


@router.get("/{campaign_id}", response_model=CampaignOut)
async def get_campaign(
    campaign_id: str, principal: ReadKey, session: SessionDep, settings: SettingsDep
) -> CampaignOut:
    return await _one(
        session, settings, await service.get_campaign(session, principal.account_id, campaign_id)
    )


async def update_campaign(
    campaign_id: str,
    body: CampaignUpdate,
    principal: FullKey,
    session: SessionDep,
    clock: ClockDep,
    settings: SettingsDep,
) -> CampaignOut:
    """Update a draft or scheduled campaign (409 otherwise)."""
    campaign = await service.update_campaign(
        session, settings, principal.account_id, campaign_id, body, clock()
    )
    return await _one(session, settings, campaign)


put_and_patch(router, "/{campaign_id}", update_campaign, response_model=CampaignOut)


@router.delete("/{campaign_id}", response_model=Deleted)
async def delete_campaign(campaign_id: str, principal: FullKey, session: SessionDep) -> Deleted:
    """Delete a draft or cancelled campaign (409 otherwise)."""
    await service.delete_campaign(session, principal.account_id, campaign_id)
    return Deleted(id=campaign_id, object="campaign")


@router.post("/{campaign_id}/send", response_model=CampaignOut)
async def send_campaign(
    campaign_id: str,
    principal: SendKey,
    session: SessionDep,
    clock: ClockDep,
    settings: SettingsDep,
) -> CampaignOut:
    """Start sending a draft or scheduled campaign now."""
    campaign = await service.send_campaign(
        session, settings, principal.account_id, campaign_id, clock()
    )
    return await _one(session, settings, campaign)


@router.post("/{campaign_id}/schedule", response_model=CampaignOut)
async def schedule_campaign(
    campaign_id: str,
    body: ScheduleRequest,
    principal: SendKey,
    session: SessionDep,
    clock: ClockDep,
    settings: SettingsDep,
) -> CampaignOut:
    """Schedule (or reschedule) a draft or scheduled campaign."""
    campaign = await service.schedule_campaign(
        session, settings, principal.account_id, campaign_id, body.scheduled_at, clock()
    )
    return await _one(session, settings, campaign)


@router.post("/{campaign_id}/pause", response_model=CampaignOut)
async def pause_campaign(
    campaign_id: str,
    principal: SendKey,
    session: SessionDep,
    clock: ClockDep,
    settings: SettingsDep,
) -> CampaignOut:
    """Pause a sending campaign."""
    return await _one(
        session,
        settings,
        await service.pause_campaign(session, principal.account_id, campaign_id, clock()),
    )


@router.post("/{campaign_id}/resume", response_model=CampaignOut)
async def resume_campaign(
    campaign_id: str,
    principal: SendKey,
    session: SessionDep,
    clock: ClockDep,
    settings: SettingsDep,
) -> CampaignOut:
    """Resume a paused campaign where it stopped."""
    return await _one(
        session,
        settings,
        await service.resume_campaign(session, principal.account_id, campaign_id, clock()),
    )


@router.post("/{campaign_id}/cancel", response_model=CampaignOut)
async def cancel_campaign(
    campaign_id: str,
    principal: FullKey,
    session: SessionDep,
    clock: ClockDep,
    settings: SettingsDep,
) -> CampaignOut:
    """Cancel a draft, scheduled or paused campaign. Sending or sent campaigns: 409."""
    return await _one(
        session,
        settings,
        await service.cancel_campaign(session, principal.account_id, campaign_id, clock()),
    )


@router.get("/{campaign_id}/ab-test/results", response_model=AbResults)
async def ab_test_results(campaign_id: str, principal: ReadKey, session: SessionDep) -> AbResults:
    """Per-variant sent, opened, clicked and rates (unique opens/clicks by people per sent
    delivery)."""
    campaign = await service.get_campaign(session, principal.account_id, campaign_id)
    return await ab.results(session, campaign)


@router.post("/{campaign_id}/ab-test/pick-winner", response_model=AbResults)
async def ab_test_pick_winner(
    campaign_id: str, body: PickWinner, principal: SendKey, session: SessionDep, clock: ClockDep
) -> AbResults:
    """Set the winner by hand; the holdback then receives the winning variant. A second pick:
    409."""
    campaign = await service.get_campaign(session, principal.account_id, campaign_id)
    await ab.pick_winner(session, campaign, body.variant, clock())
    return await ab.results(session, campaign)


@router.post(
    "/{campaign_id}/resend-to-non-openers", response_model=ResendOut, response_model_by_alias=False
)
async def resend_to_non_openers(
    campaign_id: str,
    principal: FullKey,
    session: SessionDep,
    clock: ClockDep,
    settings: SettingsDep,
) -> ResendOut:
    """Create a draft that resends a sent campaign to audience members who did not open it (from 6
    hours after it finished sending). The same operation as `POST
    /api/v1/campaigns/{id}/resend-to-non-openers`, in snake_case."""
    draft, estimate = await resend.resend_to_non_openers(
        session, settings, principal.account_id, campaign_id, clock()
    )
    return ResendOut(
        success=True,
        campaign=ResendCampaign.of(draft, settings),
        estimated_non_opener_count=estimate,
    )


@router.get("/{campaign_id}/render", response_model=RenderOut)
async def render_campaign(
    campaign_id: str,
    principal: ReadKey,
    session: SessionDep,
    clock: ClockDep,
    settings: SettingsDep,
    codec: CodecDep,
    contact_id: Annotated[str | None, Query(max_length=40)] = None,
    variant: Annotated[Literal["a", "b"] | None, Query()] = None,
) -> RenderOut:
    """The subject, HTML and text one contact would get (by default the audience's first member
    who can be mailed, or a sample contact): merge tags filled, links tracked, the pixel and the
    unsubscribe link in place. Its links and pixel record nothing."""
    campaign = await service.get_campaign(session, principal.account_id, campaign_id)
    shown = await preview.render_preview(
        session, settings, codec, campaign, contact_id, variant, clock()
    )
    return RenderOut(
        campaign_id=campaign.id,
        variant=shown.variant,
        contact_id=shown.contact_id,
        email=shown.email,
        subject=shown.subject,
        preview_text=shown.preview_text,
        html=shown.html,
        text=shown.text,
    )


@router.post(
    "/{campaign_id}/test",
    response_model=TestSendOut,
    responses={
        429: {"model": ErrorOut, "description": "More than 20 test messages a campaign an hour"}
    },
)
async def send_test(
    campaign_id: str,
    body: TestSendRequest,
    principal: SendKey,
    session: SessionDep,
    clock: ClockDep,
    settings: SettingsDep,
    codec: CodecDep,
    transport: TransportDep,
) -> TestSendOut:
    """Send the campaign's message now to 1-5 addresses, the subject marked "[Test] ", each
    personalised as the contact of that address if there is one. Not counted in the campaign's
    figures nor in the quota; at most 20 a campaign an hour (429 with Retry-After after that)."""
    sent = await preview.send_test(
        session,
        settings,
        codec,
        transport,
        principal.account_id,
        campaign_id,
        body.emails,
        body.variant,
        clock(),
    )
    return TestSendOut(
        campaign_id=sent.campaign_id,
        variant=sent.variant,
        subject=sent.subject,
        recipients=[
            TestSentOut(email=r.email, status=r.status, message=r.message, message_id=r.message_id)
            for r in sent.recipients
        ],
    )


@router.get("/{campaign_id}/stats", response_model=StatsOut)
async def campaign_stats(campaign_id: str, principal: ReadKey, session: SessionDep) -> StatsOut:
    """Delivery statistics: sent counts accepted and rejected messages, delivered = sent -
    bounced."""
    campaign = await service.get_campaign(session, principal.account_id, campaign_id)
    s = (await service.stats(session, [campaign]))[campaign.id]
    return StatsOut(
        campaign_id=campaign.id,
        total=s.total,
        sent=s.sent,
        delivered=s.delivered,
        opened=s.opened,
        machine_opened=s.machine_opened,
        clicked=s.clicked,
        bounced=s.bounced,
        complained=s.complained,
        unsubscribed=s.unsubscribed,
    )


# The Sequenzy dialect of resend-to-non-openers: the same operation, its request and response as
# that API documents them (camelCase), so the sequenzy SDK pointed at http://HOST/api/v1 parses it.
sequenzy_router = APIRouter(
    prefix="/api/v1/campaigns",
    tags=["Campaigns (Sequenzy dialect)"],
    responses=SEQUENZY_ERROR_RESPONSES,
)


@sequenzy_router.post(
    "/{campaignId}/resend-to-non-openers",
    response_model=SequenzyResendOut,
    response_model_by_alias=True,
)
async def sequenzy_resend_to_non_openers(
    campaignId: str,
    principal: FullKey,
    session: SessionDep,  # noqa: N803
    clock: ClockDep,
    settings: SettingsDep,
) -> SequenzyResendOut:
    """Create a draft that resends a sent campaign to everyone in the same audience who didn't open
    it."""
    draft, estimate = await resend.resend_to_non_openers(
        session, settings, principal.account_id, campaignId, clock()
    )
    return SequenzyResendOut(
        success=True,
        campaign=ResendCampaign.of(draft, settings),
        estimated_non_opener_count=estimate,
    )


async def _sequenzy_preview(
    session: AsyncSession,
    settings: Settings,
    codec: TokenCodec,
    clock: Clock,
    account_id: str,
    campaign_id: str,
    body: SequenzyRenderRequest,
) -> tuple[Campaign, preview.Preview]:
    campaign = await service.get_campaign(session, account_id, campaign_id)
    return campaign, await preview.render_preview(
        session, settings, codec, campaign, body.subscriber_id, body.variant_id, clock()
    )


@sequenzy_router.post(
    "/{campaignId}/render", response_model=SequenzyRenderOut, response_model_by_alias=True
)
async def sequenzy_render(
    campaignId: str,
    principal: ReadKey,
    session: SessionDep,
    clock: ClockDep,  # noqa: N803
    settings: SettingsDep,
    codec: CodecDep,
    body: SequenzyRenderRequest | None = None,
) -> SequenzyRenderOut:
    """The campaign's HTML as a contact (`subscriberId`) or the audience's first member gets it."""
    campaign, shown = await _sequenzy_preview(
        session,
        settings,
        codec,
        clock,
        principal.account_id,
        campaignId,
        body or SequenzyRenderRequest(),
    )
    tags = await _unknown_tags(session, campaign, shown.variant)
    return SequenzyRenderOut(
        entity=SequenzyEntity(id=campaign.id, variant_id=shown.variant),
        html=shown.html or f"<pre>{html_escape(shown.text)}</pre>",
        personalized=shown.personalized,
        preview_text=shown.preview_text,
        subject=shown.subject,
        unresolved_merge_tags=[SequenzyMergeTag(tag=t) for t in tags],
    )


async def _unknown_tags(session: AsyncSession, campaign: Campaign, variant: str) -> list[str]:
    parts = ab.content(await service.content_as_sent(session, campaign), variant)
    return checks.unknown_tags(*(parts[f] for f in ("subject", "html", "text", "preview_text")))


_SEQUENZY_SEVERITY: dict[str, Literal["error", "warning", "info"]] = {
    checks.FAIL: "error",
    checks.WARN: "warning",
    checks.OK: "info",
}
_SEQUENZY_CATEGORY: dict[str, Literal["subject", "preview", "content"]] = {
    "merge_tags": "content",
    "links": "content",
    "unsubscribe_link": "content",
    "sender_domain": "content",
    "quota": "content",
}


@sequenzy_router.post(
    "/{campaignId}/check", response_model=SequenzyCheckOut, response_model_by_alias=True
)
async def sequenzy_check(
    campaignId: str,
    principal: ReadKey,
    session: SessionDep,
    clock: ClockDep,  # noqa: N803
    settings: SettingsDep,
    codec: CodecDep,
    body: SequenzyRenderRequest | None = None,
) -> SequenzyCheckOut:
    """The pre-send checks (links are judged as written, not fetched: `linksChecked` is false)."""
    campaign, shown = await _sequenzy_preview(
        session,
        settings,
        codec,
        clock,
        principal.account_id,
        campaignId,
        body or SequenzyRenderRequest(),
    )
    found = await checks.run(session, settings, campaign, clock())
    problems = [c for c in found if c.state != checks.OK]
    score = max(
        0,
        100
        - 40 * sum(c.state == checks.FAIL for c in found)
        - 10 * sum(c.state == checks.WARN for c in found),
    )
    grade: Literal["A", "B", "C", "D", "F"] = (
        "A"
        if score >= 90
        else "B"
        if score >= 80
        else "C"
        if score >= 70
        else "D"
        if score >= 60
        else "F"
    )
    tags = await _unknown_tags(session, campaign, shown.variant)
    return SequenzyCheckOut(
        entity=SequenzyEntity(id=campaign.id, variant_id=shown.variant),
        subject=shown.subject,
        preview_text=shown.preview_text,
        score=score,
        grade=grade,
        issues=[
            SequenzyIssue(
                category=_SEQUENZY_CATEGORY.get(c.name, "content"),
                severity=_SEQUENZY_SEVERITY[c.state],
                rule=c.name,
                message=c.message,
            )
            for c in problems
        ],
        unresolved_merge_tags=[SequenzyMergeTag(tag=t) for t in tags],
    )


@sequenzy_router.post(
    "/{campaignId}/test", response_model=SequenzyTestOut, response_model_by_alias=True
)
async def sequenzy_send_test(
    campaignId: str,
    body: SequenzyTestRequest,
    principal: SendKey,  # noqa: N803
    session: SessionDep,
    clock: ClockDep,
    settings: SettingsDep,
    codec: CodecDep,
    transport: TransportDep,
) -> SequenzyTestOut:
    """Send the campaign's message as a test to one address (see `POST /v1/campaigns/{id}/test`)."""
    sent = await preview.send_test(
        session,
        settings,
        codec,
        transport,
        principal.account_id,
        campaignId,
        [body.to],
        None,
        clock(),
    )
    (one,) = sent.recipients
    return SequenzyTestOut(
        success=one.status is Outcome.SENT,
        campaign_id=sent.campaign_id,
        email_send_id=one.message_id,
        recipient_email=one.email,
        message=one.message,
    )
