"""The CMD link: requests out, responses matched by ``corr_id``, private events in.

Who owns what:

* `RequestSession` is one CMD WebSocket's request table and reader. It does
  not own the socket: whoever opened the socket closes it.
* `CmdChannel` owns the CMD socket of a session, one connection at a time:
  `CmdChannel.connect` opens it, runs the reader and the liveness check in
  its own task group, logs in, and closes the socket when any of them ends.
  The session's supervisor calls it again after a drop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, cast
from urllib.parse import urlencode

import anyio
import anyio.lowlevel
import sniffio
from anyio.abc import TaskStatus

from ._events import FAIR_EVERY, LoopEvent, loop_event_type
from ._exceptions import (
    ConnectionLost,
    MarketClientError,
    RequestTimeout,
    fresh,
    link_closed,
    open_error,
)
from ._logs import LogThrottle, held_back
from ._models import LoginReply
from ._protocol import Correlator, decode_frame, encode_request, is_event, payload_or_raise
from ._transports import TransportClosed, TransportOpenError, WebSocket

__all__ = ["CmdChannel", "RequestSession"]

log = logging.getLogger("market_client")
MAX_HELD = 10_000  # events held back while a new connection logs in


class _Waiter:
    """A pending request's slot: an event and the frame or error that set it."""

    __slots__ = ("error", "event", "frame")

    def __init__(self, event: LoopEvent) -> None:
        self.event = event
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

    Many tasks may call `request` at once; each waits for its own response.
    Created by `MarketClient.open_cmd`, which also runs `run` (the reader) in
    the session's task group.

    Args:
        ws: The open socket (its opener closes it).
        on_event: Called with every well-formed private event frame.
        timeout: Default deadline of a request, in seconds.
        max_pending: Most requests in flight at once.
        on_raw_event: Called with every private event frame as received,
            before ``on_event`` (what a recorder keeps).
        hold_events: Keep events back until `release_events` (a new
            connection holds them until its login reply has been handled, so
            the event ``seq`` the login reports is seen first).
    """

    def __init__(
        self,
        ws: WebSocket,
        *,
        on_event: Callable[[dict[str, Any]], None],
        timeout: float = 5.0,
        max_pending: int = 10_000,
        on_raw_event: Callable[[str | bytes], None] | None = None,
        hold_events: bool = False,
    ) -> None:
        self._ws = ws
        self._held: list[tuple[str | bytes, dict[str, Any]]] | None = [] if hold_events else None
        self._on_event = on_event
        self._on_raw_event = on_raw_event
        self.timeout = timeout
        self.correlator: Correlator[_Waiter] = Correlator(max_pending)
        self.closed: MarketClientError | None = None
        self.requests = 0
        self.frames = 0
        self.malformed = 0
        self._malformed_warnings = LogThrottle()
        self._backend = ""  # the backend of the last request, and its Event class
        self._new_event: Callable[[], LoopEvent] = anyio.Event
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

        The frame is encoded and checked before a slot is taken, and the slot
        is freed in a ``finally``: a request that cannot be sent leaves
        nothing behind.

        Raises:
            ValueError: The payload cannot be encoded, or the frame is over
                the gateway's 64 KiB limit; nothing was sent.
            TooManyInFlight: ``max_pending`` requests are in flight; nothing was sent.
            GatewayError: The gateway answered with an error (`AuthError` for
                ``unauthorized``).
            RequestTimeout: No response within ``timeout``; the waiter is removed.
            ConnectionLost: The socket closed before the response came.
            SessionClosed: The session was closed.
        """
        if self.closed is not None:
            raise fresh(self.closed)
        limit = self.timeout if timeout is None else timeout
        correlator = self.correlator
        correlator.check_room()
        msg_id = correlator.next_id()
        text = encode_request(op, payload if payload is not None else {}, msg_id, as_role)
        backend = sniffio.current_async_library()
        if backend != self._backend:
            # The loop's own Event class: anyio.Event() looks the backend up at every call.
            self._backend, self._new_event = backend, loop_event_type()
        waiter = _Waiter(self._new_event())
        correlator.add(waiter, msg_id)
        self.requests += 1
        try:
            # The deadline is a cancel scope around the send (which may wait
            # under back-pressure) and the wait for the response.
            with anyio.move_on_after(limit):
                await self._ws.send(text)
                await waiter.event.wait()
            if waiter.frame is None and waiter.error is None:
                # The deadline passed first. A reply or a lost link that came in
                # the same turn of the loop set the waiter too: that one is kept.
                raise RequestTimeout(op, limit)
        except TransportClosed as exc:
            self.closed = self.closed or link_closed("CMD", exc.code, exc.reason)
            raise fresh(self.closed) from exc
        finally:
            if waiter.frame is None and waiter.error is None:
                correlator.abandon(msg_id)
        if waiter.error is not None:
            raise fresh(waiter.error)
        return payload_or_raise(cast(dict[str, Any], waiter.frame), op)

    async def run(self) -> None:
        """Read frames until the socket closes; then fail every pending request.

        Raises:
            ConnectionLost: The gateway or the network closed the socket.
        """
        ws = self._ws
        correlator = self.correlator
        # recv() hands over a waiting frame without a checkpoint (see the MD
        # reader): a burst of replies or events gives other tasks a turn
        # every FAIR_EVERY frames, between two frames (none is in hand if
        # the reader is cancelled there).
        fair = not ws.recv_yields
        while True:
            if fair and self.frames % FAIR_EVERY == 0 and self.frames:
                await anyio.lowlevel.checkpoint()
            try:
                raw = await ws.recv()
            except TransportClosed as exc:
                lost = link_closed("CMD", exc.code, exc.reason)
                self.fail(lost)
                raise lost from exc
            self.frames += 1
            frame = decode_frame(raw)
            kind = frame.get("type") if frame is not None else None
            if kind == "response":
                correlator.resolve(cast(dict[str, Any], frame))
            elif kind == "event" and is_event(cast(dict[str, Any], frame)):
                if self._held is not None:
                    if len(self._held) < MAX_HELD:  # beyond: seen as missed, by seq
                        self._held.append((raw, cast(dict[str, Any], frame)))
                    continue
                self._event(raw, cast(dict[str, Any], frame))
            else:
                self.malformed += 1
                held = self._malformed_warnings.take()
                if held is not None:
                    log.warning("malformed CMD frame ignored: %.200r%s", raw, held_back(held))

    def _event(self, raw: str | bytes, frame: dict[str, Any]) -> None:
        if self._on_raw_event is not None:
            self._on_raw_event(raw)
        self._on_event(frame)

    def release_events(self) -> None:
        """Deliver the events held back, and every later one as it comes."""
        held, self._held = self._held, None
        for raw, frame in held or ():
            self._event(raw, frame)

    def fail(self, exc: MarketClientError) -> None:
        """Refuse new requests and fail the pending ones with ``exc``."""
        self.closed = self.closed or exc
        self.correlator.fail_all(exc)

    async def aclose(self) -> None:
        """Close the socket (for a session made by hand around a socket you opened)."""
        with anyio.move_on_after(1, shield=True):
            await self._ws.aclose()


_RETIRED = ("requests", "frames", "malformed", "late", "unsolicited")


class CmdChannel:
    """The CMD socket of a session, one connection at a time.

    Args:
        ws_base: ``ws://host:port`` or ``wss://host:port``.
        token: Returns the session's token when a connection opens.
        connect_websocket: Opens a socket (an async context manager that closes it).
        timeout: Default request deadline, in seconds.
        heartbeat_timeout: A link that answers no ping within this many
            seconds is dead: pending requests fail with `ConnectionLost`.
        max_pending: Most requests in flight at once.
        on_event: Called with every private event frame.
        on_raw_event: Called with every private event frame as received.
        on_login: Called once a new connection is logged in and current.
    """

    def __init__(
        self,
        *,
        ws_base: str,
        token: Callable[[], str],
        connect_websocket: Callable[[str], Any],
        timeout: float,
        heartbeat_timeout: float,
        max_pending: int,
        on_event: Callable[[dict[str, Any]], None],
        on_raw_event: Callable[[str | bytes], None],
        on_login: Callable[[RequestSession, RequestSession | None], None],
    ) -> None:
        self._ws_base = ws_base
        self._token = token
        self._connect = connect_websocket
        self.timeout = timeout
        self._heartbeat_timeout = heartbeat_timeout
        self._max_pending = max_pending
        self._on_event = on_event
        self._on_raw_event = on_raw_event
        self._on_login = on_login
        self.current: RequestSession | None = None
        self.retired = dict.fromkeys(_RETIRED, 0)
        self.ended: MarketClientError | None = None
        self._changed: anyio.Event | None = None

    @property
    def up(self) -> bool:
        """Whether a logged-in connection is open."""
        return self.current is not None and self.current.closed is None

    async def connect(self, *, task_status: TaskStatus[None]) -> None:
        """One CMD connection: open, read, log in, watch; returns only by raising."""
        url = f"{self._ws_base}/ws/cmd?" + urlencode({"token": self._token()})
        try:
            async with self._connect(url) as ws:
                session = RequestSession(
                    ws,
                    on_event=self._on_event,
                    timeout=self.timeout,
                    max_pending=self._max_pending,
                    on_raw_event=self._on_raw_event,
                    hold_events=True,
                )
                async with anyio.create_task_group() as tg:
                    tg.start_soon(session.run)
                    login = await session.request("auth.login", {}, timeout=self.timeout)
                    session.login = cast(LoginReply, login)
                    self._adopt(session)
                    session.release_events()
                    tg.start_soon(self._watch, session, ws)
                    task_status.started()
        except TransportOpenError as exc:
            raise open_error("CMD", exc.status, str(exc), self._ws_base) from exc

    def _adopt(self, session: RequestSession) -> None:
        old = self.current
        if old is not None:
            retired = self.retired
            retired["requests"] += old.requests
            retired["frames"] += old.frames
            retired["malformed"] += old.malformed
            retired["late"] += old.correlator.late
            retired["unsolicited"] += old.correlator.unsolicited
        self.current = session
        self._on_login(session, old)

    async def _watch(self, session: RequestSession, ws: WebSocket) -> None:
        """Ping the gateway; a ping left unanswered for the heartbeat limit ends the link.

        Pings go every ``min(0.5, limit / 4)`` s, so a link that dies is found
        dead within ``limit + 0.5`` s whatever the requests' own deadlines.
        """
        limit = self._heartbeat_timeout
        interval = min(0.5, limit / 4)
        while True:
            await anyio.sleep(interval)
            try:
                with anyio.move_on_after(limit) as scope:
                    await ws.ping()
            except TransportClosed as exc:  # closed while the ping waited: the reader says why
                lost = link_closed("CMD", exc.code, exc.reason)
                session.fail(lost)
                raise lost from exc
            if scope.cancelled_caught:
                lost = ConnectionLost(f"the CMD link answered no ping for {limit:g} s: it is dead")
                session.fail(lost)
                await ws.abort()  # a dead peer would never answer a polite close
                raise lost

    def notify(self) -> None:
        """Wake every task waiting for the link to come back (or the session to end)."""
        if self._changed is not None:
            self._changed.set()
        self._changed = anyio.Event()

    def end(self, exc: MarketClientError) -> None:
        """The session ended: refuse requests and fail the pending ones."""
        self.ended = exc
        if self.current is not None:
            self.current.fail(exc)
        self.notify()

    async def session_for(
        self, op: str, limit: float, *, wait: bool
    ) -> tuple[RequestSession, float]:
        """The logged-in session, waiting up to ``limit`` s while it reconnects.

        Returns the session and the time left of ``limit``. Without ``wait``
        (fail-fast sessions) the current session is returned as it is, and
        raises its own error.
        """
        cmd = self.current
        if cmd is None:
            raise RuntimeError("the CMD channel is not open: call open_cmd() first")
        if not wait:
            return cmd, limit
        start = anyio.current_time()
        with anyio.move_on_after(limit):
            while True:
                if self.ended is not None:
                    raise fresh(self.ended)
                cmd = cast(RequestSession, self.current)
                if cmd.closed is None:
                    return cmd, max(limit - (anyio.current_time() - start), 0.001)
                if self._changed is None:
                    self._changed = anyio.Event()
                await self._changed.wait()
        raise ConnectionLost(
            f"{op} was not sent: the CMD connection is down and did not come back "
            f"within {limit:g} s; it is still reconnecting"
        )

    def stats(self) -> dict[str, int]:
        """Counters over every connection of the session, replaced ones included."""
        cmd = self.current
        retired = self.retired
        return {
            "requests": retired["requests"] + (cmd.requests if cmd else 0),
            "pending_requests": len(cmd.correlator) if cmd else 0,
            "late_responses": retired["late"] + (cmd.correlator.late if cmd else 0),
            "unsolicited_responses": retired["unsolicited"]
            + (cmd.correlator.unsolicited if cmd else 0),
            "cmd_frames": retired["frames"] + (cmd.frames if cmd else 0),
            "cmd_malformed": retired["malformed"] + (cmd.malformed if cmd else 0),
        }
