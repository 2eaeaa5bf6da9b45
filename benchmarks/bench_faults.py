"""Fault-injection benchmark: how long a session takes to notice a dead link and to recover.

For each backend and heartbeat_timeout, repeated trials against a simulator
in its own process (127.0.0.1 only), with the default reconnect policy:

* ``frozen gateway``: SIGSTOP with a request pending (its own timeout 30 s):
  time to its `ConnectionLost`, to ``connection.lost`` of CMD and of MD; then
  SIGCONT: time to ``connection.restored`` of both and to the first request
  that succeeds.
* ``MD silent``: ``admin.fault md_stall`` (MD sends nothing, CMD stays up):
  time to MD's ``connection.lost``, then from there to its
  ``connection.restored`` (the new socket is served at once).
* ``disconnect``: ``admin.disconnect`` (1012 on both sockets): time to
  ``connection.restored`` of CMD and of MD.

    python benchmarks/bench_faults.py [--trials 5] [--heartbeats 3,1] [--write-doc]
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import measured, table, write_section

from market_client import ConnectionLost, MarketClient

TITLE = "Fault injection: detection and recovery times"


class Gateway:
    """The simulator in its own process (the pattern of ``tests/support.py``'s `SimProcess`)."""

    def __init__(self) -> None:
        self.admin_token = secrets.token_hex(16)
        self.process: Process | None = None
        self.url = ""

    async def __aenter__(self) -> Gateway:
        self.process = await anyio.open_process(
            [
                sys.executable,
                "-m",
                "market_client.simulator",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--flow-hz",
                "20",
                "--admin-token",
                self.admin_token,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.process.stdout is not None
        lines = BufferedByteReceiveStream(self.process.stdout)
        with anyio.fail_after(20):
            while b"serving on" not in (line := await lines.receive_until(b"\n", 4096)):
                pass
        self.url = line.decode().split("serving on", 1)[1].split()[0].rstrip("/")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.process is not None:
            with anyio.CancelScope(shield=True):
                if self.process.returncode is None:
                    self.process.send_signal(signal.SIGCONT)
                    self.process.kill()
                await self.process.wait()
                await self.process.aclose()

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    async def admin(self, op: str, payload: dict[str, Any]) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as http:
            reply = await http.post(
                "/api/request",
                json={"op": op, "payload": payload, "as": "admin"},
                headers={"X-Auth-Token": self.admin_token},
            )
        assert reply.json().get("status") == "ok", reply.text


class Clock:
    """When each connection event first happened, from a start time."""

    def __init__(self) -> None:
        self.start = anyio.current_time()
        self.seen: dict[tuple[str, str], float] = {}
        self.changed = anyio.Event()

    def reset(self) -> None:
        self.start = anyio.current_time()
        self.seen.clear()

    async def watch(self, client: MarketClient) -> None:
        async with client.events("connection") as events:
            async for event in events:
                key = (event.kind, str(event.data.get("channel")))
                self.seen.setdefault(key, anyio.current_time() - self.start)
                self.changed.set()
                self.changed = anyio.Event()

    async def wait(self, *keys: tuple[str, str]) -> list[float]:
        with anyio.fail_after(60):
            while not all(k in self.seen for k in keys):
                await self.changed.wait()
        return [self.seen[k] for k in keys]


LOST_CMD = ("connection.lost", "cmd")
LOST_MD = ("connection.lost", "md")
BACK_CMD = ("connection.restored", "cmd")
BACK_MD = ("connection.restored", "md")


async def first_success(client: MarketClient, clock: Clock) -> float:
    while True:
        try:
            await client.get_portfolio()
            return anyio.current_time() - clock.start
        except ConnectionLost:
            await anyio.sleep(0.01)


async def trial(kind: str, heartbeat: float) -> dict[str, float]:
    out: dict[str, float] = {}
    async with (
        Gateway() as gateway,
        MarketClient.session(
            gateway.url, symbols=["ABC"], timeout=30, heartbeat_timeout=heartbeat
        ) as client,
        anyio.create_task_group() as tg,
    ):
        clock = Clock()
        tg.start_soon(clock.watch, client)
        await anyio.sleep(0.2)  # the watcher subscribed; links settled
        if kind == "frozen gateway":
            clock.reset()
            gateway.signal(signal.SIGSTOP)
            try:
                await client.get_portfolio()
                raise AssertionError("a request to a frozen gateway succeeded")
            except ConnectionLost:
                out["request fails (ConnectionLost)"] = anyio.current_time() - clock.start
            out["CMD lost"], out["MD lost"] = await clock.wait(LOST_CMD, LOST_MD)
            clock.reset()
            gateway.signal(signal.SIGCONT)
            out["CMD restored after SIGCONT"], out["MD restored after SIGCONT"] = await clock.wait(
                BACK_CMD, BACK_MD
            )
            out["first request succeeds after SIGCONT"] = await first_success(client, clock)
        elif kind == "MD silent":
            stall = heartbeat + 2.0
            clock.reset()
            await gateway.admin("admin.fault", {"fault": "md_stall", "seconds": stall})
            (out["MD lost"],) = await clock.wait(LOST_MD)
            out["CMD lost"] = clock.seen.get(LOST_CMD, float("nan"))
            (back,) = await clock.wait(BACK_MD)
            # The new MD socket is served at once (the stall was the old one's).
            out["MD restored, after it was declared lost"] = back - out["MD lost"]
        else:
            clock.reset()
            await gateway.admin("admin.disconnect", {})
            out["CMD restored"], out["MD restored"] = await clock.wait(BACK_CMD, BACK_MD)
        tg.cancel_scope.cancel()
    return out


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--heartbeats", default="3,1", help="heartbeat_timeout values, s")
    parser.add_argument("--write-doc", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args(argv)
    heartbeats = [float(h) for h in args.heartbeats.split(",")]
    # The session logs each lost link as a warning: expected here, and measured.
    logging.getLogger("market_client").setLevel(logging.ERROR)
    rows: list[dict[str, Any]] = []
    for kind in ("frozen gateway", "MD silent", "disconnect"):
        for heartbeat in heartbeats:
            for backend in ("asyncio", "trio"):
                times: dict[str, list[float]] = {}
                for _ in range(args.trials):
                    result = anyio.run(trial, kind, heartbeat, backend=backend)
                    for what, seconds in result.items():
                        times.setdefault(what, []).append(seconds)
                for what, values in times.items():
                    rows.append(
                        {
                            "fault": kind,
                            "heartbeat": heartbeat,
                            "backend": backend,
                            "what": what,
                            "values": values,
                        }
                    )
                    print(f"{kind} hb={heartbeat} {backend}: {what} {fmt(values)}", flush=True)
    command = " ".join(["python benchmarks/bench_faults.py", *(argv or sys.argv[1:])])
    report(rows, args.trials, command, args.write_doc)
    return rows


def fmt(values: list[float]) -> str:
    good = [v for v in values if v == v]
    if not good:
        return "never"
    return f"{statistics.median(good):.2f} / {max(good):.2f}"


def report(rows: list[dict[str, Any]], trials: int, command: str, write: bool) -> None:
    grid = table(
        ["fault", "heartbeat_timeout (s)", "measured", "asyncio median / max (s)", "trio"],
        [
            [r["fault"], f"{r['heartbeat']:g}", r["what"], fmt(r["values"]), fmt(t["values"])]
            for r in rows
            if r["backend"] == "asyncio"
            for t in rows
            if t["backend"] == "trio"
            and (t["fault"], t["heartbeat"], t["what"]) == (r["fault"], r["heartbeat"], r["what"])
        ],
    )
    print(grid)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    if write:
        body = (
            measured(command)
            + f" Load average at the end: {load:.1f} on {os.cpu_count()} cores."
            + f"\n\n{trials} trials per row, each with a fresh simulator process "
            "(background flow 20 Hz) and a fresh session (`symbols=['ABC']`, default "
            "reconnect policy, request timeout 30 s). Times are from the fault (SIGSTOP, the "
            "admin op's reply) or, for recovery, from SIGCONT or from the detection. "
            "The promise (docs/reliability.md): a dead link is noticed, and a pending request "
            "fails, within `heartbeat_timeout + 1 s`. 'never' means the event did not "
            "happen (CMD stays up while only MD is silent).\n\n" + grid
        )
        write_section(TITLE, body)


if __name__ == "__main__":
    main()
