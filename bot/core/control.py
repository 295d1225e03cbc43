"""Stop and Regenerate across processes: which process streams an answer (a record in Redis with
a TTL its process renews), and control messages to one process with an answer back.

Messages go to a list per process (`keys.process_inbox`) that the process reads with BLPOP, and
the answer comes back on a list of its own: one key per command, so this works on one Redis and
on a Redis Cluster alike (redis-py's asyncio cluster client has no pub/sub), and the sender
learns whether anyone acted. A message for a process that died expires with its inbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, ValuesView
from dataclasses import dataclass
from typing import Any, Final, Generic, Literal, Protocol, TypeVar

from redis.exceptions import RedisError

from bot.core.keys import ConversationKey, control_reply, process_inbox
from bot.core.process import ProcessIdentity
from bot.core.redis_client import RedisClient, register_script

log = logging.getLogger(__name__)

RUNNING_TTL_SECONDS = 15.0
RUNNING_RENEW_SECONDS = 5.0
REPLY_TIMEOUT_SECONDS = 1.5
"""How long a sender waits for the answer (a button press must be answered within 3 s)."""
INBOX_TTL_MS = 10_000
POLL_SECONDS = 1.0

_DELETE_IF_SAME_LUA: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Stoppable(Protocol):
    """An answer streaming now: who asked, and the event that stops it."""

    asker_id: int
    stop: asyncio.Event


R = TypeVar("R", bound=Stoppable)


@dataclass(frozen=True, slots=True)
class RunningRecord:
    """Which process streams an answer in a conversation, and who asked for it."""

    process: str
    asker_id: int


class RunningAnswers(Generic[R]):
    """The answers streaming in this process by conversation; with Redis, each is also recorded
    under `key.running` (renewed while it streams) so other processes can find it."""

    def __init__(
        self,
        redis: RedisClient | None = None,
        process: ProcessIdentity | None = None,
        *,
        ttl_seconds: float = RUNNING_TTL_SECONDS,
        renew_every: float = RUNNING_RENEW_SECONDS,
    ) -> None:
        if not 0 < renew_every < ttl_seconds:
            raise ValueError("renew_every must be above zero and below ttl_seconds.")
        self._redis = redis
        self.process = process
        self._ttl_ms = max(1, round(ttl_seconds * 1000))
        self._renew_every = renew_every
        self._local: dict[ConversationKey, R] = {}
        self._announcing: dict[ConversationKey, asyncio.Task[None]] = {}
        self._written: dict[ConversationKey, asyncio.Event] = {}
        self._chores: set[asyncio.Task[None]] = set()
        self._delete_script = register_script(redis, _DELETE_IF_SAME_LUA) if redis else None

    def __setitem__(self, key: ConversationKey, running: R) -> None:
        """An answer starts streaming in this process."""
        self._local[key] = running
        if self._redis is not None and self.process is not None:
            previous = self._announcing.pop(key, None)
            if previous is not None:
                previous.cancel()
            value = self._value(running)
            written = self._written[key] = asyncio.Event()
            self._announcing[key] = asyncio.create_task(self._announce(key, value, written))

    def pop(self, key: ConversationKey, default: R | None = None) -> R | None:
        """The answer stopped streaming; its record is deleted (if still ours)."""
        running = self._local.pop(key, default)
        task = self._announcing.pop(key, None)
        self._written.pop(key, None)
        if task is not None:
            task.cancel()
            if running is not None:
                self._background(self._forget(key, self._value(running)))
        return running

    def get(self, key: ConversationKey) -> R | None:
        """The answer streaming in a conversation in this process, if any."""
        return self._local.get(key)

    def __len__(self) -> int:
        """How many answers stream in this process."""
        return len(self._local)

    def values(self) -> ValuesView[R]:
        """The answers streaming in this process."""
        return self._local.values()

    async def record(self, key: ConversationKey) -> RunningRecord | None:
        """Which process streams an answer in a conversation (this one first), if any."""
        local = self._local.get(key)
        if local is not None:
            return RunningRecord(self.process.id if self.process else "", local.asker_id)
        if self._redis is None:
            return None
        raw = await self._redis.get(key.running)
        if raw is None:
            return None
        data = json.loads(raw)
        return RunningRecord(str(data["process"]), int(data["asker"]))

    def _value(self, running: R) -> str:
        """What the record holds: this process and the asker."""
        assert self.process is not None
        return json.dumps({"process": self.process.id, "asker": running.asker_id})

    async def settled(self) -> None:
        """Wait until every running answer was first recorded and every ended one deleted."""
        await asyncio.gather(*(event.wait() for event in list(self._written.values())))
        await asyncio.gather(*list(self._chores), return_exceptions=True)

    async def _announce(self, key: ConversationKey, value: str, written: asyncio.Event) -> None:
        """Record the answer now and renew it until cancelled; Redis failures are only logged."""
        assert self._redis is not None
        while True:
            try:
                await self._redis.set(key.running, value, px=self._ttl_ms)
            except RedisError as exc:
                log.warning("Could not record the answer running in %s: %s", key, exc)
            written.set()
            await asyncio.sleep(self._renew_every)

    async def _forget(self, key: ConversationKey, value: str) -> None:
        """Delete the record if it is still this answer's (best effort: it expires anyway)."""
        assert self._delete_script is not None
        try:
            await self._delete_script(keys=[key.running], args=[value])
        except RedisError as exc:
            log.warning("Could not delete the running record of %s: %s", key, exc)

    def _background(self, work: Awaitable[None]) -> None:
        """Run a small Redis chore, keeping a reference until it is done."""

        async def run() -> None:
            await work

        task = asyncio.create_task(run())
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)


Handler = Callable[[dict[str, Any]], Awaitable[str]]


class ControlBus:
    """Commands to one process of the bot, each with a one-word answer back."""

    def __init__(
        self,
        redis: RedisClient,
        process: ProcessIdentity,
        *,
        reply_timeout: float = REPLY_TIMEOUT_SECONDS,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self._redis = redis
        self.process = process
        self._reply_timeout = reply_timeout
        self._poll_seconds = poll_seconds
        self._handlers: dict[str, Handler] = {}
        self._handling: set[asyncio.Task[None]] = set()

    def handle(self, op: str, handler: Handler) -> None:
        """Answer commands named `op` with `handler` (its result is the answer)."""
        self._handlers[op] = handler

    async def request(self, process_id: str, op: str, body: dict[str, Any]) -> str | None:
        """Send a command to a process and wait for its answer; None when none came in time."""
        request_id = secrets.token_hex(8)
        message = json.dumps(body | {"op": op, "id": request_id})
        inbox = process_inbox(process_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.rpush(inbox, message)
            pipe.pexpire(inbox, INBOX_TTL_MS)
            await pipe.execute()
        answer = await self._redis.blpop(  # type: ignore[misc]  # typed as maybe-sync
            [control_reply(request_id)], timeout=self._reply_timeout
        )
        if answer is None:
            log.info(
                "No answer from process %s to %s within %gs", process_id, op, self._reply_timeout
            )
            return None
        reply = answer[1]
        return reply.decode() if isinstance(reply, bytes) else str(reply)

    async def serve(self) -> None:
        """Read this process's inbox and answer each command, until cancelled."""
        inbox = process_inbox(self.process.id)
        while True:
            try:
                item = await self._redis.blpop(  # type: ignore[misc]  # typed as maybe-sync
                    [inbox], timeout=self._poll_seconds
                )
            except RedisError as exc:
                log.warning("Could not read the control inbox: %s", exc)
                await asyncio.sleep(self._poll_seconds)
                continue
            if item is None:
                continue
            task = asyncio.create_task(self._answer(item[1]))
            self._handling.add(task)
            task.add_done_callback(self._handling.discard)

    async def _answer(self, raw: bytes | str) -> None:
        """Run one command's handler and push its answer (a bad or unknown command is logged)."""
        try:
            message = json.loads(raw)
            handler = self._handlers[message["op"]]
            reply_key = control_reply(str(message["id"]))
        except (ValueError, KeyError, TypeError):
            log.warning("Ignored a control message this process does not understand")
            return
        try:
            reply = await handler(message)
        except Exception:
            log.exception("A %s command failed", message["op"])
            reply = "failed"
        with contextlib.suppress(RedisError):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.rpush(reply_key, reply)
                pipe.pexpire(reply_key, INBOX_TTL_MS)
                await pipe.execute()


StopOutcome = Literal["stopped", "finished", "unreachable"]
RegenerateOutcome = Literal["queued", "busy", "unreachable"]
RegenerateHere = Callable[[ConversationKey, int, list[str]], bool]
ShardOwner = Callable[[str], Awaitable[str | None]]


class AnswerControl(Generic[R]):
    """Stop and Regenerate from whichever process receives the press or the command."""

    def __init__(
        self,
        running: RunningAnswers[R],
        bus: ControlBus,
        *,
        regenerate_here: RegenerateHere,
        shard_owner: ShardOwner,
    ) -> None:
        """`regenerate_here` queues a Regenerate in this process (False when busy);
        `shard_owner` names the process holding a server's shard (None: nobody)."""
        self._running = running
        self._bus = bus
        self._regenerate_here = regenerate_here
        self._shard_owner = shard_owner
        bus.handle("stop", self._stop_here)
        bus.handle("regenerate", self._regenerate_for_other)

    @property
    def process_id(self) -> str:
        """This process's id."""
        return self._bus.process.id

    async def find(self, key: ConversationKey) -> RunningRecord | None:
        """Which process streams an answer in a conversation, and for whom; None: nobody."""
        return await self._running.record(key)

    async def stop(self, key: ConversationKey) -> StopOutcome:
        """Stop the answer streaming in a conversation, here or in the process running it."""
        local = self._running.get(key)
        if local is not None:
            local.stop.set()
            return "stopped"
        record = await self._running.record(key)
        if record is None or record.process == self.process_id:
            return "finished"
        reply = await self._bus.request(record.process, "stop", _conversation(key))
        if reply in ("stopped", "finished"):
            return "stopped" if reply == "stopped" else "finished"
        return "unreachable"

    async def regenerate(
        self,
        key: ConversationKey,
        asker_id: int,
        message_ids: list[str],
        *,
        here: Callable[[], bool] | None = None,
    ) -> RegenerateOutcome:
        """Queue a Regenerate in the process that holds the conversation's shard (its queue);
        `here` queues it in this process when that is the one (with what only it knows, such as
        the presser's tool context; another process answers without it)."""
        owner = await self._shard_owner(key.guild)
        if owner is None or owner == self.process_id:
            queued = (
                here() if here is not None else self._regenerate_here(key, asker_id, message_ids)
            )
            return "queued" if queued else "busy"
        body = _conversation(key) | {"asker": asker_id, "messages": message_ids}
        reply = await self._bus.request(owner, "regenerate", body)
        if reply in ("queued", "busy"):
            return "queued" if reply == "queued" else "busy"
        return "unreachable"

    async def _stop_here(self, message: dict[str, Any]) -> str:
        """Another process asks to stop an answer: set its stop event if it streams here."""
        running = self._running.get(ConversationKey(message["guild"], message["channel"]))
        if running is None:
            return "finished"
        running.stop.set()
        return "stopped"

    async def _regenerate_for_other(self, message: dict[str, Any]) -> str:
        """Another process passes on a Regenerate press for a server of this process's shard."""
        key = ConversationKey(message["guild"], message["channel"])
        ids = [str(i) for i in message["messages"]]
        return "queued" if self._regenerate_here(key, int(message["asker"]), ids) else "busy"


def _conversation(key: ConversationKey) -> dict[str, Any]:
    """A conversation as a control message carries it."""
    return {"guild": key.guild, "channel": key.channel}
