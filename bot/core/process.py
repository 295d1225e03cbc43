"""Who this process is among the bot's processes: one id, made once at start-up and handed to
everything that must tell processes apart (shard leases, running answers, control messages)."""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    """This process's id, unique among every process of the bot that ever ran."""

    id: str

    @classmethod
    def new(cls) -> ProcessIdentity:
        """An id made of the host name, the pid and a random part, e.g. `web-1.4242.9f3a1c2b`.

        The random part keeps a restarted container that reuses its pid from taking over what
        the earlier process held. Only letters, digits, dots and dashes, so it fits key names."""
        host = "".join(c if c.isalnum() or c == "-" else "-" for c in socket.gethostname())
        return cls(f"{host[:40] or 'host'}.{os.getpid()}.{secrets.token_hex(4)}")

    def __str__(self) -> str:
        """The id itself."""
        return self.id
