"""Run the benchmarks, print their tables and rewrite docs/benchmarks.md.

nox -s bench                      # or: python benchmarks/run.py
python benchmarks/run.py --faults # also the fault-injection timings (about 6 minutes)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_client
import bench_faults
import bench_simulator
from _report import measured, table, write_section


def main() -> None:
    if "--client-only" not in sys.argv:
        simulator()
    bench_client.report(bench_client.main([]), "nox -s bench")
    if "--faults" in sys.argv:
        bench_faults.main(["--write-doc"])
    else:
        print("faults: python benchmarks/run.py --faults (not part of this run: about 6 minutes)")
    print("soak: python benchmarks/soak.py --minutes 10 (not part of this run: 10 minutes)")


def simulator() -> None:
    rows = bench_simulator.main()
    grid = table(
        ["benchmark", "gateway backend", "result", "detail"],
        [[r["bench"], r["gateway"], r["result"], r["detail"]] for r in rows],
    )
    write_section(
        "Simulator gateway throughput",
        measured("nox -s bench")
        + " (`python benchmarks/bench_simulator.py`). The gateway runs in its own process; "
        "the load is bare `websockets` asyncio loops. Targets (issue 2): at least 2,000 "
        "order requests per second over one CMD connection, and 20,000 MD messages per "
        'second to one subscriber. "flow" is background order-flow actions per second; '
        'each action makes about 2.5 MD messages. "cut off (1013)" means the gateway '
        "produced more than it could write and closed the subscriber, as its policy "
        "says, instead of buffering without bound; the rate in such a row counts only "
        "until the close and is not sustained.\n\n" + grid,
    )
    print(grid)


if __name__ == "__main__":
    main()
