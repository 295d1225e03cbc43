"""Scenarios of the shared assistant: @mentions and replies in channels, against the real bot."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.e2e.bot_process import BotProcess
from tests.e2e.stack import OTHER_BOT, BotStack, answer, has_button, input_texts
from tests.support.fake_responses import Wait

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


async def test_mention_streams_edits_and_ends_with_the_exact_text(stack: BotStack) -> None:
    """A mention gets a reply that grows by edits and ends with exactly the model's text."""
    channel = stack.fresh_channel()
    deltas = ["Hello", " there,", " Alice!", " How", " are", " you", " today?"]
    stack.script(answer(deltas, pace=0.4))
    trigger = await stack.emu.inject_message(
        channel.id, "alice", f"{stack.emu.bot_user.mention} hi"
    )
    [reply] = await stack.wait_for_final(channel.id)
    assert reply.content == "".join(deltas)
    assert len(reply.history) >= 3
    assert reply.message_reference is not None
    assert reply.message_reference["message_id"] == trigger["id"]
    assert not has_button(reply, "stop")
    [request] = stack.requests()
    assert input_texts(request)[-1].endswith("hi")
    # The owner sees what each answer cost in the log: tokens in and out, and OpenRouter's cost.
    key = f"g:{stack.emu.guild_id}:c:{channel.id}"
    [usage] = [line for line in stack.bot.stderr_text().splitlines() if key in line]
    assert usage.startswith("INFO ")
    assert "12 tokens in (0 cached), 5 out, $0.00012" in usage


SUPPRESS_EMBEDS = 1 << 2
LINKED = ["Read", " https://example.com/guide", " first,", " then", " the", " FAQ", " at"]
LINKED += [" https://example.com/faq", " and", " come", " back."]


async def test_links_in_a_streamed_answer_never_get_a_preview(stack: BotStack) -> None:
    """A reply with links is sent with SUPPRESS_EMBEDS and every edit, the text's and the
    buttons', sends it again, so Discord never brings the link previews back."""
    channel = stack.fresh_channel()
    stack.script(answer(LINKED, pace=0.3))
    await stack.emu.inject_message(channel.id, "alice", f"{stack.emu.bot_user.mention} links?")
    [reply] = await stack.wait_for_final(channel.id)
    assert reply.content == "".join(LINKED)
    assert len(reply.edits) >= 4  # the send, text edits, the final edit, the buttons' edit
    assert all(flags & SUPPRESS_EMBEDS for flags in reply.flag_history), reply.flag_history
    assert all(int(edit.body["flags"]) & SUPPRESS_EMBEDS for edit in reply.edits)


def code_answer() -> tuple[list[str], list[str]]:
    """An answer of about 4,000 characters with one long Python code block, and its code lines."""
    code = [f"    total += value_{n} * {n}  # step {n} of the long computation" for n in range(80)]
    text = "Here is the code:\n```python\ndef compute():\n" + "\n".join(code) + "\n```\nDone."
    return [text[i : i + 40] for i in range(0, len(text), 40)], code


async def test_long_code_answer_splits_into_messages_with_balanced_fences(
    stack: BotStack,
) -> None:
    """A reply over 2,000 characters with a code block becomes several messages, each fenced."""
    channel = stack.fresh_channel()
    deltas, code = code_answer()
    stack.script(answer(deltas))
    await stack.emu.inject_message(channel.id, "alice", f"{stack.emu.bot_user.mention} code pls")
    replies = await stack.wait_for_final(channel.id)
    assert len(replies) >= 2
    for reply in replies:
        assert len(reply.content) <= 2000
        assert reply.content.count("```") % 2 == 0, reply.content
    joined = "\n".join(r.content for r in replies)
    positions = [joined.index(line) for line in code]
    assert positions == sorted(positions)
    assert replies[0].content.startswith("Here is the code:")
    assert replies[0].message_reference is not None
    assert all(reply.message_reference is None for reply in replies[1:])
    assert replies[-1].content.rstrip().endswith("Done.")


async def test_reply_to_another_users_message_puts_it_in_the_request(stack: BotStack) -> None:
    """Replying (with a mention) to someone else's message sends that message to the model."""
    channel = stack.fresh_channel()
    stack.script(answer(["No, it is blue."]))
    claim = await stack.emu.inject_message(channel.id, "bob", "The sky is green.")
    await stack.emu.inject_message(
        channel.id,
        "alice",
        f"{stack.emu.bot_user.mention} is that right?",
        reply_to=int(claim["id"]),
    )
    await stack.wait_for_final(channel.id)
    [request] = stack.requests()
    assert input_texts(request) == [
        f"{stack.label('bob')}: The sky is green.",
        f"{stack.label('alice')}: is that right?",
    ]


async def test_other_mentions_reach_the_model_as_names(stack: BotStack) -> None:
    """Users, roles and channels mentioned in a question reach the model by name, never as
    raw ids; the bot's own mention is dropped."""
    channel = stack.fresh_channel()
    emu = stack.emu
    stack.script(answer(["Sure."]))
    bob, mods = emu.user("bob"), emu.world.roles_by_name["Moderators"]
    await emu.inject_message(
        channel.id,
        "alice",
        f"{emu.bot_user.mention} tell <@{bob.id}> and <@&{mods.id}> to read <#{channel.id}>",
        mentions=[bob],
    )
    await stack.wait_for_final(channel.id)
    [request] = stack.requests()
    assert input_texts(request) == [
        f"{stack.label('alice')}: tell @Bob and @Moderators to read #{channel.name}"
    ]


async def test_two_users_at_once_are_answered_in_order(stack: BotStack) -> None:
    """Two simultaneous mentions: both answered, one after the other, history in order."""
    channel = stack.fresh_channel()
    first, second = ["First", " answer", " for", " Alice."], ["Second", " answer", " for Bob."]
    stack.script(answer(first, pace=0.2), answer(second, pace=0.2))
    mention = stack.emu.bot_user.mention
    await stack.emu.inject_message(channel.id, "alice", f"{mention} question one")
    await stack.emu.inject_message(channel.id, "bob", f"{mention} question two")
    replies = await stack.wait_for_final(channel.id, count=2)
    assert [r.content for r in replies] == ["".join(first), "".join(second)]
    for reply, expected in zip(replies, (first, second), strict=True):
        assert all("".join(expected).startswith(t.rstrip(" ▌")) for t in reply.history)
    one, two = stack.requests()
    assert input_texts(one) == [f"{stack.label('alice')}: question one"]
    assert input_texts(two) == [
        f"{stack.label('alice')}: question one",
        "".join(first),
        f"{stack.label('bob')}: question two",
    ]


async def test_model_mentions_never_ping(stack: BotStack) -> None:
    """The model writing @everyone, @here, a user or a role: every request body allows no ping."""
    channel = stack.fresh_channel()
    alice, bob = stack.emu.user("alice"), stack.emu.user("bob")
    role = stack.emu.world.roles_by_name["Moderators"]
    text = f"Hey @everyone and @here, {bob.mention} and {role.mention}: look!"
    stack.script(answer([text[:20], text[20:]], pace=0.3))
    await stack.emu.inject_message(channel.id, "alice", f"{stack.emu.bot_user.mention} ping all")
    [reply] = await stack.wait_for_final(channel.id)
    assert reply.content == text
    assert not reply.mention_everyone
    assert reply.mention_roles == []
    assert [u.id for u in reply.mentions] in ([], [alice.id])
    bodies = [
        call.body
        for call in stack.emu.calls()
        if call.method in ("POST", "PATCH")
        and call.params.get("channel_id") == str(channel.id)
        and isinstance(call.body, dict)
    ]
    assert bodies
    for body in bodies:
        allowed = body.get("allowed_mentions")
        assert allowed is not None, body
        assert allowed.get("parse") == []
        assert not allowed.get("users")
        assert not allowed.get("roles")


async def test_empty_mention_gets_the_help_text(stack: BotStack) -> None:
    """A bare mention is answered with the help text and asks the model nothing."""
    channel = stack.fresh_channel()
    stack.script()
    await stack.emu.inject_message(channel.id, "alice", stack.emu.bot_user.mention)
    await stack.emu.wait_until(lambda: bool(stack.emu.bot_messages(channel.id)))
    [reply] = stack.emu.bot_messages(channel.id)
    assert reply.content.startswith("**I'm an AI assistant.**")
    assert stack.requests() == []


async def test_too_long_input_is_refused_and_not_stored(stack: BotStack) -> None:
    """Input over MAX_INPUT_CHARS gets a clear refusal and never reaches the history."""
    channel = stack.fresh_channel()
    mention = stack.emu.bot_user.mention
    stack.script(answer(["Short answer."]))
    await stack.emu.inject_message(channel.id, "alice", f"{mention} {'x' * 8001}")
    await stack.emu.wait_until(lambda: bool(stack.emu.bot_messages(channel.id)))
    [refusal] = stack.emu.bot_messages(channel.id)
    assert "8,001 characters" in refusal.content
    assert "8,000" in refusal.content
    await stack.emu.inject_message(channel.id, "alice", f"{mention} short one")
    await stack.wait_for_final(channel.id)
    [request] = stack.requests()
    assert input_texts(request) == [f"{stack.label('alice')}: short one"]


async def test_bots_everyone_and_other_roles_never_trigger(stack: BotStack) -> None:
    """Messages from bots, @everyone/@here and other roles' mentions get no answer."""
    channel = stack.fresh_channel()
    emu = stack.emu
    mention = emu.bot_user.mention
    stack.script(answer(["Only this one."]))
    await emu.inject_message(channel.id, OTHER_BOT, f"{mention} I am a bot")
    await emu.inject_message(channel.id, "alice", "@everyone hello")
    await emu.inject_message(channel.id, "alice", "@here hello")
    await emu.inject_message(channel.id, "alice", f"{emu.world.roles_by_name['Admins'].mention} hi")
    await emu.inject_message(channel.id, "alice", f"{mention} the real one")
    [reply] = await stack.wait_for_final(channel.id)
    assert reply.content == "Only this one."
    [request] = stack.requests()
    assert input_texts(request) == [f"{stack.label('alice')}: the real one"]


async def test_only_the_bots_own_threads_continue_without_a_mention(stack: BotStack) -> None:
    """In a thread a person started, plain messages are theirs; a mention still works."""
    channel = stack.fresh_channel()
    emu = stack.emu
    thread = await emu.create_user_thread(channel.id, "people talking", "bob")
    stack.script(answer(["Called?"]))
    await emu.inject_message(thread.id, "bob", "just chatting here")
    await emu.inject_message(thread.id, "alice", f"{emu.bot_user.mention} now you")
    [reply] = await stack.wait_for_final(thread.id)
    assert reply.content == "Called?"
    [request] = stack.requests()
    assert input_texts(request) == [f"{stack.label('alice')}: now you"]


async def test_bot_role_mention_triggers(stack: BotStack) -> None:
    """Mentioning the bot's own managed role counts as mentioning the bot."""
    channel = stack.fresh_channel()
    stack.script(answer(["Role heard."]))
    await stack.emu.inject_message(channel.id, "bob", f"{stack.emu.bot_role_mention()} hi")
    [reply] = await stack.wait_for_final(channel.id)
    assert reply.content == "Role heard."


async def test_reply_to_a_deleted_trigger_still_posts(stack: BotStack) -> None:
    """The trigger deleted while the model thinks: the answer still posts (no failed reference)."""
    channel = stack.fresh_channel()
    release = asyncio.Event()
    stack.script(answer(["Still here."], hold=Wait(release)))
    trigger = await stack.emu.inject_message(
        channel.id, "alice", f"{stack.emu.bot_user.mention} quick"
    )
    await stack.emu.wait_until(lambda: len(stack.requests()) == 1)
    await stack.emu.store.delete(stack.emu.message(int(trigger["id"])))
    release.set()
    [reply] = await stack.wait_for_final(channel.id)
    assert reply.content == "Still here."


async def test_reply_deleted_mid_stream_stops_the_answer_once(stack: BotStack) -> None:
    """A moderator deletes the bot's reply while it streams: the bot stops editing after the
    one refused edit, cancels the model's stream, keeps the text so far in history, and goes
    on answering."""
    channel = stack.fresh_channel()
    stack.script(answer([f"chunk{n} " for n in range(300)], pace=0.05), answer(["Next."]))
    await stack.emu.inject_message(channel.id, "alice", f"{stack.emu.bot_user.mention} go")
    await stack.emu.wait_until(
        lambda: any("chunk3" in m.content for m in stack.emu.bot_messages(channel.id))
    )
    [reply] = stack.emu.bot_messages(channel.id)
    await stack.emu.store.delete(reply)
    await asyncio.wait_for(stack.llm.disconnected.wait(), timeout=10)  # generation cancelled
    await stack.emu.inject_message(channel.id, "bob", f"{stack.emu.bot_user.mention} next")
    [after] = await stack.wait_for_final(channel.id)
    assert after.content == "Next."
    refused = [c for c in stack.emu.timeline if c.status == 404 and c.method == "PATCH"]
    assert len(refused) == 1
    _, second = stack.requests()
    texts = input_texts(second)
    assert texts[0] == f"{stack.label('alice')}: go"
    assert texts[1].startswith("chunk0 chunk1 chunk2 chunk3")
    assert "chunk299" not in texts[1]
    assert texts[2] == f"{stack.label('bob')}: next"


async def test_two_processes_answer_each_message_once(stack: BotStack, tmp_path: Path) -> None:
    """A second bot process for the same shard logs in but waits as a standby (it never joins
    the gateway), so every message is still answered exactly once, in order."""
    channel = stack.fresh_channel()
    stack.script(answer(["Once", " only."], pace=0.2))
    connections = stack.emu.gateway.connections
    logins = len(stack.emu.calls("GET", "/users/@me"))
    async with BotProcess(stack.bot.env, tmp_path / "second") as second:
        await stack.emu.wait_until(lambda: len(stack.emu.calls("GET", "/users/@me")) > logins)
        await stack.emu.inject_message(channel.id, "alice", f"{stack.emu.bot_user.mention} hi")
        await stack.wait_for_final(channel.id)
        assert await second.stop() == 0
    assert "Standby: shard 0 of 1" in second.stderr_text()
    assert stack.emu.gateway.connections == connections
    assert [m.content for m in stack.emu.bot_messages(channel.id)] == ["Once only."]
    assert len(stack.requests()) == 1


async def test_text_attachment_is_read_into_the_request(stack: BotStack) -> None:
    """A long paste that Discord turned into message.txt reaches the model as text."""
    channel = stack.fresh_channel()
    paste = "\n".join(f"line {n}: some pasted log output" for n in range(150))
    stack.script(answer(["Read it."]))
    await stack.emu.inject_message(
        channel.id,
        "alice",
        f"{stack.emu.bot_user.mention} what does this log say?",
        attachments=[("message.txt", paste.encode())],
    )
    [reply] = await stack.wait_for_final(channel.id)
    assert reply.content == "Read it."
    [request] = stack.requests()
    assert input_texts(request) == [
        f"{stack.label('alice')}: what does this log say?\n\n[message.txt]\n{paste}"
    ]


async def test_too_long_attachment_is_refused_and_not_stored(stack: BotStack) -> None:
    """A paste over MAX_INPUT_CHARS gets a clear refusal, asks nothing and is not kept."""
    channel = stack.fresh_channel()
    mention = stack.emu.bot_user.mention
    stack.script(answer(["Short answer."]))
    await stack.emu.inject_message(
        channel.id, "alice", f"{mention} read this", attachments=[("message.txt", b"y" * 9000)]
    )
    await stack.emu.wait_until(lambda: bool(stack.emu.bot_messages(channel.id)))
    [refusal] = stack.emu.bot_messages(channel.id)
    assert "9,025 characters" in refusal.content  # the question, the file's name and its text
    assert "8,000" in refusal.content
    assert stack.requests() == []
    await stack.emu.inject_message(channel.id, "alice", f"{mention} short one")
    await stack.wait_for_final(channel.id)
    [request] = stack.requests()
    assert input_texts(request) == [f"{stack.label('alice')}: short one"]


async def test_huge_attachment_is_refused_without_downloading_it(stack: BotStack) -> None:
    """A paste far over the limit is refused from its size alone: nothing is downloaded."""
    channel = stack.fresh_channel()
    stack.script()  # no answer is expected, and none asked for
    sent = await stack.emu.inject_message(
        channel.id,
        "alice",
        f"{stack.emu.bot_user.mention} summarise",
        attachments=[("message.txt", b"z" * 100_000)],
    )
    [attachment] = sent["attachments"]
    await stack.emu.wait_until(lambda: bool(stack.emu.bot_messages(channel.id)))
    [refusal] = stack.emu.bot_messages(channel.id)
    assert "message.txt is 100,000 bytes" in refusal.content
    assert "8,000 characters" in refusal.content
    assert int(attachment["id"]) not in stack.emu.attachment_downloads
    assert stack.requests() == []


async def test_only_the_latest_answer_keeps_regenerate(stack: BotStack) -> None:
    """When a newer answer finishes, the older one's Regenerate button is taken off."""
    channel = stack.fresh_channel()
    stack.script(answer(["First answer."]), answer(["Second answer."]))
    mention = stack.emu.bot_user.mention
    await stack.emu.inject_message(channel.id, "alice", f"{mention} one")
    [first] = await stack.wait_for_final(channel.id)
    await stack.emu.inject_message(channel.id, "bob", f"{mention} two")

    def old_button_gone() -> bool:
        return not has_button(stack.emu.message(first.id), "regen")

    older, newer = await stack.wait_for_final(channel.id, old_button_gone, count=2)
    assert older.id == first.id
    assert newer.content == "Second answer."
    assert has_button(newer, "regen")
