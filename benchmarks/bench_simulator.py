"""Simulator throughput: order requests over one CMD socket, MD to one and to ten subscribers.

The gateway runs in its own process (`python -m market_client.simulator`), as a
user would run it; the load comes from bare `websockets` asyncio loops in this
process (the fan-out subscribers: bare picows loops that only count, when
picows is installed), so the numbers are the gateway's, not our client's.

    python benchmarks/bench_simulator.py [--orders 20000] [--seconds 3] [--rounds 3]
    python benchmarks/bench_simulator.py --fanout-only   # just the 1 vs 10 subscriber rounds
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import time
from typing import Any

import httpx
from _servers import Server, simulator_process
from websockets.asyncio.client import connect

ADMIN = "bench-admin"


def gateway(backend: str, flow_hz: float = 0) -> contextlib.AbstractAsyncContextManager[Server]:
    # Every order of the order benchmark rests: allow them all.
    return simulator_process(
        *("--seed", "1", "--flow-hz", str(flow_hz), "--admin-token", ADMIN),
        *("--backend", backend, "--max-open-orders", "100000"),
    )


async def token(url: str, value: str | None = None) -> str:
    async with httpx.AsyncClient(base_url=url) as http:
        return str((await http.post("/auth/handshake", json={"token": value})).json()["token"])


def frame(msg_id: int, op: str, payload: dict[str, Any], admin: bool = False) -> str:
    body = {
        "type": "request",
        "ver": "1.0",
        "msg_id": str(msg_id),
        "ts": "",
        "op": op,
        "payload": payload,
    }
    if admin:
        body["as"] = "admin"
    return json.dumps(body)


async def orders_per_second(url: str, total: int, window: int) -> dict[str, float]:
    """Limit orders placed back to back on one socket, `window` in flight."""
    tok = await token(url)
    async with connect(f"ws{url[4:]}/ws/cmd?token={tok}", compression=None, max_queue=None) as ws:
        await ws.send(frame(0, "auth.login", {}))
        await ws.recv()
        sent = received = 0
        latencies: list[float] = []
        sent_at: dict[str, float] = {}
        start = time.perf_counter()

        async def sender() -> None:
            nonlocal sent
            while sent < total:
                while sent - received >= window:
                    await asyncio.sleep(0)
                sent += 1
                price = f"{50 + (sent % 400) / 100:.2f}"  # rests, never crosses
                sent_at[str(sent)] = time.perf_counter()
                await ws.send(
                    frame(
                        sent, "order.place", {"sym": "ABC", "side": "buy", "price": price, "qty": 1}
                    )
                )

        async def receiver() -> None:
            nonlocal received
            while received < total:
                msg = json.loads(await ws.recv())
                if msg.get("type") == "response":
                    assert msg["status"] == "ok", msg
                    received += 1
                    latencies.append(time.perf_counter() - sent_at.pop(msg["corr_id"]))

        await asyncio.gather(sender(), receiver())
        elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "per_s": total / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
    }


async def md_per_second(url: str, flow_hz: float, seconds: float) -> dict[str, float]:
    """MD messages one subscriber receives per second with flow at `flow_hz`."""
    admin = await token(url, ADMIN)
    async with connect(f"ws{url[4:]}/ws/cmd?token={admin}") as cmd:
        await cmd.send(frame(0, "auth.login", {}))
        await cmd.recv()
        await cmd.send(frame(1, "admin.flow", {"rate_hz": flow_hz}, admin=True))
        await cmd.recv()
        tok = await token(url)
        count = 0
        closed = None
        async with connect(f"ws{url[4:]}/ws/md?token={tok}", compression=None, max_size=None) as md:
            await asyncio.sleep(0.3)  # warm up
            deadline = time.perf_counter() + seconds
            start = time.perf_counter()
            try:
                while time.perf_counter() < deadline:
                    await md.recv()
                    count += 1
            except Exception as exc:  # the 1013 cut-off, reported in the table
                closed = str(exc)
            elapsed = time.perf_counter() - start
        await cmd.send(frame(2, "admin.flow", {"rate_hz": 0}, admin=True))
        await cmd.recv()
    return {"per_s": count / elapsed, "cut_off": 1.0 if closed else 0.0}


#: Background flow rates (actions/s) tried in turn; each action makes about 2.5 MD messages.
FANOUT_FLOWS = (2_000, 4_000, 8_000, 16_000, 32_000, 64_000)


class _Subscriber:
    """A bare MD subscriber that only counts frames (picows if installed, else websockets)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.count = 0
        self.close_code: int | None = None
        self._close: Any = None

    async def start(self) -> None:
        url = f"ws{self.url[4:]}/ws/md?token={await token(self.url)}"
        try:
            from picows import WSListener, WSMsgType, ws_connect
        except ImportError:
            ws = await connect(url, compression=None, max_size=None, max_queue=None)
            task = asyncio.ensure_future(self._websockets_loop(ws))
            self._close = lambda: (task.cancel(), asyncio.ensure_future(ws.close()))
            return
        sub = self

        class Listener(WSListener):  # type: ignore[misc]
            def on_ws_frame(self, transport: Any, frame: Any) -> None:
                if frame.msg_type == WSMsgType.TEXT:
                    sub.count += 1
                elif frame.msg_type == WSMsgType.CLOSE:
                    sub.close_code = int(frame.get_close_code())
                    transport.disconnect()

        transport, _ = await ws_connect(Listener, url, max_frame_size=64 * 1024 * 1024)
        self._close = transport.disconnect

    async def _websockets_loop(self, ws: Any) -> None:
        try:
            async for _ in ws:
                self.count += 1
        except Exception:
            pass
        if ws.close_code is not None and ws.close_code != 1000:
            self.close_code = ws.close_code

    def close(self) -> None:
        self._close()


async def fanout_rate(
    server: Server, admin: Any, subscribers: int, seconds: float
) -> dict[str, Any]:
    """The highest total MD rate `subscribers` receive with none cut off (1013).

    The flow steps up through `FANOUT_FLOWS`; it stops at the first cut-off,
    or when the delivered rate grew less than 10% (the gateway is saturated).
    """
    best: dict[str, Any] = {"per_s": 0.0, "flow": 0, "us_per_msg": 0.0, "cut_at": None}
    previous = 0.0
    url = server.url
    for n, flow in enumerate(FANOUT_FLOWS):
        subs = [_Subscriber(url) for _ in range(subscribers)]
        for sub in subs:
            await sub.start()
        await admin.send(frame(100 + n, "admin.flow", {"rate_hz": flow}, admin=True))
        await admin.recv()
        await asyncio.sleep(0.3)  # warm up
        first = sum(s.count for s in subs)
        cpu0 = server.cpu_seconds()
        start = time.perf_counter()
        await asyncio.sleep(seconds)
        elapsed = time.perf_counter() - start
        total = sum(s.count for s in subs) - first
        cpu = server.cpu_seconds() - cpu0
        await admin.send(frame(200 + n, "admin.flow", {"rate_hz": 0}, admin=True))
        await admin.recv()
        cut = [s for s in subs if s.close_code is not None]
        for sub in subs:
            sub.close()
        await asyncio.sleep(0.2)  # the gateway drains and forgets them
        rate = total / elapsed
        if cut:
            best["cut_at"] = flow
            break
        best = {
            "per_s": rate,
            "flow": flow,
            "us_per_msg": cpu / total * 1e6 if total else 0.0,
            "cut_at": None,
        }
        if rate < previous * 1.1:
            break
        previous = rate
    return best


async def fanout(backend: str, rounds: int, seconds: float) -> dict[str, Any]:
    """Alternating rounds of 1 and 10 subscribers on one gateway of `backend`."""
    results: dict[int, list[dict[str, Any]]] = {1: [], 10: []}
    async with gateway(backend) as server:
        admin_token = await token(server.url, ADMIN)
        async with connect(f"ws{server.url[4:]}/ws/cmd?token={admin_token}") as admin:
            await admin.send(frame(0, "auth.login", {}))
            await admin.recv()
            for r in range(rounds):
                for n in (1, 10) if r % 2 == 0 else (10, 1):
                    result = await fanout_rate(server, admin, n, seconds)
                    results[n].append(result)
                    print(f"fan-out {backend} round {r}: {n} subscribers {result}", flush=True)
    return {
        "backend": backend,
        "one": results[1],
        "ten": results[10],
        "ratios": [t["per_s"] / o["per_s"] for o, t in zip(results[1], results[10], strict=True)],
        "load": os.getloadavg()[0],
    }


def minmax(values: list[float]) -> tuple[float, float]:
    return min(values), max(values)


def fanout_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Table rows of `fanout` results: medians and ranges across rounds."""

    def spread(values: list[float], fmt: str) -> str:
        mid, low, high = (fmt.format(v) for v in (statistics.median(values), *minmax(values)))
        return f"{mid} [{low}-{high}]"

    rows = []
    for r in results:
        for key, n in (("one", 1), ("ten", 10)):
            runs = r[key]
            cuts = sorted({x["cut_at"] for x in runs if x["cut_at"] is not None})
            rows.append(
                {
                    "bench": f"MD fan-out, {n} subscriber{'s' if n > 1 else ''} (all kept up)",
                    "gateway": r["backend"],
                    "result": spread([x["per_s"] for x in runs], "{:,.0f}") + " msg/s in all",
                    "detail": "gateway CPU "
                    + spread([x["us_per_msg"] for x in runs], "{:.1f}")
                    + " µs/msg; best flow "
                    + "/".join(f"{x['flow']:,}" for x in runs)
                    + (
                        f"; cut off (1013) at flow {'/'.join(f'{c:,}' for c in cuts)}"
                        if cuts
                        else ""
                    ),
                }
            )
        rows.append(
            {
                "bench": "MD fan-out, 10 vs 1 subscriber (target ≥ 2x)",
                "gateway": r["backend"],
                "result": spread(r["ratios"], "{:.2f}x"),
                "detail": f"{len(r['ratios'])} alternating rounds; load average {r['load']:.1f}",
            }
        )
    return rows


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    fanouts = [await fanout(b, args.rounds, args.fanout_seconds) for b in ("trio", "asyncio")]
    if args.fanout_only:
        return fanout_rows(fanouts)
    for backend in ("trio", "asyncio"):
        async with gateway(backend) as server:
            url = server.url
            for window in (1, 100):
                r = await orders_per_second(
                    url, args.orders if window > 1 else args.orders // 10, window
                )
                rows.append(
                    {
                        "bench": f"order.place, {window} in flight",
                        "gateway": backend,
                        "result": f"{r['per_s']:,.0f} orders/s",
                        "detail": f"p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms",
                    }
                )
                print(rows[-1], flush=True)
        async with gateway(backend) as server:
            url = server.url
            for flow in (5_000, 10_000, 20_000):
                r = await md_per_second(url, flow, args.seconds)
                rows.append(
                    {
                        "bench": f"MD to one subscriber, flow {flow:,}/s",
                        "gateway": backend,
                        "result": f"{r['per_s']:,.0f} msg/s",
                        "detail": "cut off (1013)" if r["cut_off"] else "kept up",
                    }
                )
                print(rows[-1], flush=True)
    return rows + fanout_rows(fanouts)


def main() -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3, help="alternating fan-out rounds")
    parser.add_argument("--fanout-seconds", type=float, default=2.0)
    parser.add_argument("--fanout-only", action="store_true")
    args, _ = parser.parse_known_args()
    return asyncio.run(run(args))


if __name__ == "__main__":
    main()
