"""Slash commands by feature: conversation commands (/ask /chat /reset /stop /help), settings
commands (/model /system /settings), answer choices (/reasoning /web /fallbacks /footer),
guard rails (/usage /limits /access /forget) and the server memory (/memory)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.frontend.commands.choices import ChoiceCommands
from bot.frontend.commands.conversation import ConversationCommands
from bot.frontend.commands.guard import GuardCommands
from bot.frontend.commands.memory import MemoryCommands
from bot.frontend.commands.settings import SettingsCommands

if TYPE_CHECKING:
    from bot.frontend.client import AssistantBot


async def setup(bot: AssistantBot) -> None:
    """Load the slash commands."""
    await bot.add_cog(ConversationCommands(bot))
    await bot.add_cog(SettingsCommands(bot))
    await bot.add_cog(GuardCommands(bot))
    await bot.add_cog(ChoiceCommands(bot))
    await bot.add_cog(MemoryCommands(bot))
