"""Deleted and edited messages, forgotten members and deleted servers, against real Redis and
the local Responses server: the next request no longer carries what was removed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
import redis.asyncio as aioredis

from bot.core.access import AccessRules
from bot.core.conversation import ConversationService, TurnRequest, TurnResult
from bot.core.events import HistoryItem, Usage
from bot.core.history import HistoryStore, Removed
from bot.core.keys import ConversationKey, ServerKey
from bot.core.limits import UsageLimits
from bot.core.prefs import Preferences
from bot.core.privacy import ServerData
from bot.core.responses import ResponsesClient
from bot.core.turnlock import TurnLock
from tests.support.fake_responses import FakeResponsesServer, SseStream, sse_stream
from tests.support.redis_target import all_keys
from tests.support.request_bytes import input_items

pytestmark = pytest.mark.on_cluster

GUILD = "900"
KEY = ConversationKey(GUILD, "10")
OTHER_CHANNEL = ConversationKey(GUILD, "11")
OTHER_SERVER = ConversationKey("901", "10")
ALICE, BOB = "1001", "1002"
SECRET = "my phone is 555-0199"


@dataclass
class Bot:
    """The core as a bot process holds it, with the local Responses server behind it."""

    service: ConversationService
    store: HistoryStore
    server: FakeResponsesServer
    answers: int = 0

    async def say(
        self, key: ConversationKey, text: str, *, author: str, ref: str, speaker: str = "Ann"
    ) -> TurnResult:
        """One turn: `author` says `text` in message `ref`; the model answers."""
        self.answers += 1
        reply = f"Answer {self.answers}"
        self.server.push(SseStream([sse_stream([reply], message_id=f"msg_{self.answers}")]))
        item = HistoryItem(role="user", text=text, speaker=speaker, ref=ref, author=author)
        turn = TurnRequest(
            key=key, new_items=[item], user_key=author, model="test/m", instructions="Be brief."
        )
        return await self.service.run_turn(turn, lambda _event: None)

    def last_body(self) -> bytes:
        """The last request body, as sent."""
        return self.server.requests[-1].raw


@pytest.fixture
async def bot(redis_client: aioredis.Redis) -> AsyncIterator[Bot]:
    """A Responses client, store, lock and service over the test Redis and the local server."""
    async with FakeResponsesServer() as fake, aiohttp.ClientSession() as session:
        client = ResponsesClient(session, base_url=fake.url, api_key="sk-or-privacy")
        store = HistoryStore(redis_client, max_items=100, max_chars=100_000, ttl_seconds=3600)
        service = ConversationService(client, store, TurnLock(redis_client), max_output_tokens=64)
        yield Bot(service, store, fake)


async def raw_history(redis: aioredis.Redis, key: ConversationKey) -> bytes:
    """Everything stored for the conversation's items, as bytes."""
    return b"\n".join(await redis.lrange(key.items, 0, -1))  # type: ignore[misc]


async def test_a_deleted_message_leaves_the_next_request(
    bot: Bot, redis_client: aioredis.Redis
) -> None:
    """Alice's deleted message and the answer to it are gone; the rest keeps its bytes."""
    await bot.say(KEY, SECRET, author=ALICE, ref="m1")
    await bot.say(KEY, "What's 2+2?", author=BOB, ref="m2", speaker="Bob")
    before = input_items(bot.last_body())
    assert await bot.store.remove_messages(KEY, ["m1"]) == Removed(user_items=1, answers=1)
    assert SECRET.encode() not in await raw_history(redis_client, KEY)
    history = await bot.store.load(KEY)
    assert [item.ref for item in history] == ["m2", ""]
    await bot.say(KEY, "And 3+3?", author=BOB, ref="m3", speaker="Bob")
    body = bot.last_body()
    assert SECRET.encode() not in body
    assert "Answer 1" not in body.decode()
    after = input_items(body)
    assert after[:1] == before[2:]  # Bob's question, byte for byte
    assert json.loads(after[0])["role"] == "user"


async def test_bulk_delete_and_unknown_ids(bot: Bot) -> None:
    """Several ids at once remove every matching item; ids not in history change nothing."""
    for n in range(3):
        await bot.say(KEY, f"question {n}", author=ALICE, ref=f"m{n}")
    assert await bot.store.remove_messages(KEY, ["zz", ""]) == Removed()
    assert await bot.store.remove_messages(KEY, ["m0", "m2", "zz"]) == Removed(2, 2)
    assert [item.text for item in await bot.store.load(KEY)] == ["question 1", "Answer 2"]


async def test_an_edited_message_is_updated_in_place(
    bot: Bot, redis_client: aioredis.Redis
) -> None:
    """An edit replaces the stored text (the old text is gone from Redis) at the same place."""
    await bot.say(KEY, SECRET, author=ALICE, ref="m1")
    await bot.say(KEY, "thanks", author=ALICE, ref="m2")
    ttl = await redis_client.pttl(KEY.items)
    assert await bot.store.edit_message(KEY, "m1", "(removed)") == 1
    assert await bot.store.edit_message(KEY, "nope", "x") == 0
    assert SECRET.encode() not in await raw_history(redis_client, KEY)
    assert 0 < await redis_client.pttl(KEY.items) <= ttl
    assert [item.text for item in await bot.store.load(KEY)] == [
        "(removed)",
        "Answer 1",
        "thanks",
        "Answer 2",
    ]
    await bot.say(KEY, "next", author=BOB, ref="m3")
    assert SECRET.encode() not in bot.last_body()
    assert "(removed)" in input_items(bot.last_body())[0]


async def test_an_edit_to_nothing_removes_the_message(bot: Bot) -> None:
    """A message edited to empty text leaves the history like a deleted one."""
    await bot.say(KEY, SECRET, author=ALICE, ref="m1")
    assert await bot.store.edit_message(KEY, "m1", "") == 1
    assert await bot.store.load(KEY) == []


async def test_answers_are_never_edited_by_ref(bot: Bot) -> None:
    """Edits of the bot's own messages (it edits them while streaming) leave answers alone."""
    result = await bot.say(KEY, "hi", author=ALICE, ref="m1")
    answer = result.stored[-1]
    assert await bot.store.set_answer_refs(KEY, answer.item_id, ["b1"])
    assert await bot.store.edit_message(KEY, "b1", "first part only") == 0
    assert (await bot.store.load(KEY))[-1].text == "Answer 1"


async def test_a_deleted_answer_leaves_by_any_of_its_messages(bot: Bot) -> None:
    """An answer shown in two messages leaves history when either is deleted; the question
    stays, and the next request is valid (two user items in a row)."""
    first = await bot.say(KEY, "long one please", author=ALICE, ref="m1")
    item_id = first.stored[-1].item_id
    assert await bot.store.set_answer_refs(KEY, item_id, ["b1", "b2"])
    assert not await bot.store.set_answer_refs(KEY, "msg_unknown", ["b9"])
    assert (await bot.store.load(KEY))[-1].ref == "b1"
    assert await bot.store.remove_messages(KEY, ["b2"]) == Removed(user_items=0, answers=1)
    assert [item.role for item in await bot.store.load(KEY)] == ["user"]
    await bot.say(KEY, "again", author=ALICE, ref="m2")
    roles = [json.loads(item)["role"] for item in input_items(bot.last_body())]
    assert roles == ["user", "user"]


async def test_the_answer_stays_while_its_turn_keeps_a_question(
    bot: Bot, redis_client: aioredis.Redis
) -> None:
    """A turn of two user items (a replied-to message and the question) keeps its answer when
    one goes; the kept item takes over the turn's start mark, so trimming keeps whole turns."""
    context = HistoryItem(role="user", text="context", speaker="Bob", ref="c1", author=BOB)
    question = HistoryItem(role="user", text="about that?", speaker="Ann", ref="q1", author=ALICE)
    answer = HistoryItem(role="assistant", text="sure", item_id="msg_a")
    await bot.store.append(KEY, [context, question, answer])
    assert await bot.store.remove_messages(KEY, ["c1"]) == Removed(1, 0)
    stored = [json.loads(raw) for raw in await redis_client.lrange(KEY.items, 0, -1)]  # type: ignore[misc]
    assert [(item["text"], item.get("start")) for item in stored] == [
        ("about that?", 1),
        ("sure", None),
    ]
    assert await bot.store.load(KEY) == [question, answer]


async def test_forget_a_member_everywhere_in_the_server(bot: Bot) -> None:
    """/forget: Alice's items leave every conversation of this server, nowhere else."""
    await bot.say(KEY, SECRET, author=ALICE, ref="m1")
    await bot.say(KEY, "hello", author=BOB, ref="m2")
    await bot.say(OTHER_CHANNEL, f"again: {SECRET}", author=ALICE, ref="m3")
    await bot.say(OTHER_CHANNEL, "and more", author=ALICE, ref="m4")
    await bot.say(OTHER_SERVER, SECRET, author=ALICE, ref="m5")
    data = ServerData(bot.store._redis, bot.store)
    assert set(await data.conversations(GUILD)) == {KEY, OTHER_CHANNEL}
    forgotten = await data.forget_member(GUILD, ALICE)
    assert forgotten.removed == Removed(user_items=3, answers=3)
    assert forgotten.conversations == 2
    assert [item.author for item in await bot.store.load(KEY)] == [BOB, ""]
    assert await bot.store.load(OTHER_CHANNEL) == []
    assert len(await bot.store.load(OTHER_SERVER)) == 2
    await bot.say(KEY, "anything new?", author=BOB, ref="m6")
    assert SECRET.encode() not in bot.last_body()


async def test_delete_a_servers_data(bot: Bot, redis_client: aioredis.Redis) -> None:
    """Histories, choices (also of a channel without history), limits and usage all go; the
    other server's data stays."""
    prefs = Preferences(redis_client, default_model="m", default_system="s")
    limits = UsageLimits(
        redis_client, user_rate_per_minute=5, limit_admins=False, daily_tokens=0, daily_cost_usd=0
    )
    quiet = ConversationKey(GUILD, "12")
    access = AccessRules(redis_client)
    for key in (KEY, OTHER_SERVER):
        await bot.say(key, SECRET, author=ALICE, ref="m1")
        await redis_client.hset(key.sub("meta"), "owner", ALICE)  # type: ignore[misc]
        await prefs.set(key, "server", "model", "x/y")
        await limits.check(key.guild, ALICE)
        await limits.record(key.guild, ALICE, Usage(input_tokens=5, cost=0.01))
        await limits.set_daily_tokens(key.guild, 100)
        await access.add(key.guild, "channels", "10")
        await access.add(key.guild, "roles", "7")
    await prefs.set(quiet, "channel", "system", "be terse")
    data = ServerData(redis_client, bot.store)
    deleted = await data.delete_server(GUILD)
    left = sorted(await all_keys(redis_client))
    assert [name for name in left if name.startswith(("{g:900}", "{g:900:"))] == []
    # items, meta; channel prefs; prefs, limits, 2 access, users, index; rate; 6 usage
    assert deleted == 16
    assert any(name.startswith("{g:901:c:10}:items") for name in left)
    assert len([name for name in left if name.startswith("{g:901}")]) == 13
    assert await data.delete_server(GUILD) == 0


async def test_the_index_forgets_idle_conversations_but_keeps_channels_with_settings(
    redis_client: aioredis.Redis,
) -> None:
    """An entry older than the history TTL leaves the index; a channel with settings stays."""
    now = [1_000_000.0]
    store = HistoryStore(
        redis_client, max_items=10, max_chars=1000, ttl_seconds=60, clock=lambda: now[0]
    )
    prefs = Preferences(redis_client, default_model="m", default_system="s")
    configured = ConversationKey(GUILD, "13")
    await prefs.set(configured, "channel", "model", "x/y")
    await store.append(KEY, [HistoryItem(role="user", text="a")])
    await store.append(configured, [HistoryItem(role="user", text="c")])
    now[0] += 61
    await store.append(OTHER_CHANNEL, [HistoryItem(role="user", text="b")])
    data = ServerData(redis_client, store)
    channels = {key.channel for key in await data.conversations(GUILD)}
    assert channels == {"11", "13"}
    index = ServerKey(GUILD).conversations
    assert await redis_client.zscore(index, "13") == float("inf")
    assert await redis_client.ttl(index) == -1


async def test_deleting_a_server_drops_its_in_flight_records(redis_client: aioredis.Redis) -> None:
    """A reply the bot can no longer finish (it left the server) leaves no in-flight record;
    another server's record stays."""
    from bot.core.inflight import InFlightAnswers
    from bot.core.keys import INFLIGHT_INDEX

    records = InFlightAnswers(redis_client, process_id="p1")
    mine = await records.begin(KEY, asker_id=1, sink="channel")
    theirs = await records.begin(ConversationKey("other", "10"), asker_id=1, sink="channel")
    assert mine is not None
    assert theirs is not None
    store = HistoryStore(redis_client, max_items=10, max_chars=10_000, ttl_seconds=600)
    await ServerData(redis_client, store).delete_server(GUILD)
    left = {m.decode() for m in await redis_client.smembers(INFLIGHT_INDEX)}  # type: ignore[misc]
    assert left == {theirs.record.index_member}
    assert not await redis_client.exists(mine.record.key.inflight(mine.record.answer_id))
