"""Draw the client's layout from the code: docs/img/architecture.dot (and .svg with Graphviz).

    python docs/diagram.py          # or: nox -s diagrams

The modules and their imports are read from the source (``ast``); who starts
and who closes what is the table `OWNS` below, and every row of it must be
backed by a real import (the drawing fails otherwise). ``tests/test_architecture.py``
checks that the committed ``architecture.dot`` is what this script draws now,
so the picture cannot drift from the code.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "market_client"
OUT = ROOT / "docs" / "img" / "architecture"

# The client's modules, by the job each does (the simulator, CLI, recorder and
# test helpers are packages of their own, drawn as one box each).
GROUPS: dict[str, tuple[str, list[str]]] = {
    "facade": ("the facade users call", ["_client", "_helpers", "_blocking"]),
    "io": (
        "tasks and sockets (I/O)",
        ["_supervisor", "_cmd", "_md", "_http", "_reconcile", "_events", "_transports"],
    ),
    "core": (
        "sans-I/O core",
        [
            "_state",
            "_book",
            "_candles",
            "_private",
            "_protocol",
            "_wire",
            "_checks",
            "_reconnect",
            "_ring",
            "_logs",
            "_compiled",
            "_models",
            "_exceptions",
        ],
    ),
    "packages": ("packages", ["recording", "testing", "simulator", "backtest", "_cli"]),
}

# What each module's objects run as tasks (shown in its box).
TASKS: dict[str, str] = {
    "_client": "MarketClient: the session task group\\n(AsyncExitStack: HttpApi, task group)",
    "_supervisor": "Supervisor.run x2 (cmd, md):\\none connection at a time, backoff",
    "_cmd": "CmdChannel.connect: socket +\\nRequestSession.run (reader), _watch (pings)",
    "_md": "MdChannel.connect: socket +\\n_read (take, record, apply, publish), resyncs",
    "_http": "HttpApi: the httpx client",
    "_reconcile": "Reconciler: one run at a time",
    "_events": "HookRunner.run; EventHub:\\na memory object stream per subscriber",
    "_transports": "WebSocketTransport.connect:\\nWebSocket.aclose, the one close path",
    "_blocking": "BlockingClient: a portal thread",
    "recording": "Recorder: writer task + thread",
}

# (owner, owned, what): "starts" a task or "opens/closes" a resource. Every row
# is backed by an import of ``owned`` in ``owner``, except the supervisor's,
# which runs the connect method the facade hands it (listed in `HANDED`).
OWNS: list[tuple[str, str, str]] = [
    ("_client", "_supervisor", "starts two, in the session task group"),
    ("_supervisor", "_cmd", "runs CmdChannel.connect, again after a drop"),
    ("_supervisor", "_md", "runs MdChannel.connect, again after a drop"),
    ("_client", "_http", "opens and closes"),
    ("_client", "_events", "starts HookRunner; closes the hub"),
    ("_client", "_reconcile", "starts after a reconnect"),
    ("_client", "recording", "opens and closes (record=)"),
    ("_cmd", "_transports", "opens and closes the CMD socket"),
    ("_md", "_transports", "opens and closes the MD socket"),
    ("_blocking", "_client", "opens and closes on its own loop"),
]
HANDED = {("_supervisor", "_cmd"), ("_supervisor", "_md")}
# Leaves that nearly every module imports: drawn without their import arrows.
LEAVES = {"_exceptions", "_models", "_wire"}


def module_of(path: Path) -> str:
    """``market_client/_cmd.py`` -> ``_cmd``; a subpackage file -> the subpackage."""
    rel = path.relative_to(PACKAGE).with_suffix("")
    return rel.parts[0] if len(rel.parts) > 1 else rel.name


def _targets(node: ast.ImportFrom, depth: int) -> list[str]:
    """The top-level modules of the package that one ``from ... import`` names."""
    if node.level == 0:
        name = node.module or ""
        return [name.split(".")[1]] if name.startswith("market_client.") else []
    if node.level - 1 < depth:
        return []  # inside the same subpackage
    if node.module:
        return [node.module.split(".")[0]]
    return [a.name for a in node.names]


def imports(*, lazy: bool = False) -> dict[str, set[str]]:
    """Imports between the package's top-level modules.

    Module-level imports by default (``TYPE_CHECKING`` blocks left out): those
    are what an import circle is made of. With ``lazy``, the imports made
    inside functions instead (an optional extra, or a convenience entry point).
    """
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        src = module_of(path)
        if src == "__init__":
            continue
        tree = ast.parse(path.read_text(), str(path))
        top = [
            n
            for stmt in tree.body
            if not (isinstance(stmt, ast.If) and "TYPE_CHECKING" in ast.unparse(stmt.test))
            and not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            for n in ast.walk(stmt)
        ]
        inner = [
            n
            for stmt in ast.walk(tree)
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef))
            for n in ast.walk(stmt)
        ]
        depth = len(path.relative_to(PACKAGE).parts) - 1
        targets = graph.setdefault(src, set())
        for node in inner if lazy else top:
            if isinstance(node, ast.ImportFrom):
                for target in _targets(node, depth):
                    exists = (PACKAGE / f"{target}.py").exists() or (PACKAGE / target).is_dir()
                    if exists and target != src:
                        targets.add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle among the top-level modules (empty when there is none)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def _drawn_import(src: str, dst: str) -> bool:
    packages = set(GROUPS["packages"][1])
    return dst not in LEAVES and src not in packages and dst not in packages


def dot() -> str:
    """The Graphviz source of the picture."""
    graph = imports()
    drawn = {m for _, members in GROUPS.values() for m in members}
    missing = sorted(set(graph) - drawn - {"__main__"})
    if missing:
        raise SystemExit(f"modules not placed in GROUPS: {missing}")
    lazy_graph = imports(lazy=True)
    for owner, owned, what in OWNS:
        if (owner, owned) in HANDED:
            continue
        if owned not in graph.get(owner, set()) | lazy_graph.get(owner, set()):
            raise SystemExit(f"OWNS says {owner} {what} {owned}, but {owner} does not import it")
    lines = [
        "digraph market_client {",
        '  graph [rankdir=TB, fontname="Helvetica", fontsize=11, nodesep=0.3, ranksep=0.5,',
        '         label="red: starts or opens and closes; grey: imports (dashed: inside a '
        'function); _exceptions, _models and _wire are imported everywhere", labelloc=b];',
        '  node [shape=box, style="rounded,filled", fillcolor="#ffffff", fontname="Helvetica", '
        "fontsize=10];",
        '  edge [fontname="Helvetica", fontsize=8];',
    ]
    colors = {"facade": "#e8f0fe", "io": "#fef3e0", "core": "#e6f4ea", "packages": "#f3e8fd"}
    for key, (label, members) in GROUPS.items():
        lines.append(f"  subgraph cluster_{key} {{")
        lines.append(f'    label="{label}"; style=filled; color="{colors[key]}";')
        for m in members:
            text = m + (f"\\n{TASKS[m]}" if m in TASKS else "")
            lines.append(f'    "{m}" [label="{text}"];')
        lines.append("  }")
    owned = {(a, b) for a, b, _ in OWNS}
    for owner, target, what in OWNS:
        lines.append(f'  "{owner}" -> "{target}" [label="{what}", penwidth=2, color="#c5221f"];')
    for src in sorted(graph):
        for dst in sorted(graph[src]):
            if (src, dst) not in owned and _drawn_import(src, dst):
                lines.append(f'  "{src}" -> "{dst}" [color="#9aa0a6", arrowsize=0.5];')
    lazy = imports(lazy=True)
    for src in sorted(lazy):
        for dst in sorted(lazy[src] - graph.get(src, set())):
            if (src, dst) not in owned and _drawn_import(src, dst):
                lines.append(
                    f'  "{src}" -> "{dst}" [color="#9aa0a6", style=dashed, arrowsize=0.5];'
                )
    lines.append("}")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Write the .dot, and the .svg when Graphviz's ``dot`` is installed."""
    source = dot()
    OUT.with_suffix(".dot").write_text(source)
    if shutil.which("dot") is None:
        print("Graphviz is not installed: wrote the .dot only", file=sys.stderr)
        return
    subprocess.run(
        ["dot", "-Tsvg", "-o", str(OUT.with_suffix(".svg")), str(OUT.with_suffix(".dot"))],
        check=True,
    )
    print(f"wrote {OUT.with_suffix('.svg')}")


if __name__ == "__main__":
    main()
