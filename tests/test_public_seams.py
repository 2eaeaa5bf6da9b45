"""Other libraries are used through their public API only, and modules keep their privates.

A private name is one that starts with ``_`` and is not a dunder. In
``market_client/`` no module may

* import from another package's private module (``from trio._core import ...``);
* name a private attribute in ``getattr``/``hasattr``/``setattr``/``delattr``, or
  read ``obj._name`` (unless ``obj`` is ``self``, ``cls`` or ``super()``), where the
  module itself does not define ``_name``: a module reads only its own privates.

The one exception is ``backtest/_clock.py``, where no public API exists
(asyncio's timer heap, Trio's scheduling order); its own tests fail loudly
when a loop changes.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "market_client"
EXEMPT = {PACKAGE / "backtest" / "_clock.py"}
ATTR_FUNCTIONS = {"getattr", "hasattr", "setattr", "delattr"}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def defined_privates(tree: ast.AST) -> set[str]:
    """The private names a module defines: functions, classes, assignments, attributes of self."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "__slots__" for target in node.targets
        ):
            names.update(
                c.value
                for c in ast.walk(node.value)
                if isinstance(c, ast.Constant) and isinstance(c.value, str)
            )
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name)
    return {name for name in names if _private(name)}


def violations(source: str, where: str = "<string>") -> list[str]:
    """Every use of a private name that the rules above forbid in ``source``."""
    tree = ast.parse(source)
    own = defined_privates(tree)
    found: list[str] = []
    for node in ast.walk(tree):
        line = f"{where}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            parts = node.module.split(".")
            if parts[0] != "market_client" and any(_private(p) for p in parts):
                found.append(f"{line}: from {node.module} import ...")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] != "market_client" and any(_private(p) for p in parts):
                    found.append(f"{line}: import {alias.name}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ATTR_FUNCTIONS
            and len(node.args) > 1
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _private(node.args[1].value)
            and node.args[1].value not in own
        ):
            found.append(f"{line}: {ast.unparse(node)}")
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            base = node.value
            if isinstance(base, ast.Name) and base.id in ("self", "cls"):
                continue
            if (
                isinstance(base, ast.Call)
                and isinstance(base.func, ast.Name)
                and base.func.id == "super"
            ):
                continue
            if node.attr not in own:
                found.append(f"{line}: {ast.unparse(node)}")
    return sorted(found, key=lambda v: int(v.split(":")[1]))


def test_no_module_uses_a_private_name_of_another_library_or_module() -> None:
    found: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path not in EXEMPT:
            found += violations(path.read_text(), str(path.relative_to(PACKAGE.parent)))
    assert found == []


def test_the_check_finds_each_kind_of_private_use() -> None:
    source = """
import asyncio
import trio._core
from anyio._core._eventloop import get_async_backend

loop = asyncio._get_running_loop()
queue = getattr(channel, "_state", None)
hasattr(ws, "_recv_channel")
market._resync_queue.clear()
"""
    assert [v.split(": ", 1)[1] for v in violations(source)] == [
        "import trio._core",
        "from anyio._core._eventloop import ...",
        "asyncio._get_running_loop",
        "getattr(channel, '_state', None)",
        "hasattr(ws, '_recv_channel')",
        "market._resync_queue",
    ]


def test_a_module_may_read_its_own_privates() -> None:
    source = """
class Box:
    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items = []

def peek(box: Box) -> object:
    return box._items, super()._x if False else None, cls._y if False else None
"""
    assert violations(source) == []
