"""Start-up and shutdown of the real bot process: a missing intent stops it with one line,
SIGTERM mid-answer exits cleanly and keeps the text so far."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from bot.core.history import HistoryStore
from bot.core.inflight import RESTART_NOTICE
from bot.core.keys import ConversationKey
from bot.core.renderer import STREAMING_MARKER
from tests.e2e.bot_process import REPO_ROOT, BotProcess, bot_env
from tests.e2e.stack import (
    SLASH_COMMANDS,
    answer,
    button_id,
    has_button,
    input_texts,
    running_stack,
)
from tests.support.redis_server import RedisServer, free_port

pytestmark = pytest.mark.e2e

ENV_EXAMPLE = REPO_ROOT / ".env.example"


async def test_missing_message_content_intent_stops_with_one_line(tmp_path: Path) -> None:
    """Without the Message Content intent the bot exits 1 with exactly one stderr line."""
    async with running_stack(
        tmp_path, channels=0, message_content_enabled=False, wait_ready=False
    ) as stack:
        status = await stack.bot.wait(timeout=30)
        stderr = stack.bot.stderr_text()
        synced = bool(stack.emu.rest.command_syncs)
    assert status == 1
    [line] = stderr.strip().splitlines()
    assert "Message Content intent" in line
    assert "discord.com/developers/applications" in line
    assert synced, "the slash commands were synced before the gateway refused the intent"


async def test_sigterm_mid_answer_exits_0_and_keeps_the_text_so_far(tmp_path: Path) -> None:
    """SIGTERM while an answer streams: exit 0 in time, the partial answer kept as incomplete."""
    async with running_stack(tmp_path, channels=1) as stack:
        channel = stack.fresh_channel()
        stack.script(answer([f"word{n} " for n in range(200)], pace=0.1))
        await stack.emu.inject_message(channel.id, "alice", f"{stack.emu.bot_user.mention} talk")
        await stack.emu.wait_until(
            lambda: any("word3" in m.content for m in stack.emu.bot_messages(channel.id))
        )
        status = await stack.bot.stop()  # SIGTERM; SIGKILL (and a status of -9) after 10 s
        [shown] = stack.emu.bot_messages(channel.id)
        key = ConversationKey(str(stack.emu.guild_id), str(channel.id))
        redis = aioredis.Redis.from_url(stack.redis.url)
        try:
            store = HistoryStore(redis, max_items=40, max_chars=40_000, ttl_seconds=3600)
            question, kept = await store.load(key)
        finally:
            await redis.aclose()
    assert status == 0, stack.bot.stderr_text()
    assert question.text == "talk"
    assert kept.role == "assistant"
    assert kept.status == "incomplete"
    assert kept.text.startswith("word0 word1 word2 word3")
    assert "word199" not in kept.text
    assert shown.content.endswith("\n\n-# ⏹️ Stopped.")
    assert "Traceback" not in stack.bot.stderr_text()


@pytest.mark.parametrize("trigger", ["mention", "ask"])
async def test_sigkill_mid_answer_is_finished_by_the_next_start(
    tmp_path: Path, trigger: str
) -> None:
    """A bot killed mid-answer (SIGKILL), to a mention or to a public /ask: the next process on
    the same Redis finishes the reply (its text with a notice, no marker, no Stop), keeps the
    question and the partial answer (incomplete) in the history, holds no dead lock, and
    answers the next mention."""
    async with running_stack(tmp_path, channels=1) as stack:
        emu = stack.emu
        channel = stack.fresh_channel()
        stack.script(answer([f"word{n} " for n in range(200)], pace=0.1))
        if trigger == "mention":
            await emu.inject_message(channel.id, "alice", f"{emu.bot_user.mention} talk")
        else:
            await emu.inject_interaction(
                "ask", {"prompt": "talk"}, user="alice", channel_id=channel.id
            )
        await emu.wait_until(
            lambda: any("word3" in m.content for m in emu.bot_messages(channel.id))
        )
        assert stack.bot.proc is not None
        stack.bot.proc.send_signal(signal.SIGKILL)
        assert await stack.bot.wait() == -signal.SIGKILL
        [reply] = [m for m in emu.bot_messages(channel.id) if "word3" in m.content]
        assert reply.content.endswith(STREAMING_MARKER)
        assert has_button(reply, "stop")
        identified = emu.gateway.identifies
        async with BotProcess(stack.bot.env, tmp_path / "restarted") as restarted:
            await emu.wait_until(lambda: emu.gateway.identifies > identified)
            await emu.wait_until(
                lambda: RESTART_NOTICE in emu.message(reply.id).content, timeout=40
            )
            finished = emu.message(reply.id)
            key = ConversationKey(str(emu.guild_id), str(channel.id))
            redis = aioredis.Redis.from_url(stack.redis.url)
            try:
                lock_left = await redis.exists(key.lock)
                store = HistoryStore(redis, max_items=40, max_chars=40_000, ttl_seconds=3600)
                question, kept = await store.load(key)
            finally:
                await redis.aclose()
            stack.script(answer(["Fresh."]))
            await emu.inject_message(channel.id, "alice", f"{emu.bot_user.mention} and now?")
            await emu.wait_until(
                lambda: any(m.content == "Fresh." for m in emu.bot_messages(channel.id))
            )
            assert await restarted.stop() == 0, restarted.stderr_text()
    assert lock_left == 0  # the dead holder's lock was gone before the reply was finished
    assert STREAMING_MARKER.strip() not in finished.content
    assert not has_button(finished, "stop")
    text, _, notice = finished.content.rpartition("\n\n")
    assert notice == RESTART_NOTICE
    assert text.startswith("word0 word1 word2 word3")
    assert (question.role, question.text) == ("user", "talk")
    assert (kept.role, kept.status) == ("assistant", "incomplete")
    assert kept.text == text
    [request] = stack.requests()
    alice = stack.label("alice")
    assert input_texts(request) == [f"{alice}: talk", text, f"{alice}: and now?"]


async def test_commands_sync_to_dev_guild_only_when_changed(tmp_path: Path) -> None:
    """With DEV_GUILD_ID the commands go to that server; a restart with the same definitions
    (same Redis) does not sync again, sparing Discord's daily command-creation cap."""
    async with running_stack(tmp_path, channels=0) as stack:
        emu = stack.emu
        assert [scope for scope, _ in emu.rest.command_syncs] == [None]
        env = dict(stack.bot.env, DEV_GUILD_ID=str(emu.guild_id))
        assert await stack.bot.stop() == 0  # else the restarts would wait as its standbys
        for run in ("first", "second"):
            identified = emu.gateway.identifies
            async with BotProcess(env, tmp_path / run) as bot:
                # The sync is decided in setup_hook, before the bot identifies on the gateway.
                await emu.wait_until(lambda: emu.gateway.identifies > identified)  # noqa: B023
                assert await bot.stop() == 0
        scopes = [scope for scope, _ in emu.rest.command_syncs]
    assert scopes == [None, emu.guild_id]
    names = {
        command["name"] for _, definitions in emu.rest.command_syncs for command in definitions
    }
    assert names == SLASH_COMMANDS


async def test_gateway_reconnect_resumes_and_keeps_answering(tmp_path: Path) -> None:
    """Discord asks the bot to reconnect (op 7): it resumes its session (no new IDENTIFY, no
    second command sync) and answers the next mention."""
    async with running_stack(tmp_path, channels=1) as stack:
        emu = stack.emu
        resumed, identified = emu.gateway.resumes, emu.gateway.identifies
        await emu.reconnect_clients()
        await emu.wait_until(lambda: emu.gateway.resumes > resumed)
        channel = stack.fresh_channel()
        stack.script(answer(["Still here."]))
        await emu.inject_message(channel.id, "alice", f"{emu.bot_user.mention} hello?")
        [reply] = await stack.wait_for_final(channel.id)
    assert reply.content == "Still here."
    assert emu.gateway.identifies == identified
    assert len(emu.rest.command_syncs) == 1


async def test_regenerate_works_after_a_restart(tmp_path: Path) -> None:
    """Buttons outlive the process: after the bot restarts, Regenerate on its last answer
    still asks again and rewrites that message."""
    async with running_stack(tmp_path, channels=1) as stack:
        emu = stack.emu
        channel = stack.fresh_channel()
        stack.script(answer(["Before the restart."]), answer(["After the restart."]))
        await emu.inject_message(channel.id, "alice", f"{emu.bot_user.mention} a joke")
        [message] = await stack.wait_for_final(channel.id)
        assert await stack.bot.stop() == 0
        identified = emu.gateway.identifies
        async with BotProcess(stack.bot.env, tmp_path / "restarted"):
            await emu.wait_until(lambda: emu.gateway.identifies > identified)
            await emu.inject_component(message.id, button_id(message, "regen"), "alice")
            await emu.wait_until(
                lambda: (
                    emu.message(message.id).content == "After the restart."
                    and has_button(emu.message(message.id), "regen")
                )
            )
        _, again = stack.requests()
    assert input_texts(again) == [f"{stack.label('alice')}: a joke"]


async def test_bot_starts_from_the_shipped_env_example(tmp_path: Path) -> None:
    """`cp .env.example .env`, fill in the keys, run: the bot connects and answers (every empty
    optional line, DEV_GUILD_ID= included, means "not set"). Only addresses point at local
    servers."""
    async with running_stack(tmp_path, channels=1) as stack:
        assert await stack.bot.stop() == 0
        emu = stack.emu
        text = ENV_EXAMPLE.read_text(encoding="utf-8")
        for name, value in stack.bot.env.items():
            text, found = re.subn(rf"(?m)^{name}=.*$", f"{name}={value}", text)
            assert found == 1, f"{name} is not in .env.example"
        workdir = tmp_path / "from-env-file"
        workdir.mkdir()
        (workdir / ".env").write_text(text, encoding="utf-8")
        identified = emu.gateway.identifies
        async with BotProcess({}, workdir) as bot:
            await emu.wait_until(lambda: emu.gateway.identifies > identified)
            channel = stack.fresh_channel()
            stack.script(answer(["Configured."]))
            await emu.inject_message(channel.id, "alice", f"{emu.bot_user.mention} hi")
            [reply] = await stack.wait_for_final(channel.id)
            assert await bot.stop() == 0
    assert reply.content == "Configured."


async def test_discord_unreachable_is_one_line(tmp_path: Path) -> None:
    """No Discord at DISCORD_API_BASE (no network, a wrong proxy address): exit 1 with one plain
    stderr line naming where it looked, no traceback."""
    redis = RedisServer(tmp_path / "redis")
    redis.workdir.mkdir(parents=True)
    redis.start()
    try:
        nowhere = f"http://127.0.0.1:{free_port()}/api/v10"
        env = bot_env(
            discord_token="token",
            discord_api_base=nowhere,
            discord_gateway_url="ws://127.0.0.1:1/",
            redis_url=redis.url,
            openrouter_base_url="http://127.0.0.1:1/api/v1",
        )
        async with BotProcess(env, tmp_path / "bot") as bot:
            status = await bot.wait(timeout=30)
            stderr = bot.stderr_text()
    finally:
        redis.stop()
    assert status == 1
    [line] = stderr.strip().splitlines()
    assert line.startswith(f"Could not reach Discord at {nowhere}")
