"""The one-screen help text, shown by /help and by an empty mention."""

from __future__ import annotations

HELP_TEXT = """\
**I'm an AI assistant.** Everyone in a channel shares one conversation with me, and I know who \
said what.

**Talk to me**
• Mention me (or reply to one of my messages) in any channel.
• `/chat prompt` starts a thread; every message in it continues the talk, no mention needed.
• `/ask prompt` answers here; add `private: True` to get an answer only you can see (kept \
out of the channel's history), or `web: True` to search the web and list the sources.

**While I answer**: press **Stop** or use `/stop`; the text so far stays. **Regenerate** on my \
latest answer asks again.

**Manage**
• `/reset` forgets this channel's or thread's conversation.
• `/model` and `/system` show (or, with Manage Server, set) the model and instructions for \
this channel or the whole server.
• `/reasoning`, `/web` and `/fallbacks` do the same for how hard the model thinks, web search \
with sources, and models to try when the first is unavailable; `/footer` adds tokens and cost \
under every answer in the server.
• `/settings` shows what is in force here and where it comes from.
• `/usage` shows today's and this month's answers, tokens and cost (only to you); \
`/limits` and `/access` (Manage Server) set the daily budget and who may use me where.
• `/forget` removes your messages from every conversation of this server.
• `/memory list`, `search` and `forget` show and remove the facts I remember about this \
server (when its memory is on); a fact told in a private channel stays in that channel.

I never ping anyone, and long pasted text files are read as part of your message. A deleted \
message is forgotten, an edited one is read as edited."""
