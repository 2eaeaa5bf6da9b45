"""A gateway stand-in that is never the bottleneck: for client benchmarks only.

It speaks just enough of the protocol for a session to open (handshake,
``auth.login``, ``symbols.list``, ``candles.get``), answers every other CMD
request at once with a pre-built ``ok`` (an echo gateway: no engine), and on
MD sends one snapshot then pre-encoded ``book.delta`` and ``trade`` frames,
already framed as WebSocket bytes, as fast as the socket takes them. The
WebSocket handshake and framing are the ``websockets`` library's sans-I/O
protocol; the HTTP handshake route is answered by hand (it is one JSON reply).

    python benchmarks/_flood.py --messages 500000     # prints its URL
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
from typing import Any

import orjson
from websockets.frames import Frame, Opcode
from websockets.server import ServerProtocol

SYM = "ABC"
TOKEN = "u-flood.token"


def md_messages(
    count: int, levels: int = 20, seed: int = 1
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The snapshot and ``count`` increments (2 deltas per trade), as decoded."""
    rng = random.Random(seed)
    bids = [[f"{100 - i * 0.01:.2f}", 10] for i in range(1, levels + 1)]
    asks = [[f"{100 + i * 0.01:.2f}", 10] for i in range(1, levels + 1)]
    snapshot = {
        "type": "md",
        "ch": "book.snapshot",
        "sym": SYM,
        "seq": 0,
        "bids": bids,
        "asks": asks,
        "ts_ns": 0,
    }
    msgs: list[dict[str, Any]] = []
    ts = 1_700_000_000_000_000_000
    for seq in range(1, count + 1):
        ts += 100_000
        if seq % 3 == 0:
            msgs.append(
                {
                    "type": "md",
                    "ch": "trade",
                    "sym": SYM,
                    "seq": seq,
                    "trade_id": f"t-{seq}",
                    "price": "100.01",
                    "qty": rng.randint(1, 5),
                    "aggressor": "buy",
                    "ts_ns": ts,
                }
            )
        else:
            side = rng.choice(("buy", "sell"))
            i = rng.randint(1, levels)
            price = f"{100 - i * 0.01:.2f}" if side == "buy" else f"{100 + i * 0.01:.2f}"
            msgs.append(
                {
                    "type": "md",
                    "ch": "book.delta",
                    "sym": SYM,
                    "seq": seq,
                    "changes": [[side, price, rng.randint(0, 30)]],
                    "ts_ns": ts,
                }
            )
    return snapshot, msgs


def md_frames(count: int, levels: int = 20, seed: int = 1) -> tuple[bytes, bytes]:
    """The snapshot and ``count`` increments of `md_messages`, framed as bytes."""
    snapshot, msgs = md_messages(count, levels, seed)
    return _frame(orjson.dumps(snapshot)), b"".join(_frame(orjson.dumps(m)) for m in msgs)


def _frame(payload: bytes) -> bytes:
    """An unmasked final text frame (RFC 6455 5.2), built by hand: 10x faster than
    ``Frame.serialize``, so a 100,000-message flood starts in a fraction of a second."""
    size = len(payload)
    if size < 126:
        return b"\x81" + bytes((size,)) + payload
    if size < 1 << 16:
        return b"\x81\x7e" + size.to_bytes(2, "big") + payload
    return b"\x81\x7f" + size.to_bytes(8, "big") + payload


def _reply(frame: dict[str, object]) -> bytes:
    op = frame.get("op")
    payload: dict[str, object] = {}
    if op == "auth.login":
        payload = {"user_id": "u-flood", "session_id": "s-1", "is_admin": False, "event_seq": 0}
    elif op == "symbols.list":
        payload = {
            "symbols": [{"sym": SYM, "tick": "0.01", "min_qty": 1, "lot": 1, "status": "trading"}]
        }
    elif op == "candles.get":
        payload = {"sym": SYM, "interval_ms": 1000, "last_seq": 0, "candles": []}
    return orjson.dumps(
        {
            "type": "response",
            "ver": "1.0",
            "corr_id": frame.get("msg_id"),
            "op": op,
            "ts": "2026-11-24T00:00:00.000Z",
            "status": "ok",
            "payload": payload,
        }
    )


class Flood:
    def __init__(self, messages: int) -> None:
        self.snapshot, self.stream = md_frames(messages)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            if head.startswith(b"POST"):
                await self.http(head, reader, writer)
            else:
                await self.websocket(head, reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def http(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await reader.readexactly(length)
        body = json.dumps(
            {"status": "ok", "user_id": "u-flood", "token": TOKEN, "is_admin": False}
        ).encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()

    async def websocket(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        protocol = ServerProtocol()
        protocol.receive_data(head)
        request = protocol.events_received()[0]
        protocol.send_response(protocol.accept(request))  # type: ignore[arg-type]
        writer.write(b"".join(protocol.data_to_send()))
        md = request.path.startswith("/ws/md")  # type: ignore[union-attr]
        if md:
            writer.write(self.snapshot)
            view = memoryview(self.stream)
            for start in range(0, len(view), 1 << 16):
                writer.write(view[start : start + (1 << 16)])
                await writer.drain()
        while True:
            data = await reader.read(1 << 16)
            if not data:
                return
            protocol.receive_data(data)
            for event in protocol.events_received():
                if isinstance(event, Frame) and event.opcode is Opcode.TEXT and md is False:
                    protocol.send_text(_reply(orjson.loads(event.data)))
            out = protocol.data_to_send()
            if out:
                writer.write(b"".join(out))
                await writer.drain()
            if protocol.close_expected():  # the closing handshake is done: the server hangs up
                return


async def main(args: argparse.Namespace) -> None:
    flood = Flood(args.messages)
    server = await asyncio.start_server(flood.handle, "127.0.0.1", args.port)
    port = server.sockets[0].getsockname()[1]
    print(f"flood gateway on http://127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="A flood/echo gateway for client benchmarks.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--messages", type=int, default=300_000)
    asyncio.run(main(parser.parse_args()))
