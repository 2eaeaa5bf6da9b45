"""Simulator throughput: order requests over one CMD socket, MD to one subscriber.

The gateway runs in its own process (`python -m market_client.simulator`), as a
user would run it; the load comes from bare `websockets` asyncio loops in this
process, so the numbers are the gateway's, not our client's.

    python benchmarks/bench_simulator.py [--orders 20000] [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from typing import Any

import httpx
from _servers import Server, simulator_process
from websockets.asyncio.client import connect

ADMIN = "bench-admin"


def gateway(backend: str, flow_hz: float = 0) -> contextlib.AbstractAsyncContextManager[Server]:
    return simulator_process(
        "--seed", "1", "--flow-hz", str(flow_hz), "--admin-token", ADMIN, "--backend", backend
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


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
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
    return rows


def main() -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=3.0)
    args, _ = parser.parse_known_args()
    return asyncio.run(run(args))


if __name__ == "__main__":
    main()
