"""`make run` helper: make sure a Redis answers at REDIS_URL, starting a local one if needed.

Exit 0 when Redis answers (perhaps after starting redis-server with its data under .data/),
exit 2 when a local server is needed but redis-server is not installed, 1 otherwise.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import redis.asyncio as aioredis

from bot.config import ConfigError, load_settings

LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", ""}
DATA_DIR = Path(".data")


async def _answers(url: str) -> bool:
    """Whether a Redis at `url` answers PING within two seconds."""
    client = aioredis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        return bool(await client.ping())  # type: ignore[misc]  # redis-py types ping as maybe-sync
    except (OSError, aioredis.RedisError):
        return False
    finally:
        await client.aclose()


async def _wait_until_answers(url: str, attempts: int = 50) -> bool:
    """Poll PING until the freshly started server answers (start-up takes a moment)."""
    for _ in range(attempts):
        if await _answers(url):
            return True
        await asyncio.sleep(0.1)
    return False


def _start_local(port: int) -> None:
    """Start redis-server in the background, keeping its data under .data/."""
    binary = shutil.which("redis-server")
    assert binary is not None
    DATA_DIR.mkdir(exist_ok=True)
    subprocess.run(  # noqa: S603 - fixed arguments, binary found on PATH
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(DATA_DIR.resolve()),
            "--appendonly",
            "yes",
            "--daemonize",
            "yes",
            "--logfile",
            str((DATA_DIR / "redis.log").resolve()),
        ],
        check=True,
    )


def main() -> int:
    """Check REDIS_URL and start a local server when it is local and silent."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    url = settings.redis_url.get_secret_value()
    if asyncio.run(_answers(url)):
        return 0
    parts = urlsplit(url)
    where = f"{parts.hostname or 'localhost'}:{parts.port or 6379}"
    if (parts.hostname or "") not in LOCAL_HOSTS:
        print(f"Could not connect to Redis at {where}: is it running?", file=sys.stderr)
        return 1
    if shutil.which("redis-server") is None:
        print("No Redis answers locally and redis-server is not installed.", file=sys.stderr)
        return 2
    print(f"Starting redis-server on {where} with its data in {DATA_DIR}/", file=sys.stderr)
    _start_local(parts.port or 6379)
    if asyncio.run(_wait_until_answers(url)):
        return 0
    print(
        f"Started redis-server, but it does not answer at {where}; see .data/redis.log.",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
