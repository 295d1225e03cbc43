"""The layers' rules, read from the source: the core never imports discord or the Discord layer,
and no module of the bot imports itself back through others (TYPE_CHECKING imports included)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BOT = ROOT / "bot"
CORE = BOT / "core"


def _module_name(path: Path, root: Path = ROOT) -> str:
    """The dotted module name of a source file under `root` (the repository's by default)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, root: Path = ROOT) -> set[str]:
    """Every name a source file imports, at any depth of the file (so under TYPE_CHECKING too).

    Relative imports are resolved; `from a import b` yields both `a` and `a.b`, since `b` may
    be a module."""
    package = _module_name(path, root).split(".")
    if path.name != "__init__.py":
        package.pop()
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base_parts = package[: len(package) - node.level + 1] if node.level else []
            base = ".".join([*base_parts, *([node.module] if node.module else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _relative_imports(path: Path) -> list[int]:
    """Line numbers of relative imports in a source file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [n.lineno for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level]


def import_graph(root: Path) -> dict[str, set[str]]:
    """Each module of the package at `root` and the modules of that package it imports."""
    modules = {_module_name(path, root.parent): path for path in sorted(root.rglob("*.py"))}
    return {
        name: {imported for imported in _imports(path, root.parent) if imported in modules} - {name}
        for name, path in modules.items()
    }


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected group of modules (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_core_exists() -> None:
    """The walk below looks at real files, so an emptied core cannot pass by accident."""
    assert len(list(CORE.rglob("*.py"))) >= 3


def test_core_never_imports_discord() -> None:
    """No module under bot/core imports discord, prometheus_client (metrics reach the core only
    through its observer protocol) or the bot's other layers (Discord, ops)."""
    offenders = []
    for path in sorted(CORE.rglob("*.py")):
        for name in _imports(path):
            top = name.split(".")[0]
            outside = name.startswith("bot.") and not name.startswith("bot.core")
            if top in {"discord", "prometheus_client"} or outside:
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []


def test_core_has_no_relative_imports() -> None:
    """The core imports by absolute name only, so the check above sees every import."""
    offenders = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in sorted(CORE.rglob("*.py"))
        for line in _relative_imports(path)
    ]
    assert offenders == []


def test_the_checks_see_every_form_of_import(tmp_path: Path) -> None:
    """`from bot import frontend`, relative imports and TYPE_CHECKING imports all count."""
    core = tmp_path / "bot" / "core"
    core.mkdir(parents=True)
    source = (
        "from typing import TYPE_CHECKING\n"
        "from bot import frontend\n"
        "from .. import wiring\n"
        "if TYPE_CHECKING:\n"
        "    from bot.frontend.client import AssistantBot\n"
    )
    (core / "x.py").write_text(source, encoding="utf-8")
    names = _imports(core / "x.py", tmp_path)
    assert {"bot.frontend", "bot.wiring", "bot.frontend.client"} <= names
    assert _relative_imports(core / "x.py") == [3]


def test_bot_has_no_import_cycle() -> None:
    """No module of bot/ reaches itself through its imports, TYPE_CHECKING ones included."""
    graph = import_graph(BOT)
    assert "bot.frontend.buttons" in graph
    assert find_cycles(graph) == []


def test_a_cycle_is_found() -> None:
    """The cycle finder reports a loop through three modules (so the test above can fail)."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c"]]
