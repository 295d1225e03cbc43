"""A TCP proxy in front of the real redis-server that a test can silence or cut, to lose Redis
at a chosen moment without touching the server itself."""

from __future__ import annotations

import asyncio
import contextlib


class RedisProxy:
    """Copies bytes to and from redis-server; `silent` swallows commands, `cut()` drops every
    connection and refuses new ones until `restore()`."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.silent = asyncio.Event()
        self.swallowed = asyncio.Event()
        self.is_cut = False
        self._server: asyncio.Server | None = None
        self._pumps: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        """The redis:// URL that goes through the proxy."""
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}/0"

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        self._server = await asyncio.start_server(self._connect, "127.0.0.1", 0)

    async def stop(self) -> None:
        """Stop listening and end every pump."""
        assert self._server is not None
        self._server.close()
        await self._end_pumps()
        await self._server.wait_closed()

    async def cut(self) -> None:
        """Lose Redis: close every connection now, and every new one as soon as it opens."""
        self.is_cut = True
        await self._end_pumps()

    def restore(self) -> None:
        """Let new connections through again."""
        self.is_cut = False

    async def _end_pumps(self) -> None:
        """Cancel every pump and close every socket it used."""
        for pump in self._pumps:
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        self._pumps.clear()
        for writer in self._writers:
            writer.close()
        self._writers.clear()

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Join one client connection to a new connection to the real server."""
        if self.is_cut:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._writers |= {writer, up_writer}
        for pump in (self._pump(reader, up_writer, True), self._pump(up_reader, writer, False)):
            task = asyncio.create_task(pump)
            self._pumps.add(task)

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, to_server: bool
    ) -> None:
        """Copy bytes one way; once silent, commands to the server are dropped."""
        try:
            while data := await source.read(65536):
                if to_server and self.silent.is_set():
                    self.swallowed.set()
                    continue
                sink.write(data)
                await sink.drain()
        finally:
            sink.close()
            with contextlib.suppress(ConnectionError):
                await sink.wait_closed()
