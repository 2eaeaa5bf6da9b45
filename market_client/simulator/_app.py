"""The gateway's I/O layer: a Starlette ASGI application around `Exchange`.

Every socket has one bounded outgoing queue and one writer task (an
`Outbox`), so the engine never awaits a socket: it pushes and moves on. A
connection whose queue fills up (a consumer that fell too far behind) is
closed with code 1013 instead of being buffered without bound. Each MD
message is encoded once and shared by every subscriber (`SharedFrame`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import orjson
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from .._wire import CMD_FRAME_LIMIT, HTTP_BODY_LIMIT
from ._exchange import FRAME_FAULTS, Exchange, Json, Limits, OpError, Session, SymbolSpec, User
from ._flow import Flow
from ._outbox import Outbox, RawSendMiddleware, SharedFrame, hypercorn_stream

__all__ = ["Gateway", "GatewayStats"]

log = logging.getLogger("market_client.simulator")

CLOSE_NORMAL = 1000
CLOSE_TRY_AGAIN_LATER = 1013  # the subscriber fell too far behind (see `Outbox`)
CLOSE_SERVICE_RESTART = 1012  # admin.disconnect
CLOSE_UNAUTHORIZED = 4401
CLOSE_BAD_REQUEST = 4400
HEARTBEAT_S = 0.5
OVERSIZED_BYTES = 17 * 1024 * 1024  # over the client's 16 MiB frame limit

#: The malformed frames of ``admin.fault`` (``bad_price`` is made by the exchange).
_BAD_FRAMES: dict[str, dict[str, str]] = {
    "cmd": {
        "not_json": '{"type": "event", oops',
        "not_object": "[1, 2, 3]",
        "wrong_types": '{"type": "event", "event": 7, "seq": "x", "payload": []}',
        "unknown_type": '{"type": "surprise", "ver": "1.0"}',
        "unknown_corr_id": '{"type": "response", "ver": "1.0", "corr_id": "no-such-request",'
        ' "op": "order.place", "status": "ok", "payload": {}}',
    },
    "md": {
        "not_json": '{"type": "md", oops',
        "not_object": '"just a string"',
        "wrong_types": '{"type": "md", "ch": "book.delta", "sym": 5, "seq": "x", "changes": 1}',
        "unknown_type": '{"type": "md", "ch": "surprise", "sym": "ABC", "ts_ns": 0}',
        "unknown_corr_id": '{"type": "response", "corr_id": "no-such-request", "status": "ok"}',
    },
}


def _json_response(body: Json, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _error_body(code: str, message: str) -> Json:
    return {"status": "error", "error": {"code": code, "message": message}}


def _error_response(code: str, message: str, status: int) -> Response:
    return _json_response(_error_body(code, message), status)


class _TooLarge(Exception):
    """A request body over the limit."""


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused before it is read in full when it is over ``limit`` bytes.

    A declared ``Content-Length`` is checked first; a chunked body is counted
    while it streams, so no more than ``limit`` bytes (plus one chunk) are
    ever held.

    Raises:
        _TooLarge: The body is (or declares to be) over ``limit`` bytes.
    """
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    # aclosing: leaving early must close the stream at once, not at garbage collection.
    async with contextlib.aclosing(request.stream()) as stream:
        async for chunk in stream:
            size += len(chunk)
            if size > limit:
                raise _TooLarge
            chunks.append(chunk)
    return b"".join(chunks)


_TOO_LARGE = f"the request body is over {HTTP_BODY_LIMIT} bytes"


@dataclass
class GatewayStats:
    """Counters of the gateway, for tests and benchmarks."""

    md_sent: int = 0
    md_dropped_slow: int = 0
    cmd_requests: int = 0
    cmd_connections: int = 0
    md_connections: int = 0


class Gateway:
    """The simulator gateway as an ASGI application (``gateway.app``).

    Args:
        symbols: What trades here.
        admin_token: Token that handshakes as the admin user.
        secret: Key that signs user tokens (random when None).
        seed: Seed of the background flow.
        flow_hz: Background flow actions per second (0: none).
        rate_limit_hz: Per-user request limit (None: unlimited).
        queue_size: Outgoing messages buffered per socket before a slow
            consumer is disconnected with 1013.
        limits: The engine's bounds (the documented defaults when None).
    """

    def __init__(
        self,
        symbols: tuple[SymbolSpec, ...],
        *,
        admin_token: str | None = None,
        secret: bytes | None = None,
        seed: int | None = None,
        flow_hz: float = 20.0,
        rate_limit_hz: float | None = None,
        queue_size: int = 10_000,
        limits: Limits | None = None,
    ) -> None:
        self.exchange = Exchange(
            symbols,
            self,
            secret=secret,
            admin_token=admin_token,
            rate_limit_hz=rate_limit_hz,
            limits=limits,
        )
        self.queue_size = queue_size
        self.stats = GatewayStats()
        self._md: dict[str, set[Outbox]] = {sym: set() for sym in self.exchange.symbols}
        self._md_all: set[Outbox] = set()
        self._cmd: dict[str, set[Outbox]] = {}
        self._md_stall_until = 0.0
        self.flow = Flow(self.exchange, flow_hz, seed)
        self.flow.seed_books()
        self.app = Starlette(
            routes=[
                Route("/healthz", self._healthz, methods=["GET"]),
                Route("/auth/handshake", self._handshake, methods=["POST"]),
                Route("/api/request", self._api_request, methods=["POST"]),
                WebSocketRoute("/ws/cmd", self._ws_cmd),
                WebSocketRoute("/ws/md", self._ws_md),
            ],
            lifespan=self._lifespan,
            middleware=[Middleware(RawSendMiddleware)],
        )

    # -- Sink ------------------------------------------------------------
    def md(self, sym: str, msg: Json) -> None:
        """Fan one MD message out to its subscribers (encoded once)."""
        subs = self._md[sym]
        if not subs or (self._md_stall_until and self._md_stalled()):
            return
        frame = SharedFrame(orjson.dumps(msg).decode())
        sent = 0
        for conn in tuple(subs):
            if conn.push(frame):
                sent += 1
        stats = self.stats
        stats.md_sent += sent
        stats.md_dropped_slow += len(subs) - sent

    def event(self, user_id: str, frame: Json) -> None:
        """Push a private event to the user's logged-in CMD sockets."""
        conns = self._cmd.get(user_id)
        if not conns:
            return
        text = orjson.dumps(frame).decode()
        for conn in tuple(conns):
            if conn.session is not None and conn.session.logged_in:
                conn.push(text)

    def disconnect(self, user_id: str | None) -> None:
        """Close the user's (or every) CMD and MD socket with 1012."""
        targets = [c for conns in self._cmd.values() for c in conns] + list(self._md_all)
        for conn in targets:
            if user_id is None or conn.user_id == user_id:
                conn.kill(CLOSE_SERVICE_RESTART, "disconnected by admin")

    def set_flow(self, rate_hz: float) -> None:
        """Change the background flow rate."""
        self.flow.set_rate(rate_hz)

    def stall_md(self, seconds: float) -> None:
        """Send no MD and no heartbeats for ``seconds`` (0 ends a stall); the link stays open."""
        self._md_stall_until = anyio.current_time() + seconds if seconds > 0 else 0.0

    def _md_stalled(self) -> bool:
        if anyio.current_time() < self._md_stall_until:
            return True
        self._md_stall_until = 0.0
        return False

    def inject(self, channel: str, kind: str, user_id: str | None) -> int:
        """Send one malformed frame of ``kind`` on ``channel`` to the user (or everyone).

        Kinds are `FRAME_FAULTS` but ``bad_price``. Returns how many
        sockets got it.
        """
        if kind not in FRAME_FAULTS or kind == "bad_price":
            raise ValueError(f"no frame fault {kind!r} here")
        if kind == "oversized":
            text = '{"type": "md", "pad": "' + "x" * OVERSIZED_BYTES + '"}'
        else:
            text = _BAD_FRAMES[channel][kind]
        if channel == "cmd":
            targets = [c for conns in self._cmd.values() for c in conns]
        else:
            targets = list(self._md_all)
        sent = 0
        for conn in targets:
            if (user_id is None or conn.user_id == user_id) and conn.push(text):
                sent += 1
        return sent

    # -- lifespan ----------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.flow.run)
            tg.start_soon(self.heartbeats)
            yield
            tg.cancel_scope.cancel()

    async def heartbeats(self) -> None:
        """Send a heartbeat to every MD subscriber every ``HEARTBEAT_S``, until cancelled."""
        while True:
            await anyio.sleep(HEARTBEAT_S)
            if self._md_stall_until and self._md_stalled():
                continue
            text = SharedFrame(
                orjson.dumps(
                    {"type": "md", "ch": "heartbeat", "ts_ns": self.exchange.now_ns()}
                ).decode()
            )
            for conn in tuple(self._md_all):
                conn.push(text)

    # -- HTTP --------------------------------------------------------------
    async def _healthz(self, request: Request) -> Response:
        return _json_response({"status": "ok"})

    async def _handshake(self, request: Request) -> Response:
        try:
            body = orjson.loads(await _read_body(request, HTTP_BODY_LIMIT))
        except _TooLarge:
            return _error_response("bad_request", _TOO_LARGE, 413)
        except orjson.JSONDecodeError:
            return _error_response("bad_request", "body must be JSON", 400)
        if not isinstance(body, dict):
            return _error_response("bad_request", 'send {"token": null | "<T>"}', 400)
        try:
            return _json_response(self.exchange.handshake(body.get("token")))
        except OpError as exc:
            return _error_response(
                exc.code, exc.message, 401 if exc.code == "unauthorized" else 503
            )

    async def _api_request(self, request: Request) -> Response:
        try:
            user = self.exchange.user_for_token(request.headers.get("x-auth-token"))
        except OpError as exc:
            return _error_response(exc.code, exc.message, 503)
        if user is None:
            return _error_response("unauthorized", "missing or invalid X-Auth-Token header", 401)
        # The same limit as a CMD frame, so both routes accept the same requests.
        try:
            frame: Any = orjson.loads(await _read_body(request, CMD_FRAME_LIMIT))
        except _TooLarge:
            return _error_response("bad_request", _TOO_LARGE, 413)
        except orjson.JSONDecodeError:
            frame = None
        self.stats.cmd_requests += 1
        session = Session(user, logged_in=True, session_id="http")
        return _json_response(self.exchange.handle(session, frame))

    # -- WebSockets ----------------------------------------------------------
    async def _accept(self, ws: WebSocket) -> User | None:
        """Accept the socket and count it against its user; None when it was closed instead."""
        await ws.accept()
        try:
            user = self.exchange.user_for_token(ws.query_params.get("token"))
        except OpError as exc:  # the user table is full
            await ws.close(CLOSE_TRY_AGAIN_LATER, exc.message[:120])
            return None
        if user is None:
            await ws.close(CLOSE_UNAUTHORIZED, "unknown or invalid token")
            return None
        if not self.exchange.accounts.connect(user):
            limit = self.exchange.limits.max_connections_per_user
            await ws.close(CLOSE_TRY_AGAIN_LATER, f"more than {limit} sockets of one user")
            return None
        return user

    async def _serve_conn(
        self, ws: WebSocket, conn: Outbox, on_frame: Callable[[Any], Awaitable[None]] | None
    ) -> None:
        """Run the writer and the reader of one socket until either ends."""

        async def writer() -> None:
            await conn.run_writer(ws.send_text, hypercorn_stream(ws.scope))

        async def reader() -> None:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if on_frame is not None:
                    raw = message.get("text")
                    if raw is None:
                        raw = message.get("bytes")
                    await on_frame(raw)
            tg.cancel_scope.cancel()

        try:
            with conn.scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(writer)
                    await reader()
        except (WebSocketDisconnect, OSError, RuntimeError) as exc:
            # The peer went away mid-send; nothing to report to anyone.
            log.debug("socket of %s ended: %r", conn.user_id, exc)
        finally:  # also when the server cancels the connection (the peer vanished)
            conn.close()
        if conn.close_code != CLOSE_NORMAL:
            with contextlib.suppress(Exception):
                await ws.close(conn.close_code, conn.close_reason)

    async def _ws_cmd(self, ws: WebSocket) -> None:
        user = await self._accept(ws)
        if user is None:
            return
        user_id = user.user_id
        session = Session(user)
        conn = Outbox(user_id, self.queue_size, session)
        faults = self.exchange.faults
        self._cmd.setdefault(user_id, set()).add(conn)
        self.stats.cmd_connections += 1
        delayed = 0

        async def reply_later(frame: Json, delay: float) -> None:
            nonlocal delayed
            try:
                await anyio.sleep(delay)
                conn.push(orjson.dumps(self.exchange.handle(session, frame)).decode())
            finally:
                delayed -= 1

        async def on_frame(raw: str | bytes | None) -> None:
            nonlocal delayed
            self.stats.cmd_requests += 1
            try:
                frame: Any = orjson.loads(raw) if raw is not None else None
            except orjson.JSONDecodeError:
                frame = None
            op = frame.get("op") if isinstance(frame, dict) else None
            if isinstance(op, str):
                if op in faults.drop:
                    return
                delay = faults.delay.get(op)
                if delay:
                    # Replies held back count against the socket's queue.
                    if delayed >= self.queue_size:
                        conn.kill(CLOSE_TRY_AGAIN_LATER, "too many delayed requests")
                        return
                    delayed += 1
                    tg.start_soon(reply_later, frame, delay)
                    return
            conn.push(orjson.dumps(self.exchange.handle(session, frame)).decode())

        try:
            async with anyio.create_task_group() as tg:
                await self._serve_conn(ws, conn, on_frame)
                tg.cancel_scope.cancel()
        finally:
            conns = self._cmd.get(user_id)
            if conns is not None:
                conns.discard(conn)
                if not conns:
                    del self._cmd[user_id]
            self.stats.cmd_connections -= 1
            self.exchange.accounts.disconnect(user)

    async def _ws_md(self, ws: WebSocket) -> None:
        user = await self._accept(ws)
        if user is None:
            return
        try:
            await self._serve_md(ws, user)
        finally:
            self.exchange.accounts.disconnect(user)

    async def _serve_md(self, ws: WebSocket, user: User) -> None:
        wanted = ws.query_params.get("symbols")
        # dict.fromkeys: each symbol once, in the order asked.
        syms = list(self.exchange.symbols) if not wanted else list(dict.fromkeys(wanted.split(",")))
        unknown = [s for s in syms if s not in self.exchange.symbols]
        if unknown:
            await ws.close(CLOSE_BAD_REQUEST, f"unknown symbols: {','.join(unknown)}"[:120])
            return
        conn = Outbox(user.user_id, self.queue_size)
        # Snapshot and subscription happen in one synchronous step, so every
        # increment queued after the snapshot is newer than it.
        for sym in syms:
            conn.push(orjson.dumps(self.exchange.snapshot(sym)).decode())
            self._md[sym].add(conn)
        self._md_all.add(conn)
        self.stats.md_connections += 1
        try:
            await self._serve_conn(ws, conn, None)
        finally:
            for sym in syms:
                self._md[sym].discard(conn)
            self._md_all.discard(conn)
            self.stats.md_connections -= 1
