"""Answers in flight: a small Redis record per streaming reply, so that a process killed
mid-answer (SIGKILL, OOM, power loss) leaves behind what the next start needs to finish it.

A record lives under its conversation's hash tag (`key.inflight(answer_id)`) and is listed in
one index set (`bot:inflight`), so a start finds them all with Redis Cluster too. It holds the
conversation, the reply's message ids (added as the renderer first sends or edits each message:
one write per new message, never one per edit), the sink kind, the asker, the question it
answers and the process that owns it. The text is not kept: it is read back from the messages
(`unmarked`, `answer_text`). The record is deleted when the answer ends in any way its process
sees (done, Stop, failure, clean shutdown).

Every process keeps a heartbeat key with a short TTL. A record whose owner's heartbeat is gone
is an orphan: a live process claims it (one claim wins) and finishes the reply; the Discord side
of that is `bot/frontend/recovery.py`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from redis.exceptions import RedisError

from bot.core.keys import INFLIGHT_INDEX, ConversationKey, process_alive
from bot.core.redis_client import RedisClient
from bot.core.renderer import STREAMING_MARKER, MessageSink, SentMessage
from bot.core.splitting import FENCE_LINE, fence_state_after

log = logging.getLogger(__name__)

HEARTBEAT_TTL_SECONDS: Final = 10.0
"""How long a process counts as alive after its last heartbeat (a few slow Redis answers)."""
HEARTBEAT_EVERY_SECONDS: Final = 2.0
"""How often a process renews its heartbeat and looks for orphaned replies."""
RECORD_TTL_SECONDS: Final = 24 * 3600
"""A record nobody finished is forgotten after this long."""
RESTART_NOTICE: Final = "-# ⚠️ The bot restarted before this answer was finished."


@dataclass(frozen=True, slots=True)
class InFlightRecord:
    """One reply being streamed: where, by whom, for whom, and which messages show it."""

    key: ConversationKey
    answer_id: str
    owner: str
    asker_id: int
    sink: str
    """"channel" (a reply to a message) or "interaction" (a slash command's response)."""
    question_ref: str = ""
    """The platform id of the question it answers (its user item's `ref`)."""
    regenerate: bool = False
    messages: tuple[str, ...] = ()
    """The messages the reply has sent or rewritten so far, in order."""
    existing: tuple[str, ...] = ()
    """For Regenerate: the messages of the answer it replaces."""

    @property
    def redis_key(self) -> str:
        """Where the record is kept."""
        return self.key.inflight(self.answer_id)

    @property
    def index_member(self) -> str:
        """The record's entry in the index: enough to find it and to tell its owner."""
        return json.dumps([self.key.guild, self.key.channel, self.answer_id, self.owner])

    def to_json(self) -> str:
        """The stored form."""
        return json.dumps(
            {
                "v": 1,
                "guild": self.key.guild,
                "channel": self.key.channel,
                "answer": self.answer_id,
                "owner": self.owner,
                "asker": self.asker_id,
                "sink": self.sink,
                "question": self.question_ref,
                "regenerate": self.regenerate,
                "messages": list(self.messages),
                "existing": list(self.existing),
            }
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> InFlightRecord:
        """The record a stored form holds; ValueError if it cannot be read."""
        try:
            data: dict[str, Any] = json.loads(raw)
            return cls(
                key=ConversationKey(str(data["guild"]), str(data["channel"])),
                answer_id=str(data["answer"]),
                owner=str(data["owner"]),
                asker_id=int(data["asker"]),
                sink=str(data["sink"]),
                question_ref=str(data.get("question", "")),
                regenerate=bool(data.get("regenerate", False)),
                messages=tuple(str(m) for m in data.get("messages", [])),
                existing=tuple(str(m) for m in data.get("existing", [])),
            )
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"unreadable in-flight record: {error}") from None


def parse_index_member(member: bytes | str) -> tuple[ConversationKey, str, str] | None:
    """The conversation, answer id and owner of an index entry; None if it cannot be read."""
    try:
        guild, channel, answer_id, owner = json.loads(member)
        return ConversationKey(str(guild), str(channel)), str(answer_id), str(owner)
    except (ValueError, TypeError):
        return None


class InFlightAnswers:
    """The in-flight records and the heartbeat of this process, in Redis."""

    def __init__(
        self,
        redis: RedisClient,
        *,
        process_id: str | None = None,
        heartbeat_ttl: float = HEARTBEAT_TTL_SECONDS,
        record_ttl: int = RECORD_TTL_SECONDS,
    ) -> None:
        self._redis = redis
        self.process_id = process_id or secrets.token_hex(8)
        self._heartbeat_ms = max(1, round(heartbeat_ttl * 1000))
        self._record_ttl = record_ttl
        self._beating = False

    async def begin(
        self,
        key: ConversationKey,
        *,
        asker_id: int,
        sink: str,
        question_ref: str = "",
        existing: Sequence[str] = (),
    ) -> InFlightAnswer | None:
        """Record an answer that starts streaming; None (logged) when Redis fails."""
        record = InFlightRecord(
            key=key,
            answer_id=secrets.token_hex(6),
            owner=self.process_id,
            asker_id=asker_id,
            sink=sink,
            question_ref=question_ref,
            regenerate=bool(existing),
            existing=tuple(existing),
        )
        try:
            await self.save(record)
        except RedisError as exc:
            log.warning("Could not record the answer in %s as in flight: %s", key, exc)
            return None
        return InFlightAnswer(self, record)

    async def save(self, record: InFlightRecord) -> None:
        """Write (or rewrite) a record and list it in the index."""
        await self._redis.set(record.redis_key, record.to_json(), ex=self._record_ttl)
        await self._redis.sadd(INFLIGHT_INDEX, record.index_member)  # type: ignore[misc]

    async def drop(self, record: InFlightRecord) -> None:
        """Forget a record: its answer ended, or it was finished after its owner died."""
        await self._redis.delete(record.redis_key)
        await self._redis.srem(INFLIGHT_INDEX, record.index_member)  # type: ignore[misc]

    async def beat(self) -> None:
        """Say this process is alive for the next heartbeat TTL."""
        self._beating = True
        await self._redis.set(process_alive(self.process_id), "1", px=self._heartbeat_ms)

    async def stop_beating(self) -> None:
        """Say this process is gone (a clean shutdown, after its answers ended); a process that
        never beat (e.g. `bot check` building the commands) touches no Redis at all."""
        if self._beating:
            await self._redis.delete(process_alive(self.process_id))

    async def orphans(self) -> list[InFlightRecord]:
        """The records of processes whose heartbeat is gone; stale index entries are dropped."""
        members = await self._redis.smembers(INFLIGHT_INDEX)  # type: ignore[misc]
        alive: dict[str, bool] = {self.process_id: True}
        found = []
        for member in members:
            parsed = parse_index_member(member)
            if parsed is None:
                await self._redis.srem(INFLIGHT_INDEX, member)  # type: ignore[misc]
                continue
            key, answer_id, owner = parsed
            if owner not in alive:
                alive[owner] = bool(await self._redis.exists(process_alive(owner)))
            if alive[owner]:
                continue
            raw = await self._redis.get(key.inflight(answer_id))
            if raw is None:  # finished meanwhile, or expired
                await self._redis.srem(INFLIGHT_INDEX, member)  # type: ignore[misc]
                continue
            try:
                found.append(InFlightRecord.from_json(raw))
            except ValueError as error:
                log.warning("Dropped an in-flight record of %s: %s", key, error)
                await self._redis.delete(key.inflight(answer_id))
                await self._redis.srem(INFLIGHT_INDEX, member)  # type: ignore[misc]
        return found

    async def claim(self, record: InFlightRecord) -> bool:
        """Take an orphan to finish it; False if another process took it first."""
        claimed = bool(await self._redis.delete(record.redis_key))
        await self._redis.srem(INFLIGHT_INDEX, record.index_member)  # type: ignore[misc]
        return claimed

    async def keep_beating(self, every: float = HEARTBEAT_EVERY_SECONDS) -> None:
        """Renew the heartbeat every `every` seconds until cancelled (Redis errors logged)."""
        while True:
            try:
                await self.beat()
            except RedisError as exc:
                log.warning("Could not renew this process's heartbeat: %s", exc)
            await asyncio.sleep(every)


class InFlightAnswer:
    """The record of one answer while it streams: notes its messages, ends with it."""

    def __init__(self, answers: InFlightAnswers, record: InFlightRecord) -> None:
        self._answers = answers
        self.record = record

    def tracking(self, sink: MessageSink) -> MessageSink:
        """`sink`, noting in the record every message the reply sends or first rewrites."""
        return _TrackedSink(sink, self)

    async def touched(self, message: SentMessage) -> None:
        """Add a message to the record the first time the reply sends or edits it."""
        if message.id in self.record.messages:
            return
        self.record = replace(self.record, messages=(*self.record.messages, message.id))
        try:
            await self._answers.save(self.record)
        except RedisError as exc:
            log.warning("Could not note a reply message in %s: %s", self.record.key, exc)

    async def end(self) -> None:
        """The answer ended: forget its record (a Redis failure only leaves it to expire)."""
        try:
            await self._answers.drop(self.record)
        except RedisError as exc:
            log.warning("Could not drop the in-flight record in %s: %s", self.record.key, exc)


class _TrackedSink:
    """A sink that tells its in-flight record about each message it sends or first edits."""

    def __init__(self, sink: MessageSink, answer: InFlightAnswer) -> None:
        self._sink = sink
        self._answer = answer

    @property
    def send_bucket(self) -> str:
        """The wrapped sink's bucket of sends."""
        return self._sink.send_bucket

    async def send(self, content: str, *, first: bool) -> SentMessage:
        """Send, then note the new message."""
        sent = await self._sink.send(content, first=first)
        await self._answer.touched(sent)
        return sent

    async def edit(self, message: SentMessage, content: str) -> None:
        """Edit, then note the message if it is new to the record (a regenerated one)."""
        await self._sink.edit(message, content)
        await self._answer.touched(message)

    async def typing(self) -> None:
        """Show typing through the wrapped sink."""
        await self._sink.typing()


def unmarked(content: str, marker: str = STREAMING_MARKER) -> str:
    """A streaming message's content as its final edit would show it: without the marker.

    The marker ends the text (" ▌"), sits on a line of its own after a fence line ("\\n▌"), or
    comes before the temporary closer of an open code block (" ▌\\n```"), which then stays as
    the block's real end."""
    bare = marker.lstrip()
    if content.endswith("\n" + bare):
        return content[: -len(bare) - 1]
    if content.endswith(marker):
        return content[: -len(marker)]
    head, found, closer = content.rpartition(marker + "\n")
    if found and "\n" not in closer and FENCE_LINE.fullmatch(closer):
        return head + "\n" + closer
    return content


def answer_text(contents: Sequence[str]) -> str:
    """The answer the messages of a reply show (markers removed), without the fence closers
    and reopeners the cuts between messages added.

    Whitespace at the cuts is not kept (parts are joined by a line break), and a code block
    that really ends at a cut, followed at once by one that opens the same way, reads back as
    one block: close enough for the model's memory of an answer cut short."""
    parts = [unmarked(content) for content in contents]
    texts = []
    state = None
    for index, shown in enumerate(parts):
        text = shown
        if state is not None and text.startswith(state.opener + "\n"):
            text = text[len(state.opener) + 1 :]
        body, _, last_line = text.rpartition("\n")
        inside = fence_state_after(body, state)
        following = parts[index + 1] if index + 1 < len(parts) else ""
        added_closer = inside is not None and last_line == inside.closer
        if added_closer and inside is not None and following.startswith(inside.opener + "\n"):
            text = body  # a closer the cut added; the next message reopens the block
        state = fence_state_after(text, state)
        texts.append(text.strip("\n"))
    return "\n".join(text for text in texts if text)
