"""Run the benchmarks, print their tables and rewrite docs/benchmarks.md.

nox -s bench                      # or: python benchmarks/run.py
"""

from __future__ import annotations

import datetime
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_simulator

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"


def machine() -> str:
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


def table(rows: list[dict[str, str]]) -> str:
    lines = ["| benchmark | gateway backend | result | detail |", "|---|---|---|---|"]
    lines += [f"| {r['bench']} | {r['gateway']} | {r['result']} | {r['detail']} |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    rows = bench_simulator.main()
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    section = (
        "## Simulator gateway throughput\n\n"
        f"Measured {datetime.date.today()} on {machine()} with `nox -s bench` "
        "(`python benchmarks/bench_simulator.py`). The gateway runs in its own process; "
        "the load is bare `websockets` asyncio loops. Targets (issue 2): at least 2,000 "
        "order requests per second over one CMD connection, and 20,000 MD messages per "
        'second to one subscriber. "flow" is background order-flow actions per second; '
        'each action makes about 2.5 MD messages. "cut off (1013)" means the gateway '
        "produced more than it could write and closed the subscriber, as its policy "
        "says, instead of buffering without bound; the rate in such a row counts only "
        "until the close and is not sustained.\n\n" + table(rows) + "\n"
    )
    start = text.find("## Simulator gateway throughput")
    if start == -1:
        text = text.rstrip() + "\n\n" + section
    else:
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + (text[end + 1 :] if end != -1 else "")
    DOC.write_text(text)
    print(table(rows))
    print(f"\nwrote {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
