"""The Redis history store against a real redis-server: fields, order, trimming, TTL, bad items."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.core.events import HistoryItem
from bot.core.history import (
    HistoryStore,
    StoredItemError,
    decode_item,
    encode_item,
    turn_items,
)
from bot.core.images import ImageRef
from bot.core.keys import ConversationKey, ServerKey
from tests.support.redis_target import all_keys

pytestmark = pytest.mark.on_cluster

KEY = ConversationKey("123", "456")
DAY = 24 * 3600


def store_for(
    client: aioredis.Redis, *, max_items: int = 100, max_chars: int = 100_000, ttl: int = DAY
) -> HistoryStore:
    """A store with generous limits unless told otherwise."""
    return HistoryStore(client, max_items=max_items, max_chars=max_chars, ttl_seconds=ttl)


def user(text: str, speaker: str = "ann") -> HistoryItem:
    """A user item."""
    return HistoryItem(role="user", text=text, speaker=speaker)


def answer(text: str) -> HistoryItem:
    """A completed assistant item."""
    return HistoryItem(role="assistant", text=text, item_id=f"msg_{len(text)}")


def exchange(n: int, size: int = 1) -> list[HistoryItem]:
    """User item `q<n>` followed by assistant item `a<n>`, each padded to `size` characters."""
    return [user(f"q{n}".ljust(size, ".")), answer(f"a{n}".ljust(size, "."))]


def texts(items: Sequence[HistoryItem]) -> list[str]:
    """The texts of items, stripped of padding, for compact assertions."""
    return [item.text.rstrip(".") for item in items]


async def test_round_trip_keeps_every_field(redis_client: aioredis.Redis) -> None:
    """Every field of user and assistant items comes back exactly, unicode included."""
    store = store_for(redis_client)
    items = [
        HistoryItem(role="user", text="héllo 👋🏽\n\u2028", speaker="Zoë", ref="111", author="999"),
        HistoryItem(
            role="assistant",
            text="partial ✓",
            speaker="",
            item_id="msg_abc",
            status="incomplete",
            ref="222",
        ),
    ]
    await store.append(KEY, items)
    assert await store.load(KEY) == items


async def test_items_stored_before_authors_existed_still_load(
    redis_client: aioredis.Redis,
) -> None:
    """A stored item without `author` (older data) loads with an empty author."""
    record = {"v": 1, "role": "user", "text": "hi", "speaker": "Ann", "ref": "1", "n": 2}
    await redis_client.rpush(KEY.items, json.dumps(record))  # type: ignore[misc]
    assert await store_for(redis_client).load(KEY) == [
        HistoryItem(role="user", text="hi", speaker="Ann", ref="1")
    ]
    assert "author" not in encode_item(HistoryItem(role="user", text="hi"))


async def test_appends_keep_order(redis_client: aioredis.Redis) -> None:
    """Items come back oldest first, across several appends."""
    store = store_for(redis_client)
    for n in range(5):
        await store.append(KEY, exchange(n))
    assert texts(await store.load(KEY)) == [t for n in range(5) for t in (f"q{n}", f"a{n}")]


async def test_load_of_unknown_conversation_is_empty(redis_client: aioredis.Redis) -> None:
    """A conversation nobody wrote to has no history."""
    assert await store_for(redis_client).load(KEY) == []


async def test_trims_whole_exchanges_down_to_half_the_count(redis_client: aioredis.Redis) -> None:
    """Past max_items, the oldest whole exchanges go until half of max_items is left."""
    store = store_for(redis_client, max_items=8)
    await store.append(KEY, exchange(0))
    await store.append(KEY, [user("q1a"), user("q1b"), answer("a1")])
    assert await store.append(KEY, exchange(2)) == 0
    # 9 items > 8: exchanges 0 and 1 go (5 items), leaving 4 = half of 8.
    assert await store.append(KEY, exchange(3)) == 5
    assert texts(await store.load(KEY)) == ["q2", "a2", "q3", "a3"]
    # Then nothing goes until the limit is passed again: at 8 items it is reached, not passed.
    assert await store.append(KEY, exchange(4)) == 0
    assert await store.append(KEY, exchange(5)) == 0
    assert len(await store.load(KEY)) == 8
    assert await store.append(KEY, exchange(6)) == 6
    assert texts(await store.load(KEY)) == ["q5", "a5", "q6", "a6"]


async def test_trims_by_characters_down_to_half(redis_client: aioredis.Redis) -> None:
    """Past max_chars, the oldest exchanges go until the text fits in half of max_chars."""
    store = store_for(redis_client, max_chars=160)
    for n in range(4):
        await store.append(KEY, exchange(n, size=20))
    assert len(await store.load(KEY)) == 8  # 160 characters: at the limit, not past it
    await store.append(KEY, exchange(4, size=20))
    assert texts(await store.load(KEY)) == ["q3", "a3", "q4", "a4"]


async def test_counts_characters_not_bytes(redis_client: aioredis.Redis) -> None:
    """An emoji is one character (code point) toward max_chars, not its four UTF-8 bytes."""
    store = store_for(redis_client, max_chars=10)
    await store.append(KEY, [user("🙂" * 3), answer("🙂" * 2)])
    await store.append(KEY, [user("🙂" * 3), answer("🙂" * 2)])
    assert len(await store.load(KEY)) == 4
    await store.append(KEY, [user("🙂")])
    assert [item.text for item in await store.load(KEY)] == ["🙂"]


async def test_block_trimming_lets_most_appends_only_add(redis_client: aioredis.Redis) -> None:
    """With max_items=20, over 40 exchanges at most one append in six removes anything."""
    store = store_for(redis_client, max_items=20)
    trimmed = [await store.append(KEY, exchange(n)) for n in range(40)]
    assert sum(1 for count in trimmed if count) == 5  # at exchanges 11, 17, 23, 29, 35
    assert 10 <= len(await store.load(KEY)) <= 20


async def test_an_answer_without_id_gets_one_when_stored(redis_client: aioredis.Redis) -> None:
    """An answer stored without an id is given one once; every load returns the same id."""
    store = store_for(redis_client)
    await store.append(KEY, [user("q"), HistoryItem(role="assistant", text="a")])
    first = await store.load(KEY)
    assert first[1].item_id.startswith("msg_")
    await store.append(KEY, exchange(1))
    assert (await store.load(KEY))[1] == first[1]
    assert await store.replace_last_assistant(KEY, HistoryItem(role="assistant", text="b"))
    replaced = (await store.load(KEY))[-1]
    assert replaced.item_id.startswith("msg_")
    assert replaced.item_id != first[1].item_id


async def test_never_trims_the_current_turn(redis_client: aioredis.Redis) -> None:
    """A turn bigger than both limits on its own is kept whole; everything older goes."""
    store = store_for(redis_client, max_items=2, max_chars=10)
    await store.append(KEY, exchange(0))
    big_turn = [user("x" * 30), user("y" * 30), answer("z" * 30)]
    await store.append(KEY, big_turn)
    assert await store.load(KEY) == big_turn


async def test_a_turn_stored_in_two_appends_is_trimmed_as_one_exchange(
    redis_client: aioredis.Redis,
) -> None:
    """The question appended at the start (no trim) and the answer at the end: the answer's
    append trims as the whole exchange's would, and never drops its own question."""
    store = store_for(redis_client, max_items=2, max_chars=10)
    await store.append(KEY, exchange(0))
    question = [user("x" * 30), user("y" * 30)]
    assert await store.append(KEY, question, trim=False) == 0
    assert await store.load(KEY) == [*exchange(0), *question]
    assert await store.append(KEY, [answer("z" * 30)]) == 2
    assert await store.load(KEY) == [*question, answer("z" * 30)]


async def test_a_turn_without_an_answer_still_trims(redis_client: aioredis.Redis) -> None:
    """A turn whose answer brought no text (an error at once) ends with an empty append that
    still trims, keeping the turn's question."""
    store = store_for(redis_client, max_items=4)
    for n in range(2):
        await store.append(KEY, exchange(n))
    await store.append(KEY, [user("q2")], trim=False)
    assert await store.append(KEY, []) == 4
    assert texts(await store.load(KEY)) == ["q2"]


async def test_an_answer_goes_right_after_its_question(redis_client: aioredis.Redis) -> None:
    """insert_after puts an answer after the question with its ref: at the end it is the newest
    (True), before later turns it is not (False), and a question no longer stored takes
    nothing (None)."""
    store = store_for(redis_client)
    asked = HistoryItem(role="user", text="q0", speaker="ann", ref="m0")
    await store.append(KEY, [asked], trim=False)
    assert await store.insert_after(KEY, "m0", answer("a0")) is True
    later = HistoryItem(role="user", text="q1", speaker="bob", ref="m1")
    await store.append(KEY, [later], trim=False)
    await store.append(KEY, [answer("a1")])
    other = HistoryItem(role="user", text="q2", speaker="ann", ref="m2")
    await store.append(KEY, [other], trim=False)
    assert await store.append(KEY, [answer("a2")]) == 0
    assert await store.insert_after(KEY, "m1", answer("partial")) is False
    assert texts(await store.load(KEY)) == ["q0", "a0", "q1", "partial", "a1", "q2", "a2"]
    assert await store.insert_after(KEY, "gone", answer("lost")) is None
    assert len(await store.load(KEY)) == 7


async def test_trimming_starts_history_at_a_user_item(redis_client: aioredis.Redis) -> None:
    """A turn that stored no answer still leaves a history that begins with a user item."""
    store = store_for(redis_client, max_items=3)
    await store.append(KEY, [user("q0")])
    await store.append(KEY, exchange(1))
    await store.append(KEY, exchange(2))
    assert texts(await store.load(KEY)) == ["q2", "a2"]


async def test_ttl_is_set_and_refreshed_on_every_key(redis_client: aioredis.Redis) -> None:
    """Each append sets the TTL of the items and of companion keys that exist."""
    store = store_for(redis_client, ttl=DAY)
    await redis_client.set(KEY.sub("settings"), "{}")
    await store.append(KEY, exchange(0))
    for name in (KEY.items, KEY.sub("settings")):
        assert DAY * 1000 - 60_000 < await redis_client.pttl(name) <= DAY * 1000
        await redis_client.pexpire(name, 5_000)
    await store.append(KEY, exchange(1))
    for name in (KEY.items, KEY.sub("settings")):
        assert await redis_client.pttl(name) > DAY * 1000 - 60_000


async def test_companion_key_that_does_not_exist_is_not_created(
    redis_client: aioredis.Redis,
) -> None:
    """Refreshing the TTL of a missing settings key does not make one."""
    await store_for(redis_client).append(KEY, exchange(0))
    assert await redis_client.exists(KEY.sub("settings")) == 0


async def test_every_key_shares_the_hash_tag(redis_client: aioredis.Redis) -> None:
    """Every key the store and the lock use carries the conversation's hash tag; the server's
    index of conversations carries the server's (it is written by a command of its own)."""
    store = store_for(redis_client)
    await redis_client.set(KEY.sub("settings"), "{}")
    await store.append(KEY, exchange(0))
    stored = await all_keys(redis_client)
    assert stored == {KEY.items, KEY.sub("settings"), ServerKey("123").conversations}
    for name in [*(stored - {ServerKey("123").conversations}), *store.keys_of(KEY), KEY.lock]:
        assert name.startswith("{g:123:c:456}:")
    assert ServerKey("123").conversations.startswith("{g:123}:")


async def test_bad_items_are_skipped_and_logged(
    redis_client: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """Broken JSON, an unknown version and a wrong role are skipped with a warning each."""
    store = store_for(redis_client)
    good = exchange(0)
    await store.append(KEY, good[:1])
    bad = [
        b"{not json",
        json.dumps({"v": 99, "role": "user", "text": "future"}),
        json.dumps({"v": 1, "role": "system", "text": "x"}),
        b"\xff\xfe",
        b"[1, 2]",
    ]
    await redis_client.rpush(KEY.items, *bad)
    await store.append(KEY, good[1:])
    with caplog.at_level(logging.WARNING, logger="bot.core.history"):
        assert await store.load(KEY) == good
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == len(bad)
    assert "unknown schema version 99" in caplog.text


async def test_bad_items_do_not_break_trimming(redis_client: aioredis.Redis) -> None:
    """A corrupt item in the list is trimmed along with the exchange it sits in."""
    store = store_for(redis_client, max_items=3)
    await store.append(KEY, exchange(0))
    await redis_client.rpush(KEY.items, b"{corrupt")
    await store.append(KEY, exchange(1))
    assert await redis_client.llen(KEY.items) == 2
    assert texts(await store.load(KEY)) == ["q1", "a1"]


async def test_lone_surrogate_is_stored_safely(redis_client: aioredis.Redis) -> None:
    """Text that cannot be UTF-8 encoded is stored with a replacement, not an error."""
    store = store_for(redis_client, max_chars=5)
    await store.append(KEY, [user("a\ud800b")])
    await store.append(KEY, [user("cd")])
    assert [item.text for item in await store.load(KEY)] == ["a?b", "cd"]


async def test_load_drops_leading_assistant_items(redis_client: aioredis.Redis) -> None:
    """History never starts with an answer whose question is gone."""
    store = store_for(redis_client)
    await redis_client.rpush(KEY.items, encode_item(answer("orphan")))
    await store.append(KEY, exchange(1))
    assert texts(await store.load(KEY)) == ["q1", "a1"]


async def test_concurrent_appends_keep_exchanges_contiguous(redis_client: aioredis.Redis) -> None:
    """Many tasks appending at once leave every answer right after its own question."""
    store = store_for(redis_client, max_items=1000)
    await asyncio.gather(*(store.append(KEY, exchange(n)) for n in range(60)))
    stored = texts(await store.load(KEY))
    assert len(stored) == 120
    pairs = list(zip(stored[::2], stored[1::2], strict=True))
    assert all(q[1:] == a[1:] and q[0] == "q" and a[0] == "a" for q, a in pairs)
    assert {q for q, _ in pairs} == {f"q{n}" for n in range(60)}


async def test_concurrent_appends_while_trimming(redis_client: aioredis.Redis) -> None:
    """Appends racing with trimming still leave a suffix of whole exchanges within limits."""
    store = store_for(redis_client, max_items=10)
    await asyncio.gather(*(store.append(KEY, exchange(n)) for n in range(50)))
    stored = texts(await store.load(KEY))
    # Lengths run 2, 4, .., 10, then 12 -> 4, 6, 8, 10, 12 -> 4, ...: 4 after the 50th.
    assert len(stored) == 4
    assert all(q[1:] == a[1:] for q, a in zip(stored[::2], stored[1::2], strict=True))


async def test_replace_last_assistant(redis_client: aioredis.Redis) -> None:
    """Regenerate swaps the trailing answer items for one new item and keeps the TTL fresh."""
    store = store_for(redis_client)
    await store.append(KEY, exchange(0))
    await store.append(KEY, [user("q1"), answer("a1 part"), answer("a1 rest")])
    await redis_client.pexpire(KEY.items, 5_000)
    assert await store.replace_last_assistant(KEY, answer("a1 again"))
    assert texts(await store.load(KEY)) == ["q0", "a0", "q1", "a1 again"]
    assert await redis_client.pttl(KEY.items) > DAY * 1000 - 60_000


async def test_replace_last_assistant_without_answer(redis_client: aioredis.Redis) -> None:
    """With no answer after the last question there is nothing to replace."""
    store = store_for(redis_client)
    await store.append(KEY, [*exchange(0), user("q1")])
    assert not await store.replace_last_assistant(KEY, answer("new"))
    assert not await store.replace_last_assistant(ConversationKey("1", "2"), answer("new"))
    assert texts(await store.load(KEY)) == ["q0", "a0", "q1"]
    with pytest.raises(ValueError, match="assistant"):
        await store.replace_last_assistant(KEY, user("not an answer"))


async def test_pop_last_answer(redis_client: aioredis.Redis) -> None:
    """Popping returns the trailing answer items and leaves the question."""
    store = store_for(redis_client)
    await store.append(KEY, [*exchange(0), user("q1"), answer("a1"), answer("a1b")])
    assert texts(await store.pop_last_answer(KEY)) == ["a1", "a1b"]
    assert texts(await store.load(KEY)) == ["q0", "a0", "q1"]
    assert await store.pop_last_answer(KEY) == []


async def test_clear_forgets_items_only(redis_client: aioredis.Redis) -> None:
    """Clearing removes the history and leaves the conversation's settings."""
    store = store_for(redis_client)
    await redis_client.set(KEY.sub("settings"), "{}")
    await store.append(KEY, exchange(0))
    await store.clear(KEY)
    assert await store.load(KEY) == []
    assert await redis_client.exists(KEY.sub("settings")) == 1


async def test_conversations_are_separate(redis_client: aioredis.Redis) -> None:
    """Two channels of a guild, and a terminal session, never see each other's items."""
    store = store_for(redis_client)
    other, terminal = ConversationKey("123", "789"), ConversationKey.terminal("cli")
    await store.append(KEY, exchange(0))
    await store.append(other, exchange(1))
    await store.append(terminal, exchange(2))
    assert texts(await store.load(other)) == ["q1", "a1"]
    assert texts(await store.load(terminal)) == ["q2", "a2"]


def test_turn_items_keeps_partial_answer_as_incomplete() -> None:
    """A failed turn keeps the question and the partial answer marked incomplete."""
    question = [user("q")]
    items = turn_items(question, "half an ans", status="incomplete", message_id=None, ref="9")
    assert items == [
        question[0],
        HistoryItem(role="assistant", text="half an ans", status="incomplete", ref="9"),
    ]


def test_turn_items_without_text_keeps_only_the_question() -> None:
    """A turn that produced no text stores only the user's items."""
    assert turn_items([user("q")], "", status="incomplete", message_id="m") == [user("q")]


def test_turn_items_completed_carries_message_id() -> None:
    """A completed turn stores the API's message id on the answer."""
    items = turn_items([user("q")], "ok", status="completed", message_id="msg_1")
    assert items[1] == HistoryItem(role="assistant", text="ok", item_id="msg_1")


def test_encoding_has_version_and_character_count() -> None:
    """The stored JSON carries the schema version and the text length in characters."""
    record = json.loads(encode_item(user("🙂🙂"), starts_turn=True))
    assert (record["v"], record["n"], record["start"]) == (1, 2, 1)
    assert decode_item(encode_item(user("🙂🙂"))) == user("🙂🙂")


CAT = ImageRef("456", "789", "1011", "cat.png", "image/png")
LOCAL = ImageRef("", "ab" * 32, "/home/zoë/dog 1.webp", "dog 1.webp", "image/webp")


async def test_image_refs_round_trip(redis_client: aioredis.Redis) -> None:
    """A user item's image refs come back in order with every field, unicode paths included."""
    store = store_for(redis_client)
    items = [
        HistoryItem(role="user", text="what is this?", speaker="Ann", ref="789", images=(CAT,)),
        answer("a cat"),
        HistoryItem(role="user", text="", images=(LOCAL, CAT)),
    ]
    await store.append(KEY, items)
    assert await store.load(KEY) == items


def test_an_item_without_images_keeps_its_exact_stored_form() -> None:
    """No `images` key is written for an item without images: the bytes are as before."""
    assert encode_item(user("hi", "Ann"), starts_turn=True) == (
        '{"v":1,"role":"user","text":"hi","speaker":"Ann","id":"","status":"completed",'
        '"ref":"","n":2,"start":1}'
    )
    record = json.loads(encode_item(HistoryItem(role="user", text="x", images=(CAT,))))
    assert record["images"] == [
        {
            "channel": "456",
            "message": "789",
            "attachment": "1011",
            "filename": "cat.png",
            "type": "image/png",
        }
    ]


async def test_items_stored_before_images_still_load(redis_client: aioredis.Redis) -> None:
    """Items written in the older form (no images key) load with no images."""
    store = store_for(redis_client)
    old = [
        '{"v":1,"role":"user","text":"q","speaker":"Ann","id":"","status":"completed",'
        '"ref":"5","n":1,"start":1}',
        '{"v":1,"role":"assistant","text":"a","speaker":"","id":"msg_1",'
        '"status":"completed","ref":"","n":1}',
    ]
    await redis_client.rpush(KEY.items, *old)
    assert await store.load(KEY) == [
        HistoryItem(role="user", text="q", speaker="Ann", ref="5"),
        HistoryItem(role="assistant", text="a", item_id="msg_1"),
    ]


@pytest.mark.parametrize(
    "images",
    [{"channel": "1"}, [1], [{"channel": 1, "message": "2"}], "cat.png"],
)
def test_a_malformed_images_field_is_a_bad_item(images: object) -> None:
    """An images field that is not a list of objects of strings is refused like any bad field."""
    raw = json.dumps({"v": 1, "role": "user", "text": "q", "images": images})
    with pytest.raises(StoredItemError, match=r"images|channel"):
        decode_item(raw)


def _fits(batches: list[list[str]], max_items: int, max_chars: int) -> bool:
    """Whether the batches' texts together are within both limits."""
    every = [text for batch in batches for text in batch]
    return len(every) <= max_items and sum(map(len, every)) <= max_chars


def _kept_after(batches: list[list[str]], max_items: int, max_chars: int) -> list[list[str]]:
    """The oracle for one append of `batches[-1]` to the kept `batches[:-1]`: everything while
    within the limits, else the longest suffix of whole batches within half of each limit (at
    least the newest batch)."""
    if _fits(batches, max_items, max_chars):
        return batches
    for start in range(len(batches)):
        if _fits(batches[start:], max_items // 2, max_chars // 2):
            return batches[start:]
    return batches[-1:]


# One turn: its user texts then its answer's text; a turn of one text is a question alone.
batch_texts = st.lists(st.text(max_size=12), min_size=1, max_size=4)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    batches=st.lists(batch_texts, min_size=1, max_size=8),
    max_items=st.integers(1, 12),
    max_chars=st.integers(1, 60),
)
async def test_trimming_property(
    redis_client: aioredis.Redis, batches: list[list[str]], max_items: int, max_chars: int
) -> None:
    """After every append the history follows the block-trimming rule, whole turns only."""
    await redis_client.delete(KEY.items)
    store = store_for(redis_client, max_items=max_items, max_chars=max_chars)
    kept: list[list[str]] = []
    for batch in batches:
        turn = [user(text) for text in batch[:-1]] + [answer(batch[-1])]
        if len(batch) == 1:
            turn = [user(batch[0])]
        await store.append(KEY, turn)
        raw = await redis_client.lrange(KEY.items, 0, -1)
        stored = [decode_item(item).text for item in raw]
        kept = _kept_after([*kept, batch], max_items, max_chars)
        assert stored == [text for turn_texts in kept for text in turn_texts]


async def test_trim_to_one_drops_only_what_is_needed(redis_client: aioredis.Redis) -> None:
    """With trim_to=1.0 (the bench's comparison rule) one exchange goes per turn past the limit."""
    store = HistoryStore(redis_client, max_items=4, max_chars=1000, ttl_seconds=DAY, trim_to=1.0)
    for n in range(4):
        await store.append(KEY, exchange(n))
    assert texts(await store.load(KEY)) == ["q2", "a2", "q3", "a3"]
    with pytest.raises(ValueError, match="trim_to"):
        HistoryStore(redis_client, max_items=4, max_chars=10, ttl_seconds=DAY, trim_to=1.5)
