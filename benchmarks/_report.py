"""Shared by the benchmarks: the machine's description, tables, docs/benchmarks.md sections."""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"


def machine() -> str:
    """OS, cores, CPU model and Python version of this machine."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu}), "
        f"Python {platform.python_version()}"
    )


def measured(command: str) -> str:
    """The line that says when, where and with what command a section was measured."""
    return f"Measured {datetime.date.today()} on {machine()} with `{command}`."


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def write_section(title: str, body: str) -> None:
    """Replace (or append) the ``## title`` section of docs/benchmarks.md."""
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    section = f"## {title}\n\n{body.rstrip()}\n"
    start = text.find(f"## {title}\n")
    if start == -1:
        text = text.rstrip() + "\n\n" + section
    else:
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + (text[end:] if end != -1 else "")
    DOC.write_text(text)
    print(f"wrote the section {title!r} of {DOC.relative_to(ROOT)}")


def rss_mib() -> float:
    """This process's resident memory in MiB (Linux ``/proc``; 0 elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def until_read(client: Any, total: int) -> None:
    """Return once the session has read ``total`` MD messages (its ``stats()``).

    Polled, since a hook or a subscriber on every message would cost the
    session more than it measures: every 50 ms until the last tenth, then
    every 2 ms (a Trio session polled every 5 ms throughout spent about 3% of
    its time on the sleeps' deadlines, which the bare loops do not pay).
    """
    with anyio.fail_after(600):  # a miscount fails the run instead of hanging it
        while (read := client.stats()["md_messages"]) < total:
            await anyio.sleep(0.05 if total - read > total // 10 else 0.002)
