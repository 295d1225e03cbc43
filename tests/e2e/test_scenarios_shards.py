"""Two bot processes, shards 0 and 1 of 2, on one Redis against the emulator: each message
answered once and in order, both shards answering, Stop and Regenerate pressed where the other
process runs the answer, the global request budget shared, and a standby taking over."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from bot.core.labels import speaker_tag
from tests.e2e.bot_process import BotProcess, bot_env
from tests.e2e.conftest import assert_clean_log
from tests.e2e.discord_emulator import DiscordEmulator
from tests.e2e.discord_emulator.model import Channel
from tests.e2e.discord_emulator.rest import RestCall
from tests.e2e.stack import (
    MODELS,
    SLASH_COMMANDS,
    answer,
    button_id,
    has_button,
    input_texts,
    paused_answer,
)
from tests.support.fake_responses import FakeResponsesServer
from tests.support.redis_server import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

BUDGET = 5
"""DISCORD_REQUESTS_PER_SECOND for the whole bot in these scenarios (Discord's 50, scaled)."""
BURST = 2
"""SharedRequestBudget's default burst: at most BUDGET + BURST requests start in any second."""
LIMIT = BUDGET + BURST + 1
"""What the emulator may see in a second: one more for the jitter between a request's start and
its arrival (at Discord, the default 40 + 2 leaves 8 of the 50 for it). Each process alone
would allow BUDGET, so without sharing two of them reach 2 * BUDGET."""
CHANNELS_PER_SHARD = 6


@dataclass
class Shards:
    """The emulator, Redis, the Responses server and one bot process per shard."""

    emu: DiscordEmulator
    llm: FakeResponsesServer
    redis: RedisServer
    bots: list[BotProcess]
    channels: dict[int, list[Channel]]
    """Text channels by the shard their server is on."""
    workdir: Path

    def channel(self, shard: int, number: int) -> Channel:
        """A channel of a server on `shard`."""
        return self.channels[shard][number]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shards(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Shards]:
    """Two servers, one on each shard, and a bot process for each shard, all on one Redis."""
    workdir = Path(tmp_path_factory.mktemp("shards"))
    redis = RedisServer(workdir / "redis")
    redis.workdir.mkdir(parents=True, exist_ok=True)
    redis.start()
    try:
        async with DiscordEmulator() as emu, FakeResponsesServer(models=MODELS) as llm:
            channels: dict[int, list[Channel]] = {}
            for shard in (0, 1):
                guild = emu.world.add_guild(f"Server {shard}", shard=(shard, 2))
                channels[shard] = [
                    emu.world.add_channel(f"s{shard}-room-{n}", guild_id=guild)
                    for n in range(CHANNELS_PER_SHARD + 3)
                ]
            bots = [
                BotProcess(shard_env(emu, llm, redis, shard), workdir / f"bot-{shard}")
                for shard in (0, 1)
            ]
            for bot in bots:
                await bot.start()
            try:
                await emu.wait_until(lambda: ready(emu), timeout=30)
                yield Shards(emu, llm, redis, bots, channels, workdir)
            finally:
                for bot in bots:
                    await bot.stop()
            for bot in bots:
                assert_clean_log(bot.stderr_text())
    finally:
        redis.stop()


def shard_env(
    emu: DiscordEmulator, llm: FakeResponsesServer, redis: RedisServer, shard: int
) -> dict[str, str]:
    """The environment of the bot process for one shard of two."""
    return bot_env(
        discord_token=emu.token,
        discord_api_base=emu.api_base,
        discord_gateway_url=emu.gateway_url,
        redis_url=redis.url,
        openrouter_base_url=llm.url,
        shard_count="2",
        shard_ids=str(shard),
        discord_requests_per_second=str(BUDGET),
    )


def ready(emu: DiscordEmulator) -> bool:
    """Both shards identified and the slash commands synced."""
    names = {c["name"] for scope in emu.rest.commands.values() for c in scope}
    return emu.gateway.ready_shards() == {0, 1} and names >= SLASH_COMMANDS


def answered_in(bot: BotProcess) -> set[str]:
    """The channel ids a bot process logged an answer in."""
    return set(re.findall(r"Answered in g:\d+:c:(\d+)", bot.stderr_text()))


def global_calls(timeline: list[RestCall]) -> list[RestCall]:
    """The requests that count against Discord's global limit (interactions are exempt)."""
    exempt = ("/interactions/", "/webhooks/")
    return [call for call in timeline if not call.route.startswith(exempt)]


def max_per_second(times: list[float]) -> int:
    """The most times in any one-second window."""
    ordered = sorted(times)
    return max((sum(1 for t in ordered if s <= t < s + 1.0) for s in ordered), default=0)


async def test_each_shard_answers_its_own_servers_once_and_in_order(shards: Shards) -> None:
    """Four mentions sent at once in a server of each shard: every one answered once, in the
    order sent, by the process of that server's shard only."""
    emu, mention = shards.emu, shards.emu.bot_user.mention
    shards.llm.reset([answer([f"a{n}"], pace=0.05) for n in range(8)])
    asked: dict[int, list[int]] = {}
    alice = f"[Alice {speaker_tag(str(emu.user('alice').id))}]"
    for shard in (0, 1):
        channel = shards.channel(shard, 0)
        asked[shard] = [
            int((await emu.inject_message(channel.id, "alice", f"{mention} s{shard} q{n}"))["id"])
            for n in range(4)
        ]
    for shard in (0, 1):
        channel = shards.channel(shard, 0)

        def all_answered(channel: Channel = channel) -> bool:
            replies = emu.bot_messages(channel.id)
            return len(replies) == 4 and has_button(replies[-1], "regen")

        await emu.wait_until(all_answered, timeout=30)
        replies = emu.bot_messages(channel.id)
        assert [int(m.message_reference["message_id"]) for m in replies] == asked[shard]
        questions = [
            text
            for request in shards.llm.requests
            if request.path.endswith("/responses")
            for text in input_texts(request)[-1:]
            if text.startswith(f"{alice}: s{shard} ")
        ]
        assert questions == [f"{alice}: s{shard} q{n}" for n in range(4)]
    zero, one = (answered_in(bot) for bot in shards.bots)
    assert str(shards.channel(0, 0).id) in zero - one
    assert str(shards.channel(1, 0).id) in one - zero


async def test_stop_and_regenerate_pressed_where_the_other_process_runs_them(
    shards: Shards,
) -> None:
    """An answer streams in shard 1's process; Stop arrives at shard 0's process: the answer
    stops (no "already finished"). Regenerate arriving there too is run by shard 1's process
    into the same message."""
    emu = shards.emu
    channel = shards.channel(1, 1)
    resume = asyncio.Event()
    deltas = [f"word{n} " for n in range(40)]
    shards.llm.reset([paused_answer(deltas, after=5, resume=resume), answer(["Again."])])
    await emu.inject_message(channel.id, "alice", f"{emu.bot_user.mention} talk")
    await emu.wait_until(
        lambda: any("word4" in m.content for m in emu.bot_messages(channel.id)), timeout=20
    )
    [message] = emu.bot_messages(channel.id)
    press = await emu.inject_component(message.id, button_id(message, "stop"), "alice", shard=0)
    await emu.wait_until(lambda: press.callback_type is not None)
    assert press.callback_type == 6  # a silent acknowledgement, not an ephemeral reply
    await emu.wait_until(lambda: has_button(emu.message(message.id), "regen"), timeout=20)
    resume.set()
    assert emu.message(message.id).content.endswith("-# ⏹️ Stopped.")
    assert "word39" not in emu.message(message.id).content
    regen = await emu.inject_component(
        message.id, button_id(emu.message(message.id), "regen"), "alice", shard=0
    )
    await emu.wait_until(
        lambda: (
            emu.message(message.id).content == "Again."
            and has_button(emu.message(message.id), "regen")
        ),
        timeout=20,
    )
    assert regen.callback_type == 6
    assert not regen.followup_ids  # neither "busy" nor "could not reach"
    zero, one = (answered_in(bot) for bot in shards.bots)
    assert str(channel.id) in one - zero


async def test_the_processes_share_one_global_request_budget(shards: Shards) -> None:
    """Twelve answers stream at once, six in each shard's process: together the processes never
    start more than the bot's budget (plus its burst) of requests in any second."""
    emu, mention = shards.emu, shards.emu.bot_user.mention
    shards.llm.reset([answer([f"part{n} " for n in range(4)], pace=0.4) for _ in range(12)])
    start = len(emu.timeline)
    streaming = [shards.channel(shard, 2 + n) for shard in (0, 1) for n in range(6)]
    for channel in streaming:
        await emu.inject_message(channel.id, "bob", f"{mention} count")
    for channel in streaming:
        await emu.wait_until(
            lambda c=channel: any(has_button(m, "regen") for m in emu.bot_messages(c.id)),
            timeout=60,
        )
    calls = global_calls(emu.timeline[start:])
    assert len(calls) >= 12 * 2  # each answer: a reply, its edits, its buttons
    assert max_per_second([call.at for call in calls]) <= LIMIT


async def test_standby_takes_over_when_the_holder_is_killed(shards: Shards) -> None:
    """A second process for shard 1 waits as a standby; when shard 1's process is killed
    (SIGKILL, no goodbye), the standby connects and the next mention there is answered."""
    emu = shards.emu
    standby = BotProcess(shard_env(emu, shards.llm, shards.redis, 1), shards.workdir / "standby")
    logins = len(emu.calls("GET", "/users/@me"))
    async with standby:
        await emu.wait_until(lambda: len(emu.calls("GET", "/users/@me")) > logins, timeout=20)
        connections = emu.gateway.connections
        holder = shards.bots[1]
        assert holder.proc is not None
        holder.proc.kill()
        await holder.proc.wait()
        await emu.wait_until(lambda: emu.gateway.connections > connections, timeout=30)
        await emu.wait_until(lambda: emu.gateway.ready_shards() == {0, 1}, timeout=30)
        channel = shards.channel(1, 8)
        shards.llm.reset([answer(["Still here."])])
        await emu.inject_message(channel.id, "alice", f"{emu.bot_user.mention} anyone?")
        await emu.wait_until(
            lambda: any(has_button(m, "regen") for m in emu.bot_messages(channel.id)),
            timeout=20,
        )
        [reply] = emu.bot_messages(channel.id)
        assert reply.content == "Still here."
        assert "Standby: shard 1 of 2" in standby.stderr_text()
        assert str(channel.id) in answered_in(standby)
