"""The worker loops: the scheduler (due campaigns start, dead workers' leases are settled, finished
campaigns close), the sender, the A/B evaluator and the contact importer. `mailcast serve` runs them
in-process; `mailcast worker` runs only them, and any number of worker processes can share one
PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailcast.campaigns import ab
from mailcast.campaigns import repository as campaigns_repo
from mailcast.campaigns import service as campaigns
from mailcast.campaigns.counts import count_store
from mailcast.clock import Clock
from mailcast.config import Settings
from mailcast.contacts.imports import Importer
from mailcast.contacts.store import contact_store
from mailcast.delivery import repository as delivery_repo
from mailcast.delivery.service import Sender
from mailcast.delivery.store import delivery_store
from mailcast.delivery.tokens import TokenCodec
from mailcast.delivery.transport import Transport
from mailcast.errors import MailcastError

log = logging.getLogger("mailcast.worker")


class Worker:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        transport: Transport,
        clock: Clock,
        worker_id: str | None = None,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.clock = clock
        engine = sessions.kw["bind"]
        self.counts = count_store(engine)
        self.sender = Sender(
            sessions,
            settings,
            transport,
            clock,
            TokenCodec(settings.secret()),
            campaigns,
            delivery_store(engine),
            worker_id,
        )
        self.importer = Importer(
            engine, contact_store(engine), settings, clock, self.sender.worker_id
        )

    async def schedule_once(self) -> None:
        now = self.clock()
        async with self.sessions() as session:
            due = await delivery_repo.due_scheduled(session, now)
        for campaign_id, account_id in due:
            try:
                async with self.sessions() as session:
                    await campaigns.start_due(session, self.settings, campaign_id, account_id, now)
                    await session.commit()
                log.info("campaign %s started sending", campaign_id)
            except MailcastError as exc:
                async with self.sessions() as session:
                    if await campaigns.return_to_draft(session, campaign_id, exc.message, now):
                        log.warning(
                            "campaign %s could not start and is a draft again: %s",
                            campaign_id,
                            exc.message,
                        )
                    await session.commit()
        async with self.sessions() as session:
            recovered = await delivery_repo.recover_expired(session, now)
            finished = await delivery_repo.finish_done_campaigns(session, now)
            await session.commit()
        async with self.sessions() as session:
            await self.counts.fold(session)
            await session.commit()
        if recovered:
            log.warning(
                "%d deliveries were in flight when a worker stopped; marked unknown", recovered
            )
        for campaign_id in finished:
            log.info("campaign %s sent", campaign_id)

    async def evaluate_once(self) -> list[tuple[str, str]]:
        """Pick the winner of every A/B test whose evaluation time has come: (campaign, winner)."""
        now = self.clock()
        picked = []
        async with self.sessions() as session:
            due = [
                c
                for c in await campaigns_repo.due_for_evaluation(session, now)
                if ab.evaluation_due(c, now)
            ]
        for candidate in due:
            try:
                async with self.sessions() as session:
                    campaign = await campaigns_repo.get(session, candidate.account_id, candidate.id)
                    if campaign is None or not campaign.ab_test:
                        continue  # deleted meanwhile
                    result = await ab.results(session, campaign)
                    winner = ab.decide(result, campaign.ab_test["winner_metric"])
                    released = await ab.pick_winner(session, campaign, winner, now)
                    await session.commit()
                picked.append((candidate.id, winner))
                log.info(
                    "campaign %s: variant %s wins; %d holdback recipients released",
                    candidate.id,
                    winner,
                    released,
                )
            except MailcastError as exc:  # picked by hand meanwhile, or cancelled
                log.info("campaign %s: no automatic pick (%s)", candidate.id, exc.message)
        return picked

    async def run_until_idle(self, max_batches: int = 100_000) -> int:
        """Schedule, then send until nothing is due. For tests and one-shot runs."""
        await self.schedule_once()
        total = 0
        for _ in range(max_batches):
            claimed = await self.sender.send_batch()
            total += claimed
            if not claimed:
                break
        await self.schedule_once()
        return total

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop` is set: the scheduler every second, the sender whenever something is due,
        the A/B evaluator, and contact imports one at a time (handed back when `stop` is set)."""
        self.importer.stop = stop

        async def scheduler() -> None:
            while not stop.is_set():
                try:
                    await self.schedule_once()
                except Exception:  # a bad tick must not stop the loop; the next one retries
                    log.exception("scheduler tick failed")
                await _wait(stop, 1.0)

        async def sender() -> None:
            while not stop.is_set():
                try:
                    claimed = await self.sender.send_batch()
                except Exception:
                    log.exception("send batch failed")
                    claimed = 0
                if not claimed:
                    await _wait(stop, self.settings.worker_poll_seconds)

        async def evaluator() -> None:
            while not stop.is_set():
                try:
                    await self.evaluate_once()
                except Exception:
                    log.exception("A/B evaluation failed")
                await _wait(stop, self.settings.ab_evaluate_interval_seconds)

        async def importer() -> None:
            while not stop.is_set():
                try:
                    ran = await self.importer.run_next()
                except Exception:
                    log.exception("contact import failed; it is resumed when its lease runs out")
                    ran = None
                if ran is None:
                    await _wait(stop, 1.0)

        await asyncio.gather(scheduler(), sender(), evaluator(), importer())


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
