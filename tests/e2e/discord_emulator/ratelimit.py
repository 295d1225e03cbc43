"""Discord's rate-limit headers and the optional per-channel message limit (5 per 5 s)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from tests.e2e.discord_emulator.model import Clock


def bucket_hash(name: str) -> str:
    """An opaque, stable bucket id like the ones Discord sends in X-RateLimit-Bucket."""
    return hashlib.sha256(name.encode()).hexdigest()[:32]


@dataclass
class Window:
    """A fixed window: how many requests it has taken since it started."""

    started: float
    used: int = 0


@dataclass
class Verdict:
    """The outcome of asking a bucket for one request, and the headers that describe it."""

    allowed: bool
    headers: dict[str, str]
    retry_after: float = 0.0


@dataclass
class ChannelMessageLimiter:
    """At most `limit` message creates+edits per `window` seconds per channel, when enforced."""

    clock: Clock
    limit: int = 5
    window: float = 5.0
    enforce: bool = False
    windows: dict[int, Window] = field(default_factory=dict)
    served_429: int = 0

    def take(self, channel_id: int) -> Verdict:
        """Count one create/edit in the channel's window; refuse it when enforced and full."""
        now = self.clock.now()
        window = self.windows.get(channel_id)
        if window is None or now - window.started >= self.window:
            window = self.windows[channel_id] = Window(started=now)
        reset_after = max(window.started + self.window - now, 0.0)
        if window.used >= self.limit and self.enforce:
            self.served_429 += 1
            headers = self._headers(0, reset_after) | {"X-RateLimit-Scope": "user"}
            return Verdict(False, headers, retry_after=round(reset_after, 3))
        window.used += 1
        remaining = max(self.limit - window.used, 0) if self.enforce else self.limit
        return Verdict(True, self._headers(remaining, reset_after))

    def exhaust(self, channel_id: int) -> None:
        """Use up the channel's window now, as if another client had just spent it."""
        self.windows[channel_id] = Window(started=self.clock.now(), used=self.limit)

    def _headers(self, remaining: int, reset_after: float) -> dict[str, str]:
        """X-RateLimit-* headers for the channel message bucket."""
        return rate_limit_headers(
            self.clock, "channel-messages", self.limit, remaining, reset_after or self.window
        )


def rate_limit_headers(
    clock: Clock, bucket: str, limit: int, remaining: int, reset_after: float
) -> dict[str, str]:
    """The five X-RateLimit-* headers Discord puts on every answer."""
    reset_at = clock.wall().timestamp() + reset_after
    return {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": f"{reset_at:.3f}",
        "X-RateLimit-Reset-After": f"{reset_after:.3f}",
        "X-RateLimit-Bucket": bucket_hash(bucket),
    }
