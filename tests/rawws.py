"""A plain WebSocket test peer for the simulator: no MarketClient involved.

It speaks the protocol by hand over the default transport of the running
backend (``connect_websocket``), with nothing of the session in between.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from market_client._transports import TransportClosed, WebSocket, connect_websocket


async def handshake(url: str, token: str | None = None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url) as http:
        return await http.post("/auth/handshake", json={"token": token})


async def new_token(url: str, token: str | None = None) -> str:
    response = await handshake(url, token)
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


class RawCmd:
    """A CMD socket driven by hand."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self._ids = itertools.count(1)

    async def send_raw(self, text: str | bytes) -> None:
        await self.ws.send(text if isinstance(text, str) else text.decode())

    async def recv(self) -> dict[str, Any]:
        frame = orjson.loads(await self.ws.recv())
        assert isinstance(frame, dict)
        return frame

    async def response(self) -> dict[str, Any]:
        """The next response; events met on the way are kept in ``events``."""
        while True:
            frame = await self.recv()
            if frame["type"] == "event":
                self.events.append(frame)
            else:
                return frame

    async def request(
        self, op: str, payload: dict[str, Any] | None = None, *, as_: str | None = None
    ) -> dict[str, Any]:
        msg_id = f"m{next(self._ids)}"
        frame: dict[str, Any] = {
            "type": "request",
            "ver": "1.0",
            "msg_id": msg_id,
            "ts": "2026-11-24T10:00:00.000Z",
            "op": op,
            "payload": payload or {},
        }
        if as_ is not None:
            frame["as"] = as_
        await self.ws.send(orjson.dumps(frame).decode())
        response = await self.response()
        assert response["corr_id"] == msg_id, response
        assert response["op"] == op
        return response

    async def ok(
        self, op: str, payload: dict[str, Any] | None = None, *, as_: str | None = None
    ) -> dict[str, Any]:
        response = await self.request(op, payload, as_=as_)
        assert response["status"] == "ok", response
        return dict(response["payload"])

    async def error(
        self, op: str, payload: dict[str, Any] | None = None, *, as_: str | None = None
    ) -> str:
        response = await self.request(op, payload, as_=as_)
        assert response["status"] == "error", response
        assert set(response["error"]) == {"code", "message"}
        return str(response["error"]["code"])

    async def event(self, kind: str | None = None) -> dict[str, Any]:
        """The next event (of ``kind``), from those already seen first."""
        while True:
            while self.events:
                frame = self.events.pop(0)
                if kind is None or frame["event"] == kind:
                    return frame
            frame = await self.recv()
            assert frame["type"] == "event", frame
            self.events.append(frame)


@contextlib.asynccontextmanager
async def raw_cmd(
    url: str, token: str | None = None, *, login: bool = True
) -> AsyncIterator[RawCmd]:
    if token is None:
        token = await new_token(url)
    async with connect_websocket(f"ws{url[4:]}/ws/cmd?token={token}") as ws:
        cmd = RawCmd(ws)
        if login:
            await cmd.ok("auth.login")
        yield cmd


@contextlib.asynccontextmanager
async def raw_md(
    url: str, token: str | None = None, symbols: str | None = None
) -> AsyncIterator[WebSocket]:
    if token is None:
        token = await new_token(url)
    query = f"?token={token}" + (f"&symbols={symbols}" if symbols else "")
    async with connect_websocket(f"ws{url[4:]}/ws/md{query}") as ws:
        yield ws


async def md_next(ws: WebSocket, *, skip_heartbeats: bool = True) -> dict[str, Any]:
    while True:
        msg = orjson.loads(await ws.recv())
        if not (skip_heartbeats and msg.get("ch") == "heartbeat"):
            return dict(msg)


async def close_code(ws: WebSocket) -> int:
    """Read until the socket closes; its close code."""
    try:
        while True:
            await ws.recv()
    except TransportClosed as exc:
        return exc.code
