"""The facade users call: `MarketClient`, one session = one task group.

The facade checks arguments and reads local state; the work is done by the
parts it owns, one module each (see docs/architecture.md):

==============  ===============================================================
``_http``       ``POST /auth/handshake`` and ``/api/request`` (owns the httpx client)
``_cmd``        the CMD socket: requests, responses, private events, pings
``_md``         the MD socket: reader, heartbeat deadline, resyncs, candle seeds
``_supervisor`` keeps each channel up, with backoff
``_state``      books, sequencers and candles (sans-I/O)
``_private``    the user's event sequence and own orders (sans-I/O)
``_events``     ``events()`` subscribers and hooks
``_checks``     argument checks, before anything is sent
==============  ===============================================================
"""

from __future__ import annotations

import contextlib
import logging
import os
import ssl as ssl_module
import time
import warnings
from collections.abc import AsyncIterator, Mapping, Sequence
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import anyio
from anyio.abc import TaskGroup, TaskStatus

from ._checks import (
    check_event_kinds,
    check_op,
    check_positive_int,
    check_sym,
    check_symbols,
    check_timeout,
)
from ._cmd import CmdChannel, RequestSession
from ._compiled import compiled
from ._events import Event, EventHub, EventStream, Hook, HookRunner
from ._exceptions import (
    AuthError,
    ConnectionLost,
    GatewayError,
    MarketClientError,
    SessionClosed,
    fresh,
    unwrap,
)
from ._helpers import Helpers
from ._http import HttpApi
from ._md import MdChannel
from ._models import (
    CandleDict,
    HandshakeReply,
    OrderDict,
    SymbolDict,
)
from ._private import EventSequence, OwnOrders
from ._protocol import PROTOCOL_VERSION
from ._reconcile import Reconciler
from ._reconnect import ReconnectPolicy
from ._ring import TransactionLog
from ._state import MarketState
from ._supervisor import Supervisor
from ._transports import (
    TransportName,
    WebSocketTransport,
    connect_websocket,
    install_log_redaction,
)

if TYPE_CHECKING:
    from ._blocking import BlockingClient
    from .recording import Recorder

__all__ = ["MarketClient", "RequestSession"]

log = logging.getLogger("market_client")

CLOSED_CODE = 1006  # "abnormal closure": the link dropped without a close frame
NEVER_BETTER = frozenset({"bad_request", "unknown_symbol", "forbidden"})  # not worth a retry


class MarketClient(Helpers):
    """A session with the gateway: requests, live books, candles and events.

    Open it with ``async with`` (preferred), which runs the CMD reader, the
    MD reader, book resyncs, liveness checks and async hooks as children of
    one task group:

    ```python
    async with MarketClient.session("http://localhost:8000") as client:
        await client.place_order("ABC", side="buy", price="100.00", qty=1)
    ```

    Leaving the block cancels every child and closes every socket and the
    HTTP client. If a child fails for good (the gateway refused the token,
    the link could not be restored), the block is cancelled and the failure
    is raised from it as a single exception (never an exception group).
    Callers who own a task group may run it there instead:
    ``client = await tg.start(MarketClient(url).run)``.

    Args:
        base_url: ``http://host:port`` or ``https://host:port`` of the gateway.
        token: Resume this user instead of creating a new one.
        md: Open the market-data channel and keep local books.
        symbols: Market data for these symbols only (None: all).
        timeout: Default deadline of a request, in seconds.
        transport: WebSocket library, by name or as a configured transport
            object (`WebSocketTransport`): ``"websockets"`` (default, both
            backends), ``"trio-websocket"`` (Trio only), ``"httpx-ws"``
            (both; needs the httpx-ws package) or ``"picows"`` (asyncio
            only; needs the picows package; the fastest market-data reader).
        ssl: TLS context for ``https``/``wss`` (default: system trust store).
        heartbeat_timeout: Silence, in seconds, after which a link counts as
            dead: no market data nor heartbeat on MD, no answer to a ping on
            CMD. Pending requests on a dead link fail within this plus 1 s.
        on_md_event: Called with every MD message (sync or async callable).
        on_cmd_event: Called with every CMD event frame (sync or async).
        transactions: Capacity of the transactions ring buffer.
        max_pending: Most requests in flight at once.
        reconnect: ``True`` (default) reconnects a dropped channel with the
            default `ReconnectPolicy`; a policy tunes the backoff and the
            deadline; ``False`` ends the session with `ConnectionLost` at the
            first drop (fail-fast).
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
        transport: WebSocketTransport | TransportName | None = None,
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
        self._symbols = check_symbols(symbols)
        if reconnect is True:
            reconnect = ReconnectPolicy()
        elif reconnect is not False and not isinstance(reconnect, ReconnectPolicy):
            raise TypeError("reconnect must be True, False or a ReconnectPolicy")
        check_positive_int("max_pending", max_pending)
        self._policy: ReconnectPolicy | None = reconnect or None
        install_log_redaction()  # the token is in the WebSocket URLs: keep it out of every log
        self._base_url = base_url.rstrip("/")
        ws_base = self._base_url.replace("http", "ws", 1)  # http -> ws, https -> wss
        self._token = token
        self._md_enabled = md
        self.timeout = check_timeout(timeout)
        heartbeat = check_timeout(heartbeat_timeout, "heartbeat_timeout")
        self._on_cmd_event = on_cmd_event
        self._event_hook: Hook | None = None
        self._record_dir = record
        self._ssl = ssl
        self._transactions = TransactionLog(transactions)
        self._hub = EventHub()
        self._hooks = HookRunner()
        self._market = MarketState()
        self._sequence = EventSequence()
        self._orders = OwnOrders()
        self._reconciler = Reconciler(self._orders, send=self.send, deliver=self._deliver)
        # Given every MD frame and CMD event as received, before it is decoded
        # (MD frames read together go to their `feed_many` at once).
        self._recorders: list[Recorder] = []
        self._record_stack: contextlib.AsyncExitStack | None = None
        self._state: Literal["unopened", "open", "closed"] = "unopened"
        self._stack: contextlib.AsyncExitStack | None = None
        self._tg: TaskGroup | None = None
        self._http: HttpApi | None = None
        self._ended: MarketClientError | None = None
        self._symbols_cache: list[SymbolDict] | None = None
        self._candle_defaults: dict[str, int] = {}
        self.user_id: str | None = None
        self.is_admin = False

        open_ws = partial(
            connect_websocket, transport=transport, ssl=ssl, open_timeout=self.timeout
        )
        self._cmd = CmdChannel(
            ws_base=ws_base,
            token=self._require_token,
            connect_websocket=open_ws,
            timeout=self.timeout,
            heartbeat_timeout=heartbeat,
            max_pending=max_pending,
            on_event=self._on_cmd_frame,
            on_raw_event=self._tap_cmd,
            on_login=self._logged_in,
        )
        self._md = MdChannel(
            self._market,
            ws_base=ws_base,
            token=self._require_token,
            connect_websocket=open_ws,
            send=self.send,
            give_up=self._give_up,
            hub=self._hub,
            hooks=self._hooks,
            recorders=self._recorders,
            timeout=self.timeout,
            heartbeat_timeout=heartbeat,
        )
        self._md.on_md_event = on_md_event
        self._md_open = False
        self._supervisors = {
            name: Supervisor(
                name,
                policy=self._policy,
                where=self._base_url,
                resume=self._resume,
                on_lost=partial(self._on_lost, name),
                on_restored=partial(self._on_restored, name),
                on_change=self._cmd.notify,
            )
            for name in ("cmd", "md")
        }

    # -- lifecycle ----------------------------------------------------------
    @classmethod
    async def connect(
        cls,
        base_url: str,
        connect_md: bool = True,
        on_md_event: Hook | None = None,
        on_cmd_event: Hook | None = None,
        **kwargs: Any,
    ) -> MarketClient:
        """Open a session without ``async with`` (the seed API); close it with `aclose`.

        The session's task group is entered in the calling task, so call
        `aclose` from that same task, and know that a failing child (lost
        connection) cancels that task until `aclose` is called.
        ``async with MarketClient.session(...)`` has neither constraint.
        Other keywords are the constructor's.
        """
        client = cls(
            base_url, md=connect_md, on_md_event=on_md_event, on_cmd_event=on_cmd_event, **kwargs
        )
        await client.__aenter__()
        return client

    @classmethod
    def blocking(cls, base_url: str, **kwargs: Any) -> BlockingClient:
        """A client whose methods block, for notebooks, a REPL or a plain script.

        ``with MarketClient.blocking(url) as client: client.place_order(...)``:
        the same methods and errors, run on an event loop in a background
        thread (``backend="trio"`` picks Trio). Other keywords are the
        constructor's.
        """
        from ._blocking import BlockingClient

        return BlockingClient(base_url, **kwargs)

    async def run(
        self, *, task_status: TaskStatus[MarketClient] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Open the session in a task group you own; it runs until that task is cancelled.

        ``client = await tg.start(MarketClient(url).run)`` returns the open
        client; cancelling the task (or the task group) closes it. A failure
        that ends the session is raised from this task into your task group.
        """
        async with self:
            task_status.started(self)
            await anyio.sleep_forever()

    async def aclose(self) -> None:
        """Close the session: cancel its tasks, close its sockets (idempotent)."""
        await self.__aexit__(None, None, None)

    async def __aenter__(self) -> MarketClient:
        await self._start()
        try:
            await self.handshake()
            if self._record_dir is not None:
                # A stack of its own, closed before the session's task group is
                # cancelled (see __aexit__).
                self._record_stack = contextlib.AsyncExitStack()
                await self._record_stack.enter_async_context(self.record(self._record_dir))
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
        record, self._record_stack = self._record_stack, None
        if record is not None:
            # The recording (``record=``) ends first, while the session still
            # runs, as a `record` block in the session's block would. Closed
            # after the task group's cancellation, inside it, its exit took the
            # host task's own cancellation (Ctrl-C on asyncio) for the group's,
            # which then swallowed it.
            try:
                await record.__aexit__(exc_type, exc, tb)
            except BaseException:
                await self._close(exc_type, exc, tb)
                raise
        return await self._close(exc_type, exc, tb)

    async def _close(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        self._state = "closed"
        closed = SessionClosed("the session was closed")
        self._ended = closed
        self._cmd.end(closed)
        self._hub.close()
        self._hooks.close()
        if self._tg is not None:
            self._tg.cancel_scope.cancel()
        stack, self._stack = self._stack, None
        if stack is None:
            return False  # closed meanwhile (by another task, while the recording ended)
        try:
            suppressed = await stack.__aexit__(exc_type, exc, tb)
        except BaseException as err:
            single = unwrap(err, besides=exc)
            if isinstance(single, MarketClientError) and single is not exc:
                # What ended the session, for every later call to raise
                # instead of SessionClosed ("you closed it").
                self._ended = single
                self._cmd.ended = single
            if single is exc:
                return False  # the block's own exception goes on as it was
            if single is err:
                raise
            raise single from single.__cause__  # unwrapped: no exception group
        return bool(suppressed)

    def __del__(self) -> None:
        if getattr(self, "_state", None) == "open":
            warnings.warn(
                f"{self!r} was never closed: use `async with MarketClient.session(url)` "
                "or call aclose()",
                ResourceWarning,
                stacklevel=2,
                source=self,
            )

    async def _start(self) -> None:
        if self._state != "unopened":
            raise RuntimeError(
                f"this MarketClient is {self._state}; a client is opened once, create a new one"
            )
        self._state = "open"
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            self._http = await stack.enter_async_context(
                HttpApi(self._base_url, ssl=self._ssl, timeout=self.timeout)
            )
            self._cmd.notify()
            self._tg = await stack.enter_async_context(anyio.create_task_group())
            self._tg.start_soon(self._hooks.run)
        except BaseException:
            await stack.aclose()
            self._state = "closed"
            raise
        self._stack = stack

    def _require_open(self) -> TaskGroup:
        if self._state == "closed":
            if self._ended is not None and not isinstance(self._ended, SessionClosed):
                raise fresh(self._ended)
            raise SessionClosed("the session was closed; open a new MarketClient")
        if self._tg is None:
            raise RuntimeError(
                "the client is not open: use `async with MarketClient.session(url)`"
                " or `await MarketClient.connect(url)`"
            )
        return self._tg

    def _require_token(self) -> str:
        assert self._token is not None, "the handshake comes first"
        return self._token

    def _give_up(self, exc: BaseException) -> bool:
        """Whether background work (a resync, a candle seed) should stop rather than retry."""
        return (
            self._ended is not None
            or (self._policy is None and isinstance(exc, ConnectionLost))
            or (isinstance(exc, GatewayError) and exc.code in NEVER_BETTER)
        )

    def __repr__(self) -> str:
        return f"<MarketClient {self._base_url} user={self.user_id} {self._state}>"

    @property
    def token(self) -> str | None:
        """The session token (a secret: it is never logged nor shown in ``repr``)."""
        return self._token

    # -- connections ---------------------------------------------------------
    async def handshake(self) -> HandshakeReply:
        """``POST /auth/handshake``: create a user, or resume the one ``token`` names.

        Raises:
            AuthError: The gateway does not know the token.
            ConnectError: The gateway cannot be reached.
        """
        if self._http is None:
            await self._start()
        assert self._http is not None
        reply = await self._http.handshake(self._token)
        self._token = reply["token"]
        self.user_id = reply["user_id"]
        self.is_admin = bool(reply.get("is_admin"))
        return reply

    async def api_request(
        self,
        op: str,
        payload: Mapping[str, Any] | None = None,
        *,
        as_role: str | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """One request over HTTP (``POST /api/request``): the fallback to `send`.

        Returns the response payload, raising like `send`.
        """
        check_op(op, payload)
        if self._token is None:
            await self.handshake()
        assert self._http is not None
        limit = self.timeout if timeout is None else check_timeout(timeout)
        return await self._http.request(
            op, payload or {}, token=self._require_token(), as_role=as_role, timeout=limit
        )

    async def open_cmd(self) -> RequestSession:
        """Open the CMD WebSocket, start its reader, log in; returns the request session.

        The channel is then supervised for the whole session: when it drops
        it is reconnected (see ``reconnect``) and the user logged in again,
        the request session replaced by a new one, and the own orders
        reconciled with the gateway's.
        """
        tg = self._require_open()
        if self._cmd.current is None:
            if self._token is None:
                await self.handshake()
            await tg.start(self._supervisors["cmd"].run, self._cmd.connect)
        assert self._cmd.current is not None
        return self._cmd.current

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
        names = check_symbols(symbols)
        if names is None:
            self._md.expected = {s["sym"] for s in await self.get_symbols()}
        else:
            self._md.expected = set(names)
        self._md.symbols = names
        await tg.start(self._supervisors["md"].run, self._md.connect)
        self._md_open = True

    async def _resume(self) -> None:
        """Handshake again with the held token: the same user, or `AuthError`."""
        user_id = self.user_id
        await self.handshake()
        if user_id is not None and self.user_id != user_id:
            raise AuthError(
                "unauthorized",
                f"the gateway resumed the token as {self.user_id}, not {user_id}",
                "handshake",
            )

    def _on_lost(self, name: str, err: BaseException) -> None:
        code = getattr(err, "code", None)
        log.warning("%s connection lost (%s); reconnecting", name.upper(), err)
        if name == "md":
            self._market.unsync_all()
        self._hub.publish(
            Event(
                "connection.lost",
                {
                    "channel": name,
                    "code": code if isinstance(code, int) else CLOSED_CODE,
                    "reason": str(err),
                },
            )
        )

    def _on_restored(self, name: str, downtime: float) -> None:
        link = self._supervisors[name].link
        # At the level of the "lost" warning: who saw one sees the other.
        log.warning("%s connection restored after %.3f s", name.upper(), downtime)
        if name == "md":
            self._md.reseed_all()
        else:
            self._reconcile_soon()
        self._hub.publish(
            Event(
                "connection.restored",
                {
                    "channel": name,
                    "downtime_s": downtime,
                    "reconnects": link.reconnects,
                    "gateway_resets": self._sequence.gateway_resets,
                },
            )
        )

    # -- private events and own orders --------------------------------------
    def _logged_in(self, session: RequestSession, old: RequestSession | None) -> None:
        """A CMD connection is logged in: check the private event ``seq`` it reports."""
        seq = session.login.get("event_seq") if session.login else None
        resets = self._sequence.gateway_resets
        gap = self._sequence.on_login(seq, again=old is not None)
        if self._sequence.gateway_resets != resets:
            self._orders.gateway_restarted()  # it numbers its orders afresh
        if gap is not None:
            self._missed_events(*gap)

    def _missed_events(self, first: int, last: int) -> None:
        missed = last - first + 1
        log.warning("missed %d private event(s) (seq %d to %d)", missed, first, last)
        self._hub.publish(
            Event("events.missed", {"from_seq": first, "to_seq": last, "count": missed})
        )
        self._reconcile_soon()

    def _tap_cmd(self, raw: str | bytes) -> None:
        if self._recorders:
            now_ns = time.time_ns()
            for recorder in self._recorders:
                recorder.feed("cmd", raw, now_ns)

    def _on_cmd_frame(self, frame: dict[str, Any]) -> None:
        gap = self._sequence.on_event(frame["seq"])
        if gap is not None:
            self._missed_events(*gap)
        self._orders.on_event(frame)
        self._deliver(frame)

    def _deliver(self, frame: dict[str, Any]) -> None:
        """Hand a private event to the ring buffer, ``events()`` and the hooks."""
        self._transactions.append(frame)
        payload = frame.get("payload")
        order = payload.get("order") if isinstance(payload, dict) else None
        sym = order.get("sym") if isinstance(order, dict) else None
        self._hub.publish(
            Event(str(frame.get("event")), frame, sym if isinstance(sym, str) else None)
        )
        self._hooks.call(self._on_cmd_event, frame)
        self._hooks.call(self._event_hook, frame)

    def _reconcile_soon(self) -> None:
        if self._tg is not None and self._ended is None:
            self._reconciler.want(self._tg)

    def open_orders(self, sym: str | None = None) -> list[OrderDict]:
        """Your open orders as this session knows them, oldest first.

        Built from order replies and events, and reconciled with the
        gateway's ``order.list`` after every reconnect (see
        ``order.reconciled`` in docs/reliability.md), so it needs no request.

        Args:
            sym: Only this symbol's orders.
        """
        orders = self._orders.open_orders()
        return orders if sym is None else [o for o in orders if o["sym"] == sym]

    # -- requests ------------------------------------------------------------
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
        at once. The deadline is a cancel scope around the send and the wait:
        when it expires the request is forgotten and a late response is
        dropped and counted.

        Args:
            op: The protocol op, e.g. ``"book.get"``.
            payload: The op's payload.
            as_role: ``"admin"`` for admin ops.
            timeout: Seconds to wait (default: the session's ``timeout``).

        Raises:
            ValueError: The payload cannot be sent (not JSON, over 64 KiB); nothing was sent.
            GatewayError: The gateway refused the request (``code``, ``message``, ``op``).
            RequestTimeout: No response in time (also a ``TimeoutError``).
            ConnectionLost: The connection broke before the response came.
            SessionClosed: The session is closed.
        """
        check_op(op, payload)
        limit = None if timeout is None else check_timeout(timeout)
        if as_role is not None and as_role != "admin":
            raise ValueError(f"as_role must be 'admin' or None, got {as_role!r}")
        self._require_open()
        cmd = self._cmd.current
        if cmd is not None and cmd.closed is None:  # the usual case: the link is up
            return await cmd.request(op, payload, as_role=as_role, timeout=limit)
        cmd, left = await self._cmd.session_for(
            op, self.timeout if limit is None else limit, wait=self._policy is not None
        )
        return await cmd.request(op, payload, as_role=as_role, timeout=left)

    # -- local market state --------------------------------------------------------
    async def configure_candles(
        self, sym: str, interval_ms: int = 1000, depth: int = 50
    ) -> list[CandleDict]:
        """Keep ``depth`` candles of ``sym`` at ``interval_ms``, seeded now and updated by MD.

        Several intervals per symbol may be configured. Returns the seeded candles.
        """
        check_sym(sym)
        series = self._market.add_series(sym, interval_ms, depth)  # checks interval and depth
        if not self._md_open:
            log.info("configure_candles(%s) without market data: candles will not update", sym)
        try:
            await self._md.seed_candles(sym, interval_ms)
        except BaseException:
            # Not seeded: a series left behind would be retried at every reconnect.
            self._market.remove_series(sym, interval_ms, series)
            raise
        self._candle_defaults.setdefault(sym, interval_ms)
        return self.get_candles(sym, interval_ms)

    # -- events, transactions, recording ---------------------------------------
    def events(self, *kinds: str, buffer: int = 1000) -> EventStream:
        """Subscribe to events as they happen; each call is a new subscriber.

        Args:
            *kinds: Kinds or prefixes to receive (``"order.fill"``, ``"order"``,
                ``"md.trade"``, ``"md"``, ``"connection"``); none means all. A
                kind that no event has raises `ValueError` (a typo would
                otherwise wait forever).
            buffer: This subscriber's buffer. When it is full, market data is
                dropped for it (and counted); a missed private event makes its
                next iteration raise `EventOverflow`.

        Returns:
            An async iterator (and async context manager) of `Event`.
        """
        check_event_kinds(kinds)
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
            # No await from here to the handover: the books handed over are
            # exactly the state the first frame fed will continue from.
            self._md.snapshot_taps.append(recorder.snapshot)
            self._recorders.append(recorder)
            now_ns = time.time_ns()
            for sym, state in self._market.symbols.items():
                if state.has_snapshot and state.sequencer.synced:
                    bids, asks = state.book.levels(None)
                    recorder.snapshot(sym, state.sequencer.seq, bids, asks, now_ns, "handover")
            try:
                yield recorder
            finally:
                self._md.snapshot_taps.remove(recorder.snapshot)
                self._recorders.remove(recorder)

    def stats(self) -> dict[str, Any]:
        """Counters of this session (no secrets): requests, frames, drops, resyncs, links.

        Counters of CMD connections replaced by a reconnect are included.
        ``links`` tells, per channel, whether it is up and how often it
        dropped and came back; ``out_of_sync`` lists the books that wait for
        a snapshot (they show their last known state meanwhile).
        """
        cmd = self._cmd.stats()
        return {
            "state": self._state,
            "user_id": self.user_id,
            "requests": cmd["requests"],
            "pending_requests": cmd["pending_requests"],
            "late_responses": cmd["late_responses"],
            "unsolicited_responses": cmd["unsolicited_responses"],
            "cmd_frames": cmd["cmd_frames"],
            "malformed_frames": cmd["cmd_malformed"] + self._market.malformed,
            "md_messages": self._md.messages,
            "cmd_events": self._sequence.events,
            "http_requests": self._http.requests if self._http else 0,
            "missed_private_events": self._sequence.missed,
            "gateway_resets": self._sequence.gateway_resets,
            "open_orders": len(self._orders),
            "events_dropped_md": self._hub.dropped_md,
            "events_missed_private": self._hub.missed_private,
            "hook_errors": self._hooks.errors,
            "hooks_dropped": self._hooks.dropped,
            "resyncs": {sym: st.resyncs for sym, st in self._market.symbols.items()},
            "md_repeated": {sym: st.sequencer.repeated for sym, st in self._market.symbols.items()},
            "md_restarts": {
                sym: st.sequencer.restarted for sym, st in self._market.symbols.items()
            },
            "out_of_sync": self._market.out_of_sync(),
            "links": {name: sup.link.stats() for name, sup in self._supervisors.items()},
            "transactions": len(self._transactions),
            "recorders": [recorder.stats() for recorder in self._recorders],
            "compiled": compiled,
        }


def _library_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("market-client")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"
