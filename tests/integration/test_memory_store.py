"""The server memory against real Redis: limits, relevance, isolation, rights and visibility."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from bot.core.tools.context import Caller, Place
from bot.core.tools.memory_store import Fact, MemoryStore, Viewer

pytestmark = pytest.mark.on_cluster

NOW = 1_767_225_600.0  # 2026-01-01 00:00 UTC
ANN = Caller("11", "Ann")
BOB = Caller("22", "Bob")
ADMIN = Caller("33", "Admin", manage_server=True)

GENERAL = Place("1", "100", public=True)
STAFF = Place("1", "200", public=False)
OTHER_PRIVATE = Place("1", "300", public=False)
STAFF_PUBLIC_THREAD = Place("1", "201", parent="200", thread="public", public=False)
STAFF_OTHER_THREAD = Place("1", "202", parent="200", thread="public", public=False)
STAFF_PRIVATE_THREAD = Place("1", "203", parent="200", thread="private", public=False)
GENERAL_PRIVATE_THREAD = Place("1", "101", parent="100", thread="private", public=True)
GENERAL_THREAD = Place("1", "102", parent="100", thread="public", public=True)
ELSEWHERE = Place("2", "100", public=True)


@pytest.fixture
def store(redis_client: aioredis.Redis) -> MemoryStore:
    """A memory store on the test redis with a fixed clock."""
    return MemoryStore(redis_client, max_facts=500, clock=lambda: NOW)


def texts(facts: list[Fact]) -> list[str]:
    """The facts' texts, in order."""
    return [fact.text for fact in facts]


async def test_a_fact_records_who_when_where_and_visibility(store: MemoryStore) -> None:
    """remember returns the fact with a fresh id and everything it records."""
    first = await store.remember(STAFF_PUBLIC_THREAD, ANN, "  The   build runs nightly. ")
    second = await store.remember(GENERAL, BOB, "Pizza on Fridays.")
    assert (first.id, second.id) == ("1", "2")
    assert first == Fact(
        id="1",
        text="The build runs nightly.",
        by_name="Ann",
        by_id="11",
        at=NOW,
        channel="201",
        parent="200",
        thread="public",
        public=False,
        scope="200",
    )
    assert await store.facts("1") == [first, second]
    assert (first.told_at, first.where, first.visibility) == (
        "2026-01-01 00:00 UTC",
        "public thread 201 of channel 200",
        "private to channel 200",
    )


async def test_limits_on_length_and_count(redis_client: aioredis.Redis) -> None:
    """A fact is at most 300 characters and not blank; past max_facts the oldest go first."""
    store = MemoryStore(redis_client, max_facts=3, clock=lambda: NOW)
    with pytest.raises(ValueError, match="at most 300 characters, not 301"):
        await store.remember(GENERAL, ANN, "x" * 301)
    with pytest.raises(ValueError, match="needs some text"):
        await store.remember(GENERAL, ANN, " \n ")
    for n in range(5):
        await store.remember(GENERAL, ANN, f"fact number {n}")
    assert [(f.id, f.text) for f in await store.facts("1")] == [
        ("3", "fact number 2"),
        ("4", "fact number 3"),
        ("5", "fact number 4"),
    ]
    assert await redis_client.zcard("{g:1}:memory:order") == 3


async def test_recall_ranks_by_relevance_and_keeps_to_eight(store: MemoryStore) -> None:
    """The best match comes first (plurals fold, common words do not count); at most 8 come
    back; a query without words gives the newest."""
    await store.remember(GENERAL, ANN, "Our cat is called Miso.")
    await store.remember(GENERAL, ANN, "The server's birthday is in March.")
    await store.remember(GENERAL, BOB, "Cats are banned from the voice channel, and so are dogs.")
    for n in range(12):
        await store.remember(GENERAL, BOB, f"Dog rule {n}: dogs need a leash.")
    assert texts(await store.recall(GENERAL, "what is the cat called?"))[:2] == [
        "Our cat is called Miso.",
        "Cats are banned from the voice channel, and so are dogs.",
    ]
    assert len(await store.recall(GENERAL, "dogs")) == 8
    assert await store.recall(GENERAL, "volcanoes") == []
    newest = await store.recall(GENERAL, "?")
    assert texts(newest)[0] == "Dog rule 11: dogs need a leash."
    assert len(newest) == 8
    assert texts(await store.recall(GENERAL, "what did Ann say about birthdays"))[0] == (
        "The server's birthday is in March."
    )


async def test_a_fact_is_recalled_across_channels_but_never_in_another_server(
    store: MemoryStore,
) -> None:
    """A public fact told in one channel is heard in every channel of its server, and in no
    other server."""
    await store.remember(GENERAL, ANN, "The wiki lives at example.org.")
    assert texts(await store.recall(Place("1", "999", public=True), "wiki"))
    assert texts(await store.recall(STAFF_PRIVATE_THREAD, "wiki"))
    assert await store.recall(ELSEWHERE, "wiki") == []
    assert await store.facts("2") == []


@pytest.mark.parametrize(
    ("told", "heard", "not_heard"),
    [
        pytest.param(
            GENERAL,
            [GENERAL, STAFF, STAFF_PRIVATE_THREAD, GENERAL_THREAD],
            [ELSEWHERE],
            id="public channel",
        ),
        pytest.param(
            STAFF,
            [STAFF, STAFF_PUBLIC_THREAD, STAFF_PRIVATE_THREAD],
            [GENERAL, OTHER_PRIVATE, GENERAL_THREAD],
            id="private channel",
        ),
        pytest.param(
            STAFF_PUBLIC_THREAD,
            [STAFF, STAFF_PUBLIC_THREAD, STAFF_OTHER_THREAD, STAFF_PRIVATE_THREAD],
            [GENERAL, OTHER_PRIVATE],
            id="public thread of a private channel",
        ),
        pytest.param(
            STAFF_PRIVATE_THREAD,
            [STAFF_PRIVATE_THREAD],
            [STAFF, STAFF_PUBLIC_THREAD, GENERAL],
            id="private thread",
        ),
        pytest.param(
            GENERAL_PRIVATE_THREAD,
            [GENERAL_PRIVATE_THREAD],
            [GENERAL, GENERAL_THREAD, STAFF],
            id="private thread of a public channel",
        ),
    ],
)
async def test_recall_keeps_private_facts_where_they_were_told(
    store: MemoryStore, told: Place, heard: list[Place], not_heard: list[Place]
) -> None:
    """A private fact is heard only in its channel, that channel's threads, or its private
    thread; a public one everywhere in the server; whoever asks."""
    await store.remember(told, ANN, "The launch code word is heliotrope.")
    for place in heard:
        assert texts(await store.recall(place, "launch code")), place
    for place in not_heard:
        assert await store.recall(place, "launch code") == [], place
        assert await store.recall(place, "") == [], place


async def test_a_channel_that_opens_up_keeps_what_was_said_in_private(store: MemoryStore) -> None:
    """A fact told while a channel was private stays private when the channel becomes public."""
    await store.remember(STAFF, ANN, "Salaries are confidential.")
    opened = Place("1", "200", public=True)
    await store.remember(opened, ANN, "Salaries are reviewed in May.")
    assert texts(await store.recall(GENERAL, "salaries")) == ["Salaries are reviewed in May."]
    assert len(await store.recall(opened, "salaries")) == 2


async def test_a_dm_has_a_memory_of_its_own(store: MemoryStore) -> None:
    """A DM's facts are heard in that DM only; a server's facts never in a DM."""
    dm, other_dm = Place.dm("5000"), Place.dm("5001")
    await store.remember(dm, ANN, "My favourite colour is teal.")
    await store.remember(GENERAL, ANN, "The server colour is orange.")
    assert texts(await store.recall(dm, "colour")) == ["My favourite colour is teal."]
    assert await store.recall(other_dm, "colour") == []
    assert texts(await store.recall(GENERAL, "colour")) == ["The server colour is orange."]
    assert [f.visibility for f in await store.facts(dm.guild)] == ["private to channel 5000"]


async def test_forget_at_a_place_needs_the_fact_to_be_heard_there_and_to_be_yours(
    store: MemoryStore,
) -> None:
    """A member forgets their own facts; another's only with Manage Server; a fact not heard
    at the place is missing there, whoever asks."""
    public = await store.remember(GENERAL, ANN, "Ann likes tea.")
    private = await store.remember(STAFF, ANN, "Ann is on call.")
    assert await store.forget_at(GENERAL, BOB, public.id) == "not_yours"
    assert await store.forget_at(GENERAL, ADMIN, private.id) == "missing"
    assert await store.forget_at(GENERAL, ANN, "#" + public.id) == "forgotten"
    assert await store.forget_at(GENERAL, ANN, public.id) == "missing"
    assert await store.forget_at(STAFF, ADMIN, private.id) == "forgotten"
    assert await store.forget_at(GENERAL, ANN, "not-an-id") == "missing"
    assert await store.facts("1") == []


async def test_a_viewer_sees_public_facts_and_those_of_channels_they_can_view(
    store: MemoryStore,
) -> None:
    """The listing shows public facts, private channel facts to those who view the channel,
    and private thread facts only to their teller and Manage Threads; newest first, paged."""
    await store.remember(GENERAL, ANN, "public fact")
    await store.remember(STAFF, ANN, "staff fact")
    await store.remember(STAFF_PUBLIC_THREAD, ANN, "staff thread fact")
    await store.remember(STAFF_PRIVATE_THREAD, BOB, "private thread fact")
    member = Viewer("44", frozenset({"100"}))
    staff = Viewer("55", frozenset({"100", "200", "201"}))
    moderator = Viewer("66", frozenset({"100", "200"}), manage_threads=True)
    bob = Viewer("22", frozenset({"100"}))

    async def listed(viewer: Viewer) -> list[str]:
        return texts((await store.page("1", viewer)).facts)

    assert await listed(member) == ["public fact"]
    assert await listed(staff) == ["staff thread fact", "staff fact", "public fact"]
    assert await listed(moderator) == [
        "private thread fact",
        "staff thread fact",
        "staff fact",
        "public fact",
    ]
    assert await listed(bob) == ["private thread fact", "public fact"]
    assert texts(await store.search("1", member, "fact")) == ["public fact"]
    page = await store.page("1", moderator, 1, per_page=3)
    assert (texts(page.facts), page.page, page.pages, page.total) == (["public fact"], 1, 2, 4)
    assert (await store.page("1", member, 7)).page == 0


async def test_a_viewer_forgets_only_what_they_see_and_may_remove(store: MemoryStore) -> None:
    """Forget from the listing: unseen facts are missing; others' need Manage Server."""
    staff_fact = await store.remember(STAFF, ANN, "staff fact")
    public = await store.remember(GENERAL, ANN, "public fact")
    admin_outside = Viewer("33", frozenset({"100"}), manage_server=True)
    assert await store.forget_as("1", admin_outside, staff_fact.id) == "missing"
    assert await store.forget_as("1", Viewer("22", frozenset({"100"})), public.id) == "not_yours"
    assert await store.forget_as("1", admin_outside, public.id) == "forgotten"
    assert await store.forget_as("1", Viewer("11", frozenset({"200"})), staff_fact.id) == (
        "forgotten"
    )


async def test_another_process_sees_changes_at_once(redis_client: aioredis.Redis) -> None:
    """Two stores on one Redis (two bot processes): each sees the other's writes, forgets
    and clears at the next call, despite its cached copy."""
    one = MemoryStore(redis_client, clock=lambda: NOW)
    two = MemoryStore(redis_client, clock=lambda: NOW)
    assert await one.recall(GENERAL, "tea") == []
    fact = await two.remember(GENERAL, ANN, "Ann likes tea.")
    assert texts(await one.recall(GENERAL, "tea")) == ["Ann likes tea."]
    await two.forget_at(GENERAL, ANN, fact.id)
    assert await one.recall(GENERAL, "tea") == []
    await one.remember(GENERAL, ANN, "Bob likes tea.")
    assert await two.clear("1") == 1
    assert await one.recall(GENERAL, "tea") == []
    assert (await one.remember(GENERAL, ANN, "new")).id == "3"  # ids are never reused


async def test_the_switch_is_off_until_turned_on_and_kept_per_server(store: MemoryStore) -> None:
    """Each server's memory switch starts off and is kept in that server's prefs hash."""
    assert not await store.enabled("1")
    await store.set_enabled("1", True)
    assert await store.enabled("1")
    assert not await store.enabled("2")
    await store.set_enabled("1", False)
    assert not await store.enabled("1")


async def test_forget_teller_removes_every_fact_a_member_told_there_only(
    store: MemoryStore,
) -> None:
    """/forget: a member's facts go from that server's memory; others' and other servers' stay."""
    await store.remember(GENERAL, ANN, "Ann likes tea")
    await store.remember(STAFF, ANN, "Ann runs the staff rota")
    await store.remember(GENERAL, BOB, "Bob likes coffee")
    await store.remember(ELSEWHERE, ANN, "Ann elsewhere")
    assert await store.forget_teller("1", ANN.user_id) == 2
    assert texts(await store.facts("1")) == ["Bob likes coffee"]
    assert texts(await store.facts("2")) == ["Ann elsewhere"]


async def test_deleting_a_servers_data_deletes_its_memory(
    redis_client: aioredis.Redis, store: MemoryStore
) -> None:
    """The bot leaving a server takes that server's memory with it, not another's."""
    from bot.core.history import HistoryStore
    from bot.core.privacy import ServerData

    await store.remember(GENERAL, ANN, "Ann likes tea")
    await store.remember(ELSEWHERE, ANN, "Ann elsewhere")
    history = HistoryStore(redis_client, max_items=10, max_chars=10_000, ttl_seconds=600)
    await ServerData(redis_client, history).delete_server("1")
    assert await store.facts("1") == []
    assert texts(await store.facts("2")) == ["Ann elsewhere"]
