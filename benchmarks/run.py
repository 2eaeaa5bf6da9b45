"""Run the benchmarks, print their tables and rewrite docs/benchmarks.md.

nox -s bench                      # or: python benchmarks/run.py
python benchmarks/run.py --simulator-only
python benchmarks/run.py --faults # also the fault-injection timings (about 6 minutes)
python benchmarks/run.py --instructions  # also the callgrind counts (about 17 minutes; valgrind)
python benchmarks/run.py --no-recorder   # without the recorder's rounds (about 4 minutes)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_client
import bench_faults
import bench_instructions
import bench_recorder
import bench_replay
import bench_simulator
import bench_tick_to_trade
from _report import measured, table, write_section


def main() -> None:
    if "--client-only" not in sys.argv:
        simulator()
    if "--simulator-only" in sys.argv:
        return
    bench_client.report(bench_client.main([]), "nox -s bench")
    bench_replay.main(["--write"])
    if "--no-recorder" not in sys.argv:
        bench_recorder.main(["--write-doc"])
    bench_tick_to_trade.report(bench_tick_to_trade.main([]), "nox -s bench")
    if "--faults" in sys.argv:
        bench_faults.main(["--write-doc"])
    else:
        print("faults: python benchmarks/run.py --faults (not part of this run: about 6 minutes)")
    if "--instructions" in sys.argv:
        bench_instructions.main(["--write-doc"])
    else:
        print(
            "instructions: python benchmarks/run.py --instructions "
            "(not part of this run: about 17 minutes, needs valgrind)"
        )
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
        "until the close and is not sustained.\n\n"
        "MD fan-out (issue 19): the same gateway process, 1 and then 10 subscribers in this "
        "process (bare picows loops that only count), in alternating rounds; each round "
        "steps the flow up through 2,000, 4,000, ... 64,000 actions/s and keeps the best "
        "total rate that every subscriber received with none cut off, stopping at the first "
        "cut-off or when the rate grew less than 10%. Median [range] across rounds; gateway "
        "CPU is per delivered message. Target: ten subscribers get at least twice the "
        "one-subscriber total rate, with no 1013. Each MD message is serialized and framed "
        "once for all subscribers, and each socket's writer hands everything queued for it "
        "to Hypercorn as one write of ready frames (`market_client/simulator/_outbox.py`).\n\n"
        + grid,
    )
    print(grid)


if __name__ == "__main__":
    main()
