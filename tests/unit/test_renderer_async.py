"""The async renderer on virtual time with recording sinks: pace, fairness, edge cases."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core.errors import LLMStreamError
from bot.core.events import (
    Citation,
    Completed,
    Failed,
    FinalEvent,
    Incomplete,
    ReasoningDelta,
    TextDelta,
    Usage,
)
from bot.core.pacing import WINDOW_MARGIN, EditPacer
from bot.core.renderer import FooterOptions, RenderResult, ReplyRenderer, Rerouted, SentMessage
from tests.support.recording_sink import RecordingSink
from tests.support.reply_checks import assert_gives_back, assert_valid_message
from tests.support.virtual_time import run_virtual

MARKER = " ▌"


def max_in_window(times: Sequence[float], window: float = 5.0) -> int:
    """The most timestamps in any half-open window [t, t + window)."""
    return max((sum(1 for t in times if s <= t < s + window) for s in times), default=0)


def words(count: int) -> list[str]:
    """`count` deltas of one word each."""
    return [f"w{index} " for index in range(count)]


async def stream(
    renderer: ReplyRenderer,
    deltas: Sequence[str],
    *,
    every: float = 0.05,
    start: float = 0.0,
    final: FinalEvent | None = None,
) -> None:
    """Feed deltas `every` seconds apart (virtual time), then the final event."""
    await asyncio.sleep(start)
    for delta in deltas:
        renderer.feed(TextDelta(delta))
        await asyncio.sleep(every)
    renderer.feed(final if final is not None else Completed())


async def render(
    sink: RecordingSink,
    deltas: Sequence[str],
    *,
    pacer: EditPacer | None = None,
    every: float = 0.05,
    start: float = 0.0,
    final: FinalEvent | None = None,
    **options: object,
) -> RenderResult:
    """Render one streamed answer into `sink` and return the result."""
    pacer = pacer or EditPacer(clock=asyncio.get_running_loop().time)
    renderer = ReplyRenderer(sink, pacer, **options)  # type: ignore[arg-type]
    async with asyncio.TaskGroup() as group:
        group.create_task(stream(renderer, deltas, every=every, start=start, final=final))
        running = group.create_task(renderer.run())
    return running.result()


def test_first_text_sent_at_once_then_about_one_edit_a_second() -> None:
    """The first text goes out immediately; later edits are >= 1.05 s apart, ~1 per second."""
    sink = RecordingSink()

    async def scenario() -> tuple[float, RenderResult]:
        begin = asyncio.get_running_loop().time()
        return begin, await render(sink, words(200), start=0.3)

    begin, result = run_virtual(scenario())
    writes = sink.writes()
    assert writes[0].op == "send"
    assert writes[0].first
    assert writes[0].time == begin + 0.3
    ordinary = [w.time for w in writes[:-1]]
    gaps = [b - a for a, b in itertools.pairwise(ordinary)]
    assert min(gaps) >= 1.05 - 1e-9
    assert max(gaps) < 1.2
    assert max_in_window([w.time for w in writes]) <= 5
    assert sink.messages() == ["".join(words(200)).rstrip()]
    assert result.text == "".join(words(200))


def test_typing_until_first_text() -> None:
    """A slow model gets a typing indicator every 8 s until the first message appears."""
    sink = RecordingSink()

    async def scenario() -> float:
        begin = asyncio.get_running_loop().time()
        await render(sink, ["Hi"], start=20.0)
        return begin

    begin = run_virtual(scenario())
    typing = [r.time - begin for r in sink.requests if r.op == "typing"]
    assert typing == [0.0, 8.0, 16.0]
    assert sink.requests[-1].op != "typing"


def test_no_typing_when_disabled() -> None:
    """With typing_every=0 (slash commands show "thinking" instead) no typing is sent."""
    sink = RecordingSink()
    run_virtual(render(sink, ["Hi"], start=10.0, typing_every=0))
    assert [r.op for r in sink.requests] == ["send", "edit"]


def test_final_edit_not_held_back_by_the_interval() -> None:
    """The final edit goes as soon as the previous request is done, not 1.05 s later."""
    sink = RecordingSink()
    run_virtual(render(sink, ["Hello", " world"], every=0.2))
    sends_and_edits = sink.writes()
    assert [w.content for w in sends_and_edits] == ["Hello" + MARKER, "Hello world"]
    assert sends_and_edits[1].time - sends_and_edits[0].time < 1.05


def test_slow_sink_ends_exact_with_far_fewer_edits() -> None:
    """Edits taking 2 s each: the final text is exact and edits are far fewer than deltas."""
    sink = RecordingSink(latency=2.0)
    deltas = words(400)
    result = run_virtual(render(sink, deltas, every=0.02, limit=1990))
    text = "".join(deltas)
    assert sink.rejected == []
    assert result.text == text
    assert_gives_back(text, sink.messages())
    assert len(sink.writes()) < len(deltas) / 10
    assert sink.max_in_flight == 1


def _three_streams(sinks: list[RecordingSink], seconds: float) -> None:
    """Three renderers sharing one pacer, streaming for `seconds` at 20 deltas/s."""

    async def scenario() -> None:
        pacer = EditPacer(clock=asyncio.get_running_loop().time)
        count = int(seconds * 20)
        async with asyncio.TaskGroup() as group:
            for sink in sinks:
                group.create_task(render(sink, words(count), pacer=pacer, limit=1990))

    run_virtual(scenario())


def test_three_channels_each_update_about_once_a_second() -> None:
    """Concurrent answers in three channels all advance at ~1 edit/s; none starves."""
    sinks = [RecordingSink(channel=name) for name in ("a", "b", "c")]
    _three_streams(sinks, seconds=15)
    for sink in sinks:
        times = [w.time for w in sink.writes()]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert max(gaps) < 1.2, sink.channel
        assert len(times) >= 13
        assert max_in_window(times) <= 5


def test_three_replies_in_one_channel_share_its_budget_fairly() -> None:
    """Three answers in one channel: never over 5 per 5 s in total, and equal shares."""
    sinks = [RecordingSink(channel=f"x{index}", bucket="channel:shared") for index in range(3)]
    _three_streams(sinks, seconds=20)
    all_times = sorted(w.time for sink in sinks for w in sink.writes())
    assert max_in_window(all_times) <= 5
    counts = [len(sink.writes()) for sink in sinks]
    assert max(counts) - min(counts) <= 1
    begin = all_times[0]
    for sink in sinks:
        times = [w.time for w in sink.writes()]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        # the three first sends burst: one window (and its margin) to recover
        assert max(gaps) <= 5.0 + WINDOW_MARGIN + 1e-9
        steady = [b - a for a, b in itertools.pairwise(times) if a >= begin + 5.0]
        assert max(steady) < 3.5  # then round-robin: each gets every third slot


def test_deleted_message_stops_and_cancels_once() -> None:
    """A message deleted mid-stream stops the renderer and calls on_gone once; no retries."""
    sink = RecordingSink()
    gone_calls: list[int] = []

    async def scenario() -> RenderResult:
        pacer = EditPacer(clock=asyncio.get_running_loop().time)
        renderer = ReplyRenderer(sink, pacer, on_gone=lambda: gone_calls.append(1))

        async def delete_soon() -> None:
            await asyncio.sleep(2.5)
            sink.deleted.add("1-0")

        async with asyncio.TaskGroup() as group:
            group.create_task(stream(renderer, words(200)))
            group.create_task(delete_soon())
            running = group.create_task(renderer.run())
        return running.result()

    result = run_virtual(scenario())
    assert result.gone
    assert gone_calls == [1]
    deleted_at = sink.requests[0].time + 2.5
    after = [r for r in sink.requests if r.time >= deleted_at]
    assert [(r.op, r.message_id) for r in after] == [("edit", "1-0")]


def test_failed_stream_keeps_text_and_adds_notice() -> None:
    """A stream that fails keeps what arrived (even the last second) and says what went wrong."""
    sink = RecordingSink()
    error = LLMStreamError("cut", user_message="The model's answer broke off.")
    result = run_virtual(render(sink, words(30), every=0.03, final=Failed(error)))
    assert sink.messages() == [
        "".join(words(30)).rstrip() + "\n\n-# ⚠️ The model's answer broke off."
    ]
    assert result.text == "".join(words(30))


def test_cut_answer_gets_a_notice() -> None:
    """A stop at max_output_tokens says the answer was cut."""
    sink = RecordingSink()
    run_virtual(render(sink, ["Some text"], final=Incomplete("max_output_tokens")))
    assert "✂️ The answer was cut off" in sink.messages()[-1]


def test_empty_answer_is_never_a_blank_message() -> None:
    """Reasoning only, no text: a notice, never an empty message."""
    sink = RecordingSink()

    async def scenario() -> None:
        pacer = EditPacer(clock=asyncio.get_running_loop().time)
        renderer = ReplyRenderer(sink, pacer)
        renderer.feed(ReasoningDelta("thinking hard"))
        renderer.feed(TextDelta("   "))
        renderer.feed(Completed())
        await renderer.run()

    run_virtual(scenario())
    assert sink.rejected == []
    assert sink.messages() == ["-# The model returned an empty answer."]


def test_long_answer_continues_silently_in_new_messages() -> None:
    """Past the limit the reply continues; only the first message replies to the trigger."""
    sink = RecordingSink()
    text = "Intro.\n\n```python\n" + "print('line of code')\n" * 200 + "```\nThe end."
    deltas = [text[i : i + 7] for i in range(0, len(text), 7)]
    run_virtual(render(sink, deltas, every=0.01))
    messages = sink.messages()
    assert len(messages) >= 3
    for message in messages:
        assert_valid_message(message, 1990)
    for message in messages[1:]:
        assert message.startswith("```python\n")
    assert_gives_back(text, messages)
    sends = [w for w in sink.writes() if w.op == "send"]
    assert [s.first for s in sends] == [True] + [False] * (len(sends) - 1)


def test_transient_sink_error_is_survived() -> None:
    """One failed edit is logged and the next edit carries the newest text."""
    sink = RecordingSink(failures_to_inject=0)

    async def scenario() -> RenderResult:
        pacer = EditPacer(clock=asyncio.get_running_loop().time)
        renderer = ReplyRenderer(sink, pacer)

        async def fail_once() -> None:
            await asyncio.sleep(1.5)
            sink.failures_to_inject = 1

        async with asyncio.TaskGroup() as group:
            group.create_task(stream(renderer, words(80)))
            group.create_task(fail_once())
            running = group.create_task(renderer.run())
        return running.result()

    result = run_virtual(scenario())
    assert not result.gave_up
    assert sink.messages() == ["".join(words(80)).rstrip()]


def test_persistent_sink_errors_give_up() -> None:
    """A sink that always fails is given up on after three tries, without endless retries."""
    sink = RecordingSink(failures_to_inject=1000)
    result = run_virtual(render(sink, words(50)))
    assert result.gave_up
    assert len(sink.writes()) == 3


@dataclass
class TokenThenChannelSink(RecordingSink):
    """Like an interaction sink: requests go through a token until Discord rejects it at the
    `reject_at`-th request; from then on the reply's messages are reached through the channel."""

    reject_at: int = 3
    token_bucket: str = "interaction:7"
    channel_bucket: str = "channel:1"
    refused: list[str] = field(default_factory=list)
    token_uses_after_refusal: int = 0

    def __post_init__(self) -> None:
        """Sends start on the token."""
        self.send_bucket = self.token_bucket

    def _through(self, bucket: str, what: str) -> None:
        """Refuse the reject_at-th token request (once); count token uses after that."""
        if bucket != self.token_bucket:
            return
        if self.refused:
            self.token_uses_after_refusal += 1
        elif len(self.writes()) + 1 >= self.reject_at:
            self.refused.append(what)
            self.send_bucket = self.channel_bucket
            raise Rerouted("token rejected", self.token_bucket, self.channel_bucket)

    async def send(self, content: str, *, first: bool) -> SentMessage:
        """Send through the token, or through the channel once it was refused."""
        self._through(self.send_bucket, "send")
        return await super().send(content, first=first)

    async def edit(self, message: SentMessage, content: str) -> None:
        """Edit through the token, or through the channel once it was refused."""
        self._through(message.bucket, "edit")
        await super().edit(message, content)


def test_rejected_token_moves_the_reply_to_the_channel_losing_nothing() -> None:
    """A sink that moves the reply to another bucket (a rejected interaction token): the refused
    edit is made again at once in the new bucket, not counted as a failure, and every later
    request, the buttons' included, is paced there; the whole text shows exactly once."""
    sink = TokenThenChannelSink(reject_at=3)
    deltas = [f"Sentence {n:03d} of a long answer. " for n in range(120)]
    result = run_virtual(render(sink, deltas, every=0.1, max_failures=1))
    assert sink.refused == ["edit"]
    assert sink.token_uses_after_refusal == 0
    assert not result.gave_up
    assert not result.gone
    writes = sink.writes()
    assert [w.bucket for w in writes[:2]] == ["interaction:7", "interaction:7"]
    assert {w.bucket for w in writes[2:]} == {"channel:1"}
    assert writes[2].op == "edit"
    assert writes[2].message_id == result.messages[0].id
    assert {m.bucket for m in result.messages} == {"channel:1"}
    assert len(result.messages) >= 2
    shown = " ".join(sink.contents[m.id] for m in result.messages)
    assert shown.split() == "".join(deltas).split()


def test_rejected_first_send_is_sent_again_in_the_new_bucket() -> None:
    """A token refused on the very first send: the first part goes to the channel instead."""
    sink = TokenThenChannelSink(reject_at=1)
    result = run_virtual(render(sink, words(30), max_failures=1))
    assert sink.refused == ["send"]
    assert [(w.op, w.bucket) for w in sink.writes()[:1]] == [("send", "channel:1")]
    assert sink.writes()[0].first
    assert sink.messages() == ["".join(words(30)).rstrip()]
    assert not result.gave_up


class AlwaysReroutingSink(RecordingSink):
    """A faulty sink that reroutes every request and never makes one."""

    async def send(self, content: str, *, first: bool) -> SentMessage:
        """Refuse every request with a reroute."""
        self._record("send", self.send_bucket, "", content, first)
        raise Rerouted("again", self.send_bucket, self.send_bucket)


def test_endless_rerouting_gives_up() -> None:
    """A sink that keeps rerouting is given up on like one that keeps failing, not retried
    forever."""
    sink = AlwaysReroutingSink()
    result = run_virtual(render(sink, words(10)))
    assert result.gave_up
    assert len(sink.writes()) == 4


def test_renders_into_existing_messages() -> None:
    """Regenerate: existing messages are edited in place and the spare ones reported."""
    sink = RecordingSink()
    old = [SentMessage("1-0", "channel:1"), SentMessage("1-1", "channel:1")]
    sink.contents.update({"1-0": "old answer part one", "1-1": "old part two"})
    result = run_virtual(render(sink, ["New ", "answer"], existing=old))
    assert [w.op for w in sink.writes()] == ["edit", "edit"]
    assert sink.contents["1-0"] == "New answer"
    assert result.unused == [old[1]]
    assert not any(r.op == "typing" for r in sink.requests)


@settings(max_examples=60, deadline=None)
@given(
    text=st.lists(
        st.sampled_from(
            ["word ", "longer words. ", "\n", "\n\n", "```py\n", "\n```\n", "👍🏽", "x" * 30]
        ),
        max_size=150,
    ).map("".join),
    size=st.integers(min_value=1, max_value=40),
    every=st.sampled_from([0.001, 0.05, 0.3]),
    latency=st.sampled_from([0.05, 2.0]),
)
def test_any_stream_through_the_driver(text: str, size: int, every: float, latency: float) -> None:
    """End to end: valid messages that give back the text, never over 5 per 5 s."""
    sink = RecordingSink(latency=latency)
    deltas = [text[i : i + size] for i in range(0, len(text), size)]
    run_virtual(render(sink, deltas, every=every, limit=150))
    assert sink.rejected == []
    for request in sink.writes():
        assert_valid_message(request.content, 150)
    if text.strip():
        assert_gives_back(text, sink.messages())
    assert max_in_window([w.time for w in sink.writes()]) <= 5


async def think_then_answer(renderer: ReplyRenderer, *, think: float, summary_at: float) -> None:
    """Reason silently, a summary at `summary_at`, raw reasoning, then the answer after
    `think` seconds (virtual time; no events between those moments)."""
    renderer.feed(ReasoningDelta(""))
    await asyncio.sleep(summary_at)
    renderer.feed(ReasoningDelta("**Weighing it**\n\nChecking the sources. Compar", summary=True))
    renderer.feed(ReasoningDelta("RAW CHAIN OF THOUGHT"))
    await asyncio.sleep(think - summary_at)
    renderer.feed(TextDelta("The answer."))
    renderer.feed(Completed())


def test_thinking_status_counts_seconds_then_collapses() -> None:
    """While the model reasons the reply shows `💭 Thinking… N s` at once, its seconds advancing
    without new events within the pacing, then the newest finished summary sentence (never the
    raw reasoning); the answer replaces it and the footer says how long it thought."""
    sink = RecordingSink()

    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        begin = loop.time()
        pacer = EditPacer(clock=loop.time)
        renderer = ReplyRenderer(sink, pacer)
        async with asyncio.TaskGroup() as group:
            group.create_task(think_then_answer(renderer, think=12.2, summary_at=4.5))
            group.create_task(renderer.run())
        return begin

    begin = run_virtual(scenario())
    writes = sink.writes()
    assert writes[0].op == "send"
    assert writes[0].time == begin
    assert writes[0].content == "-# 💭 Thinking… 0 s"
    statuses = [w.content for w in writes if "Thinking" in w.content]
    seconds = [int(c.split("Thinking… ")[1].split(" s")[0]) for c in statuses]
    assert seconds == sorted(seconds)
    assert len(set(seconds)) >= 8  # it advanced on its own, about once a second
    assert seconds[-1] in {11, 12}
    assert "-# 💭 Thinking… 3 s" in statuses
    assert any(c.endswith("\n-# Checking the sources.") for c in statuses)
    assert all("RAW" not in w.content for w in writes)
    assert sink.messages() == ["The answer.\n\n-# 💭 Thought for 12 s"]
    ordinary = [w.time for w in writes[1:-1]]
    assert min(b - a for a, b in itertools.pairwise(ordinary)) >= 1.05 - 1e-9
    assert max_in_window([w.time for w in writes], 5.0 + WINDOW_MARGIN) <= 5
    assert sink.rejected == []


def test_thinking_status_shares_the_channel_budget() -> None:
    """Two replies thinking in one channel never exceed 5 requests per window together."""
    sink = RecordingSink()

    async def scenario() -> None:
        pacer = EditPacer(clock=asyncio.get_running_loop().time)
        renderers = [ReplyRenderer(sink, pacer) for _ in range(2)]
        async with asyncio.TaskGroup() as group:
            for renderer in renderers:
                group.create_task(think_then_answer(renderer, think=20.0, summary_at=2.0))
                group.create_task(renderer.run())

    run_virtual(scenario())
    times = [w.time for w in sink.writes()]
    assert max_in_window(times, 5.0 + WINDOW_MARGIN) <= 5
    assert sorted(sink.messages()) == ["The answer.\n\n-# 💭 Thought for 20 s"] * 2


def test_sources_and_footers_fit_the_limit_in_their_own_message() -> None:
    """A long answer with five long sources, answered-by and usage lines: every message stays
    within 2,000 characters, the footer lines are whole, and the answer text is given back."""
    sink = RecordingSink()
    footer = FooterOptions(requested_model="a/asked", usage=True)
    answer = "word " * 390

    async def scenario() -> None:
        pacer = EditPacer(clock=asyncio.get_running_loop().time)
        renderer = ReplyRenderer(sink, pacer, footer=footer)
        async with asyncio.TaskGroup() as group:
            group.create_task(renderer.run())
            renderer.feed(TextDelta(answer))
            for n in range(7):
                url = f"https://example.com/{n}/" + "p" * 400
                renderer.feed(Citation(url, f"Source {n}"))
            renderer.feed(Completed(model="b/other", usage=Usage(10, 20, cost=0.5)))

    run_virtual(scenario())
    messages = sink.messages()
    assert sink.rejected == []
    assert all(len(m) <= 2000 for m in messages)
    lines = "\n".join(messages).split("\n")
    sources = [line for line in lines if line.startswith("-# ") and "](<https://" in line]
    assert [line[:6] for line in sources] == ["-# 1. ", "-# 2. ", "-# 3. ", "-# 4. ", "-# 5. "]
    assert all(line.endswith(">)") for line in sources)
    assert lines[-2:] == ["-# Answered by b/other", "-# 10 in · 20 out · $0.5"]
    assert messages[0].strip() == answer.strip()
