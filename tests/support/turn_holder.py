"""A separate process that runs one fake turn under the TurnLock, steered through its pipes.

Run as `python -m tests.support.turn_holder URL single|cluster GUILD CHANNEL NAME TTL RENEW`.
It takes the conversation's turn lock, loads the history and prints `held <items seen>`, then
waits for a line on stdin before it appends its question and an answer saying what it saw,
releases the lock and prints `released`.
"""

from __future__ import annotations

import asyncio
import sys

from bot.core.events import HistoryItem
from bot.core.history import HistoryStore
from bot.core.keys import ConversationKey
from bot.core.turnlock import TurnLock
from tests.support.redis_target import RedisTarget


async def run_turn(
    target: RedisTarget, key: ConversationKey, name: str, ttl: float, renew: float
) -> None:
    """Take the lock, report, wait for the go-ahead on stdin, store the turn, release."""
    client = target.connect()
    try:
        lock = TurnLock(client, ttl_seconds=ttl, renew_every=renew)
        store = HistoryStore(client, max_items=100, max_chars=100_000, ttl_seconds=3600)
        async with lock.hold(key):
            seen = len(await store.load(key))
            print(f"held {seen}", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
            question = HistoryItem(role="user", text=f"question of {name}", speaker=name)
            answer = HistoryItem(role="assistant", text=f"answer to {name} after {seen}")
            await store.append(key, [question, answer])
        print("released", flush=True)
    finally:
        await client.aclose()


def main(argv: list[str]) -> None:
    """Parse the positional arguments and run one turn."""
    url, kind, guild, channel, name, ttl, renew = argv
    target = RedisTarget(url, cluster=kind == "cluster")
    asyncio.run(run_turn(target, ConversationKey(guild, channel), name, float(ttl), float(renew)))


if __name__ == "__main__":
    main(sys.argv[1:])
