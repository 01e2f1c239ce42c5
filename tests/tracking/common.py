"""What the tracking tests share: a browser's headers and the events and loads recorded."""

from __future__ import annotations

from sqlalchemy import select

from mailcast.db.models import Event

BROWSER = {
    "User-Agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) "
    "AppleWebKit/537.36 Chrome/126.0 Safari/537.36"
}


async def recorded_events(sessions) -> list[tuple[str, bool]]:
    async with sessions() as session:
        return [
            (e.type, e.machine)
            for e in (await session.execute(select(Event).order_by(Event.id))).scalars()
        ]


async def opens_and_loads(sessions) -> tuple[list[tuple[str, bool]], dict[str, int]]:
    from mailcast.db.models import Delivery

    async with sessions() as session:
        loads = dict((await session.execute(select(Delivery.email, Delivery.open_count))).all())
    return [e for e in await recorded_events(sessions) if e[0] == "open"], loads
