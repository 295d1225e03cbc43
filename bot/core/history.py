"""Per-conversation history in Redis: atomic appends, whole-exchange trimming, TTL, versioned items.

Each item is one JSON string in the list `<tag>:items`, oldest first. Besides the fields of
`HistoryItem` it holds the schema version `v`, the text length in characters `n` (Lua counts
bytes, so the limit on characters is read from here) and `start: 1` on the first item of every
append, so that trimming drops whole exchanges and never splits one.

Trimming is done in blocks, for providers' prompt caches: a cache serves only a byte-identical
prefix of an earlier request, so dropping one old exchange per turn would make every turn past
the limit pay for its whole history again. Instead, when an append takes a conversation past
either limit (`max_items`, `max_chars`), the oldest whole exchanges are dropped until what is
left fits in half of each limit; the following turns then only add to the end (and so extend
the previous request) until the limit is passed again. A conversation therefore holds at most
the limits, and right after a trim at least the newest whole exchanges that fit in half of
them. The newest turn is never dropped, even when it alone is bigger than the limits.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
from collections.abc import Sequence
from typing import Any, Final, cast

import redis.asyncio as aioredis

from bot.core.events import HistoryItem, ItemStatus, Role
from bot.core.keys import ConversationKey

log = logging.getLogger(__name__)

SCHEMA_VERSION: Final = 1
TRIM_TO: Final = 0.5
"""Past a limit, history is trimmed to this share of it (see the module docstring)."""
_ROLES: Final[frozenset[str]] = frozenset({"user", "assistant"})
_STATUSES: Final[frozenset[str]] = frozenset({"completed", "incomplete"})
_NO_LIMIT: Final = 2**52
"""A limit no conversation reaches: an append with it never trims."""

# KEYS: the items list, then every other key whose TTL is refreshed.
# ARGV: max items, max characters, items and characters to trim down to, TTL in ms, then the
# encoded items to append (maybe none). Past either maximum, whole exchanges go from the oldest
# on until both targets are met. The newest exchange always stays: the appended items and, when
# they continue an exchange (an answer appended after its question), that whole exchange.
# Returns how many items were trimmed.
_APPEND_LUA: Final = """
local list_key = KEYS[1]
local max_items = tonumber(ARGV[1])
local max_chars = tonumber(ARGV[2])
local keep_items = tonumber(ARGV[3])
local keep_chars = tonumber(ARGV[4])
local ttl_ms = tonumber(ARGV[5])
local first_arg = 6
for i = first_arg, #ARGV do
  redis.call('RPUSH', list_key, ARGV[i])
end
local all = redis.call('LRANGE', list_key, 0, -1)
local total = #all
local first_new = total - (#ARGV - first_arg + 1) + 1
local sizes, starts, chars = {}, {}, 0
for i = 1, total do
  local ok, item = pcall(cjson.decode, all[i])
  local size, start = 0, false
  if ok and type(item) == 'table' then
    if type(item.n) == 'number' then size = item.n end
    start = item.start == 1 and item.role == 'user'
  end
  sizes[i], starts[i], chars = size, start, chars + size
end
local protect = first_new
for i = math.min(first_new, total), 1, -1 do
  if starts[i] then
    protect = i
    break
  end
end
local head = 1
if total <= max_items and chars <= max_chars then
  keep_items, keep_chars = total, chars
end
while head < protect and (total - head + 1 > keep_items or chars > keep_chars) do
  chars, head = chars - sizes[head], head + 1
  while head < protect and not starts[head] do
    chars, head = chars - sizes[head], head + 1
  end
end
if head > 1 then
  redis.call('LTRIM', list_key, head - 1, -1)
end
for i = 1, #KEYS do
  redis.call('PEXPIRE', KEYS[i], ttl_ms)
end
return head - 1
"""

# KEYS: the items list, then every other key whose TTL is refreshed.
# ARGV: TTL in ms, then optionally one encoded item that replaces the removed ones.
# Removes the assistant items after the last user item; returns them, oldest first. The
# replacement is pushed only when something was removed.
_REPLACE_TAIL_LUA: Final = """
local list_key = KEYS[1]
local length = redis.call('LLEN', list_key)
local removed = {}
while #removed < length do
  local raw = redis.call('LINDEX', list_key, -(#removed + 1))
  local ok, item = pcall(cjson.decode, raw)
  if not (ok and type(item) == 'table' and item.role == 'assistant') then
    break
  end
  table.insert(removed, 1, raw)
end
if #removed == 0 then
  return removed
end
if #removed == length then
  redis.call('DEL', list_key)
else
  redis.call('LTRIM', list_key, 0, length - #removed - 1)
end
if ARGV[2] then
  redis.call('RPUSH', list_key, ARGV[2])
end
for i = 1, #KEYS do
  redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[1]))
end
return removed
"""


# KEYS: the items list, then every other key whose TTL is refreshed.
# ARGV: TTL in ms, the `ref` of a user item, one encoded item. Puts the item right after the
# last user item with that ref (at the end when the ref is empty). Returns 1 when it went to
# the end (it is the newest answer), 0 when later items follow it, -1 when no such user item
# is left (the conversation was reset or trimmed meanwhile: nothing is stored).
_INSERT_AFTER_LUA: Final = """
local list_key = KEYS[1]
local all = redis.call('LRANGE', list_key, 0, -1)
local at = #all
if ARGV[2] ~= '' then
  at = nil
  for i = #all, 1, -1 do
    local ok, item = pcall(cjson.decode, all[i])
    if ok and type(item) == 'table' and item.role == 'user' and item.ref == ARGV[2] then
      at = i
      break
    end
  end
  if at == nil then
    return -1
  end
end
local newest = 0
if at == #all then
  redis.call('RPUSH', list_key, ARGV[3])
  newest = 1
else
  redis.call('LINSERT', list_key, 'AFTER', all[at], ARGV[3])
end
for i = 1, #KEYS do
  redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[1]))
end
return newest
"""


class StoredItemError(ValueError):
    """A stored history item is not valid JSON of a schema version this code reads."""


def _valid_text(text: str) -> str:
    """The text with lone surrogates replaced, so it encodes as UTF-8 for Redis and Lua."""
    return text.encode("utf-8", "replace").decode("utf-8")


def new_message_id() -> str:
    """A fresh id for an answer the API named no message for; it is kept with the answer."""
    return f"msg_{secrets.token_hex(12)}"


def encode_item(item: HistoryItem, *, starts_turn: bool = False) -> str:
    """The stored JSON form of one history item."""
    text = _valid_text(item.text)
    record: dict[str, Any] = {
        "v": SCHEMA_VERSION,
        "role": item.role,
        "text": text,
        "speaker": _valid_text(item.speaker),
        "id": _valid_text(item.item_id),
        "status": item.status,
        "ref": _valid_text(item.ref),
        "n": len(text),
    }
    if starts_turn:
        record["start"] = 1
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def _string_field(record: dict[str, Any], name: str) -> str:
    """A string field of a stored record; missing means empty."""
    value = record.get(name, "")
    if not isinstance(value, str):
        raise StoredItemError(f"field {name!r} is not a string")
    return value


def decode_item(raw: bytes | str) -> HistoryItem:
    """The history item a stored JSON string holds; StoredItemError if it cannot be read."""
    try:
        record = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise StoredItemError(f"not valid JSON ({error})") from None
    if not isinstance(record, dict):
        raise StoredItemError("not a JSON object")
    if record.get("v") != SCHEMA_VERSION:
        raise StoredItemError(f"unknown schema version {record.get('v')!r}")
    role, status = record.get("role"), record.get("status", "completed")
    if role not in _ROLES:
        raise StoredItemError(f"unknown role {role!r}")
    if status not in _STATUSES:
        raise StoredItemError(f"unknown status {status!r}")
    return HistoryItem(
        role=cast(Role, role),
        text=_string_field(record, "text"),
        speaker=_string_field(record, "speaker"),
        item_id=_string_field(record, "id"),
        status=cast(ItemStatus, status),
        ref=_string_field(record, "ref"),
    )


def _with_id(item: HistoryItem) -> HistoryItem:
    """The item, with a new id when it is an answer that has none."""
    if item.role != "assistant" or item.item_id:
        return item
    return dataclasses.replace(item, item_id=new_message_id())


def turn_items(
    user_items: Sequence[HistoryItem],
    answer_text: str,
    *,
    status: ItemStatus,
    message_id: str | None,
    ref: str = "",
) -> list[HistoryItem]:
    """What one turn leaves in history: its user items, then the answer if any text came."""
    items = list(user_items)
    if answer_text:
        items.append(
            HistoryItem(
                role="assistant",
                text=answer_text,
                item_id=message_id or "",
                status=status,
                ref=ref,
            )
        )
    return items


class HistoryStore:
    """The stored history of every conversation, trimmed to limits and expiring when idle.

    `companion_keys` names other per-conversation keys (`ConversationKey.sub(name)`) whose TTL
    every write refreshes along with the items, so a conversation's keys expire together.
    `trim_to` is the share of each limit a trim leaves at most (a half; 1.0 would drop only
    as much as needed, one exchange per turn, and defeat prompt caches).
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        max_items: int,
        max_chars: int,
        ttl_seconds: int,
        companion_keys: Sequence[str] = ("settings",),
        trim_to: float = TRIM_TO,
    ) -> None:
        if max_items < 1 or max_chars < 1 or ttl_seconds < 1:
            raise ValueError("max_items, max_chars and ttl_seconds must all be at least 1.")
        if not 0 <= trim_to <= 1:
            raise ValueError("trim_to must be between 0 and 1.")
        self._redis = redis
        self.max_items = max_items
        self.max_chars = max_chars
        self.ttl_seconds = ttl_seconds
        self.trim_to_items = int(max_items * trim_to)
        self.trim_to_chars = int(max_chars * trim_to)
        self._companion_keys = tuple(companion_keys)
        self._append_script = redis.register_script(_APPEND_LUA)
        self._replace_tail_script = redis.register_script(_REPLACE_TAIL_LUA)
        self._insert_after_script = redis.register_script(_INSERT_AFTER_LUA)

    def keys_of(self, key: ConversationKey) -> list[str]:
        """Every Redis key of a conversation this store writes or keeps alive, items first."""
        return [key.items, *(key.sub(name) for name in self._companion_keys)]

    @property
    def _ttl_ms(self) -> int:
        """The TTL every write sets, in milliseconds."""
        return self.ttl_seconds * 1000

    async def load(self, key: ConversationKey) -> list[HistoryItem]:
        """The conversation's items, oldest first, starting with a user item; bad items skipped."""
        raw_items = await self._redis.lrange(key.items, 0, -1)  # type: ignore[misc]
        items = self._decode_all(key, raw_items)
        first_user = next((i for i, item in enumerate(items) if item.role == "user"), len(items))
        return items[first_user:]

    @staticmethod
    def _decode_all(key: ConversationKey, raw_items: Sequence[bytes | str]) -> list[HistoryItem]:
        """Decode stored items, logging and skipping each one that cannot be read."""
        items = []
        for position, raw in enumerate(raw_items):
            try:
                items.append(decode_item(raw))
            except StoredItemError as error:
                log.warning("Skipped history item %d of %s: %s", position, key, error)
        return items

    async def append(
        self, key: ConversationKey, items: Sequence[HistoryItem], *, trim: bool = True
    ) -> int:
        """Append one turn's items atomically, trim in blocks past a limit, refresh the TTL.

        A turn may be stored in two appends: its user items when it starts (`trim=False`, so
        the request about to be sent is exactly what is stored), then its answer (maybe none),
        which trims as if the whole exchange had come at once. Returns how many old items the
        append trimmed. An answer without an id gets one here, so every later request sends
        it with the same id.
        """
        if not items and not trim:
            return 0
        encoded = [encode_item(_with_id(item), starts_turn=i == 0) for i, item in enumerate(items)]
        limits = [self.max_items, self.max_chars, self.trim_to_items, self.trim_to_chars]
        if not trim:
            limits = [_NO_LIMIT] * len(limits)
        args: list[int | str] = [*limits, self._ttl_ms, *encoded]
        trimmed = await self._append_script(keys=self.keys_of(key), args=args)
        return int(trimmed)

    async def clear(self, key: ConversationKey) -> None:
        """Forget the conversation's history (other per-conversation keys stay)."""
        await self._redis.delete(key.items)

    async def replace_last_assistant(self, key: ConversationKey, item: HistoryItem) -> bool:
        """Replace the assistant items after the last user item with `item`; False if none."""
        if item.role != "assistant":
            raise ValueError("Only an assistant item can replace the last answer.")
        args: list[int | str] = [self._ttl_ms, encode_item(_with_id(item))]
        removed = await self._replace_tail_script(keys=self.keys_of(key), args=args)
        return bool(removed)

    async def pop_last_answer(self, key: ConversationKey) -> list[HistoryItem]:
        """Remove and return the assistant items after the last user item (oldest first)."""
        removed = await self._replace_tail_script(keys=self.keys_of(key), args=[self._ttl_ms])
        return self._decode_all(key, removed)

    async def insert_after(self, key: ConversationKey, ref: str, item: HistoryItem) -> bool | None:
        """Put an answer right after the last user item with `ref` (the end, for an empty ref).

        True when it is now the newest item, False when later turns follow it, None when that
        question is no longer stored (nothing is written then). No trimming: the next turn's
        append trims."""
        args: list[int | str] = [self._ttl_ms, ref, encode_item(_with_id(item))]
        placed = int(await self._insert_after_script(keys=self.keys_of(key), args=args))
        return None if placed < 0 else placed == 1
