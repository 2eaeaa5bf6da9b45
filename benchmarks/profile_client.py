"""Profile the client with pyinstrument: where the time of MD ingest or of pipelined requests goes.

    python benchmarks/profile_client.py ingest --backend asyncio --transport picows
    python benchmarks/profile_client.py pipelined --backend trio

``ingest`` reads 300,000 messages from the flood gateway into a session;
``pipelined`` sends 20,000 requests, 100 in flight, to its echo channel.
Prints pyinstrument's call tree (``--html FILE`` writes the interactive one).
The profiler slows the code down several times: read shares, not rates.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_client import flood, ingest_session, round_trips


async def profile(args: argparse.Namespace) -> Any:
    from pyinstrument import Profiler

    async with flood(args.messages) as server:
        profiler = Profiler(async_mode="disabled")  # every task of the run, not one
        profiler.start()
        if args.what == "ingest":
            rate, _ = await ingest_session(server.url, args.messages, args.transport)
            print(f"{rate:,.0f} msg/s under the profiler", flush=True)
        else:
            result = await round_trips(server.url, args.requests, 100, False)
            print(f"{result['rps']:,.0f} req/s under the profiler", flush=True)
        profiler.stop()
    return profiler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("ingest", "pipelined"))
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--transport", default=None, help="websockets (default), picows, ...")
    parser.add_argument("--messages", type=int, default=300_000)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--html", type=Path, help="also write the interactive HTML report here")
    args = parser.parse_args(argv)
    profiler = anyio.run(profile, args, backend=args.backend)
    print(profiler.output_text(unicode=True, color=sys.stdout.isatty()))
    if args.html is not None:
        args.html.write_text(profiler.output_html())
        print(f"wrote {args.html}")


if __name__ == "__main__":
    main()
