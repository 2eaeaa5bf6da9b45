"""The client: one session = one task group that owns every socket and task."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import ssl as ssl_module
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, cast

import anyio
import httpx
from anyio.abc import TaskGroup, TaskStatus

from ._events import Event, EventHub, EventStream, Hook, HookRunner
from ._exceptions import (
    AuthError,
    ConnectError,
    ConnectionLost,
    GatewayError,
    MarketClientError,
    ReconnectFailed,
    RequestTimeout,
    SessionClosed,
)
from ._models import (
    BestBidAsk,
    BookReply,
    BookSnapshot,
    CandleDict,
    HandshakeReply,
    LoginReply,
    OrderDict,
    OrderReply,
    Portfolio,
    SymbolDict,
)
from ._protocol import PROTOCOL_VERSION, Correlator, decode_frame, encode_request
from ._reconnect import LinkState, ReconnectPolicy
from ._ring import TransactionLog
from ._state import MarketState
from ._transport import (
    TransportClosed,
    TransportName,
    TransportOpenError,
    WebSocket,
    connect_websocket,
)

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

if TYPE_CHECKING:
    from .recording import Recorder

__all__ = ["MarketClient", "RequestSession"]

log = logging.getLogger("market_client")

SIDES = ("buy", "sell")
ORDER_TYPES = ("limit", "market")
TIFS = ("GTC", "IOC", "FOK")
RESYNC_DEPTH = 1000
MAX_CLIENT_ORDER_ID = 64


def _check_timeout(timeout: float) -> float:
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not 0 < timeout < math.inf
    ):
        raise ValueError(f"timeout must be a positive finite number of seconds, got {timeout!r}")
    return float(timeout)


def _price_text(price: Decimal | str) -> str:
    if isinstance(price, float):
        raise TypeError(
            "prices are Decimal or decimal strings, never floats: "
            f"use Decimal({str(price)!r}) or {str(price)!r}"
        )
    if not isinstance(price, (Decimal, str)):
        raise TypeError(f"price must be a Decimal or a decimal string, got {type(price).__name__}")
    try:
        value = Decimal(price)
    except InvalidOperation:
        raise ValueError(f"price {price!r} is not a decimal number") from None
    if not value.is_finite() or value <= 0:
        raise ValueError(f"price must be a positive finite decimal, got {price!r}")
    return format(value, "f")


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _unwrap(exc: BaseException) -> BaseException:
    """What to raise at the session boundary instead of an exception group.

    Cancellations are dropped; one remaining exception is raised as itself;
    several of one type (the CMD and MD channels failing together, say with
    ``AuthError``) are reported as the first; several that all report the
    link going down as the one that ended the session (``ReconnectFailed``)
    or else the first. Anything else stays a group.
    """
    if not isinstance(exc, BaseExceptionGroup):
        return exc
    cancelled = anyio.get_cancelled_exc_class()
    real = [e for e in _leaves(exc) if not isinstance(e, cancelled)]
    if not real:
        return exc
    if all(type(e) is type(real[0]) for e in real):
        return real[0]
    if all(isinstance(e, ConnectionLost) for e in real):
        return next((e for e in real if isinstance(e, ReconnectFailed)), real[0])
    return exc


class _Waiter:
    """A pending request's slot: an event and the frame or error that set it."""

    __slots__ = ("error", "event", "frame")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.frame: dict[str, Any] | None = None
        self.error: BaseException | None = None

    def set_result(self, frame: dict[str, Any]) -> None:
        self.frame = frame
        self.event.set()

    def set_error(self, exc: BaseException) -> None:
        self.error = exc
        self.event.set()


class RequestSession:
    """One CMD WebSocket: requests out, responses matched by ``corr_id``, events in.

    Many tasks may call :meth:`request` at once; each waits for its own
    response. Created by :meth:`MarketClient.open_cmd`, which also runs
    :meth:`run` (the reader) in the session's task group.
    """

    def __init__(
        self,
        ws: WebSocket,
        *,
        on_event: Callable[[dict[str, Any]], None],
        timeout: float = 5.0,
        max_pending: int = 10_000,
        on_raw_event: Callable[[str | bytes], None] | None = None,
    ) -> None:
        self._ws = ws
        self._on_event = on_event
        self._on_raw_event = on_raw_event
        self.timeout = timeout
        self.correlator: Correlator[_Waiter] = Correlator(max_pending)
        self.closed: MarketClientError | None = None
        self.requests = 0
        self.frames = 0
        self.malformed = 0
        self.login: LoginReply | None = None

    async def request(
        self,
        op: str,
        payload: Mapping[str, Any] | None = None,
        *,
        as_role: str | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Send one request and wait for its response payload.

        Raises:
            GatewayError: The gateway answered with an error (``AuthError`` for
                ``unauthorized``).
            RequestTimeout: No response within ``timeout``; the waiter is removed.
            ConnectionLost: The socket closed before the response came.
            SessionClosed: The session was closed.
        """
        if self.closed is not None:
            raise _fresh(self.closed)
        limit = self.timeout if timeout is None else timeout
        waiter = _Waiter()
        msg_id = self.correlator.add(waiter)
        text = encode_request(op, payload if payload is not None else {}, msg_id, as_role)
        self.requests += 1
        try:
            # fail_after's own mechanism, without its generator wrapper (5 µs a request)
            with anyio.CancelScope(deadline=anyio.current_time() + limit) as scope:
                await self._ws.send(text)
                await waiter.event.wait()
            if scope.cancelled_caught:
                raise RequestTimeout(op, limit)
        except TransportClosed as exc:
            self.closed = self.closed or ConnectionLost(
                f"CMD connection closed (code {exc.code})", exc.code
            )
            raise _fresh(self.closed) from exc
        finally:
            if waiter.frame is None and waiter.error is None:
                self.correlator.abandon(msg_id)
        if waiter.error is not None:
            raise _fresh(waiter.error)
        return _payload_or_raise(cast(dict[str, Any], waiter.frame), op)

    async def run(self) -> None:
        """Read frames until the socket closes; then fail every pending request.

        Raises:
            ConnectionLost: The gateway or the network closed the socket.
        """
        ws = self._ws
        correlator = self.correlator
        on_event = self._on_event
        while True:
            try:
                raw = await ws.recv()
            except TransportClosed as exc:
                lost = ConnectionLost(
                    f"CMD connection closed (code {exc.code}"
                    + (f": {exc.reason})" if exc.reason else ")"),
                    exc.code,
                )
                self.fail(lost)
                raise lost from exc
            self.frames += 1
            frame = decode_frame(raw)
            kind = frame.get("type") if frame is not None else None
            if kind == "response":
                correlator.resolve(cast(dict[str, Any], frame))
            elif kind == "event" and _is_event(cast(dict[str, Any], frame)):
                if self._on_raw_event is not None:
                    self._on_raw_event(raw)
                on_event(cast(dict[str, Any], frame))
            else:
                self.malformed += 1
                log.warning("malformed CMD frame ignored: %.200r", raw)

    def fail(self, exc: MarketClientError) -> None:
        """Refuse new requests and fail the pending ones with ``exc``."""
        self.closed = self.closed or exc
        self.correlator.fail_all(exc)

    async def aclose(self) -> None:
        """Close the socket."""
        with anyio.move_on_after(1, shield=True):
            await self._ws.aclose()


def _is_event(frame: dict[str, Any]) -> bool:
    """Whether an ``event`` frame has the fields every consumer relies on."""
    seq = frame.get("seq")
    return (
        isinstance(frame.get("event"), str)
        and isinstance(seq, int)
        and not isinstance(seq, bool)
        and isinstance(frame.get("payload"), dict)
    )


def _fresh(exc: BaseException) -> BaseException:
    """A new instance of a stored error, so that tasks never share one traceback."""
    if isinstance(exc, ConnectionLost):
        new: BaseException = type(exc)(str(exc), exc.code)
    elif isinstance(exc, SessionClosed):
        new = SessionClosed(str(exc))
    else:
        return exc
    new.__cause__ = exc.__cause__
    return new


def _payload_or_raise(frame: dict[str, Any], op: str) -> dict[str, Any]:
    if frame.get("status") == "ok":
        payload = frame.get("payload")
        return payload if isinstance(payload, dict) else {}
    error = frame.get("error")
    if not isinstance(error, dict):
        error = {}
    code = str(error.get("code", "internal"))
    message = str(error.get("message", "the gateway gave no error message"))
    cls = AuthError if code == "unauthorized" else GatewayError
    raise cls(code, message, op, frame)


class MarketClient:
    """A session with the gateway: requests, live books, candles and events.

    Open it with ``async with`` (preferred), which runs the CMD reader, the
    MD reader, book resyncs, heartbeat supervision and async hooks as
    children of one task group::

        async with MarketClient.session("http://localhost:8000") as client:
            await client.place_order("ABC", side="buy", price="100.00", qty=1)

    Leaving the block cancels every child and closes every socket and the
    HTTP client. If a child fails (the gateway closed the link, heartbeats
    stopped), the block is cancelled and the failure is raised from it as a
    single exception (never an exception group), e.g. :class:`ConnectionLost`.

    Args:
        base_url: ``http://host:port`` or ``https://host:port`` of the gateway.
        token: Resume this user instead of creating a new one.
        md: Open the market-data channel and keep local books.
        symbols: Market data for these symbols only (None: all).
        timeout: Default deadline of a request, in seconds.
        transport: WebSocket library: ``"websockets"`` (default, both
            backends), ``"trio-websocket"`` (Trio only), ``"httpx-ws"``
            (both; needs the httpx-ws package) or ``"picows"`` (asyncio
            only; needs the picows package; the fastest market-data reader).
        ssl: TLS context for ``https``/``wss`` (default: system trust store).
        heartbeat_timeout: Market-data silence, in seconds, after which the
            link counts as dead.
        on_md_event: Called with every MD message (sync or async callable).
        on_cmd_event: Called with every CMD event frame (sync or async).
        transactions: Capacity of the transactions ring buffer.
        max_pending: Most requests in flight at once.
        reconnect: ``True`` (default) reconnects a dropped channel with the
            default :class:`ReconnectPolicy`; a policy tunes the backoff and
            the deadline; ``False`` ends the session with
            :class:`ConnectionLost` at the first drop (fail-fast).
        record: Record what the session receives into this directory (see
            `record`; needs the ``record`` extra).
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        md: bool = True,
        symbols: Sequence[str] | None = None,
        timeout: float = 5.0,
        transport: TransportName | None = None,
        ssl: ssl_module.SSLContext | None = None,
        heartbeat_timeout: float = 3.0,
        on_md_event: Hook | None = None,
        on_cmd_event: Hook | None = None,
        transactions: int = 1000,
        max_pending: int = 10_000,
        reconnect: bool | ReconnectPolicy = True,
        record: str | os.PathLike[str] | None = None,
    ) -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        if symbols is not None:
            if isinstance(symbols, str):
                raise TypeError("symbols is a list of names, e.g. ['ABC'], not a string")
            symbols = list(symbols)
            if not symbols or not all(isinstance(s, str) and s for s in symbols):
                raise ValueError("symbols must be a non-empty list of symbol names")
        if reconnect is True:
            reconnect = ReconnectPolicy()
        elif reconnect is not False and not isinstance(reconnect, ReconnectPolicy):
            raise TypeError("reconnect must be True, False or a ReconnectPolicy")
        self._policy: ReconnectPolicy | None = reconnect or None
        self._base_url = base_url.rstrip("/")
        self._ws_base = "ws" + self._base_url[4:]
        self._token = token
        self._md_enabled = md
        self._symbols = symbols
        self.timeout = _check_timeout(timeout)
        self._heartbeat_timeout = _check_timeout(heartbeat_timeout)
        self._transport: TransportName | None = transport
        self._ssl = ssl
        self._on_md_event = on_md_event
        self._on_cmd_event = on_cmd_event
        self._event_hook: Hook | None = None
        self._max_pending = max_pending
        self._transactions = TransactionLog(transactions)
        self._hub = EventHub()
        self._hooks = HookRunner()
        self._market = MarketState()
        self._state: Literal["unopened", "open", "closed"] = "unopened"
        self._stack: contextlib.AsyncExitStack | None = None
        self._tg: TaskGroup | None = None
        self._http: httpx.AsyncClient | None = None
        self._cmd: RequestSession | None = None
        self._cmd_retired = dict.fromkeys(
            ("requests", "frames", "malformed", "late", "unsolicited"), 0
        )
        self._links = {"cmd": LinkState("cmd"), "md": LinkState("md")}
        self._link_changed: anyio.Event | None = None  # created once a backend runs
        self._ended: MarketClientError | None = None
        self._md_open = False
        self._md_symbols: list[str] | None = None
        self._expected_syms: set[str] = set()
        self._symbols_cache: list[SymbolDict] | None = None
        self._candle_defaults: dict[str, int] = {}
        self.user_id: str | None = None
        self.is_admin = False
        self._event_seq = 0
        self._gateway_resets = 0
        self._record_dir = record
        # Called with (channel, raw frame, receive time in ns) for every MD
        # frame and CMD event, before it is decoded: what a recorder keeps.
        self._taps: list[Callable[[str, str | bytes, int], None]] = []
        self._recorders: list[Recorder] = []
        self._counts = {
            "md_messages": 0,
            "cmd_events": 0,
            "missed_private_events": 0,
            "http_requests": 0,
            "md_malformed": 0,
        }

    # -- lifecycle ----------------------------------------------------------
    @classmethod
    def session(cls, base_url: str, **kwargs: Any) -> MarketClient:
        """A client to open with ``async with``; takes the constructor's arguments."""
        return cls(base_url, **kwargs)

    @classmethod
    async def connect(
        cls,
        base_url: str,
        connect_md: bool = True,
        on_md_event: Hook | None = None,
        on_cmd_event: Hook | None = None,
        **kwargs: Any,
    ) -> MarketClient:
        """Open a session without ``async with`` (the seed API); close it with :meth:`aclose`.

        The session's task group is entered in the calling task, so call
        :meth:`aclose` from that same task, and know that a failing child
        (lost connection) cancels that task until :meth:`aclose` is called.
        ``async with MarketClient.session(...)`` has neither constraint.
        """
        client = cls(
            base_url, md=connect_md, on_md_event=on_md_event, on_cmd_event=on_cmd_event, **kwargs
        )
        await client.__aenter__()
        return client

    async def aclose(self) -> None:
        """Close the session: cancel its tasks, close its sockets (idempotent)."""
        await self.__aexit__(None, None, None)

    async def __aenter__(self) -> MarketClient:
        await self._start()
        try:
            await self.handshake()
            if self._record_dir is not None:
                assert self._stack is not None
                await self._stack.enter_async_context(self.record(self._record_dir))
            await self.open_cmd()
            if self._md_enabled:
                await self.open_md(self._symbols)
        except BaseException as exc:
            await self.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if self._state != "open" or self._stack is None:
            self._state = "closed"
            return False
        self._state = "closed"
        closed = SessionClosed("the session was closed")
        self._ended = closed
        self._links_changed()
        if self._cmd is not None:
            self._cmd.fail(closed)
        self._hub.close()
        self._hooks.close()
        if self._tg is not None:
            self._tg.cancel_scope.cancel()
        stack, self._stack = self._stack, None
        try:
            suppressed = await stack.__aexit__(exc_type, exc, tb)
        except BaseException as err:
            single = _unwrap(err)
            if single is exc:
                return False  # the block's own exception goes on as it was
            if single is err:
                raise
            raise single from single.__cause__  # unwrapped: no exception group
        return bool(suppressed)

    async def _start(self) -> None:
        if self._state != "unopened":
            raise RuntimeError(
                f"this MarketClient is {self._state}; a client is opened once, create a new one"
            )
        self._state = "open"
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            verify: ssl_module.SSLContext | bool = self._ssl if self._ssl is not None else True
            self._http = await stack.enter_async_context(
                httpx.AsyncClient(base_url=self._base_url, timeout=self.timeout, verify=verify)
            )
            self._link_changed = anyio.Event()
            self._tg = await stack.enter_async_context(anyio.create_task_group())
            self._tg.start_soon(self._hooks.run)
        except BaseException:
            await stack.aclose()
            self._state = "closed"
            raise
        self._stack = stack

    def _require_open(self) -> TaskGroup:
        if self._state == "closed":
            raise SessionClosed("the session was closed; open a new MarketClient")
        if self._tg is None:
            raise RuntimeError(
                "the client is not open: use `async with MarketClient.session(url)`"
                " or `await MarketClient.connect(url)`"
            )
        return self._tg

    def __repr__(self) -> str:
        return f"<MarketClient {self._base_url} user={self.user_id} {self._state}>"

    @property
    def token(self) -> str | None:
        """The session token (a secret: it is never logged nor shown in ``repr``)."""
        return self._token

    # -- low level -----------------------------------------------------------
    async def handshake(self) -> HandshakeReply:
        """``POST /auth/handshake``: create a user, or resume the one ``token`` names.

        Raises:
            AuthError: The gateway does not know the token.
            ConnectError: The gateway cannot be reached.
        """
        if self._http is None:
            await self._start()
        assert self._http is not None
        reply = await self._http_json("/auth/handshake", {"token": self._token}, op="handshake")
        if reply.get("status") != "ok":
            _payload_or_raise({"status": "error", "error": reply.get("error")}, "handshake")
        self._token = str(reply["token"])
        self.user_id = str(reply["user_id"])
        self.is_admin = bool(reply.get("is_admin"))
        return cast(HandshakeReply, reply)

    async def _http_json(
        self,
        path: str,
        body: Any,
        *,
        op: str,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        assert self._http is not None
        self._counts["http_requests"] += 1
        try:
            response = await self._http.post(
                path, json=body, headers=headers, timeout=timeout or self.timeout
            )
        except httpx.TimeoutException as exc:
            raise RequestTimeout(op, timeout or self.timeout) from exc
        except httpx.HTTPError as exc:
            raise ConnectError(
                f"cannot reach the gateway at {self._base_url}: {exc!s}; is it "
                "running? (`market-client sim` starts one)"
            ) from exc
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code == 401:
            error = data.get("error", {}) if isinstance(data, dict) else {}
            raise AuthError(
                "unauthorized",
                str(error.get("message", "token refused")),
                op,
                data if isinstance(data, dict) else {},
            )
        if not isinstance(data, dict):
            raise GatewayError("bad_response", f"HTTP {response.status_code} with no JSON body", op)
        return data

    async def api_request(
        self,
        op: str,
        payload: Mapping[str, Any] | None = None,
        *,
        as_role: str | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """One request over HTTP (``POST /api/request``): the fallback to :meth:`send`.

        Returns the response payload, raising like :meth:`send`.
        """
        self._check_op(op, payload)
        if self._token is None:
            await self.handshake()
        body: dict[str, Any] = {"op": op, "payload": dict(payload or {})}
        if as_role is not None:
            body["as"] = as_role
        limit = self.timeout if timeout is None else _check_timeout(timeout)
        frame = await self._http_json(
            "/api/request",
            body,
            op=op,
            headers={"X-Auth-Token": cast(str, self._token)},
            timeout=limit,
        )
        return _payload_or_raise(frame, op)

    async def open_cmd(self) -> RequestSession:
        """Open the CMD WebSocket, start its reader, log in; returns the request session.

        The channel is then supervised for the whole session: when it drops
        it is reconnected (see ``reconnect``) and the user logged in again,
        and the session object is replaced by a new one.
        """
        tg = self._require_open()
        if self._cmd is not None:
            return self._cmd
        if self._token is None:
            await self.handshake()
        await tg.start(self._supervise, "cmd", self._cmd_link)
        assert self._cmd is not None
        return self._cmd

    async def _cmd_link(self, *, task_status: TaskStatus[None]) -> None:
        """One CMD connection: open, read, log in; returns only by raising."""
        url = f"{self._ws_base}/ws/cmd?token={self._token}"
        try:
            async with connect_websocket(
                url, transport=self._transport, ssl=self._ssl, open_timeout=self.timeout
            ) as ws:
                session = RequestSession(
                    ws,
                    on_event=self._on_cmd_frame,
                    timeout=self.timeout,
                    max_pending=self._max_pending,
                    on_raw_event=self._tap_cmd,
                )
                try:
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(session.run)
                        login = await session.request("auth.login", {}, timeout=self.timeout)
                        session.login = cast(LoginReply, login)
                        self._logged_in(session)
                        task_status.started()
                finally:
                    await session.aclose()
        except TransportOpenError as exc:
            raise self._open_error("CMD", exc) from exc

    def _open_error(self, channel: str, exc: TransportOpenError) -> MarketClientError:
        if exc.status in (401, 403):
            return AuthError(
                "unauthorized",
                f"the gateway refused the {channel} connection (HTTP {exc.status})",
                "connect",
            )
        return ConnectError(f"cannot open the {channel} WebSocket at {self._ws_base}: {exc}")

    def _logged_in(self, session: RequestSession) -> None:
        """A CMD connection is logged in: make it current; check the private event ``seq``."""
        old = self._cmd
        if old is not None:
            retired = self._cmd_retired
            retired["requests"] += old.requests
            retired["frames"] += old.frames
            retired["malformed"] += old.malformed
            retired["late"] += old.correlator.late
            retired["unsolicited"] += old.correlator.unsolicited
        self._cmd = session
        seq = session.login.get("event_seq") if session.login else None
        if not isinstance(seq, int) or isinstance(seq, bool):
            return  # a gateway that does not say: gaps show at the next event
        if old is not None and seq > self._event_seq:
            self._missed_events(self._event_seq + 1, seq)
        elif seq < self._event_seq:
            # The gateway forgot events it had sent: it restarted, and the
            # user's orders there are gone.
            self._gateway_resets += 1
            log.warning(
                "the gateway restarted and lost this user's orders: reconcile with list_orders()"
            )
        self._event_seq = seq

    def _missed_events(self, first: int, last: int) -> None:
        missed = last - first + 1
        self._counts["missed_private_events"] += missed
        log.warning("missed %d private event(s) (seq %d to %d)", missed, first, last)
        self._hub.publish(
            Event("events.missed", {"from_seq": first, "to_seq": last, "count": missed})
        )

    async def _supervise(
        self,
        name: Literal["cmd", "md"],
        run_link: Callable[..., Any],
        *,
        task_status: TaskStatus[None],
    ) -> None:
        """Run one channel for the whole session, reconnecting it when it drops.

        ``run_link`` opens one connection, calls ``task_status.started()``
        once it is usable, and runs until it fails. The first connection's
        errors are raised as they are (the session does not open); later
        drops are retried with the policy's backoff until its deadline.
        """
        link = self._links[name]
        policy = self._policy
        started = False
        while True:
            try:
                if link.down_since is not None:
                    await self._resume()
                async with anyio.create_task_group() as tg:
                    await tg.start(run_link)
                    downtime = link.restored(anyio.current_time())
                    self._links_changed()
                    if not started:
                        started = True
                        task_status.started()
                    else:
                        self._on_restored(name, downtime)
            except BaseException as exc:
                err = _unwrap(exc)
                retry = (
                    started
                    and policy is not None
                    and isinstance(err, (ConnectionLost, ConnectError, RequestTimeout))
                    and not isinstance(err, ReconnectFailed)
                ) or (
                    link.down_since is not None
                    and isinstance(err, GatewayError)
                    and not isinstance(err, AuthError)
                )
                if not retry:
                    if err is exc:
                        raise
                    raise err from err.__cause__
                assert policy is not None
                now = anyio.current_time()
                if link.up:
                    link.lost(now)
                    self._links_changed()
                    self._on_lost(name, err)
                else:
                    link.failed_attempt()
                    log.info("reconnecting %s: attempt %d failed: %s", name, link.attempts, err)
                if link.overdue(now, policy):
                    raise ReconnectFailed(
                        f"could not reconnect the {name.upper()} channel to {self._base_url} "
                        f"within {policy.deadline:g} s ({link.attempts} attempts; last error: "
                        f"{err}); is the gateway running?",
                        getattr(err, "code", None),
                    ) from err
                await anyio.sleep(policy.delay(link.attempts))
            else:
                raise ConnectionLost(f"the {name.upper()} connection ended")  # pragma: no cover

    async def _resume(self) -> None:
        """Handshake again with the held token: the same user, or :class:`AuthError`."""
        user_id = self.user_id
        await self.handshake()
        if user_id is not None and self.user_id != user_id:
            raise AuthError(
                "unauthorized",
                f"the gateway resumed the token as {self.user_id}, not {user_id}",
                "handshake",
            )

    def _links_changed(self) -> None:
        """Wake every task waiting for a channel to come back."""
        if self._link_changed is not None:
            self._link_changed.set()
            self._link_changed = anyio.Event()

    def _on_lost(self, name: str, err: BaseException) -> None:
        code = getattr(err, "code", None)
        log.warning("%s connection lost (%s); reconnecting", name.upper(), err)
        if name == "md":
            self._market.unsync_all()
        self._hub.publish(
            Event("connection.lost", {"channel": name, "code": code, "reason": str(err)})
        )

    def _on_restored(self, name: str, downtime: float) -> None:
        link = self._links[name]
        log.info("%s connection restored after %.3f s", name.upper(), downtime)
        if name == "md":
            tg = self._tg
            if tg is not None:
                for sym, state in self._market.symbols.items():
                    if state.series:
                        tg.start_soon(self._reseed_candles, sym)
        self._hub.publish(
            Event(
                "connection.restored",
                {
                    "channel": name,
                    "downtime_s": downtime,
                    "reconnects": link.reconnects,
                    "gateway_resets": self._gateway_resets,
                },
            )
        )

    async def _current_cmd(self, op: str, limit: float) -> tuple[RequestSession, float]:
        """The logged-in CMD session, waiting up to ``limit`` s while it reconnects.

        :meth:`send` calls it only when the link is not up. Returns the
        session and the time left of ``limit``.
        """
        cmd = self._cmd
        if cmd is None:
            raise RuntimeError("the CMD channel is not open: call open_cmd() first")
        if self._policy is None:
            return cmd, limit  # fail-fast: the closed session raises its error
        start = anyio.current_time()
        with anyio.move_on_after(limit):
            while True:
                if self._ended is not None:
                    raise _fresh(self._ended)
                cmd = cast(RequestSession, self._cmd)
                if cmd.closed is None:
                    return cmd, max(limit - (anyio.current_time() - start), 0.001)
                assert self._link_changed is not None
                await self._link_changed.wait()
        raise ConnectionLost(
            f"{op} was not sent: the CMD connection is down and did not come back "
            f"within {limit:g} s; it is still reconnecting"
        )

    async def open_md(self, symbols: Sequence[str] | None = None) -> None:
        """Open the MD WebSocket for ``symbols`` (None: all) and wait for their snapshots.

        The channel is then supervised for the whole session: when it drops
        it is reconnected, every book is reloaded from a fresh snapshot and
        every candle series re-seeded.
        """
        tg = self._require_open()
        if self._md_open:
            return
        if self._token is None:
            await self.handshake()
        if symbols is None:
            self._expected_syms = {s["sym"] for s in await self.get_symbols()}
        else:
            self._expected_syms = set(symbols)
        self._md_symbols = list(symbols) if symbols is not None else None
        await tg.start(self._supervise, "md", self._md_link)
        self._md_open = True

    async def _md_link(self, *, task_status: TaskStatus[None]) -> None:
        """One MD connection: ready once every symbol's snapshot came; returns only by raising."""
        url = f"{self._ws_base}/ws/md?token={self._token}"
        if self._md_symbols:
            url += "&symbols=" + ",".join(self._md_symbols)
        try:
            async with connect_websocket(
                url, transport=self._transport, ssl=self._ssl, open_timeout=self.timeout
            ) as ws:
                ready = anyio.Event()
                try:
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(self._watch_heartbeats)
                        tg.start_soon(self._read_md, ws, ready, set(self._expected_syms))
                        try:
                            with anyio.fail_after(self.timeout):
                                await ready.wait()
                        except TimeoutError:
                            raise RequestTimeout("md.snapshot", self.timeout) from None
                        task_status.started()
                finally:
                    with anyio.move_on_after(1, shield=True):
                        await ws.aclose()
        except TransportOpenError as exc:
            raise self._open_error("MD", exc) from exc

    async def _read_md(self, ws: WebSocket, ready: anyio.Event, expected: set[str]) -> None:
        market = self._market
        counts = self._counts
        hub = self._hub
        hooks = self._hooks
        if not expected:
            ready.set()
        while True:
            try:
                raw = await ws.recv()
            except TransportClosed as exc:
                raise ConnectionLost(
                    f"MD connection closed (code {exc.code}"
                    + (f": {exc.reason})" if exc.reason else ")"),
                    exc.code,
                ) from exc
            counts["md_messages"] += 1
            if self._taps:
                now_ns = time.time_ns()
                for tap in self._taps:
                    tap("md", raw, now_ns)
            msg = decode_frame(raw)
            if msg is None or msg.get("type") != "md":
                counts["md_malformed"] += 1
                log.warning("malformed MD frame ignored: %.200r", raw)
                continue
            ch = market.on_md(msg)
            if market.resync_wanted:
                self._start_resyncs()
            if ch is None or ch == "heartbeat":
                continue
            if expected and ch == "book.snapshot":
                expected.discard(msg["sym"])
                if not expected:
                    ready.set()
            if hub.has_subscribers:
                hub.publish(Event("md." + ch, msg, msg.get("sym")))
            if self._on_md_event is not None:
                hooks.call(self._on_md_event, msg)

    async def _watch_heartbeats(self) -> None:
        limit = self._heartbeat_timeout
        counts = self._counts
        seen = -1
        last_change = anyio.current_time()
        while True:
            await anyio.sleep(limit / 4)
            now = anyio.current_time()
            if counts["md_messages"] != seen:
                seen = counts["md_messages"]
                last_change = now
            elif now - last_change >= limit:
                raise ConnectionLost(
                    f"no market data nor heartbeat for {limit:g} s: the link is dead"
                )

    def _start_resyncs(self) -> None:
        tg = self._tg
        if tg is None:
            return
        for sym in self._market.take_resyncs():
            tg.start_soon(self._resync, sym)

    async def _resync(self, sym: str) -> None:
        """Fetch a snapshot of ``sym`` and re-seed its candles."""
        try:
            reply = await self.send("book.get", {"sym": sym, "depth": RESYNC_DEPTH})
            seq = reply.get("seq")
            if not isinstance(seq, int):
                raise GatewayError("bad_response", "book.get reply has no seq", "book.get")
            self._market.load_book(sym, reply.get("bids", ()), reply.get("asks", ()), seq)
        except SessionClosed:
            return
        except MarketClientError as exc:
            if self._ended is not None or (
                self._policy is None and isinstance(exc, ConnectionLost)
            ):
                return  # the session is ending; its supervisor reports why
            log.warning("resync of %s failed (%s); retrying", sym, exc)
            await anyio.sleep(0.5)
            self._market.resync_failed(sym)
            self._start_resyncs()
            return
        await self._reseed_candles(sym)
        if self._market.resync_wanted:
            self._start_resyncs()

    async def _reseed_candles(self, sym: str) -> None:
        """Seed every candle series of ``sym`` again, retrying while the session lives."""
        for interval_ms in list(self._market.sym(sym).series):
            while True:
                try:
                    await self._seed_candles(sym, interval_ms)
                    break
                except SessionClosed:
                    return
                except MarketClientError as exc:
                    if self._ended is not None or self._policy is None:
                        return
                    log.warning("re-seeding %s candles failed (%s); retrying", sym, exc)
                    await anyio.sleep(0.5)

    def _tap_cmd(self, raw: str | bytes) -> None:
        if self._taps:
            now_ns = time.time_ns()
            for tap in self._taps:
                tap("cmd", raw, now_ns)

    @contextlib.asynccontextmanager
    async def record(
        self, directory: str | os.PathLike[str], **options: Any
    ) -> AsyncIterator[Recorder]:
        """Record what this session receives into ``directory`` while the block runs.

        Every MD frame and private CMD event is handed, as received, to a
        `Recorder` (``market_client.recording``, the ``record`` extra), which
        writes the raw layer and the Parquet tables off the event loop.
        ``MarketClient.session(url, record=DIR)`` records the whole session.

        Args:
            directory: Where to write; created if needed.
            **options: Passed to `Recorder` (rotation, batch size, buffer).

        Yields:
            The running `Recorder` (its ``stats()`` tell rows, files and drops).
        """
        from .recording import Recorder

        self._require_open()
        async with Recorder(directory, **options) as recorder:
            reply = await self.api_request("symbols.list")
            recorder.describe(
                gateway_url=self._base_url,
                symbols=list(reply.get("symbols", [])),
                protocol_version=PROTOCOL_VERSION,
                library_version=_library_version(),
            )
            self._taps.append(recorder.feed)
            self._recorders.append(recorder)
            try:
                yield recorder
            finally:
                self._taps.remove(recorder.feed)
                self._recorders.remove(recorder)

    def _on_cmd_frame(self, frame: dict[str, Any]) -> None:
        self._counts["cmd_events"] += 1
        seq = frame.get("seq")
        if isinstance(seq, int) and not isinstance(seq, bool):
            if self._event_seq and seq > self._event_seq + 1:
                self._missed_events(self._event_seq + 1, seq - 1)
            self._event_seq = max(self._event_seq, seq)
        self._transactions.append(frame)
        kind = frame.get("event")
        payload = frame.get("payload")
        order = payload.get("order") if isinstance(payload, dict) else None
        sym = order.get("sym") if isinstance(order, dict) else None
        self._hub.publish(Event(str(kind), frame, sym if isinstance(sym, str) else None))
        self._hooks.call(self._on_cmd_event, frame)
        self._hooks.call(self._event_hook, frame)

    # -- requests ------------------------------------------------------------
    @staticmethod
    def _check_op(op: str, payload: Mapping[str, Any] | None) -> None:
        if not isinstance(op, str) or not op:
            raise TypeError(f"op must be a non-empty string, got {op!r}")
        if payload is not None and not isinstance(payload, Mapping):
            raise TypeError(f"payload must be a mapping, got {type(payload).__name__}")

    async def send(
        self,
        op: str,
        payload: Mapping[str, Any] | None = None,
        *,
        as_role: str | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Send one request on the CMD socket and return the response payload.

        The envelope (``type``, ``ver``, ``msg_id``, ``ts``) is filled in and
        the response is matched by ``corr_id``; any number of tasks may send
        at once. The deadline is a cancel scope: when it expires the request
        is forgotten and a late response is dropped and counted.

        Args:
            op: The protocol op, e.g. ``"book.get"``.
            payload: The op's payload.
            as_role: ``"admin"`` for admin ops.
            timeout: Seconds to wait (default: the session's ``timeout``).

        Raises:
            GatewayError: The gateway refused the request (``code``, ``message``, ``op``).
            RequestTimeout: No response in time (also a ``TimeoutError``).
            ConnectionLost: The connection broke before the response came.
            SessionClosed: The session is closed.
        """
        self._check_op(op, payload)
        limit = None if timeout is None else _check_timeout(timeout)
        if as_role is not None and as_role != "admin":
            raise ValueError(f"as_role must be 'admin' or None, got {as_role!r}")
        self._require_open()
        cmd = self._cmd
        if cmd is not None and cmd.closed is None:  # the usual case: the link is up
            return await cmd.request(op, payload, as_role=as_role, timeout=limit)
        cmd, left = await self._current_cmd(op, self.timeout if limit is None else limit)
        return await cmd.request(op, payload, as_role=as_role, timeout=left)

    async def get_symbols(self, force_refresh: bool = False) -> list[SymbolDict]:
        """Tradable symbols (cached): ``[{sym, tick, min_qty, lot, status}]``."""
        if self._symbols_cache is None or force_refresh:
            reply = await self.send("symbols.list")
            self._symbols_cache = cast(list[SymbolDict], reply.get("symbols", []))
        return list(self._symbols_cache)

    async def get_book(self, sym: str, depth: int = 20) -> BookReply:
        """The gateway's book: ``{sym, seq, bids, asks}``, ``[price, qty]`` levels best first."""
        _check_sym(sym)
        _check_positive_int("depth", depth)
        return cast(BookReply, await self.send("book.get", {"sym": sym, "depth": depth}))

    async def place_order(
        self,
        sym: str,
        side: str,
        price: Decimal | str | None = None,
        qty: int = 1,
        tif: str = "GTC",
        type: str = "limit",
        client_order_id: str | None = None,
    ) -> OrderReply:
        """Place an order; returns ``{order, fills}`` (fills of this order's own executions).

        Args:
            sym: Symbol.
            side: ``"buy"`` or ``"sell"``.
            price: Limit price as ``Decimal`` or decimal string (never a float);
                omit for a market order.
            qty: Positive integer quantity (a multiple of the symbol's lot).
            tif: ``"GTC"``, ``"IOC"`` or ``"FOK"``.
            type: ``"limit"`` or ``"market"``.
            client_order_id: Your id for the order, unique among your live
                orders: retrying with the same id after a timeout or a lost
                connection cannot place the order twice.

        Raises:
            ValueError, TypeError: Bad arguments; nothing was sent.
            GatewayError: The gateway rejected the order (e.g. ``invalid_price``).
        """
        _check_sym(sym)
        if side not in SIDES:
            raise ValueError(f"side must be 'buy' or 'sell', got {side!r}")
        if type not in ORDER_TYPES:
            raise ValueError(f"type must be 'limit' or 'market', got {type!r}")
        if tif not in TIFS:
            raise ValueError(f"tif must be one of GTC, IOC, FOK, got {tif!r}")
        _check_positive_int("qty", qty)
        payload: dict[str, Any] = {"sym": sym, "side": side, "type": type, "qty": qty, "tif": tif}
        if type == "limit":
            if price is None:
                raise ValueError("a limit order needs a price (Decimal or decimal string)")
            payload["price"] = _price_text(price)
        elif price is not None:
            raise ValueError("a market order takes no price")
        if client_order_id is not None:
            if (
                not isinstance(client_order_id, str)
                or not 0 < len(client_order_id) <= MAX_CLIENT_ORDER_ID
            ):
                raise ValueError(
                    f"client_order_id must be a string of 1 to {MAX_CLIENT_ORDER_ID} characters"
                )
            payload["client_order_id"] = client_order_id
        return cast(OrderReply, await self.send("order.place", payload))

    async def cancel_order(
        self, order_id: str | None = None, *, client_order_id: str | None = None
    ) -> OrderReply:
        """Cancel one of your open orders by ``order_id`` or ``client_order_id``."""
        return cast(
            OrderReply, await self.send("order.cancel", _order_ref(order_id, client_order_id))
        )

    async def list_orders(self, status: str = "open") -> list[OrderDict]:
        """Your orders: ``status="open"`` (default) or ``"all"``."""
        if status not in ("open", "all"):
            raise ValueError(f"status must be 'open' or 'all', got {status!r}")
        reply = await self.send("order.list", {"status": status})
        return cast(list[OrderDict], reply.get("orders", []))

    async def order_history(
        self, order_id: str | None = None, *, client_order_id: str | None = None
    ) -> OrderReply:
        """One of your orders with all its fills: ``{order, fills}``."""
        return cast(
            OrderReply, await self.send("order.history", _order_ref(order_id, client_order_id))
        )

    async def get_portfolio(self) -> Portfolio:
        """Cash and positions: ``{cash, positions: [{sym, qty, avg_price, realized_pnl}]}``."""
        return cast(Portfolio, await self.send("portfolio.get"))

    # -- local market state --------------------------------------------------------
    def _book_state(self, sym: str) -> Any:
        state = self._market.symbols.get(sym)
        if state is None or not state.has_snapshot:
            raise LookupError(
                f"no market data for {sym!r}: open the session with md=True "
                "and include it in symbols="
            )
        return state

    def book_snapshot(self, sym: str, depth: int = 20) -> BookSnapshot:
        """The local book: ``{sym, seq, bids, asks}`` of ``(Decimal price, qty)`` best first.

        ``seq`` is the last increment (``book.delta`` or ``trade``) applied, so
        it compares with a ``book.get`` reply's ``seq``.

        Raises:
            LookupError: No market data for ``sym`` in this session.
        """
        _check_positive_int("depth", depth)
        state = self._book_state(sym)
        bids, asks = state.book.levels(depth)
        return {"sym": sym, "seq": state.sequencer.seq, "bids": bids, "asks": asks}

    def best_bid_ask(self, sym: str) -> BestBidAsk:
        """Top of the local book: ``{bid, ask}``, each ``{price, qty}`` or None when empty."""
        state = self._book_state(sym)
        bid = state.book.best_bid()
        ask = state.book.best_ask()
        return {
            "bid": None if bid is None else {"price": bid[0], "qty": bid[1]},
            "ask": None if ask is None else {"price": ask[0], "qty": ask[1]},
        }

    async def configure_candles(
        self, sym: str, interval_ms: int = 1000, depth: int = 50
    ) -> list[CandleDict]:
        """Keep ``depth`` candles of ``sym`` at ``interval_ms``, seeded now and updated by MD.

        Several intervals per symbol may be configured. Returns the seeded candles.
        """
        _check_sym(sym)
        self._market.add_series(sym, interval_ms, depth)  # validates interval and depth
        if not self._md_open:
            log.info("configure_candles(%s) without market data: candles will not update", sym)
        await self._seed_candles(sym, interval_ms)
        self._candle_defaults.setdefault(sym, interval_ms)
        return self.get_candles(sym, interval_ms)

    async def _seed_candles(self, sym: str, interval_ms: int) -> None:
        series = self._market.sym(sym).series.get(interval_ms)
        if series is None:
            return
        reply = await self.send(
            "candles.get", {"sym": sym, "interval_ms": interval_ms, "limit": series.depth}
        )
        self._market.seed_series(sym, interval_ms, reply)

    def get_candles(self, sym: str, interval_ms: int | None = None) -> list[CandleDict]:
        """Candles oldest first: ``{t_ns, o, h, l, c, v, n}`` with Decimal prices.

        Args:
            sym: Symbol.
            interval_ms: Which configured interval (default: the first configured).

        Raises:
            LookupError: No candles were configured for ``sym`` at that interval.
        """
        interval = interval_ms if interval_ms is not None else self._candle_defaults.get(sym)
        state = self._market.symbols.get(sym)
        series = state.series.get(interval) if state is not None and interval else None
        if series is None:
            raise LookupError(
                f"no candles configured for {sym!r}"
                + (f" at {interval} ms" if interval else "")
                + ": call configure_candles() first"
            )
        return [cast(CandleDict, c.to_dict()) for c in series.candles]

    # -- events and transactions ------------------------------------------------
    def events(self, *kinds: str, buffer: int = 1000) -> EventStream:
        """Subscribe to events as they happen; each call is a new subscriber.

        Args:
            *kinds: Kinds or prefixes to receive (``"order.fill"``, ``"order"``,
                ``"md.trade"``, ``"md"``, ``"connection"``); none means all.
            buffer: This subscriber's buffer. When it is full, market data is
                dropped for it (and counted); a missed private event makes its
                next iteration raise :class:`EventOverflow`.

        Returns:
            An async iterator (and async context manager) of :class:`Event`.
        """
        self._require_open()
        return self._hub.subscribe(tuple(kinds), buffer)

    def configure_transactions(self, capacity: int = 1000) -> None:
        """Set the ring buffer's capacity, keeping the newest events that fit."""
        self._transactions.configure(capacity)

    def get_transactions(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The newest ``limit`` CMD events (all when None), oldest first, as raw frames."""
        return self._transactions.get(limit)

    def clear_transactions(self) -> None:
        """Empty the transactions ring buffer."""
        self._transactions.clear()

    def set_event_hook(self, handler: Hook | None) -> None:
        """Call ``handler(frame)`` for every CMD event (sync or async; None removes it).

        An exception in the hook is logged and counted; the session goes on.
        """
        if handler is not None and not callable(handler):
            raise TypeError("the event hook must be callable or None")
        self._event_hook = handler

    def stats(self) -> dict[str, Any]:
        """Counters of this session (no secrets): requests, frames, drops, resyncs, links.

        Counters of CMD connections replaced by a reconnect are included.
        ``links`` tells, per channel, whether it is up and how often it
        dropped and came back; ``out_of_sync`` lists the books that wait for
        a snapshot (they show their last known state meanwhile).
        """
        cmd = self._cmd
        retired = self._cmd_retired
        return {
            "state": self._state,
            "user_id": self.user_id,
            "requests": retired["requests"] + (cmd.requests if cmd else 0),
            "pending_requests": len(cmd.correlator) if cmd else 0,
            "late_responses": retired["late"] + (cmd.correlator.late if cmd else 0),
            "unsolicited_responses": retired["unsolicited"]
            + (cmd.correlator.unsolicited if cmd else 0),
            "cmd_frames": retired["frames"] + (cmd.frames if cmd else 0),
            "malformed_frames": retired["malformed"]
            + (cmd.malformed if cmd else 0)
            + self._counts["md_malformed"]
            + self._market.malformed,
            "md_messages": self._counts["md_messages"],
            "cmd_events": self._counts["cmd_events"],
            "http_requests": self._counts["http_requests"],
            "missed_private_events": self._counts["missed_private_events"],
            "gateway_resets": self._gateway_resets,
            "events_dropped_md": self._hub.dropped_md,
            "events_missed_private": self._hub.missed_private,
            "hook_errors": self._hooks.errors,
            "hooks_dropped": self._hooks.dropped,
            "resyncs": {sym: st.resyncs for sym, st in self._market.symbols.items()},
            "out_of_sync": self._market.out_of_sync(),
            "links": {name: link.stats() for name, link in self._links.items()},
            "transactions": len(self._transactions),
            "recorders": [recorder.stats() for recorder in self._recorders],
        }


def _library_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("market-client")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def _check_sym(sym: str) -> None:
    if not isinstance(sym, str) or not sym:
        raise TypeError(f"sym must be a non-empty string, got {sym!r}")


def _check_positive_int(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")


def _order_ref(order_id: str | None, client_order_id: str | None) -> dict[str, str]:
    if (order_id is None) == (client_order_id is None):
        raise ValueError("give exactly one of order_id or client_order_id")
    if order_id is not None:
        if not isinstance(order_id, str) or not order_id:
            raise TypeError("order_id must be a non-empty string")
        return {"order_id": order_id}
    if not isinstance(client_order_id, str) or not client_order_id:
        raise TypeError("client_order_id must be a non-empty string")
    return {"client_order_id": client_order_id}
