"""The core never imports discord: the Discord layer depends on it, not the other way."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "bot" / "core"


def _imported_modules(path: Path) -> set[str]:
    """Every module name a source file imports, at any depth of the file."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_core_exists() -> None:
    """The walk below looks at real files, so an emptied core cannot pass by accident."""
    assert len(list(CORE.rglob("*.py"))) >= 3


def test_core_never_imports_discord() -> None:
    """No module under bot/core imports discord or the bot's Discord layer."""
    offenders = []
    for path in sorted(CORE.rglob("*.py")):
        for name in _imported_modules(path):
            top = name.split(".")[0]
            if top == "discord" or (name.startswith("bot.") and not name.startswith("bot.core")):
                offenders.append(f"{path.relative_to(CORE.parent.parent)} imports {name}")
    assert offenders == []
