"""A plain discord.py bot (not ours) against the Discord emulator, proving the emulator faithful."""

from __future__ import annotations

import asyncio
import io

import aiohttp
import discord
import discord.http
import pytest
from discord import app_commands
from discord.ext import commands

from tests.e2e.conftest import ClientStarter
from tests.e2e.discord_emulator import DEFAULT_TOKEN, DiscordEmulator
from tests.e2e.discord_emulator.emulator import overwrite
from tests.e2e.discord_emulator.model import VIEW_CHANNEL

pytestmark = pytest.mark.e2e

MESSAGES = "/channels/{channel_id}/messages"
MESSAGE = "/channels/{channel_id}/messages/{message_id}"
CALLBACK = "/interactions/{interaction_id}/{token}/callback"


def make_bot(*, message_content: bool = True) -> commands.Bot:
    """A minimal discord.py bot like any project would write, pinging nobody by default."""
    intents = discord.Intents.default()
    intents.message_content = message_content
    intents.members = True
    return commands.Bot(
        command_prefix="!",
        intents=intents,
        allowed_mentions=discord.AllowedMentions.none(),
        guild_ready_timeout=0.05,
    )


async def ready_bot(start_client: ClientStarter, bot: commands.Bot) -> commands.Bot:
    """Start the bot and wait until discord.py fired on_ready."""
    task = await start_client(bot)
    ready = asyncio.ensure_future(bot.wait_until_ready())
    done, _ = await asyncio.wait({ready, task}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        ready.cancel()
        task.result()
    assert ready in done, "on_ready never fired"
    return bot


async def test_client_gets_ready_with_guild_channels_roles_and_members(
    emulator: DiscordEmulator, start_client: ClientStarter
) -> None:
    """discord.py logs in, identifies, gets the guild and fires on_ready; heartbeats are acked."""
    bot = await ready_bot(start_client, make_bot())
    guild = bot.get_guild(emulator.guild_id)
    assert guild is not None
    assert bot.user is not None
    assert bot.user.id == emulator.bot_user.id
    assert {channel.name for channel in guild.text_channels} == {"general", "random"}
    assert guild.chunked
    mod = guild.get_member(emulator.user("mod").id)
    assert mod is not None
    assert mod.guild_permissions.manage_messages
    assert not mod.guild_permissions.manage_guild
    admin = guild.get_member(emulator.user("admin").id)
    assert admin is not None
    assert admin.guild_permissions.manage_guild
    assert guild.self_role is not None
    assert guild.self_role.is_bot_managed()
    await emulator.wait_until(lambda: emulator.gateway.sessions[0].heartbeats >= 1)
    assert emulator.gateway.sessions[0].intents == bot.intents.value
    assert ("GET", "/users/@me") in [(c.method, c.route) for c in emulator.timeline]
    assert emulator.unknown_routes == []


async def test_injected_message_is_answered_with_a_reply_then_edited(
    emulator: DiscordEmulator, start_client: ClientStarter
) -> None:
    """on_message gets the injected mention; the reply and its edit are recorded in order."""
    bot = make_bot()
    seen: asyncio.Future[discord.Message] = asyncio.get_running_loop().create_future()

    @bot.event
    async def on_message(message: discord.Message) -> None:
        """Reply to humans, then edit the reply: the streaming pattern in miniature."""
        if message.author.bot:
            return
        seen.set_result(message)
        reply = await message.reply("thinking…")
        await reply.edit(content="the final answer")

    await ready_bot(start_client, bot)
    general = emulator.channel("general")
    injected = await emulator.inject_message(
        general.id, "alice", f"{emulator.bot_user.mention} hello there"
    )
    received = await asyncio.wait_for(seen, 10)
    assert received.content.endswith("hello there")
    assert bot.user in received.mentions
    await emulator.wait_for_call("PATCH", MESSAGE)
    reply = emulator.bot_messages(general.id)[-1]
    assert reply.content == "the final answer"
    assert reply.history == ["thinking…", "the final answer"]
    assert reply.message_reference is not None
    assert reply.message_reference["message_id"] == injected["id"]
    assert reply.mentions == [], "AllowedMentions.none() must not ping the author"
    create = emulator.calls("POST", MESSAGES)[0]
    assert create.body["allowed_mentions"] == {"parse": []}
    assert emulator.calls("PATCH", MESSAGE)[0].body["allowed_mentions"]["parse"] == []


async def test_direct_message_reaches_the_client_as_a_dm_channel_and_is_answered_there(
    emulator: DiscordEmulator, start_client: ClientStarter
) -> None:
    """A message in a DM comes without guild_id; discord.py builds a DMChannel with the user as
    recipient, and its reply and edit land in the DM."""
    bot = make_bot()
    bot.intents.dm_messages = True
    seen: asyncio.Future[discord.Message] = asyncio.get_running_loop().create_future()

    @bot.event
    async def on_message(message: discord.Message) -> None:
        """Answer humans in the channel they wrote in, then edit the answer."""
        if message.author.bot:
            return
        seen.set_result(message)
        reply = await message.reply("psst")
        await reply.edit(content="psst, edited")

    await ready_bot(start_client, bot)
    dm = emulator.open_dm("alice")
    assert emulator.open_dm("alice") is dm
    injected = await emulator.inject_message(dm.id, "alice", "just between us")
    assert "guild_id" not in injected
    received = await asyncio.wait_for(seen, 10)
    assert isinstance(received.channel, discord.DMChannel)
    assert received.guild is None
    assert received.author.id == emulator.user("alice").id
    await emulator.wait_for_call("PATCH", MESSAGE)
    [reply] = emulator.bot_messages(dm.id)
    assert reply.history == ["psst", "psst, edited"]
    assert reply.message_reference is not None
    assert "guild_id" not in reply.message_reference


async def test_content_limits_raise_discords_error_codes(
    emulator: DiscordEmulator, start_client: ClientStarter
) -> None:
    """Over 2,000 characters is 50035 Invalid Form Body; whitespace-only content is 50006."""
    bot = await ready_bot(start_client, make_bot())
    channel = bot.get_channel(emulator.channel("general").id)
    assert isinstance(channel, discord.TextChannel)
    with pytest.raises(discord.HTTPException) as too_long:
        await channel.send("x" * 2001)
    assert (too_long.value.status, too_long.value.code) == (400, 50035)
    assert "content" in too_long.value.text
    with pytest.raises(discord.HTTPException) as empty:
        await channel.send("  \n ")
    assert (empty.value.status, empty.value.code) == (400, 50006)
    exactly_full = await channel.send("y" * 2000)
    with pytest.raises(discord.HTTPException) as bad_edit:
        await exactly_full.edit(content="z" * 2001)
    assert bad_edit.value.code == 50035
    assert emulator.message(exactly_full.id).content == "y" * 2000
    assert [call.status for call in emulator.calls(route=MESSAGES)] == [400, 400, 200]


def add_ask_command(bot: commands.Bot, gate: asyncio.Event | None = None) -> asyncio.Queue[object]:
    """An /ask command that defers, fills the thinking message, adds a follow-up, edits."""
    outcomes: asyncio.Queue[object] = asyncio.Queue()

    @bot.tree.command(name="ask", description="Ask something")
    @app_commands.describe(prompt="What to ask")
    async def ask(interaction: discord.Interaction, prompt: str) -> None:
        """Defer, then answer through the interaction webhook."""
        if gate is not None:
            await gate.wait()
        try:
            await interaction.response.defer(thinking=True)
            first = await interaction.followup.send(f"answer to {prompt}", wait=True)
            second = await interaction.followup.send("and more", wait=True)
            await interaction.edit_original_response(content=f"final answer to {prompt}")
            await outcomes.put((first.id, second.id))
        except discord.HTTPException as error:
            await outcomes.put(error)

    return outcomes


async def test_slash_command_syncs_defers_and_answers_through_the_webhook(
    emulator: DiscordEmulator, start_client: ClientStarter
) -> None:
    """Sync is a recorded PUT; the command defers, fills the thinking message, follows up."""
    bot = make_bot()
    outcomes = add_ask_command(bot)
    await ready_bot(start_client, bot)
    synced = await bot.tree.sync()
    assert [command.name for command in synced] == ["ask"]
    put = emulator.calls("PUT", "/applications/{application_id}/commands")
    assert [definition["name"] for definition in put[0].body] == ["ask"]
    general = emulator.channel("general").id
    record = await emulator.inject_interaction(
        "ask", {"prompt": "why"}, user="alice", channel_id=general
    )
    outcome = await asyncio.wait_for(outcomes.get(), 10)
    assert isinstance(outcome, tuple), outcome
    first_id, second_id = outcome
    assert record.callback_type == 5
    assert record.original_message_id is not None
    assert first_id == record.original_message_id, "first follow-up fills the thinking message"
    original = emulator.message(record.original_message_id)
    assert original.history == ["", "answer to why", "final answer to why"]
    assert original.flags & (1 << 7) == 0, "the loading flag is cleared once filled"
    assert emulator.message(second_id).content == "and more"
    callback = emulator.calls("POST", CALLBACK)[0]
    assert callback.query.get("with_response") == "1"
    async with aiohttp.ClientSession() as session:
        again = await session.post(
            f"{emulator.api_base}/interactions/{record.id}/{record.token}/callback",
            json={"type": 5},
        )
        assert again.status == 400
        assert again.headers["Content-Type"] == "application/json"
        assert (await again.json())["code"] == 40060


async def test_late_acknowledgement_and_expired_token_fail_like_discord(
    emulator: DiscordEmulator, start_client: ClientStarter
) -> None:
    """A defer after 3 s is 10062; webhook use after the token's 15 minutes is 50027."""
    bot = make_bot()
    gate = asyncio.Event()
    outcomes = add_ask_command(bot, gate)
    await ready_bot(start_client, bot)
    await bot.tree.sync()
    general = emulator.channel("general").id
    await emulator.inject_interaction("ask", {"prompt": "late"}, user="bob", channel_id=general)
    await emulator.wait_until(lambda: len(emulator.gateway.sessions[0].received) > 0)
    emulator.advance_clock(3.5)
    gate.set()
    late = await asyncio.wait_for(outcomes.get(), 10)
    assert isinstance(late, discord.NotFound)
    assert late.code == 10062
    record = await emulator.inject_interaction(
        "ask", {"prompt": "x"}, user="bob", channel_id=general
    )
    await emulator.wait_until(lambda: record.callback_type == 5)
    emulator.advance_clock(15 * 60 + 1)
    expired = await asyncio.wait_for(outcomes.get(), 10)
    assert isinstance(expired, discord.HTTPException)
    assert (expired.status, expired.code) == (401, 50027)


async def test_button_press_reaches_the_view_and_updates_the_message(
    emulator: DiscordEmulator, start_client: ClientStarter
) -> None:
    """A pressed button dispatches to the view; an UPDATE_MESSAGE callback edits the message."""
    bot = await ready_bot(start_client, make_bot())
    pressed = asyncio.Event()

    class Confirm(discord.ui.View):
        """One button that rewrites its message."""

        @discord.ui.button(label="Go", custom_id="confirm:go")
        async def go(
            self, interaction: discord.Interaction, button: discord.ui.Button[Confirm]
        ) -> None:
            """Edit the message the button is on."""
            await interaction.response.edit_message(content="pressed", view=None)
            pressed.set()

    channel = bot.get_channel(emulator.channel("random").id)
    assert isinstance(channel, discord.TextChannel)
    sent = await channel.send("press me", view=Confirm(timeout=None))
    assert emulator.message(sent.id).components[0]["components"][0]["custom_id"] == "confirm:go"
    record = await emulator.inject_component(sent.id, "confirm:go", "alice")
    await asyncio.wait_for(pressed.wait(), 10)
    await emulator.wait_until(lambda: emulator.message(sent.id).content == "pressed")
    assert record.callback_type == 7
    assert emulator.message(sent.id).components == []


async def test_threads_from_messages_and_messages_inside_them(
    emulator: DiscordEmulator, start_client: ClientStarter
) -> None:
    """A thread started from a message shares its id; a message in it reaches on_message."""
    bot = make_bot()
    in_thread: asyncio.Future[discord.Message] = asyncio.get_running_loop().create_future()

    @bot.event
    async def on_message(message: discord.Message) -> None:
        """Open a thread on the first human message; note the first one inside a thread."""
        if message.author.bot:
            return
        if isinstance(message.channel, discord.Thread):
            in_thread.set_result(message)
            return
        thread = await message.create_thread(name="Conversation")
        await thread.send("ask away")

    await ready_bot(start_client, bot)
    general = emulator.channel("general").id
    starter = await emulator.inject_message(general, "alice", "start a thread please")
    thread_id = int(starter["id"])
    await emulator.wait_until(lambda: bool(emulator.messages_in(thread_id)))
    assert emulator.world.channels[thread_id].parent_id == general
    assert emulator.messages_in(thread_id)[0].content == "ask away"
    await emulator.inject_message(thread_id, "bob", "a question in the thread")
    message = await asyncio.wait_for(in_thread, 10)
    assert message.channel.id == thread_id
    assert isinstance(message.channel, discord.Thread)


async def test_rate_limit_headers_pace_discord_py_and_429_is_retried(
    emulator: DiscordEmulator, start_client: ClientStarter
) -> None:
    """With enforcement on, discord.py paces itself by the headers; a forced 429 is retried."""
    emulator.enforce_rate_limits = True
    emulator.limiter.window = 0.5
    bot = await ready_bot(start_client, make_bot())
    channel = bot.get_channel(emulator.channel("general").id)
    assert isinstance(channel, discord.TextChannel)
    message = await channel.send("v-start")
    for version in range(8):
        await message.edit(content=f"v{version}")
    paced_429s = emulator.served_429
    print(f"8 quick edits: {paced_429s} x 429 (0 means discord.py paced itself by the headers)")
    assert emulator.message(message.id).history[-1] == "v7"
    emulator.limiter.exhaust(channel.id)
    await message.edit(content="after a 429")
    assert emulator.served_429 == paced_429s + 1
    last_two = emulator.calls("PATCH", MESSAGE)[-2:]
    assert [call.status for call in last_two] == [429, 200]
    assert last_two[0].body == last_two[1].body, "discord.py resends the same body"
    assert emulator.message(message.id).content == "after a 429"


async def test_privileged_intent_not_enabled_closes_with_4014(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Asking for message_content when the portal has it off fails start-up with 4014."""
    from tests.e2e.conftest import point_discord_py_at

    async with DiscordEmulator(message_content_enabled=False) as emu:
        point_discord_py_at(emu, monkeypatch)
        bot = make_bot(message_content=True)
        try:
            with pytest.raises(discord.PrivilegedIntentsRequired):
                await asyncio.wait_for(bot.start(DEFAULT_TOKEN), 10)
        finally:
            await bot.close()
        assert emu.gateway.closed_codes == [4014]


async def test_unknown_routes_are_loud_404s_with_discord_headers(
    emulator: DiscordEmulator,
) -> None:
    """A route the emulator lacks answers 404 and is listed; answers carry rate-limit headers."""
    headers = {"Authorization": f"Bot {DEFAULT_TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        missing = await session.get(f"{emulator.api_base}/guilds/{emulator.guild_id}/bans")
        assert missing.status == 404
        me = await session.get(f"{emulator.api_base}/users/@me")
        assert me.headers["Content-Type"] == "application/json"
        for name in ("Limit", "Remaining", "Reset", "Reset-After", "Bucket"):
            assert f"X-RateLimit-{name}" in me.headers
    assert emulator.unknown_routes == [("GET", f"/api/v10/guilds/{emulator.guild_id}/bans")]


async def test_files_typing_history_and_injected_attachments(
    emulator: DiscordEmulator, start_client: ClientStarter
) -> None:
    """Uploads arrive as attachments, typing is recorded, history reads back, pastes download."""
    bot = await ready_bot(start_client, make_bot())
    channel = bot.get_channel(emulator.channel("random").id)
    assert isinstance(channel, discord.TextChannel)
    async with channel.typing():
        pass
    upload = discord.File(io.BytesIO(b"long answer"), filename="answer.md")
    sent = await channel.send("see file", file=upload)
    assert [a.filename for a in sent.attachments] == ["answer.md"]
    assert emulator.message(sent.id).attachments[0]["size"] == len(b"long answer")
    assert [channel_id for _, channel_id in emulator.rest.typing] == [channel.id]
    pasted = await emulator.inject_message(
        channel.id, "alice", "", attachments=[("message.txt", b"a very long paste")]
    )
    history = [message async for message in channel.history(limit=10)]
    assert [message.id for message in history] == [int(pasted["id"]), sent.id]
    assert await history[0].attachments[0].read() == b"a very long paste"


async def test_attachment_urls_expire_and_a_fetched_message_carries_fresh_ones(
    emulator: DiscordEmulator, start_client: ClientStarter
) -> None:
    """An attachment URL stops working a day after it was signed (404); fetching the message
    again gives a URL that works; a deleted message's attachment is gone."""
    bot = await ready_bot(start_client, make_bot())
    channel = bot.get_channel(emulator.channel("random").id)
    assert isinstance(channel, discord.TextChannel)
    posted = await emulator.inject_message(
        channel.id, "alice", "look", attachments=[("cat.png", b"\x89PNG pixels")]
    )
    [attachment] = (await channel.fetch_message(int(posted["id"]))).attachments
    assert attachment.content_type == "image/png"
    assert attachment.size == len(b"\x89PNG pixels")
    emulator.advance_clock(24 * 3600 + 1)
    with pytest.raises(discord.NotFound):
        await attachment.read()
    assert emulator.expired_downloads == [attachment.id]
    [fresh] = (await channel.fetch_message(int(posted["id"]))).attachments
    assert fresh.url != attachment.url
    assert await fresh.read() == b"\x89PNG pixels"
    await emulator.delete_message(int(posted["id"]))
    with pytest.raises(discord.NotFound):
        await channel.fetch_message(int(posted["id"]))
    with pytest.raises(discord.NotFound):
        await fresh.read()


async def test_message_content_is_hidden_without_the_intent_unless_mentioned(
    emulator: DiscordEmulator, start_client: ClientStarter
) -> None:
    """Without message_content, guild messages arrive empty except those mentioning the bot."""
    bot = make_bot(message_content=False)
    received: asyncio.Queue[discord.Message] = asyncio.Queue()
    bot.add_listener(received.put, "on_message")
    await ready_bot(start_client, bot)
    general = emulator.channel("general").id
    await emulator.inject_message(general, "bob", "not for the bot")
    await emulator.inject_message(general, "bob", f"{emulator.bot_user.mention} for the bot")
    hidden = await asyncio.wait_for(received.get(), 10)
    shown = await asyncio.wait_for(received.get(), 10)
    assert hidden.content == ""
    assert shown.content.endswith("for the bot")


async def test_replies_to_deleted_messages_and_edits_without_allowed_mentions(
    emulator: DiscordEmulator, start_client: ClientStarter
) -> None:
    """A reply to a deleted message fails unless fail_if_not_exists=False; a bare edit pings."""
    bot = await ready_bot(start_client, make_bot())
    general = emulator.channel("general").id
    channel = bot.get_channel(general)
    assert isinstance(channel, discord.TextChannel)
    target = await channel.send("soon gone")
    await target.delete()
    reference = discord.MessageReference(message_id=target.id, channel_id=general)
    with pytest.raises(discord.HTTPException) as failed:
        await channel.send("reply", reference=reference)
    assert failed.value.code == 50035
    lenient = discord.MessageReference(
        message_id=target.id, channel_id=general, fail_if_not_exists=False
    )
    alice = emulator.user("alice")
    sent = await channel.send(f"hi {alice.mention}", reference=lenient)
    assert emulator.message(sent.id).mentions == []
    route = discord.http.Route("PATCH", MESSAGE, channel_id=general, message_id=sent.id)
    await bot.http.request(route, json={"content": f"hey {alice.mention}"})
    assert emulator.message(sent.id).mentions == [alice], "no allowed_mentions: parsed again"


async def test_reconnect_request_is_resumed_and_events_keep_flowing(
    emulator: DiscordEmulator, start_client: ClientStarter
) -> None:
    """After op 7 RECONNECT discord.py resumes the session; injected messages still arrive."""
    bot = make_bot()
    received: asyncio.Queue[discord.Message] = asyncio.Queue()
    bot.add_listener(received.put, "on_message")
    resumed = asyncio.Event()

    async def on_resumed() -> None:
        """Note that discord.py saw RESUMED."""
        resumed.set()

    bot.add_listener(on_resumed)
    await ready_bot(start_client, bot)
    await emulator.reconnect_clients()
    await asyncio.wait_for(resumed.wait(), 10)
    assert (emulator.gateway.identifies, emulator.gateway.resumes) == (1, 1)
    await emulator.inject_message(emulator.channel("general").id, "alice", "still there?")
    message = await asyncio.wait_for(received.get(), 10)
    assert message.content == "still there?"


async def test_rejected_token_and_flags_of_every_revision(emulator: DiscordEmulator) -> None:
    """A token rejected early answers 401 50027 (or 404 10015) on every webhook route while the
    channel route still edits the message; each revision records the message's flags, and an
    edit changes only SUPPRESS_EMBEDS, keeping it when it sends no flags."""
    general = emulator.channel("general").id
    record = emulator.interactions.new_record(
        2, emulator.user("bob"), general, {"id": "1", "name": "ask", "type": 1}
    )
    hook = f"{emulator.api_base}/webhooks/{emulator.world.application_id}/{record.token}"
    bot_auth = {"Authorization": f"Bot {DEFAULT_TOKEN}"}
    async with aiohttp.ClientSession() as session:
        callback = f"{emulator.api_base}/interactions/{record.id}/{record.token}/callback"
        assert (await session.post(callback, json={"type": 5})).status == 204
        filled = await session.patch(
            f"{hook}/messages/@original", json={"content": "see <x>", "flags": 4 | 64}
        )
        assert filled.status == 200
        emulator.reject_token(record)
        refused = await session.patch(f"{hook}/messages/@original", json={"content": "more"})
        assert (refused.status, (await refused.json())["code"]) == (401, 50027)
        emulator.reject_token(record, code=10015)
        unknown = await session.post(hook, json={"content": "a follow-up"})
        assert (unknown.status, (await unknown.json())["code"]) == (404, 10015)
        assert record.original_message_id is not None
        message_route = (
            f"{emulator.api_base}/channels/{general}/messages/{record.original_message_id}"
        )
        kept = await session.patch(message_route, json={"content": "more"}, headers=bot_auth)
        assert kept.status == 200
        cleared = await session.patch(message_route, json={"flags": 0}, headers=bot_auth)
        assert cleared.status == 200
    original = emulator.message(record.original_message_id)
    assert original.history == ["", "see <x>", "more", "more"]
    assert original.flag_history == [1 << 7, 1 << 2, 1 << 2, 0]


async def test_channel_overwrites_apply_like_discord(
    emulator: DiscordEmulator, start_client: ClientStarter
) -> None:
    """A channel @everyone cannot view but a role can: discord.py's permissions_for sees the
    overwrites (@everyone, then roles, then the member); the interaction's permissions are the
    channel's; the bot gets no events from a channel it cannot view and may not post there; a
    private thread is seen by its members only."""
    bot = await ready_bot(start_client, make_bot())
    staff = await emulator.add_role("Staff")
    carol = emulator.add_user("carol", ["Staff"])
    everyone = emulator.world.roles[emulator.guild_id]
    hidden = [overwrite(everyone, deny=VIEW_CHANNEL), overwrite(staff, allow=VIEW_CHANNEL)]
    created = asyncio.ensure_future(bot.wait_for("guild_channel_create"))
    room = await emulator.create_channel("staff-room", hidden)
    channel = await asyncio.wait_for(created, 10)
    assert isinstance(channel, discord.TextChannel)
    assert channel.id == room.id
    assert not channel.permissions_for(channel.guild.default_role).view_channel
    assert emulator.world.can_view(carol.id, room.id)
    assert not emulator.world.can_view(emulator.user("alice").id, room.id)
    assert emulator.world.can_view(emulator.user("owner").id, room.id)
    record = emulator.interactions.new_record(2, carol, room.id, {"name": "look"})
    assert int(record.payload["member"]["permissions"]) & VIEW_CHANNEL
    assert int(record.payload["app_permissions"]) == 0

    seen: list[int] = []

    async def note(message: discord.Message) -> None:
        seen.append(message.channel.id)

    bot.add_listener(note, "on_message")
    general = emulator.channel("general").id
    heard = asyncio.ensure_future(bot.wait_for("message", check=lambda m: m.channel.id == general))
    await emulator.inject_message(room.id, carol, "secret")
    await emulator.inject_message(general, "alice", "hello")
    await asyncio.wait_for(heard, 10)
    assert room.id not in seen
    with pytest.raises(discord.Forbidden) as refused:
        await channel.send("may I?")
    assert refused.value.code == 50001

    updated = asyncio.ensure_future(bot.wait_for("guild_channel_update"))
    await emulator.set_overwrites(
        room.id, [*hidden, overwrite(emulator.bot_user, allow=VIEW_CHANNEL)]
    )
    await asyncio.wait_for(updated, 10)
    assert channel.permissions_for(channel.guild.me).view_channel
    await channel.send("now I can")
    opened = asyncio.ensure_future(bot.wait_for("thread_create"))
    secret = await emulator.create_user_thread(
        room.id, "plans", carol, private=True, members=[emulator.bot_user]
    )
    thread = await asyncio.wait_for(opened, 10)
    assert thread.id == secret.id
    assert thread.type == discord.ChannelType.private_thread
    assert emulator.world.can_view(emulator.bot_user.id, secret.id)
    assert not emulator.world.can_view(emulator.user("bob").id, secret.id)
