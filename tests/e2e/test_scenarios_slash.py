"""Scenarios of the slash commands and buttons, against the real bot process."""

from __future__ import annotations

import asyncio

import pytest

from bot.frontend.buttons import NOTHING_TO_REGENERATE
from bot.frontend.sinks import PRIVATE_CUT_NOTICE
from tests.e2e.discord_emulator.interactions import InteractionRecord
from tests.e2e.discord_emulator.model import Channel, Message
from tests.e2e.stack import (
    BotStack,
    answer,
    button_id,
    has_button,
    input_texts,
    paused_answer,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


def reply_text(record: InteractionRecord) -> str:
    """The content of an interaction's immediate (type 4) answer."""
    assert record.callback_body is not None
    return str(record.callback_body["data"]["content"])


async def answered(stack: BotStack, record: InteractionRecord) -> InteractionRecord:
    """Wait until the bot acknowledged an interaction."""
    await stack.emu.wait_until(lambda: record.callback_type is not None)
    return record


async def ask_done(stack: BotStack, record: InteractionRecord) -> Message:
    """Wait until a public /ask answer is filled and finished (Regenerate shown)."""

    def finished() -> bool:
        if record.original_message_id is None:
            return False
        return has_button(stack.emu.message(record.original_message_id), "regen")

    await stack.emu.wait_until(finished, timeout=20)
    assert record.original_message_id is not None
    return stack.emu.message(record.original_message_id)


async def mention_and_wait(stack: BotStack, channel: Channel, text: str, count: int) -> None:
    """Alice mentions the bot; wait for the count-th finished answer in the channel."""
    await stack.emu.inject_message(channel.id, "alice", f"{stack.emu.bot_user.mention} {text}")
    await stack.wait_for_final(channel.id, count=count)


async def test_ask_defers_then_edits_in_the_answer(stack: BotStack) -> None:
    """/ask shows "thinking…", then the answer streams into that same message."""
    channel = stack.fresh_channel()
    deltas = ["Paris", " is", " the", " capital", " of", " France."]
    stack.script(answer(deltas, pace=0.3))
    record = await stack.emu.inject_interaction(
        "ask", {"prompt": "Capital of France?"}, user="bob", channel_id=channel.id
    )
    message = await ask_done(stack, record)
    assert record.callback_type == 5
    assert not record.ephemeral
    assert message.content == "".join(deltas)
    assert len(message.history) >= 2
    [request] = stack.requests()
    assert input_texts(request) == [f"{stack.label('bob')}: Capital of France?"]


async def test_ask_prompt_mentions_reach_the_model_without_ids(stack: BotStack) -> None:
    """Mentions typed into /ask arrive as raw <@id>; the model gets names instead."""
    channel = stack.fresh_channel()
    emu = stack.emu
    stack.script(answer(["Done."]))
    bob, mods = emu.user("bob"), emu.world.roles_by_name["Moderators"]
    prompt = f"remind <@{bob.id}> and <@&{mods.id}> about <#{channel.id}>"
    record = await emu.inject_interaction(
        "ask", {"prompt": prompt}, user="alice", channel_id=channel.id
    )
    await ask_done(stack, record)
    [request] = stack.requests()
    [text] = input_texts(request)
    assert "<" not in text
    assert text.startswith(f"{stack.label('alice')}: remind @")
    assert text.endswith(f"and @Moderators about #{channel.name}")


async def test_private_ask_is_ephemeral_and_not_kept(stack: BotStack) -> None:
    """/ask private answers only the asker and leaves the channel's history alone."""
    channel = stack.fresh_channel()
    stack.script(answer(["A secret", " answer."]), answer(["Public."]))
    record = await stack.emu.inject_interaction(
        "ask", {"prompt": "secret?", "private": True}, user="bob", channel_id=channel.id
    )

    def filled() -> bool:
        message_id = record.original_message_id
        return message_id is not None and stack.emu.message(message_id).content.endswith("answer.")

    await stack.emu.wait_until(filled)
    assert record.ephemeral
    assert record.original_message_id is not None
    assert stack.emu.message(record.original_message_id).is_ephemeral
    await mention_and_wait(stack, channel, "public question", count=1)
    assert input_texts(stack.requests()[1]) == [f"{stack.label('alice')}: public question"]


async def test_chat_opens_a_thread_and_follow_ups_continue_it(stack: BotStack) -> None:
    """/chat starts a thread; a plain message there continues the same conversation."""
    channel = stack.fresh_channel()
    stack.script(answer(["Cats", " purr."]), answer(["Dogs", " bark."]))
    record = await stack.emu.inject_interaction(
        "chat", {"prompt": "Tell me about cats"}, user="alice", channel_id=channel.id
    )
    await stack.emu.wait_until(
        lambda: any(c.parent_id == channel.id for c in stack.emu.world.channels.values())
    )
    thread = next(c for c in stack.emu.world.channels.values() if c.parent_id == channel.id)
    assert thread.name == "Tell me about cats"
    assert "Tell me about cats" in reply_text(record)
    [first] = await stack.wait_for_final(thread.id)
    assert first.content == "Cats purr."
    await stack.emu.inject_message(thread.id, "alice", "And dogs?")
    await stack.wait_for_final(thread.id, count=2)
    assert stack.emu.bot_messages(thread.id)[-1].content == "Dogs bark."
    one, two = stack.requests()
    assert input_texts(one) == [f"{stack.label('alice')}: Tell me about cats"]
    assert input_texts(two) == [
        f"{stack.label('alice')}: Tell me about cats",
        "Cats purr.",
        f"{stack.label('alice')}: And dogs?",
    ]


async def test_reset_needs_permission_and_forgets(stack: BotStack) -> None:
    """/reset: refused for a plain member, done for a moderator; the history is then empty."""
    channel = stack.fresh_channel()
    stack.script(answer(["One."]), answer(["Two."]))
    await mention_and_wait(stack, channel, "first", count=1)
    refused = await answered(
        stack, await stack.emu.inject_interaction("reset", user="alice", channel_id=channel.id)
    )
    assert refused.ephemeral
    assert "Manage Messages" in reply_text(refused)
    done = await answered(
        stack, await stack.emu.inject_interaction("reset", user="mod", channel_id=channel.id)
    )
    assert "reset the conversation" in reply_text(done)
    await mention_and_wait(stack, channel, "second", count=2)
    assert input_texts(stack.requests()[1]) == [f"{stack.label('alice')}: second"]


async def test_model_shown_to_all_set_only_with_manage_server(stack: BotStack) -> None:
    """/model: anyone sees it; changing needs Manage Server; unknown names are refused."""
    channel = stack.fresh_channel()
    emu = stack.emu
    stack.script(answer(["From Claude."]))
    new = "anthropic/claude-3.5-sonnet"
    shown = await answered(
        stack, await emu.inject_interaction("model", user="alice", channel_id=channel.id)
    )
    assert "`openai/gpt-4o-mini`" in reply_text(shown)
    refused = await answered(
        stack,
        await emu.inject_interaction("model", {"name": new}, user="alice", channel_id=channel.id),
    )
    assert "Manage Server" in reply_text(refused)
    unknown = await answered(
        stack,
        await emu.inject_interaction(
            "model", {"name": "anthropic/claude-3.5-sonet"}, user="admin", channel_id=channel.id
        ),
    )
    assert "no model" in reply_text(unknown)
    assert new in reply_text(unknown)
    done = await answered(
        stack,
        await emu.inject_interaction("model", {"name": new}, user="admin", channel_id=channel.id),
    )
    assert new in reply_text(done)
    await mention_and_wait(stack, channel, "who are you?", count=1)
    [request] = stack.requests()
    assert request.body["model"] == new


async def test_model_autocomplete_suggests_openrouter_models(stack: BotStack) -> None:
    """Typing in /model's name option suggests matching ids from OpenRouter's model list."""
    channel = stack.fresh_channel()
    record = await answered(
        stack,
        await stack.emu.inject_autocomplete(
            "model", "name", "claude", user="admin", channel_id=channel.id
        ),
    )
    assert record.callback_type == 8
    assert record.callback_body is not None
    choices = [c["value"] for c in record.callback_body["data"]["choices"]]
    assert choices
    assert all("claude" in c for c in choices)


async def test_settings_show_each_value_and_where_it_comes_from(stack: BotStack) -> None:
    """/settings: the model set for the server, the system prompt set for the channel, the
    history size and limits, each with its source; visible only to the one who asked."""
    channel = stack.fresh_channel()
    emu = stack.emu
    model = "anthropic/claude-3.5-sonnet"
    await set_server_model(stack, channel.id, model)
    try:
        await answered(
            stack,
            await emu.inject_interaction(
                "system", {"prompt": "Be terse."}, user="admin", channel_id=channel.id
            ),
        )
        stack.script(answer(["Hi."]))
        await mention_and_wait(stack, channel, "hello", count=1)
        record = await answered(
            stack, await emu.inject_interaction("settings", user="bob", channel_id=channel.id)
        )
    finally:  # the server's model reaches every channel: put it back for the other scenarios
        await set_server_model(stack, channel.id, "default")
    text = reply_text(record)
    assert record.ephemeral
    assert f"`{model}` (server)" in text
    assert "(channel): Be terse." in text
    assert "2 of at most 40 items" in text


async def set_server_model(stack: BotStack, channel_id: int, model: str) -> None:
    """An admin sets (or with "default" clears) the server-wide model."""
    await answered(
        stack,
        await stack.emu.inject_interaction(
            "model", {"name": model, "scope": "server"}, user="admin", channel_id=channel_id
        ),
    )


async def test_system_prompt_set_only_with_manage_server(stack: BotStack) -> None:
    """/system: a plain member is refused; an admin's prompt reaches the next request."""
    channel = stack.fresh_channel()
    emu = stack.emu
    stack.script(answer(["Arr."]))
    pirate = "Answer like a pirate."
    refused = await answered(
        stack,
        await emu.inject_interaction(
            "system", {"prompt": pirate}, user="bob", channel_id=channel.id
        ),
    )
    assert "Manage Server" in reply_text(refused)
    await answered(
        stack,
        await emu.inject_interaction(
            "system", {"prompt": pirate}, user="admin", channel_id=channel.id
        ),
    )
    shown = await answered(
        stack, await emu.inject_interaction("system", user="bob", channel_id=channel.id)
    )
    assert pirate in reply_text(shown)
    await mention_and_wait(stack, channel, "hello", count=1)
    [request] = stack.requests()
    assert request.body["instructions"].startswith(pirate)


async def test_a_system_prompt_longer_than_a_message_is_shown_as_a_file(stack: BotStack) -> None:
    """A 3,000-character prompt: /system shows it as system-prompt.txt, /settings still works."""
    channel = stack.fresh_channel()
    emu = stack.emu
    prompt = ("Answer in rhyme. " * 200)[:3000].strip()
    await answered(
        stack,
        await emu.inject_interaction(
            "system", {"prompt": prompt}, user="admin", channel_id=channel.id
        ),
    )
    shown = await answered(
        stack, await emu.inject_interaction("system", user="bob", channel_id=channel.id)
    )
    assert shown.ephemeral
    assert "as a file" in reply_text(shown)
    assert shown.original_message_id is not None
    [attachment] = emu.message(shown.original_message_id).attachments
    assert attachment["filename"] == "system-prompt.txt"
    assert attachment["size"] == len(prompt.encode())
    settings = await answered(
        stack, await emu.inject_interaction("settings", user="bob", channel_id=channel.id)
    )
    assert "Answer in rhyme." in reply_text(settings)
    assert len(reply_text(settings)) <= 2000


async def test_stop_button_keeps_the_text_so_far(stack: BotStack) -> None:
    """Stop ends a streaming answer; the text already shown stays and Regenerate appears."""
    channel = stack.fresh_channel()
    deltas = [f"word{n} " for n in range(200)]
    stack.script(answer(deltas, pace=0.1))
    await stack.emu.inject_message(channel.id, "alice", f"{stack.emu.bot_user.mention} talk")

    def streaming() -> bool:
        messages = stack.emu.bot_messages(channel.id)
        return bool(messages) and "word3" in messages[0].content

    await stack.emu.wait_until(streaming)
    [message] = stack.emu.bot_messages(channel.id)
    await stack.emu.inject_component(message.id, button_id(message, "stop"), "alice")
    [stopped] = await stack.wait_for_final(channel.id)
    await stack.emu.wait_until(lambda: stack.llm.disconnects == 1)
    assert stopped.content.startswith("word0 word1 word2 word3")
    assert "word199" not in stopped.content
    kept = stopped.content.removesuffix("\n\n-# ⏹️ Stopped.")
    assert kept != stopped.content
    assert kept == kept.rstrip(), repr(stopped.content[-40:])


async def test_regenerate_replaces_the_last_answer(stack: BotStack) -> None:
    """Regenerate asks again without the old answer and writes into the same message."""
    channel = stack.fresh_channel()
    stack.script(answer(["First try."]), answer(["Second try."]))
    await mention_and_wait(stack, channel, "joke please", count=1)
    [message] = stack.emu.bot_messages(channel.id)
    await stack.emu.inject_component(message.id, button_id(message, "regen"), "alice")
    await stack.emu.wait_until(
        lambda: (
            stack.emu.message(message.id).content == "Second try."
            and has_button(stack.emu.message(message.id), "regen")
        )
    )
    assert len(stack.emu.bot_messages(channel.id)) == 1
    one, two = stack.requests()
    assert input_texts(two) == input_texts(one) == [f"{stack.label('alice')}: joke please"]


async def test_help_is_private(stack: BotStack) -> None:
    """/help answers with the help text, visible only to the user who asked."""
    channel = stack.fresh_channel()
    record = await answered(
        stack, await stack.emu.inject_interaction("help", user="bob", channel_id=channel.id)
    )
    assert record.ephemeral
    assert reply_text(record).startswith("**I'm an AI assistant.**")


async def test_stop_command_only_for_the_asker_or_a_moderator(stack: BotStack) -> None:
    """/stop from someone else is refused; from a moderator it stops the answer."""
    channel = stack.fresh_channel()
    stack.script(answer([f"part{n} " for n in range(200)], pace=0.1))
    await stack.emu.inject_message(channel.id, "alice", f"{stack.emu.bot_user.mention} talk")
    await stack.emu.wait_until(
        lambda: any("part2" in m.content for m in stack.emu.bot_messages(channel.id))
    )
    refused = await answered(
        stack, await stack.emu.inject_interaction("stop", user="bob", channel_id=channel.id)
    )
    assert "Only the person who asked" in reply_text(refused)
    done = await answered(
        stack, await stack.emu.inject_interaction("stop", user="mod", channel_id=channel.id)
    )
    assert reply_text(done) == "Stopped."
    [stopped] = await stack.wait_for_final(channel.id)
    assert stopped.content.endswith("-# ⏹️ Stopped.")
    assert "part199" not in stopped.content


# The bot stops using an interaction token 30 s before Discord's 15 minutes are over; the
# emulator back-dates the interaction so that moment comes EXPIRES_IN seconds after it is sent.
BOT_TOKEN_USE = 15 * 60 - 30
EXPIRES_IN = 5.0
STORY = ["Once upon a time."] + [f" Sentence {n:03d} of the long story." for n in range(90)]


async def ask_near_expiry(
    stack: BotStack, channel: Channel, *, private: bool, resume: asyncio.Event
) -> tuple[InteractionRecord, float]:
    """/ask whose token the bot sees expire soon, with `resume` set just after that moment.

    Returns the record and the emulator-clock time by which the bot's clock passed the expiry.
    """
    record = await stack.emu.inject_interaction(
        "ask",
        {"prompt": "Tell me a long story", "private": private},
        user="bob",
        channel_id=channel.id,
        age=BOT_TOKEN_USE - EXPIRES_IN,
    )
    expired_at = stack.emu.clock.now() + EXPIRES_IN
    loop = asyncio.get_running_loop()
    loop.call_at(loop.time() + EXPIRES_IN + 0.5, resume.set)

    def first_part_shown() -> bool:
        message_id = record.original_message_id
        return message_id is not None and "Once upon" in stack.emu.message(message_id).content

    await stack.emu.wait_until(first_part_shown)
    assert not resume.is_set(), "the machine was too slow to show the first part in time"
    return record, expired_at


def webhook_calls_after(stack: BotStack, record: InteractionRecord, since: float) -> list[str]:
    """The interaction-webhook requests (method and route) made after `since`."""
    return [
        f"{call.method} {call.route}"
        for call in stack.emu.timeline
        if call.at > since and call.params.get("token") == record.token
    ]


def words(text: str) -> list[str]:
    """The words of a text (message splits may drop the space between two messages)."""
    return text.split()


async def test_public_ask_continues_in_the_channel_after_the_token_expires(
    stack: BotStack,
) -> None:
    """A public /ask outliving its 15-minute token carries on in ordinary channel messages."""
    channel = stack.fresh_channel()
    resume = asyncio.Event()
    stack.script(paused_answer(STORY, after=1, resume=resume))
    record, expired_at = await ask_near_expiry(stack, channel, private=False, resume=resume)
    replies = await stack.wait_for_final(channel.id, timeout=30)
    assert len(replies) >= 2
    assert replies[0].id == record.original_message_id
    assert words(" ".join(r.content for r in replies)) == words("".join(STORY))
    assert webhook_calls_after(stack, record, expired_at) == []
    assert all(call.status < 400 for call in stack.emu.timeline if call.at > expired_at)
    assert not has_button(replies[0], "stop")
    assert stack.emu.message(replies[1].id).interaction_id is None


async def test_private_ask_ends_with_a_cut_notice_when_the_token_expires(
    stack: BotStack,
) -> None:
    """A private /ask cannot leave its token: it ends, with a notice saying it was cut."""
    channel = stack.fresh_channel()
    resume = asyncio.Event()
    stack.script(paused_answer(STORY[:20], after=1, resume=resume))
    record, _ = await ask_near_expiry(stack, channel, private=True, resume=resume)
    assert record.original_message_id is not None
    original = stack.emu.message(record.original_message_id)
    await stack.emu.wait_until(lambda: "Cut here" in original.content, timeout=30)
    assert original.is_ephemeral
    assert original.content.startswith("Once upon a time.")
    assert original.content.endswith(PRIVATE_CUT_NOTICE)
    assert "▌" not in original.content
    assert [m.id for m in stack.emu.bot_messages(channel.id)] == [original.id]
    assert all(call.status < 400 for call in stack.emu.timeline)


SUPPRESS_EMBEDS = 1 << 2


async def test_links_in_a_slash_answer_never_get_a_preview(stack: BotStack) -> None:
    """/ask's answer with links: from its first text on, every edit of the deferred message, the
    buttons' included, carries SUPPRESS_EMBEDS, so no link preview appears."""
    channel = stack.fresh_channel()
    deltas = ["See", " https://example.com/a", " and", " https://example.com/b", " for", " more."]
    stack.script(answer(deltas, pace=0.3))
    record = await stack.emu.inject_interaction(
        "ask", {"prompt": "links?"}, user="bob", channel_id=channel.id
    )
    message = await ask_done(stack, record)
    assert message.content == "".join(deltas)
    thinking, *edits = message.edits
    assert thinking.content == ""
    assert len(edits) >= 3
    assert all(edit.flags & SUPPRESS_EMBEDS for edit in edits), message.flag_history
    assert all(int(edit.body["flags"]) & SUPPRESS_EMBEDS for edit in edits)


def first_part_shown(stack: BotStack, record: InteractionRecord) -> bool:
    """Whether the first words of STORY show in the interaction's original message."""
    message_id = record.original_message_id
    return message_id is not None and "Once upon" in stack.emu.message(message_id).content


def refused_token_requests(stack: BotStack, record: InteractionRecord) -> int:
    """How many requests with the interaction's token Discord refused."""
    return sum(
        1
        for call in stack.emu.timeline
        if call.params.get("token") == record.token and call.status >= 400
    )


def rejection_log_lines(stack: BotStack, channel: Channel) -> list[str]:
    """The bot's log lines saying Discord rejected an interaction token in the channel."""
    return [
        line
        for line in stack.bot.stderr_text().splitlines()
        if "rejected the interaction token" in line and f"({channel.id})" in line
    ]


@pytest.mark.parametrize("code", [50027, 10015])
async def test_public_ask_continues_in_the_channel_when_discord_rejects_the_token(
    stack: BotStack, code: int
) -> None:
    """Discord refuses the token long before the bot's clock says it expires: after that one
    refused request the whole answer arrives through the channel, nothing lost or repeated."""
    channel = stack.fresh_channel()
    resume = asyncio.Event()
    stack.script(paused_answer(STORY, after=1, resume=resume))
    record = await stack.emu.inject_interaction(
        "ask", {"prompt": "Tell me a long story"}, user="bob", channel_id=channel.id
    )
    await stack.emu.wait_until(lambda: first_part_shown(stack, record))
    stack.emu.reject_token(record, code=code)
    resume.set()
    replies = await stack.wait_for_final(channel.id, timeout=30)
    assert len(replies) >= 2
    assert replies[0].id == record.original_message_id
    assert words(" ".join(r.content for r in replies)) == words("".join(STORY))
    assert refused_token_requests(stack, record) == 1
    assert not has_button(replies[0], "stop")
    assert has_button(replies[-1], "regen")
    assert all(reply.flags & SUPPRESS_EMBEDS for reply in replies)
    [line] = rejection_log_lines(stack, channel)
    assert line.startswith("WARNING ")
    assert "continuing in the channel" in line


async def test_private_ask_ends_when_discord_rejects_the_token(stack: BotStack) -> None:
    """A private answer whose token Discord refuses early stops after that one refused request
    (nothing of it goes to the channel), and the log says why."""
    channel = stack.fresh_channel()
    resume = asyncio.Event()
    stack.script(paused_answer(STORY[:20], after=1, resume=resume), answer(["Public."]))
    record = await stack.emu.inject_interaction(
        "ask",
        {"prompt": "Tell me a long story", "private": True},
        user="bob",
        channel_id=channel.id,
    )
    await stack.emu.wait_until(lambda: first_part_shown(stack, record))
    stack.emu.reject_token(record)
    resume.set()
    # The channel's queue runs one answer at a time: once this mention is answered, the
    # private answer is over.
    await mention_and_wait(stack, channel, "public question", count=1)
    assert refused_token_requests(stack, record) == 1
    [public] = [m for m in stack.emu.bot_messages(channel.id) if not m.is_ephemeral]
    assert public.content == "Public."
    assert record.original_message_id is not None
    assert stack.emu.message(record.original_message_id).content.startswith("Once upon a time.")
    [line] = rejection_log_lines(stack, channel)
    assert "the private answer ends here" in line


async def test_regenerate_after_reset_says_there_is_nothing_to_redo(stack: BotStack) -> None:
    """After /reset, Regenerate on the old answer says so in one private sentence; no request."""
    channel = stack.fresh_channel()
    stack.script(answer(["Before the reset."]))
    await mention_and_wait(stack, channel, "remember this", count=1)
    [message] = stack.emu.bot_messages(channel.id)
    await answered(
        stack, await stack.emu.inject_interaction("reset", user="mod", channel_id=channel.id)
    )
    pressed = await answered(
        stack,
        await stack.emu.inject_component(message.id, button_id(message, "regen"), "alice"),
    )
    assert pressed.ephemeral
    assert reply_text(pressed) == NOTHING_TO_REGENERATE
    assert len(stack.requests()) == 1
    assert stack.emu.message(message.id).content == "Before the reset."
