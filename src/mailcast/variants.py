"""What each variant of a campaign sends: one rule for the sender, the click look-up, previews and
checks (below the campaign and delivery packages, which all need it)."""

from __future__ import annotations

from mailcast.db.models import Campaign


def enabled(campaign: Campaign) -> bool:
    return bool(campaign.ab_test and campaign.ab_test.get("enabled"))


def content(campaign: Campaign, variant: str) -> dict[str, str | None]:
    """subject, html, text, preview_text of a variant. Every field B leaves unset is A's, except
    that a B with HTML of its own and no text of its own gets no text here: its text part is
    derived from its HTML (`compile_variant`), so no message carries A's text under B's HTML."""
    a = {
        "subject": campaign.subject,
        "html": campaign.html,
        "text": campaign.text,
        "preview_text": campaign.preview_text,
    }
    if variant != "b" or not enabled(campaign):
        return a
    b = (campaign.ab_test or {}).get("variant_b") or {}
    if b.get("text_content") is not None:
        text = b["text_content"]
    elif b.get("html") is not None:
        text = None
    else:
        text = a["text"]
    return {
        "subject": b.get("subject") or a["subject"],
        "html": b["html"] if b.get("html") is not None else a["html"],
        "text": text,
        "preview_text": b.get("preview_text") or a["preview_text"],
    }
