"""The gateway websocket: HELLO, IDENTIFY -> READY + GUILD_CREATE, heartbeats, RESUME, dispatch.

A session that identifies with `shard: [id, count]` gets only the servers of its shard, as on
Discord: `(guild_id >> 22) % count == id`; events of a server go only to the sessions of its
shard (a session without `shard` gets every server)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.e2e.discord_emulator.world import World

log = logging.getLogger(__name__)

MESSAGE_CONTENT_INTENT = 1 << 15
PRIVILEGED_INTENTS = (1 << 1) | (1 << 8) | MESSAGE_CONTENT_INTENT
HEARTBEAT_INTERVAL_MS = 41_250


@dataclass
class GatewayOptions:
    """What the emulated application is allowed, as set in the developer portal."""

    token: str
    message_content_enabled: bool = True
    members_enabled: bool = True
    presences_enabled: bool = False

    def refused_intents(self, intents: int) -> int:
        """The privileged intents asked for but not enabled for the application."""
        enabled = 0
        enabled |= MESSAGE_CONTENT_INTENT if self.message_content_enabled else 0
        enabled |= (1 << 1) if self.members_enabled else 0
        enabled |= (1 << 8) if self.presences_enabled else 0
        return intents & PRIVILEGED_INTENTS & ~enabled


@dataclass
class GatewaySession:
    """One client connection: its sequence number, session id and what it sent."""

    ws: web.WebSocketResponse
    session_id: str
    sequence: int = 0
    identified: bool = False
    intents: int | None = None
    identify_payload: dict[str, Any] | None = None
    heartbeats: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)
    shard: tuple[int, int] | None = None
    """[id, count] from IDENTIFY, if the client shards."""

    def gets(self, guild_id: int | None) -> bool:
        """Whether events of a server (None: no server) go to this session."""
        if self.shard is None or guild_id is None:
            return True
        number, count = self.shard
        return (guild_id >> 22) % count == number

    async def send(self, op: int, data: Any, event: str | None = None) -> None:
        """Send one gateway frame as plain JSON text (discord.py accepts text frames)."""
        frame: dict[str, Any] = {"op": op, "d": data, "s": None, "t": event}
        if op == 0:
            self.sequence += 1
            frame["s"] = self.sequence
        await self.ws.send_str(json.dumps(frame))

    async def dispatch(self, event: str, data: Any) -> None:
        """Send a DISPATCH (op 0) event."""
        await self.send(0, data, event)


class Gateway:
    """Serves gateway connections for one world and dispatches events to identified sessions."""

    def __init__(
        self,
        world: World,
        options: GatewayOptions,
        resume_url: Callable[[], str],
        on_change: Callable[[], Any],
    ) -> None:
        self.world = world
        self.options = options
        self.resume_url = resume_url
        self.on_change = on_change
        self.sessions: list[GatewaySession] = []
        self.closed_codes: list[int] = []
        self.connections = 0
        self.identifies = 0
        self.resumes = 0
        self.intents_by_session: dict[str, int | None] = {}
        self.shards_by_session: dict[str, tuple[int, int]] = {}
        self.refusing = False
        """While set, new connections get 503 (Discord unreachable); see `drop_all`."""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Run one websocket connection until the client or the emulator closes it."""
        if self.refusing:
            return web.Response(status=503, text="gateway unavailable")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.connections += 1
        session = GatewaySession(ws, session_id=f"session-{self.world.snowflakes.next()}")
        await session.send(10, {"heartbeat_interval": HEARTBEAT_INTERVAL_MS})
        try:
            async for frame in ws:
                if frame.type is not WSMsgType.TEXT:
                    continue
                await self._receive(session, json.loads(frame.data))
        finally:
            if session in self.sessions:
                self.sessions.remove(session)
            await self._notify()
        return ws

    async def _receive(self, session: GatewaySession, payload: dict[str, Any]) -> None:
        """Answer one frame from the client."""
        session.received.append(payload)
        op = payload.get("op")
        raw = payload.get("d")
        data: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if op == 1:
            session.heartbeats += 1
            await session.send(11, None)
        elif op == 2:
            await self._identify(session, data)
        elif op == 6:
            await self._resume(session, data)
        elif op == 8:
            await self._request_members(session, data)
        elif op not in (3, 4):
            log.warning("DISCORD EMULATOR: gateway op %s not handled: %s", op, payload)
        await self._notify()

    async def _identify(self, session: GatewaySession, data: dict[str, Any]) -> None:
        """Check token and intents, then send READY and GUILD_CREATE."""
        if data.get("token") != self.options.token:
            await self._close(session, 4004, "Authentication failed.")
            return
        self.identifies += 1
        session.intents = data.get("intents")
        session.identify_payload = data
        self.intents_by_session[session.session_id] = session.intents
        if self.options.refused_intents(session.intents or 0):
            await self._close(session, 4014, "Disallowed intent(s).")
            return
        shard = data.get("shard")
        if shard is not None:
            number, count = int(shard[0]), int(shard[1])
            if not 0 <= number < count:
                await self._close(session, 4010, "Invalid shard.")
                return
            session.shard = (number, count)
            self.shards_by_session[session.session_id] = session.shard
        await session.dispatch("READY", self._ready_payload(session))
        session.identified = True
        self.sessions.append(session)
        for guild_id in self.world.guilds_of_shard(session.shard):
            await session.dispatch("GUILD_CREATE", self.world.guild_payload(guild_id))

    def _ready_payload(self, session: GatewaySession) -> dict[str, Any]:
        """The READY event: our user, the session, its shard and its guilds (unavailable until
        their GUILD_CREATE)."""
        guilds = self.world.guilds_of_shard(session.shard)
        shard = {} if session.shard is None else {"shard": list(session.shard)}
        return shard | {
            "v": 10,
            "user": self.world.bot.payload() | {"verified": True, "mfa_enabled": False},
            "guilds": [{"id": str(guild), "unavailable": True} for guild in guilds],
            "session_id": session.session_id,
            "resume_gateway_url": self.resume_url(),
            "application": {"id": str(self.world.application_id), "flags": self.application_flags},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "_trace": ["discord-emulator"],
        }

    async def _resume(self, session: GatewaySession, data: dict[str, Any]) -> None:
        """Resume a known session with its intents (missed events are not replayed); else op 9."""
        if data.get("token") != self.options.token:
            await self._close(session, 4004, "Authentication failed.")
            return
        if data.get("session_id") not in self.intents_by_session:
            await session.send(9, False)
            return
        self.resumes += 1
        session.session_id = data["session_id"]
        session.intents = self.intents_by_session[session.session_id]
        session.shard = self.shards_by_session.get(session.session_id)
        session.sequence = data.get("seq") or 0
        session.identified = True
        self.sessions.append(session)
        await session.dispatch("RESUMED", {"_trace": ["discord-emulator"]})

    async def _request_members(self, session: GatewaySession, data: dict[str, Any]) -> None:
        """Answer REQUEST_GUILD_MEMBERS with one chunk holding every member."""
        members = [member.payload() for member in self.world.members.values()]
        chunk = {
            "guild_id": str(data.get("guild_id") or self.world.guild_id),
            "members": members,
            "chunk_index": 0,
            "chunk_count": 1,
            "nonce": data.get("nonce"),
        }
        await session.dispatch("GUILD_MEMBERS_CHUNK", chunk)

    async def _close(self, session: GatewaySession, code: int, reason: str) -> None:
        """Close the connection with a gateway close code."""
        log.warning("DISCORD EMULATOR: closing gateway with %s (%s)", code, reason)
        self.closed_codes.append(code)
        await session.ws.close(code=code, message=reason.encode())

    async def dispatch(self, event: str, data: Any) -> None:
        """Send an event to every identified session that gets its server."""
        for session in self.receivers(data):
            await session.dispatch(event, data)

    def receivers(self, data: Any, *, shard: int | None = None) -> list[GatewaySession]:
        """The open sessions an event goes to: those of its server's shard, or of `shard`."""
        guild = data.get("guild_id") if isinstance(data, dict) else None
        if isinstance(data, dict) and self.world.is_dm(int(data.get("channel_id") or 0)):
            # A DM belongs to no server: Discord sends its events to shard 0 alone.
            return [s for s in self.receivers({}) if s.shard is None or s.shard[0] == 0]
        return [
            session
            for session in list(self.sessions)
            if not session.ws.closed
            and (
                session.gets(int(guild) if guild else None)
                if shard is None
                else session.shard is not None and session.shard[0] == shard
            )
        ]

    def ready_shards(self) -> set[int]:
        """The shard ids that have an identified session now."""
        return {s.shard[0] for s in self.sessions if s.identified and s.shard is not None}

    async def reconnect_all(self) -> None:
        """Ask every client to reconnect (op 7), as Discord does before maintenance."""
        for session in list(self.sessions):
            await session.send(7, None)

    async def drop_all(self) -> None:
        """Cut every connection and refuse new ones until `refusing` is cleared (an outage)."""
        self.refusing = True
        for session in list(self.sessions):
            await session.ws.close(code=1001, message=b"going away")

    async def close_all(self) -> None:
        """Close every connection (used at shutdown)."""
        for session in list(self.sessions):
            await session.ws.close(code=1001, message=b"emulator shutting down")

    async def _notify(self) -> None:
        """Wake anyone waiting on a condition about the emulator."""
        result = self.on_change()
        if hasattr(result, "__await__"):
            await result

    @property
    def application_flags(self) -> int:
        """GATEWAY_MESSAGE_CONTENT_LIMITED when the message content intent is enabled."""
        return (1 << 19) if self.options.message_content_enabled else 0

    @property
    def ready(self) -> bool:
        """True once a client has identified and received the guild."""
        return any(session.identified for session in self.sessions)
