"""Per-conversation history in Redis: atomic appends, whole-exchange trimming, TTL, versioned items.

Each item is one JSON string in the list `<tag>:items`, oldest first. Besides the fields of
`HistoryItem` it holds the schema version `v`, the text length in characters `n` (Lua counts
bytes, so the limit on characters is read from here) and `start: 1` on the first item of every
append, so that trimming drops whole exchanges and never splits one. A user item with images
also holds `images`, a list of `{channel, message, attachment, filename, type}` objects; the key
is absent otherwise, so items without images keep the exact form they always had, and readers
that predate images still read the item (without its images).

Trimming is done in blocks, for providers' prompt caches: a cache serves only a byte-identical
prefix of an earlier request, so dropping one old exchange per turn would make every turn past
the limit pay for its whole history again. Instead, when an append takes a conversation past
either limit (`max_items`, `max_chars`), the oldest whole exchanges are dropped until what is
left fits in half of each limit; the following turns then only add to the end (and so extend
the previous request) until the limit is passed again. A conversation therefore holds at most
the limits, and right after a trim at least the newest whole exchanges that fit in half of
them. The newest turn is never dropped, even when it alone is bigger than the limits.

Items can also be taken out by platform message id (`ref`; an answer also lists every message
that shows it in `refs`) or by author, for deleted messages and forgotten members, and a user
item's text can be replaced (an edited message). The history stays valid for the API: an answer
whose turn is left without any user item goes too (it answered nothing that is left, and may
repeat it), so no answer is ever left without a question before it; a turn that loses its first
item passes its `start` mark to the first item it keeps. Each of these runs as one script on
one conversation's keys and keeps the list's TTL. Every item that stays is sent with the same
bytes as before, so only the first request after a removal misses the provider's prompt cache
from the removed item on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

from bot.core.events import HistoryItem, ItemStatus, Role
from bot.core.images import ImageRef
from bot.core.keys import ConversationKey, ServerKey
from bot.core.redis_client import RedisClient, register_script

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

# KEYS: the items list. ARGV: "refs" then platform message ids, or "author" then a user id.
# Removes the items whose `ref` (or, for an answer, any of its `refs`) is one of the ids, or
# the user items of that author; then the answers of every turn left without a user item (an
# answer to nothing, which may repeat what was removed). A turn that lost its first item gets
# its `start` mark on the first item it keeps, so trimming still drops whole turns. The list
# keeps its TTL; the items that stay keep their bytes. Returns {user items, answers} removed.
_REMOVE_LUA: Final = """
local list_key, mode = KEYS[1], ARGV[1]
local raw = redis.call('LRANGE', list_key, 0, -1)
local wanted = {}
for i = 2, #ARGV do wanted[ARGV[i]] = true end
local function matches(item)
  if mode == 'author' then
    return item.role == 'user' and type(item.author) == 'string' and wanted[item.author] == true
  end
  if type(item.ref) == 'string' and wanted[item.ref] then return true end
  if type(item.refs) == 'table' then
    for _, ref in ipairs(item.refs) do
      if wanted[ref] then return true end
    end
  end
  return false
end
local items, turn, drop, turn_of = {}, 0, {}, {}
local lost, kept_user, marked_turn = {}, {}, {}
for i = 1, #raw do
  local ok, item = pcall(cjson.decode, raw[i])
  if not (ok and type(item) == 'table') then item = {} end
  local starts = item.start == 1 and item.role == 'user'
  if i == 1 or starts then
    turn = turn + 1
    marked_turn[turn] = starts
  end
  items[i], turn_of[i] = item, turn
  drop[i] = matches(item)
  if drop[i] then lost[turn] = true elseif item.role == 'user' then kept_user[turn] = true end
end
local users, answers = 0, 0
for i = 1, #raw do
  local t = turn_of[i]
  if items[i].role == 'assistant' and lost[t] and not kept_user[t] then drop[i] = true end
  if drop[i] then
    if items[i].role == 'assistant' then answers = answers + 1 else users = users + 1 end
  end
end
if users + answers == 0 then return {0, 0} end
local ttl = redis.call('PTTL', list_key)
redis.call('DEL', list_key)
local seen = {}
for i = 1, #raw do
  if not drop[i] then
    local t, value = turn_of[i], raw[i]
    if not seen[t] and marked_turn[t] and items[i].start ~= 1 then
      items[i].start = 1
      value = cjson.encode(items[i])
    end
    seen[t] = true
    redis.call('RPUSH', list_key, value)
  end
end
if ttl > 0 then redis.call('PEXPIRE', list_key, ttl) end
return {users, answers}
"""

# KEYS: the items list. ARGV: the platform message id, the new text, its length in characters.
# Replaces the text of the user items with that `ref`, keeping their place and the list's TTL.
_EDIT_LUA: Final = """
local raw = redis.call('LRANGE', KEYS[1], 0, -1)
local edited = 0
for i = 1, #raw do
  local ok, item = pcall(cjson.decode, raw[i])
  if ok and type(item) == 'table' and item.role == 'user' and item.ref == ARGV[1] then
    item.text, item.n = ARGV[2], tonumber(ARGV[3])
    redis.call('LSET', KEYS[1], i - 1, cjson.encode(item))
    edited = edited + 1
  end
end
return edited
"""

# KEYS: the items list. ARGV: an answer's item id, then the ids of the messages that show it.
# The newest answer with that id gets the first message id as `ref` and all of them as `refs`.
_SET_REFS_LUA: Final = """
local raw = redis.call('LRANGE', KEYS[1], 0, -1)
for i = #raw, 1, -1 do
  local ok, item = pcall(cjson.decode, raw[i])
  if ok and type(item) == 'table' and item.role == 'assistant' and item.id == ARGV[1] then
    item.ref = ARGV[2]
    local refs = {}
    for j = 2, #ARGV do refs[#refs + 1] = ARGV[j] end
    if #refs > 1 then item.refs = refs else item.refs = nil end
    redis.call('LSET', KEYS[1], i - 1, cjson.encode(item))
    return 1
  end
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Removed:
    """How many items a removal took out of a conversation."""

    user_items: int = 0
    answers: int = 0

    def __add__(self, other: Removed) -> Removed:
        """The counts of two removals together."""
        return Removed(self.user_items + other.user_items, self.answers + other.answers)

    @property
    def total(self) -> int:
        """All items removed."""
        return self.user_items + self.answers


# KEYS: a server's index of conversations. ARGV: the channel, now (ms), the history TTL (ms).
# Notes the channel as written now (an entry scored +inf stays so), drops entries idle past the
# TTL, and lets the index expire with its newest conversation unless a +inf entry is in it.
_INDEX_LUA: Final = """
local now, ttl = tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], 'GT', now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - ttl))
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if top[2] == 'inf' then
  redis.call('PERSIST', KEYS[1])
else
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return 1
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
    if item.author:
        record["author"] = _valid_text(item.author)
    if item.images:
        record["images"] = [_encode_image(ref) for ref in item.images]
    if starts_turn:
        record["start"] = 1
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def _encode_image(ref: ImageRef) -> dict[str, str]:
    """The stored form of one image reference."""
    return {
        "channel": _valid_text(ref.channel),
        "message": _valid_text(ref.message),
        "attachment": _valid_text(ref.attachment),
        "filename": _valid_text(ref.filename),
        "type": _valid_text(ref.content_type),
    }


def _decode_images(record: dict[str, Any]) -> tuple[ImageRef, ...]:
    """The image references of a stored record; none when the field is absent."""
    stored = record.get("images", [])
    if not isinstance(stored, list) or not all(isinstance(ref, dict) for ref in stored):
        raise StoredItemError("field 'images' is not a list of objects")
    return tuple(
        ImageRef(
            channel=_string_field(ref, "channel"),
            message=_string_field(ref, "message"),
            attachment=_string_field(ref, "attachment"),
            filename=_string_field(ref, "filename"),
            content_type=_string_field(ref, "type"),
        )
        for ref in stored
    )


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
        author=_string_field(record, "author"),
        images=_decode_images(record),
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

    Every append also notes the channel in its server's index of conversations
    (`ServerKey.conversations`, scored by the time of the last write from `clock`), so that a
    member can be forgotten, or a server deleted, without scanning the keyspace.
    """

    def __init__(
        self,
        redis: RedisClient,
        *,
        max_items: int,
        max_chars: int,
        ttl_seconds: int,
        companion_keys: Sequence[str] = ("settings",),
        trim_to: float = TRIM_TO,
        clock: Callable[[], float] = time.time,
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
        self._clock = clock
        self._append_script = register_script(redis, _APPEND_LUA)
        self._replace_tail_script = register_script(redis, _REPLACE_TAIL_LUA)
        self._insert_after_script = register_script(redis, _INSERT_AFTER_LUA)
        self._remove_script = register_script(redis, _REMOVE_LUA)
        self._edit_script = register_script(redis, _EDIT_LUA)
        self._set_refs_script = register_script(redis, _SET_REFS_LUA)
        self._index_script = register_script(redis, _INDEX_LUA)

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
        # A turn starts at its first user item; an answer stored on its own continues its turn.
        encoded = [
            encode_item(_with_id(item), starts_turn=i == 0 and item.role == "user")
            for i, item in enumerate(items)
        ]
        limits = [self.max_items, self.max_chars, self.trim_to_items, self.trim_to_chars]
        if not trim:
            limits = [_NO_LIMIT] * len(limits)
        args: list[int | str] = [*limits, self._ttl_ms, *encoded]
        trimmed, _ = await asyncio.gather(
            self._append_script(keys=self.keys_of(key), args=args), self._note_conversation(key)
        )
        return int(trimmed)

    async def _note_conversation(self, key: ConversationKey) -> None:
        """Note the conversation in its server's index; drop entries idle past the TTL.

        An entry scored +inf (a channel with settings of its own, which do not expire) stays,
        and keeps the index from expiring.
        """
        index = ServerKey(key.guild).conversations
        args: list[int | str] = [key.channel, int(self._clock() * 1000), self._ttl_ms]
        await self._index_script(keys=[index], args=args)

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

    async def remove_messages(self, key: ConversationKey, message_ids: Iterable[str]) -> Removed:
        """Remove the items shown by these platform messages (deleted, one or in bulk).

        A user item goes when its message goes; an answer goes when any message showing it
        goes (see `set_answer_refs`). A turn left without a user item loses its answer too.
        """
        ids = [i for i in dict.fromkeys(message_ids) if i]
        if not ids:
            return Removed()
        return await self._remove(key, "refs", ids)

    async def forget_author(self, key: ConversationKey, author: str) -> Removed:
        """Remove every user item of `author` from one conversation, and the answers to them."""
        if not author:
            raise ValueError("An author id is needed to forget someone.")
        return await self._remove(key, "author", [author])

    async def forget_author_in(
        self, keys: Sequence[ConversationKey], author: str, *, batch: int = 100
    ) -> list[Removed]:
        """`forget_author` in many conversations, pipelined `batch` at a time; one count each.

        Each conversation is its own script call (its own Cluster slot), atomic on its own. The
        pipeline sends the script's text (EVAL): a cluster pipeline refuses EVALSHA, and the
        nodes of a cluster need not have loaded the script yet.
        """
        if not author:
            raise ValueError("An author id is needed to forget someone.")
        results: list[Removed] = []
        for start in range(0, len(keys), batch):
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys[start : start + batch]:
                    pipe.eval(_REMOVE_LUA, 1, key.items, "author", author)
                replies = await pipe.execute()
            results += [Removed(int(users), int(answers)) for users, answers in replies]
        return results

    async def _remove(self, key: ConversationKey, mode: str, values: Sequence[str]) -> Removed:
        """Run the removal script for one conversation."""
        users, answers = await self._remove_script(keys=[key.items], args=[mode, *values])
        return Removed(user_items=int(users), answers=int(answers))

    async def edit_message(self, key: ConversationKey, message_id: str, text: str) -> int:
        """Replace the text of the user item from this platform message (it was edited).

        Returns how many items changed. Empty text removes the item instead, as a deletion
        would. Answers are never edited here: the platform edits them while they stream.
        """
        if not message_id:
            return 0
        if not text:
            removed = await self.remove_messages(key, [message_id])
            return removed.user_items
        text = _valid_text(text)
        edited = await self._edit_script(keys=[key.items], args=[message_id, text, len(text)])
        return int(edited)

    async def set_answer_refs(
        self, key: ConversationKey, item_id: str, message_ids: Sequence[str]
    ) -> bool:
        """Record the platform messages that show a stored answer; the first becomes its `ref`.

        Call it once an answer's messages are known (and again after Regenerate), so that
        deleting any of them removes the answer. False when no such answer is stored.
        """
        ids = [i for i in message_ids if i]
        if not item_id or not ids:
            return False
        return bool(await self._set_refs_script(keys=[key.items], args=[item_id, *ids]))

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
