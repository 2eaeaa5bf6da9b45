"""Instructions per message, counted by callgrind: the client's costs without the machine's noise.

This machine is a shared VM: the same session's rate swings by a third from
one run to the next, more than most changes to the code are worth. Valgrind's
callgrind counts the instructions a process executes instead, within about 3%
from run to run of the same code, whatever else the machine does (what still
varies is driven by the wall clock: the heartbeat deadline's moves, the event
loop's timers). An instruction is not a unit of time (a cache miss costs
many), so these counts settle A/B questions about Python code down to a few
percent and say where the limits are; the rates in the other sections stay
the measure of the targets.

Each scenario runs in its own process under callgrind, twice: once taking N
messages, and once taking none but doing all else the same (imports, the N
frames built, the event loop, the snapshot, the tasks); the difference over
N is the count a message:

* ``session K``: the session's own MD reader (``MdChannel._read``: sequencer,
  book, 1-second candles, the heartbeat deadline, fairness checkpoints,
  events) over an in-process socket that hands it the flood's frames
  (``_flood.md_messages``: two deltas to a trade) and lets other tasks run
  as the default transports do (each frame a new ``bytes`` object, as picows
  makes one; a turn every 256 frames, as a socket read would, and
  ``recv_many()`` hands over the frames that read brought without a
  checkpoint, as picows does), and on Trio once more with a turn at every frame, as the Trio
  libraries' own ``recv()`` gives (what the session did before 2026-12-06);
  ``K`` ``events("md")`` consumers
  that only count (``async for``), as in "Client: counting subscribers".
* ``session K:record``: the same, K = 0, with a `Recorder` in the reader's
  recorders (its default settings but the flush interval).
* floors: the least a subscriber can cost in Python, piece by piece: an
  ``Event`` built through its slots (what the reader does), one deque
  append, one step of ``async for`` over the least async iterator (its
  ``__anext__`` pops a deque), and the consumer's count.

    python benchmarks/bench_instructions.py [--messages 20000] [--write-doc]

Needs ``valgrind`` (Debian's package); without it, it says so and exits.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

CHUNK = 256  # frames the in-process socket hands over between two turns of the loop


# -- the scenarios, run in a child process under callgrind ------------------------------
def _session(
    backend: str, n: int, consumers: int, measure: bool, yields: bool = False, record: bool = False
) -> None:
    import tempfile

    import anyio
    import orjson
    from _flood import md_messages

    from market_client import ConnectionLost
    from market_client._events import EventHub, HookRunner
    from market_client._md import MdChannel
    from market_client._state import MarketState
    from market_client._transports import TransportClosed, WebSocket

    snapshot, messages = md_messages(n)
    # Each frame a new object, as a socket read makes it (picows: a bytes
    # object per message, freed once the reader is done with it).
    frames = [bytearray(orjson.dumps(snapshot)), *(bytearray(orjson.dumps(m)) for m in messages)]
    if not measure:  # the same process, the snapshot alone
        frames, n = frames[:1], 0

    every = 1 if yields else CHUNK

    class Socket(WebSocket):
        """Hands over the frames and lets other tasks run as the default transport does.

        A turn of the loop every CHUNK frames, as a socket read gives, and
        the reader's own checkpoints in between; with ``yields``, a
        checkpoint at every ``recv()`` (`WebSocket.recv_yields`), as the Trio
        libraries' own ``recv()`` takes a message from a memory channel.
        """

        recv_yields = yields

        def __init__(self) -> None:
            super().__init__()
            self.at = 0

        async def recv(self) -> bytes:
            at = self.at
            if at == len(frames):
                raise TransportClosed(1000)
            self.at = at + 1
            if not at % every:
                await anyio.lowlevel.checkpoint()
            return bytes(frames[at])

        async def recv_many(self) -> list[str | bytes]:
            # What picows hands the reader: every frame the last read brought.
            if yields:
                return [await self.recv()]
            at = self.at
            if at == len(frames):
                raise TransportClosed(1000)
            if not at % every:
                await anyio.lowlevel.checkpoint()
            self.at = end = min(len(frames), (at // every + 1) * every)
            return [bytes(frame) for frame in frames[at:end]]

        async def send(self, text: str) -> None:
            raise AssertionError("the reader sends nothing")

        async def ping(self) -> None:
            pass

        async def _close_handshake(self, code: int, reason: str) -> None:
            pass

        async def _drop(self) -> None:
            pass

    async def main() -> None:
        if not record:
            return await read()
        from market_client.recording import Recorder

        with tempfile.TemporaryDirectory() as tmp:
            # The default settings but the flush interval: callgrind runs the
            # session some 50 times slower, and half a second there would cut
            # the batches to a fiftieth of their size at full speed.
            async with Recorder(tmp, flush_interval=3600.0) as recorder:
                await read(recorder)
            assert recorder.stats()["raw_records"] == len(frames), recorder.stats()

    async def read(*recorders: Any) -> None:
        market = MarketState()
        market.add_series("ABC", 1000, 50)
        hub = EventHub()
        channel = MdChannel(
            market,
            ws_base="ws://127.0.0.1:9",
            token=lambda: "",
            connect_websocket=None,
            send=None,  # type: ignore[arg-type]
            give_up=lambda exc: True,
            hub=hub,
            hooks=HookRunner(),
            recorders=recorders,
            timeout=5,
            heartbeat_timeout=60,
        )
        streams = [hub.subscribe(("md",), 1000) for _ in range(consumers)]
        counts = [0] * consumers

        async def count(i: int) -> None:
            async for _ in streams[i]:
                counts[i] += 1
                if counts[i] == len(frames):
                    return

        async with anyio.create_task_group() as tg:
            for i in range(consumers):
                tg.start_soon(count, i)
            with contextlib.suppress(ConnectionLost):  # it "closes" after the last frame
                await channel._read(Socket(), anyio.Event(), set())
        assert channel.messages == len(frames) and counts == [len(frames)] * consumers, counts
        assert market.symbols["ABC"].sequencer.seq == n

    anyio.run(main, backend=backend)


def _floor(part: str, n: int, measure: bool) -> None:
    import asyncio

    from market_client import Event

    # What `new_event` does to build one: the object, then its three slots.
    new_object = object.__new__
    set_kind, set_data, set_sym = (vars(Event)[name].__set__ for name in ("kind", "data", "sym"))
    data: dict[str, Any] = {}
    items = [object()] * n
    if not measure:
        items, n = [], 0

    class Least:
        def __init__(self, buffer: deque[Any]) -> None:
            self.buffer = buffer

        def __aiter__(self) -> Least:
            return self

        async def __anext__(self) -> Any:
            return self.buffer.popleft()

    async def iterate() -> None:
        taken = 0
        if not n:
            return
        async for _ in Least(deque(items)):
            taken += 1
            if taken == n:
                return

    if part == "event":
        for _ in items:
            event = new_object(Event)
            set_kind(event, "md.trade")
            set_data(event, data)
            set_sym(event, "ABC")
    elif part == "append":
        buffer: deque[Any] = deque()
        append = buffer.append
        for item in items:
            append(item)
    elif part == "async_for":
        asyncio.run(iterate())


def child(argv: list[str]) -> None:
    what, n, measure = argv[0], int(argv[1]), argv[2] == "measure"
    if what.startswith("session:"):
        _, backend, consumers, *record = what.split(":")
        yields = backend == "trio-yields"
        _session("trio" if yields else backend, n, int(consumers), measure, yields, bool(record))
    else:
        _floor(what, n, measure)


# -- the parent: counts and report --------------------------------------------------------
SCENARIOS = {
    "asyncio": "asyncio",
    "trio": "trio",
    "trio-yields": "trio, a turn at every `recv()` (the libraries' own)",
}
ENV = {"PYTHONHASHSEED": "0", "PATH": "/usr/bin:/bin"}


def warm_up() -> None:
    """Import everything once outside callgrind: a stale ``.pyc`` is rewritten here, not counted."""
    for what in ("session:asyncio:1", "session:trio:1", "event"):
        cmd = [sys.executable, __file__, "--child", what, "10", "measure"]
        subprocess.run(cmd, env=ENV, check=True)


def instructions(what: str, n: int, measure: bool) -> int:
    """Instructions the child process executes for one scenario (taking no message, or ``n``)."""
    cmd = [
        shutil.which("valgrind") or "valgrind",  # found on this PATH, not on ENV's
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--child",
        what,
        str(n),
        "measure" if measure else "setup",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, env=ENV, check=False)
    match = re.search(r"Collected : (\d+)", out.stderr)
    if out.returncode or match is None:
        raise RuntimeError(f"{what} failed under callgrind:\n{out.stderr[-2000:]}")
    return int(match.group(1))


def per_message(what: str, n: int) -> float:
    return (instructions(what, n, True) - instructions(what, n, False)) / n


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--write-doc", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind): nothing measured")
        return {}
    n = args.messages
    warm_up()
    result: dict[str, Any] = {"n": n}
    for backend in SCENARIOS:
        for k in (0, 1, 10):
            result[f"{backend}_{k}"] = got = per_message(f"session:{backend}:{k}", n)
            print(f"{backend}, {k} counting consumers: {got:,.0f} instructions a message")
    for backend in ("asyncio", "trio"):
        result[f"{backend}_record"] = got = per_message(f"session:{backend}:0:record", n)
        print(f"{backend}, recorded: {got:,.0f} instructions a message")
    for part in ("event", "append", "async_for"):
        result[part] = got = per_message(part, n)
        print(f"floor, {part}: {got:,.0f} instructions", flush=True)
    report(result, " ".join(["python benchmarks/bench_instructions.py", *(argv or [])]), args)
    return result


def report(r: dict[str, Any], command: str, args: argparse.Namespace) -> None:
    from _report import measured, table, write_section

    rows = []
    floor_one = r["event"] + r["append"] + r["async_for"]
    floor_each = r["append"] + r["async_for"]
    for backend, label in SCENARIOS.items():
        base = r[f"{backend}_0"]
        for k, budget in ((1, 0.25), (10, 0.60)):
            extra = r[f"{backend}_{k}"] - base
            floor = r["event"] + k * floor_each
            allowed = base * budget / (1 - budget)  # cost = extra / (base + extra)
            rows.append(
                [
                    label,
                    str(k),
                    f"{base:,.0f}",
                    f"{extra:,.0f} ({extra / k:,.0f} each)",
                    f"{extra / (base + extra):.1%}",
                    f"{floor:,.0f}",
                    f"{floor / (base + floor):.1%}",
                    f"{allowed:,.0f}",
                ]
            )
    grid = table(
        [
            "backend",
            "counting consumers",
            "session, none (a message)",
            "added by the consumers (a message)",
            "cost",
            "least Python can add (g)",
            "cost at (g)",
            "added at the target's cost",
        ],
        rows,
    )
    body = (
        measured(command)
        + f" Instructions per MD message, from {r['n']:,} flood messages through the session's "
        "own MD reader over an in-process socket (see the script's docstring), each count "
        "less the same process's with no message; callgrind counts only the process's own "
        "instructions (the kernel's are not in them), within about 3% from run to run of "
        "the same code.\n\n"
        + grid
        + "\n\n(g) is the least any subscriber written in Python can add to a message: the "
        f"`Event` built through its slots ({r['event']:,.0f} instructions, once for all "
        f"consumers), and for each consumer one deque append ({r['append']:,.0f}) and one "
        f"step of `async for` over the least async iterator ({r['async_for']:,.0f}, its "
        f"`__anext__` pops a deque; the loop's own count included): {floor_one:,.0f} for one "
        "consumer. No hub, no lookup of who wants the kind, no overflow policy, no look for "
        "a cancellation, no wake-ups: what is left above it is the session's, and the target's "
        "column says how much a target allows."
    )
    recorded = table(
        [
            "backend",
            "session, none (a message)",
            "recorded (a message)",
            "added by the recorder",
            "session unrecorded / recorded",
        ],
        [
            [
                backend,
                f"{r[f'{backend}_0']:,.0f}",
                f"{r[f'{backend}_record']:,.0f}",
                f"{r[f'{backend}_record'] - r[f'{backend}_0']:,.0f}",
                f"{r[f'{backend}_0'] / r[f'{backend}_record']:.3f}",
            ]
            for backend in ("asyncio", "trio")
        ],
    )
    body += (
        "\n\nThe same session with a `Recorder` at its default settings but the flush "
        "interval (callgrind runs the session some 50 times slower: half a second there would "
        "cut the batches to a fiftieth of their size at full speed): what recording costs the "
        "session's process, its event loop and the recorder's worker thread (the writer "
        "process is not counted; it runs outside callgrind). The last column is the "
        "recorder's target (issue 16: at least 0.8 of the unrecorded rate) in instructions, "
        "without the machine's noise; an instruction that misses the cache costs more than "
        'one that does not (see "Recorder"). The recorded count varies more from run to run '
        "than the others (29,800 to 31,700 on asyncio on 2026-12-06): where the worker thread "
        "gets the GIL falls differently under callgrind.\n\n" + recorded
    )
    print(grid)
    print(recorded)
    if args.write_doc:
        write_section("Client: instructions per message (callgrind)", body)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
    else:
        main(sys.argv[1:])
