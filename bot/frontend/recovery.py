"""Finishing replies whose process died mid-answer (SIGKILL, OOM, power loss).

Every few seconds a live bot process looks for in-flight records whose owner's heartbeat is
gone (see `bot/core/inflight.py`), claims each one, and finishes its reply: every message gets
its text without the streaming marker and no Stop button, the last one a one-line notice; the
partial answer goes into the history as incomplete, right after its question. If it is still
the conversation's newest answer it gets Regenerate and becomes the latest answer.

Slash-command answers are reached through the channel like the rest (Discord lets a bot edit
its public interaction responses there, as the interaction sink does once a token is gone);
private answers are never stored, so they have no record and keep their marker (their
interaction token is a credential and is not kept in Redis). A Regenerate cut short keeps the
previous answer in the history, which it had not replaced yet.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import discord
from redis.exceptions import RedisError

from bot.core.events import HistoryItem
from bot.core.history import HistoryStore
from bot.core.inflight import (
    HEARTBEAT_EVERY_SECONDS,
    RESTART_NOTICE,
    InFlightAnswers,
    InFlightRecord,
    answer_text,
    unmarked,
)
from bot.core.last_answers import LastAnswers
from bot.core.pacing import EditPacer
from bot.core.renderer import DEFAULT_LIMIT
from bot.frontend.buttons import answer_view
from bot.frontend.sinks import NO_PINGS, edit_in_channel

log = logging.getLogger(__name__)

GetChannel = Callable[[int], discord.PartialMessageable]


class OrphanedReplies:
    """Finds the replies of dead processes and finishes them, through the pacer."""

    def __init__(
        self,
        inflight: InFlightAnswers,
        store: HistoryStore,
        last_answers: LastAnswers,
        pacer: EditPacer,
        get_channel: GetChannel,
    ) -> None:
        self._inflight = inflight
        self._store = store
        self._last_answers = last_answers
        self._pacer = pacer
        self._get_channel = get_channel

    async def run(self, every: float = HEARTBEAT_EVERY_SECONDS) -> None:
        """Look for orphaned replies every `every` seconds until cancelled."""
        while True:
            try:
                await self.sweep()
            except RedisError as exc:
                log.warning("Could not look for unfinished replies: %s", exc)
            await asyncio.sleep(every)

    async def sweep(self) -> int:
        """Finish every orphaned reply this process can claim; how many it finished."""
        finished = 0
        for record in await self._inflight.orphans():
            if not await self._inflight.claim(record):
                continue
            try:
                await self.finish(record)
            except (discord.HTTPException, RedisError) as exc:
                log.warning("Could not finish an unfinished reply in %s: %s", record.key, exc)
                continue
            finished += 1
        return finished

    async def finish(self, record: InFlightRecord) -> None:
        """Give an orphaned reply its final text and notice, and store what it said."""
        channel = self._get_channel(int(record.key.channel))
        shown = await self._fetch(channel, record.messages)
        latest = await self._keep(record, [message.content for message in shown])
        bucket = f"channel:{channel.id}"
        notice_placed = False
        for index, message in enumerate(shown):
            last = index == len(shown) - 1
            content = unmarked(message.content).rstrip()
            if last and len(content) + len(RESTART_NOTICE) + 2 <= DEFAULT_LIMIT:
                content = f"{content}\n\n{RESTART_NOTICE}" if content else RESTART_NOTICE
                notice_placed = True
            regenerate = last and latest
            view = answer_view(record.key, record.asker_id, streaming=False) if regenerate else None
            await self._pacer.acquire(bucket, urgent=True)
            await edit_in_channel(message, content=content or discord.utils.MISSING, view=view)
        if shown and not notice_placed:
            await self._pacer.acquire(bucket, urgent=True)
            await channel.send(RESTART_NOTICE, silent=True, suppress_embeds=True)
        await self._delete_leftovers(channel, record)
        if latest:
            await self._make_latest(channel, record, [str(m.id) for m in shown])
        log.info(
            "Finished a reply in %s that a stopped process left unfinished (%d messages).",
            record.key,
            len(shown),
        )

    async def _fetch(
        self, channel: discord.PartialMessageable, ids: tuple[str, ...]
    ) -> list[discord.Message]:
        """The reply's messages that still exist, in order."""
        found = []
        for message_id in ids:
            try:
                found.append(await channel.fetch_message(int(message_id)))
            except discord.NotFound:
                log.info("A message of an unfinished reply is gone: %s", message_id)
        return found

    async def _keep(self, record: InFlightRecord, contents: list[str]) -> bool:
        """Store the partial answer after its question; whether it is the newest answer.

        A cut-short Regenerate stores nothing: the answer it was replacing is still stored."""
        text = answer_text(contents)
        if not text or record.regenerate:
            return False
        item = HistoryItem(role="assistant", text=text, status="incomplete")
        placed = await self._store.insert_after(record.key, record.question_ref, item)
        return placed is True

    async def _delete_leftovers(
        self, channel: discord.PartialMessageable, record: InFlightRecord
    ) -> None:
        """Delete the parts of a regenerated answer the new one had not reached."""
        for message_id in record.existing:
            if message_id in record.messages:
                continue
            try:
                await self._pacer.acquire(f"channel:{channel.id}", urgent=True)
                await channel.get_partial_message(int(message_id)).delete()
            except discord.HTTPException as exc:
                log.info("Could not delete a leftover message %s: %s", message_id, exc)

    async def _make_latest(
        self, channel: discord.PartialMessageable, record: InFlightRecord, ids: list[str]
    ) -> None:
        """Remember the reply as the latest answer; the one before loses Regenerate."""
        previous = await self._last_answers.get(record.key)
        await self._last_answers.remember(record.key, ids)
        if not previous or previous[-1] in ids:
            return
        try:
            await self._pacer.acquire(f"channel:{channel.id}")
            await channel.get_partial_message(int(previous[-1])).edit(
                view=None, allowed_mentions=NO_PINGS
            )
        except discord.HTTPException as exc:
            log.info("Could not take Regenerate off message %s: %s", previous[-1], exc)
