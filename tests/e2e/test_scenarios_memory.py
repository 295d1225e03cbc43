"""Scenarios of the server memory through Discord, against the real bot with MEMORY_ENABLED:
the per-server switch, remembering in one channel and recalling in another, /memory, and
what is told in private channels and threads staying there.

The model is scripted: a turn that remembers or recalls is a round calling the tool, then an
answer; what the tool gave back is read in the follow-up request's `function_call_output`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from bot.core.keys import server_memory
from tests.e2e.conftest import assert_clean_log
from tests.e2e.discord_emulator.emulator import overwrite
from tests.e2e.discord_emulator.interactions import InteractionRecord
from tests.e2e.discord_emulator.model import VIEW_CHANNEL, Channel, User
from tests.e2e.stack import BotStack, answer, running_stack
from tests.support.fake_responses import RecordedRequest, ScriptedCall, tool_call_stream

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotStack]:
    """One bot with MEMORY_ENABLED for this module's scenarios."""
    async with running_stack(
        tmp_path_factory.mktemp("memory"), channels=8, memory_enabled="true"
    ) as running:
        yield running
        assert_clean_log(running.bot.stderr_text())


async def command(
    stack: BotStack,
    subcommand: str,
    options: dict[str, Any] | None = None,
    *,
    user: User | str,
    channel_id: int,
) -> str:
    """Run /memory <subcommand> and return the bot's immediate answer."""
    record = await stack.emu.inject_interaction(
        "memory", options, user=user, channel_id=channel_id, subcommand=subcommand
    )
    return await reply_of(stack, record)


async def reply_of(stack: BotStack, record: InteractionRecord) -> str:
    """The content of an interaction's immediate (type 4) answer, once it came."""
    await stack.emu.wait_until(lambda: record.callback_type is not None)
    assert record.callback_body is not None
    return str(record.callback_body["data"]["content"])


async def switch(stack: BotStack, state: str) -> str:
    """The admin turns the server's memory on or off; the answer."""
    general = stack.emu.channel("general").id
    return await command(stack, "switch", {"state": state}, user="admin", channel_id=general)


class Turns:
    """Mentions that make the scripted model call one memory tool, counting answers per
    channel so each wait is for the newest."""

    def __init__(self, stack: BotStack) -> None:
        self.stack = stack
        self.answers: dict[int, int] = {}

    async def say(self, channel: Channel, who: User | str, call: ScriptedCall) -> RecordedRequest:
        """`who` mentions the bot in `channel`; the model calls `call`, then answers. Returns
        the follow-up request (the one carrying the tool's output)."""
        self.stack.script(tool_call_stream([call]), answer(["Done."]))
        emu = self.stack.emu
        await emu.inject_message(channel.id, who, f"{emu.bot_user.mention} please")
        self.answers[channel.id] = self.answers.get(channel.id, 0) + 1
        await self.stack.wait_for_final(channel.id, count=self.answers[channel.id])
        first, follow_up = self.stack.requests()
        assert [tool["name"] for tool in first.body["tools"]] == ["remember", "recall", "forget"]
        return follow_up

    async def remember(self, channel: Channel, who: User | str, fact: str) -> str:
        """Tell the bot a fact here; its id."""
        call = ScriptedCall("c_rem", "remember", [json.dumps({"fact": fact})])
        output = tool_output(await self.say(channel, who, call))
        assert output["remembered"] is True
        return str(output["id"])

    async def recall(self, channel: Channel, who: User | str, query: str) -> list[str]:
        """Ask the bot to recall here; the statements it got back."""
        call = ScriptedCall("c_rec", "recall", [json.dumps({"query": query})])
        output = tool_output(await self.say(channel, who, call))
        return [fact["statement"] for fact in output["facts"]]


def tool_output(request: RecordedRequest) -> dict[str, Any]:
    """The one function_call_output a follow-up request carries, decoded."""
    [output] = [i["output"] for i in request.body["input"] if i["type"] == "function_call_output"]
    decoded: dict[str, Any] = json.loads(output)
    return decoded


async def test_memory_is_off_until_the_server_turns_it_on(stack: BotStack) -> None:
    """By default a server's memory is off: the request has no tools and /settings says so;
    only Manage Server can switch it; on gives the model the tools, off takes them away."""
    redis = aioredis.Redis.from_url(stack.redis.url)
    try:
        await redis.delete(server_memory(str(stack.emu.guild_id)).switch)
    finally:
        await redis.aclose()
    channel = stack.fresh_channel()
    emu = stack.emu
    answered = 0

    async def tools_offered() -> bool:
        nonlocal answered
        stack.script(answer(["Hi."]))
        await emu.inject_message(channel.id, "alice", f"{emu.bot_user.mention} hi")
        answered += 1
        await stack.wait_for_final(channel.id, count=answered)
        [request] = stack.requests()
        return "tools" in request.body

    assert not await tools_offered()
    settings = await reply_of(
        stack, await emu.inject_interaction("settings", user="bob", channel_id=channel.id)
    )
    assert "**Server memory**: off (server switch" in settings
    refused = await command(stack, "switch", {"state": "on"}, user="bob", channel_id=channel.id)
    assert refused == "Turning the memory on or off needs the Manage Server permission."
    assert (await switch(stack, "on")).startswith("Server memory is on")
    assert await tools_offered()
    settings = await reply_of(
        stack, await emu.inject_interaction("settings", user="bob", channel_id=channel.id)
    )
    assert "**Server memory**: on (server switch" in settings
    assert (await switch(stack, "off")).startswith("Server memory is off")
    assert not await tools_offered()


async def test_a_fact_told_in_one_channel_is_recalled_in_another_and_forgotten(
    stack: BotStack,
) -> None:
    """Alice teaches the bot a fact in one channel; Bob's question in another channel gets it
    back with who told it; /memory list shows it, Bob may not forget it, Alice may."""
    await switch(stack, "on")
    turns = Turns(stack)
    here, there = stack.fresh_channel(), stack.fresh_channel()
    fact_id = await turns.remember(here, "alice", "The meetup is on Friday at 18:00.")
    call = ScriptedCall("c_rec", "recall", ['{"query": "', 'meetup"}'])
    output = tool_output(await turns.say(there, "bob", call))
    [fact] = [f for f in output["facts"] if f["id"] == fact_id]
    assert fact["statement"] == "The meetup is on Friday at 18:00."
    assert fact["told_by"] == "Alice"

    listed = await command(stack, "list", user="bob", channel_id=there.id)
    assert f"**#{fact_id}** · Alice" in listed
    assert "The meetup is on Friday at 18:00." in listed
    assert f"<#{here.id}> · public" in listed
    not_yours = await command(
        stack, "forget", {"fact_id": fact_id}, user="bob", channel_id=there.id
    )
    assert not_yours.startswith(f"Only the member who told fact #{fact_id}")
    gone = await command(
        stack, "forget", {"fact_id": f"#{fact_id}"}, user="alice", channel_id=here.id
    )
    assert gone == f"Forgot fact #{fact_id}."
    assert "meetup" not in await command(stack, "list", user="bob", channel_id=there.id)
    assert "meetup" not in " ".join(await turns.recall(there, "bob", "meetup"))


async def test_private_channels_and_threads_keep_their_facts(stack: BotStack) -> None:
    """A channel @everyone cannot view but Staff can (and the bot is let in): its fact is
    recalled there and in its public threads, never in #general whoever asks; a private
    thread's fact only in that thread; a public fact everywhere; /memory list shows the
    channel's fact to Staff only."""
    await switch(stack, "on")
    emu, turns = stack.emu, Turns(stack)
    staff = await emu.add_role("Staff")
    carol = emu.add_user("carol", ["Staff"])
    everyone = emu.world.roles[emu.guild_id]
    room = await emu.create_channel(
        "staff-room",
        [
            overwrite(everyone, deny=VIEW_CHANNEL),
            overwrite(staff, allow=VIEW_CHANNEL),
            overwrite(emu.bot_role(), allow=VIEW_CHANNEL),
        ],
    )
    general = emu.channel("general")
    public_id = await turns.remember(general, "alice", "The server logo is a purple owl.")
    secret_id = await turns.remember(room, carol, "The owl budget is 500 euros.")

    assert await turns.recall(room, carol, "owl budget") == [
        "The owl budget is 500 euros.",
        "The server logo is a purple owl.",
    ]
    thread = await emu.create_user_thread(room.id, "budget talk", carol)
    assert "The owl budget is 500 euros." in await turns.recall(thread, carol, "owl budget")
    for who in (carol, "owner", "alice"):
        assert await turns.recall(general, who, "owl budget") == [
            "The server logo is a purple owl."
        ]

    hideout = await emu.create_user_thread(
        room.id, "surprise", carol, private=True, members=[emu.bot_user]
    )
    await turns.remember(hideout, carol, "The owl party is a surprise for Dana.")
    assert await turns.recall(hideout, carol, "owl party budget") == [
        "The owl party is a surprise for Dana.",
        "The owl budget is 500 euros.",
        "The server logo is a purple owl.",
    ]
    assert "The owl party is a surprise for Dana." not in await turns.recall(
        room, carol, "owl party"
    )

    for_carol = await command(stack, "list", user=carol, channel_id=general.id)
    for_alice = await command(stack, "list", user="alice", channel_id=general.id)
    assert f"**#{secret_id}**" in for_carol
    assert f"🔒 private to <#{room.id}>" in for_carol
    assert "surprise for Dana" in for_carol  # she told it
    assert f"**#{public_id}**" in for_alice
    assert "500 euros" not in for_alice
    assert "surprise" not in for_alice
    searched = await command(
        stack, "search", {"query": "owl budget"}, user="alice", channel_id=general.id
    )
    assert "500 euros" not in searched
    assert "purple owl" in searched


async def test_ask_recalls_and_clear_needs_manage_server_and_a_confirmation(
    stack: BotStack,
) -> None:
    """/ask gets the memory tools too; /memory clear is refused without Manage Server, asks
    the admin to confirm privately, and only the confirmation forgets every fact."""
    await switch(stack, "on")
    turns = Turns(stack)
    channel = stack.fresh_channel()
    await turns.remember(channel, "bob", "The library closes at noon on Sundays.")
    stack.script(
        tool_call_stream([ScriptedCall("c_rec", "recall", ['{"query": "library"}'])]),
        answer(["At noon."]),
    )
    emu = stack.emu
    await emu.inject_interaction(
        "ask", {"prompt": "When does the library close?"}, user="alice", channel_id=channel.id
    )
    await stack.wait_for_final(channel.id, count=2)
    _, follow_up = stack.requests()
    statements = [f["statement"] for f in tool_output(follow_up)["facts"]]
    assert "The library closes at noon on Sundays." in statements

    refused = await command(stack, "clear", user="bob", channel_id=channel.id)
    assert refused == "Clearing the memory needs the Manage Server permission."
    record = await emu.inject_interaction(
        "memory", user="admin", channel_id=channel.id, subcommand="clear"
    )
    question = await reply_of(stack, record)
    assert question.startswith("Forget all ")
    assert record.ephemeral
    assert record.original_message_id is not None
    prompt = emu.message(record.original_message_id)
    buttons = [b for row in prompt.components for b in row["components"]]
    assert [b["label"] for b in buttons] == ["Forget everything", "Cancel"]
    assert "library" in await command(stack, "list", user="bob", channel_id=channel.id)
    stranger = await emu.inject_component(prompt.id, buttons[0]["custom_id"], "bob")
    assert (await reply_of(stack, stranger)).startswith("Only the member who asked")
    assert "library" in await command(stack, "list", user="bob", channel_id=channel.id)
    await emu.inject_component(prompt.id, buttons[0]["custom_id"], "admin")
    await emu.wait_until(lambda: prompt.content.startswith("Forgot all"))
    assert prompt.components == []
    listed = await command(stack, "list", user="bob", channel_id=channel.id)
    assert listed == "The bot remembers nothing here that you can see."
