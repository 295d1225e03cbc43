"""`python -m bot`: run the Discord bot, or `ask` / `reset` a conversation from a terminal."""

from __future__ import annotations

import sys

from bot.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
