"""The dashboard's pages and actions. Each route parses the form, calls the service functions the
`/v1` endpoints call (with the signed-in user's principal), and renders a template; no rule, query
or permission check lives here or in a template."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData

from mailcast.accounts import users
from mailcast.accounts.users import SignedIn
from mailcast.api.deps import ClockDep, SessionDep, SettingsDep
from mailcast.campaigns import ab, checks, insights, preview, resend
from mailcast.campaigns import repository as campaigns_repo
from mailcast.campaigns import service as campaigns
from mailcast.campaigns.lifecycle import ACTIONS, DELETABLE, EDITABLE, Action, Status
from mailcast.campaigns.schemas import CampaignUpdate
from mailcast.db.models import Campaign
from mailcast.delivery.deps import CodecDep, TransportDep
from mailcast.errors import MailcastError, ValidationFailed
from mailcast.scopes import Scope
from mailcast.statuses import CampaignStatus
from mailcast.web import auth
from mailcast.web.auth import COOKIE, Signed
from mailcast.web.charts import series_chart
from mailcast.web.pages import HEADERS, fragment, page

router = APIRouter(prefix="/dashboard", include_in_schema=False)
PAGE = 25
NOTICES = {
    "sent": "The campaign is sending.",
    "scheduled": "The campaign is scheduled.",
    "paused": "Paused.",
    "resumed": "Sending again.",
    "cancelled": "Cancelled.",
    "saved": "Saved.",
    "picked": "The winner is set.",
    "test": "The test is sent.",
    "resent": "This is the draft for the non-openers: review it, then send it.",
}


def _home(account_id: str) -> str:
    return f"/dashboard/company/{account_id}/campaigns"


def _campaign_url(account_id: str, campaign_id: str, **query: str) -> str:
    url = f"/dashboard/company/{account_id}/campaign/{campaign_id}"
    return url + ("?" + urlencode(query) if query else "")


def see(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=HEADERS)


def _client(request: Request) -> str:
    return (request.client.host if request.client else "unknown")[:64]


@router.get("/login", response_class=HTMLResponse)
async def login_page(
    request: Request, session: SessionDep, next: Annotated[str, Query(max_length=500)] = ""
) -> Response:  # noqa: A002
    signed = await users.signed_in(session, request.cookies.get(COOKIE), request.app.state.clock())
    if signed is not None:
        return see(_home(signed.user.account_id))
    return page(request, "login.html", next=next)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, session: SessionDep, clock: ClockDep) -> Response:
    form = await request.form(max_fields=10)
    email, password, target = (str(form.get(k, "")) for k in ("email", "password", "next"))
    try:
        token, web = await users.sign_in(session, email, password, _client(request), clock())
    except users.WrongCredentials as exc:
        await session.commit()  # the failure counts toward the throttle
        return page(
            request, "login.html", http_status=401, error=exc.message, email=email, next=target
        )
    except MailcastError as exc:  # too many failures
        return page(
            request,
            "login.html",
            http_status=exc.status,
            error=exc.message,
            email=email,
            next=target,
            headers=exc.headers,
        )
    signed = await users.signed_in(session, token, clock())
    assert signed is not None
    home = (
        target
        if target.startswith("/dashboard/") and not target.startswith("//")
        else _home(signed.user.account_id)
    )
    response = see(home)
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="lax",
        secure=auth.secure_cookies(request),
        path="/dashboard",
        max_age=int(users.SESSION_LIMIT.total_seconds()),
    )
    return response


@router.post("/logout")
async def logout(request: Request, signed: Signed, session: SessionDep) -> Response:
    await auth.changing(request, signed, Scope.READ_ONLY)
    await users.sign_out(session, request.cookies.get(COOKIE))
    response = see("/dashboard/login")
    response.delete_cookie(COOKIE, path="/dashboard")
    return response


@router.get("")
@router.get("/")
async def home(signed: Signed) -> Response:
    return see(_home(signed.user.account_id))


@router.get("/company/{account_id}/campaigns", response_class=HTMLResponse)
async def campaign_list(
    request: Request,
    account_id: str,
    signed: Signed,
    session: SessionDep,
    status: Annotated[Status | None, Query()] = None,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    auth.in_account(signed, account_id)
    rows = await campaigns.list_campaigns(session, account_id, PAGE, cursor, status)
    items, more = rows[:PAGE], len(rows) > PAGE
    stats = await campaigns.stats(session, items)
    return page(
        request,
        "campaigns/list.html",
        signed,
        campaigns=items,
        stats=stats,
        status=status,
        statuses=list(Status),
        next_cursor=items[-1].id if more else None,
    )


async def _campaign(
    session: AsyncSession, signed: SignedIn, account_id: str, campaign_id: str
) -> Campaign:
    auth.in_account(signed, account_id)
    return await campaigns.get_campaign(session, account_id, campaign_id)


@router.get("/company/{account_id}/campaign/{campaign_id}", response_class=HTMLResponse)
async def campaign_page(
    request: Request,
    account_id: str,
    campaign_id: str,
    signed: Signed,
    session: SessionDep,
    clock: ClockDep,
    settings: SettingsDep,
    codec: CodecDep,
    step: Annotated[str | None, Query(max_length=20)] = None,
    variant: Annotated[str | None, Query(pattern="^[ab]$")] = None,
    contact_id: Annotated[str | None, Query(max_length=40)] = None,
    notice: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    campaign = await _campaign(session, signed, account_id, campaign_id)
    now = clock()
    common: dict[str, Any] = {
        "campaign": campaign,
        "status": Status(campaign.status),
        "notice": NOTICES.get(notice or ""),
        "ab_enabled": ab.enabled(campaign),
        "actions": _actions(campaign, signed),
    }
    if step == "review":
        shown = await preview.render_preview(
            session, settings, codec, campaign, contact_id, variant, now
        )
        recipients = (
            (await campaigns.stats(session, [campaign]))[campaign.id].total
            if campaign.send_started_at
            else await campaigns_repo.recipient_count(session, campaign, now)
        )
        found = await checks.run(session, settings, campaign, now, recipients)
        members = await campaigns.sample_members(session, campaign, 20)
        return page(
            request,
            "campaigns/review.html",
            signed,
            shown=shown,
            checks=found,
            recipients=recipients,
            members=members,
            preview_query=urlencode(
                {k: v for k, v in {"variant": shown.variant, "contact_id": contact_id}.items() if v}
            ),
            **common,
        )
    stats = (await campaigns.stats(session, [campaign]))[campaign.id]
    seen = await insights.insights(session, campaign, now)
    chart = series_chart(seen.series, seen.start, seen.seconds, seen.unit) if seen else None
    links = seen.links if seen else []
    results = await ab.results(session, campaign) if ab.enabled(campaign) else None
    evaluate_at = None
    if results is not None and campaign.send_started_at and not campaign.ab_winner:
        evaluate_at = campaign.send_started_at + timedelta(minutes=results.evaluate_after_minutes)
    resend_at = (
        campaign.sent_at + timedelta(hours=settings.resend_delay_hours)
        if campaign.status == Status.SENT and campaign.sent_at
        else None
    )
    outage = (await campaigns.relay_outages(session, settings, [campaign])).get(campaign.id)
    return page(
        request,
        "campaigns/page.html",
        signed,
        stats=stats,
        chart=chart,
        links=links,
        results=results,
        evaluate_at=evaluate_at,
        resend_at=resend_at,
        now=now,
        live=campaign.status in (CampaignStatus.SENDING, CampaignStatus.PAUSED),
        outage=outage,
        **common,
    )


@router.get("/company/{account_id}/campaign/{campaign_id}/counters", response_class=HTMLResponse)
async def counters(
    account_id: str, campaign_id: str, signed: Signed, session: SessionDep, settings: SettingsDep
) -> Response:
    """The live counters (an htmx fragment, polled while the campaign sends)."""
    campaign = await _campaign(session, signed, account_id, campaign_id)
    stats = (await campaigns.stats(session, [campaign]))[campaign.id]
    outage = (await campaigns.relay_outages(session, settings, [campaign])).get(campaign.id)
    return HTMLResponse(
        fragment(
            "campaigns/counters.html",
            campaign=campaign,
            stats=stats,
            outage=outage,
            live=campaign.status in (CampaignStatus.SENDING, CampaignStatus.PAUSED),
        ),
        headers=HEADERS,
    )


# The previewed message may hold anything its author wrote: it runs no script, submits no form,
# reaches no other page of ours (an opaque origin), and loads only images.
PREVIEW_HEADERS = {
    **HEADERS,
    "X-Frame-Options": "SAMEORIGIN",
    "Content-Security-Policy": "sandbox; default-src 'none'; img-src * data:; "
    "style-src 'unsafe-inline' *; font-src *; frame-ancestors 'self'",
}


@router.get("/company/{account_id}/campaign/{campaign_id}/preview", response_class=HTMLResponse)
async def preview_message(
    account_id: str,
    campaign_id: str,
    signed: Signed,
    session: SessionDep,
    clock: ClockDep,
    settings: SettingsDep,
    codec: CodecDep,
    variant: Annotated[str | None, Query(pattern="^[ab]$")] = None,
    contact_id: Annotated[str | None, Query(max_length=40)] = None,
    part: Annotated[str, Query(pattern="^(html|text)$")] = "html",
) -> Response:
    campaign = await _campaign(session, signed, account_id, campaign_id)
    shown = await preview.render_preview(
        session, settings, codec, campaign, contact_id, variant, clock()
    )
    if part == "text" or shown.html is None:
        return Response(shown.text, media_type="text/plain; charset=utf-8", headers=PREVIEW_HEADERS)
    return HTMLResponse(shown.html, headers=PREVIEW_HEADERS)


def _actions(campaign: Campaign, signed: SignedIn) -> set[str]:
    """What the page offers: the lifecycle's actions from this status, as far as the role allows."""
    status = Status(campaign.status)
    allowed: set[str] = set()
    if signed.principal.allows(Scope.SENDING_ACCESS):
        allowed |= {
            a.value
            for a, (sources, _) in ACTIONS.items()
            if status in sources and a is not Action.CANCEL
        }
        allowed.add("test")
        if (
            ab.enabled(campaign)
            and not campaign.ab_winner
            and status in (Status.SENDING, Status.PAUSED, Status.SENT)
        ):
            allowed.add("pick-winner")
    if signed.principal.allows(Scope.FULL_ACCESS):
        if status in ACTIONS[Action.CANCEL][0]:
            allowed.add("cancel")
        if status in DELETABLE:
            allowed.add("delete")
        if status in EDITABLE:
            allowed.add("edit")
        if status is Status.SENT:
            allowed.add("resend")
    return allowed


_NEEDS = {
    "send": Scope.SENDING_ACCESS,
    "schedule": Scope.SENDING_ACCESS,
    "pause": Scope.SENDING_ACCESS,
    "resume": Scope.SENDING_ACCESS,
    "test": Scope.SENDING_ACCESS,
    "pick-winner": Scope.SENDING_ACCESS,
    "cancel": Scope.FULL_ACCESS,
    "delete": Scope.FULL_ACCESS,
    "resend": Scope.FULL_ACCESS,
    "edit": Scope.FULL_ACCESS,
}


def _scheduled_at(form: FormData) -> datetime:
    """`when` (a datetime-local value in the viewer's zone) and `offset` (minutes east of UTC, as
    the page's script reads it; without it the value is taken as UTC)."""
    raw = str(form.get("when", ""))
    try:
        local = datetime.fromisoformat(raw)
        offset = int(str(form.get("offset", "0") or "0"))
    except ValueError:
        raise ValidationFailed.on(
            "scheduled_at", "a date and a time", "scheduled_at: give a date and a time"
        ) from None
    if not -900 <= offset <= 900:
        raise ValidationFailed.on("offset", "out of range", "offset: not a time zone")
    return (
        (local.replace(tzinfo=UTC) - timedelta(minutes=offset)) if local.tzinfo is None else local
    )


@router.post("/company/{account_id}/campaign/{campaign_id}/{action}")
async def campaign_action(
    request: Request,
    account_id: str,
    campaign_id: str,
    action: str,
    signed: Signed,
    session: SessionDep,
    clock: ClockDep,
    settings: SettingsDep,
    codec: CodecDep,
    transport: TransportDep,
) -> Response:
    if action not in _NEEDS:
        return page(
            request,
            "error.html",
            signed,
            http_status=404,
            title="Not found",
            message="No such action",
        )
    form = await auth.changing(request, signed, _NEEDS[action])
    campaign = await _campaign(session, signed, account_id, campaign_id)
    now = clock()
    if action == "send":
        if form.get("confirmed") != "yes":  # the confirmation names who will get it
            recipients = await campaigns_repo.recipient_count(session, campaign, now)
            return page(
                request, "campaigns/confirm.html", signed, campaign=campaign, recipients=recipients
            )
        await campaigns.send_campaign(session, settings, account_id, campaign_id, now)
        return see(_campaign_url(account_id, campaign_id, notice="sent"))
    if action == "schedule":
        await campaigns.schedule_campaign(
            session, settings, account_id, campaign_id, _scheduled_at(form), now
        )
        return see(_campaign_url(account_id, campaign_id, step="review", notice="scheduled"))
    if action in ("pause", "resume", "cancel"):
        move = {
            "pause": campaigns.pause_campaign,
            "resume": campaigns.resume_campaign,
            "cancel": campaigns.cancel_campaign,
        }[action]
        await move(session, account_id, campaign_id, now)
        return see(
            _campaign_url(
                account_id,
                campaign_id,
                notice={"pause": "paused", "resume": "resumed", "cancel": "cancelled"}[action],
            )
        )
    if action == "delete":
        await campaigns.delete_campaign(session, account_id, campaign_id)
        return see(_home(account_id))
    if action == "test":
        emails = [
            e.strip() for e in str(form.get("emails", "")).replace(";", ",").split(",") if e.strip()
        ]
        if not 1 <= len(emails) <= 5:
            raise ValidationFailed.on("emails", "1 to 5", "emails: give 1 to 5 addresses")
        variant = str(form.get("variant") or "a")
        await preview.send_test(
            session, settings, codec, transport, account_id, campaign_id, emails, variant, now
        )
        return see(
            _campaign_url(account_id, campaign_id, step="review", variant=variant, notice="test")
        )
    if action == "pick-winner":
        await ab.pick_winner(session, campaign, "b" if form.get("variant") == "b" else "a", now)
        return see(_campaign_url(account_id, campaign_id, notice="picked"))
    if action == "resend":
        draft, _estimate = await resend.resend_to_non_openers(
            session, settings, account_id, campaign_id, now
        )
        return see(_campaign_url(account_id, draft.id, step="review", notice="resent"))
    # edit
    fields = {
        k: str(form.get(k, "")) for k in ("name", "subject", "from", "preview_text", "html", "text")
    }
    body = CampaignUpdate.model_validate(
        {
            "name": fields["name"],
            "subject": fields["subject"],
            "from": fields["from"],
            "preview_text": fields["preview_text"] or None,
            "html": fields["html"] or None,
            "text": fields["text"] or None,
        }
    )
    await campaigns.update_campaign(session, settings, account_id, campaign_id, body, now)
    return see(_campaign_url(account_id, campaign_id, step="review", notice="saved"))


@router.get("/company/{account_id}/campaign/{campaign_id}/edit", response_class=HTMLResponse)
async def edit_page(
    request: Request, account_id: str, campaign_id: str, signed: Signed, session: SessionDep
) -> Response:
    campaign = await _campaign(session, signed, account_id, campaign_id)
    return page(
        request,
        "campaigns/edit.html",
        signed,
        campaign=campaign,
        editable=Status(campaign.status) in EDITABLE,
    )
