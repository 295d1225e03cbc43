"""/memory: what the bot remembers about this server, for its people.

Everyone can list and search the facts they may see (the public ones, and those told in
channels they can view now), and forget their own; Manage Server forgets any, clears all
(after a confirmation button) and turns the server's memory on or off. Every answer is private
and under 2,000 characters; facts are shown as quoted data that cannot format or ping.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import discord
from discord import app_commands

from bot.core.renderer import DEFAULT_LIMIT
from bot.core.tools.memory_store import Fact, MemoryStore, fact_id_of
from bot.frontend.commands.common import CommandCog, Interaction
from bot.frontend.places import viewer_of

if TYPE_CHECKING:
    from bot.frontend.client import AssistantBot

log = logging.getLogger(__name__)

NAME_CHARS = 32
CONFIRM_SECONDS = 120.0
SERVERS_ONLY = "Server memory exists in servers only."
NEEDS_MANAGE_SERVER = "{action} needs the Manage Server permission."
OFF_EVERYWHERE = (
    "The bot's owner has memory turned off (MEMORY_ENABLED): nothing is remembered or recalled "
    "anywhere until they turn it on."
)


def quoted(text: str) -> str:
    """A fact as data: markdown and mentions escaped, so it shows as written and pings nobody."""
    return discord.utils.escape_mentions(discord.utils.escape_markdown(text))


def clip(text: str, limit: int) -> str:
    """At most `limit` characters, with an ellipsis when cut (never ending in a lone escape)."""
    if len(text) <= limit:
        return text
    cut = text[: max(limit - 1, 0)]
    if (len(cut) - len(cut.rstrip("\\"))) % 2:
        cut = cut[:-1]
    return cut + "…"


def fact_head(fact: Fact) -> str:
    """A fact's first line: its id, who told it, when, where and who may hear it."""
    name = quoted(clip(fact.by_name, NAME_CHARS))
    where = f"<#{fact.channel}>"
    if fact.public:
        seen = "public"
    elif fact.thread == "private":
        seen = "🔒 private to that thread"
    else:
        seen = f"🔒 private to <#{fact.scope}>"
    return f"**#{fact.id}** · {name} · {fact.told_at} · {where} · {seen}"


def listing(header: str, facts: Sequence[Fact], *, limit: int = DEFAULT_LIMIT) -> str:
    """A header and the facts, each as its head line and its quoted text, in at most `limit`
    characters: the texts share what the header and head lines leave."""
    heads = [fact_head(fact) for fact in facts]
    fixed = len(header) + sum(len(head) + len("\n\n> ") for head in heads)
    share = (limit - fixed) // max(len(facts), 1)
    parts = [header]
    for head, fact in zip(heads, facts, strict=True):
        parts.append(f"{head}\n> {clip(quoted(fact.text), max(share, 1))}")
    return clip("\n".join(parts), limit)


def forget_reply(outcome: str, fact_id: str) -> str:
    """What /memory forget answers for a store outcome."""
    if outcome == "forgotten":
        return f"Forgot fact #{fact_id}."
    if outcome == "not_yours":
        return (
            f"Only the member who told fact #{fact_id}, or someone with Manage Server, "
            "can remove it."
        )
    return f"There is no fact #{fact_id} that you can see."


class ClearConfirmation(discord.ui.View):
    """Asks the member who ran /memory clear to confirm; only they can press."""

    def __init__(self, store: MemoryStore, guild: str, owner_id: int) -> None:
        super().__init__(timeout=CONFIRM_SECONDS)
        self.store = store
        self.guild = guild
        self.owner_id = owner_id

    async def interaction_check(self, interaction: Interaction) -> bool:
        """Only the member who asked to clear may confirm (anyone else is told so)."""
        if interaction.user.id == self.owner_id:
            return True
        await interaction.response.send_message(
            "Only the member who asked to clear the memory can confirm.", ephemeral=True
        )
        return False

    @discord.ui.button(label="Forget everything", style=discord.ButtonStyle.danger)
    async def confirm(self, interaction: Interaction, _button: discord.ui.Button[Any]) -> None:
        """Clear the server's memory and say how many facts went."""
        self.stop()
        count = await self.store.clear(self.guild)
        log.info("Server memory of %s cleared (%d facts).", self.guild, count)
        noun = "fact" if count == 1 else "facts"
        await interaction.response.edit_message(
            content=f"Forgot all {count} {noun} of this server's memory.", view=None
        )

    @discord.ui.button(label="Cancel", style=discord.ButtonStyle.secondary)
    async def cancel(self, interaction: Interaction, _button: discord.ui.Button[Any]) -> None:
        """Leave the memory as it is."""
        self.stop()
        await interaction.response.edit_message(content="Nothing was forgotten.", view=None)


class MemoryCommands(CommandCog):
    """The /memory group: list, search, forget, clear and the server's switch."""

    memory = app_commands.Group(
        name="memory", description="What the bot remembers about this server", guild_only=True
    )

    def __init__(self, bot: AssistantBot) -> None:
        self.bot = bot
        self.store = bot.memory.store

    async def _member(self, interaction: Interaction) -> tuple[str, discord.Member] | None:
        """The server and the member using the command; a refusal outside a server."""
        guild, member = interaction.guild, interaction.user
        if guild is None or not isinstance(member, discord.Member):
            await interaction.response.send_message(SERVERS_ONLY, ephemeral=True)
            return None
        return str(guild.id), member

    def _off_note(self) -> str:
        """A line saying memory is off for the whole bot, when it is."""
        return "" if self.bot.memory.enabled else f"\n-# {OFF_EVERYWHERE}"

    @memory.command(name="list", description="The facts the bot remembers that you can see")
    @app_commands.describe(page="Page number (10 facts a page, newest first)")
    async def list_facts(
        self, interaction: Interaction, page: app_commands.Range[int, 1, 1000] = 1
    ) -> None:
        """One page of the facts this member may see, newest first (private)."""
        found = await self._member(interaction)
        if found is None:
            return
        guild, member = found
        assert interaction.guild is not None
        viewer = viewer_of(interaction.guild, member)
        shown = await self.store.page(guild, viewer, page - 1)
        if not shown.total:
            text = "The bot remembers nothing here that you can see." + self._off_note()
            await interaction.response.send_message(text, ephemeral=True)
            return
        header = (
            f"**Server memory**: {shown.total} facts you can see · page {shown.page + 1} of "
            f"{shown.pages}{self._off_note()}"
        )
        await interaction.response.send_message(listing(header, shown.facts), ephemeral=True)

    @memory.command(name="search", description="Search the facts the bot remembers")
    @app_commands.describe(query="Words to look for")
    async def search(
        self, interaction: Interaction, query: app_commands.Range[str, 1, 200]
    ) -> None:
        """The facts this member may see that best match the query (private)."""
        found = await self._member(interaction)
        if found is None:
            return
        guild, member = found
        assert interaction.guild is not None
        facts = await self.store.search(guild, viewer_of(interaction.guild, member), query)
        if not facts:
            await interaction.response.send_message(
                "No fact you can see matches that.", ephemeral=True
            )
            return
        header = f"**Server memory**: {len(facts)} best matches"
        await interaction.response.send_message(listing(header, facts), ephemeral=True)

    @memory.command(name="forget", description="Make the bot forget one fact by its id")
    @app_commands.describe(fact_id="The fact's number, as /memory list shows it")
    async def forget(self, interaction: Interaction, fact_id: str) -> None:
        """Forget a fact: one's own, or any with Manage Server (only facts one can see)."""
        found = await self._member(interaction)
        if found is None:
            return
        guild, member = found
        clean = fact_id_of(fact_id)
        if not clean:
            await interaction.response.send_message(
                "A fact id is a number, like 12 (see /memory list).", ephemeral=True
            )
            return
        assert interaction.guild is not None
        viewer = viewer_of(interaction.guild, member)
        outcome = await self.store.forget_as(guild, viewer, clean)
        await interaction.response.send_message(forget_reply(outcome, clean), ephemeral=True)

    @memory.command(name="clear", description="Forget everything the bot remembers here")
    async def clear(self, interaction: Interaction) -> None:
        """Ask for confirmation, then forget every fact of the server (Manage Server)."""
        found = await self._member(interaction)
        if found is None:
            return
        guild, _member = found
        if not interaction.permissions.manage_guild:
            await interaction.response.send_message(
                NEEDS_MANAGE_SERVER.format(action="Clearing the memory"), ephemeral=True
            )
            return
        total = len(await self.store.facts(guild))
        view = ClearConfirmation(self.store, guild, interaction.user.id)
        await interaction.response.send_message(
            f"Forget all {total} facts the bot remembers about this server, in every channel? "
            "This cannot be undone.",
            view=view,
            ephemeral=True,
        )

    @memory.command(name="switch", description="Turn the server memory on or off")
    @app_commands.describe(state="on: the bot may remember and recall facts here")
    async def switch(self, interaction: Interaction, state: Literal["on", "off"]) -> None:
        """Turn this server's memory on or off (Manage Server), said in the channel; the facts
        stay either way."""
        found = await self._member(interaction)
        if found is None:
            return
        guild, _member = found
        if not interaction.permissions.manage_guild:
            await interaction.response.send_message(
                NEEDS_MANAGE_SERVER.format(action="Turning the memory on or off"), ephemeral=True
            )
            return
        await self.store.set_enabled(guild, state == "on")
        if state == "on":
            text = "Server memory is on: I may remember what members tell me and recall it."
            if not self.bot.memory.enabled:
                text += f"\n-# {OFF_EVERYWHERE}"
        else:
            text = "Server memory is off: I neither remember nor recall; kept facts stay."
        await interaction.response.send_message(text)
