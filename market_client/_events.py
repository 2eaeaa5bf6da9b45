"""Fan-out of events to ``events()`` subscribers and to hooks.

Each subscriber owns a bounded AnyIO memory object stream
(``anyio.create_memory_object_stream(buffer)``): the hub holds its sending
end, the subscriber's `EventStream` its receiving end.

Backpressure: publishing never waits (``send_nowait``). When a subscriber's
buffer is full (``anyio.WouldBlock``):

* market-data events (kinds ``md.*``) are dropped for that subscriber and
  counted (`EventStream.dropped`, ``stats()["events_dropped_md"]``);
* private order events and connection events are never dropped silently:
  the subscriber's next step raises `EventOverflow` with the number it
  missed (``stats()["events_missed_private"]``; the transactions ring
  buffer still holds order events), then goes on with what is buffered.

Readers, books, candles and other subscribers are never slowed by a slow
consumer.

Closing: when the session closes, the hub closes every sending end; each
subscriber still gets what was buffered for it, then its iteration ends.
Unsubscribing (`EventStream.close`, leaving ``async with``, or dropping the
last reference to the stream) closes both ends at once: what was buffered is
discarded, and every task iterating the stream, waiting or not, ends.
"""

from __future__ import annotations

import inspect
import logging
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import anyio
import sniffio
from anyio.streams.memory import (
    MemoryObjectReceiveStream,
    MemoryObjectSendStream,
    MemoryObjectStreamStatistics,
)

from ._exceptions import EventOverflow
from ._models import FillDict, OrderDict

__all__ = [
    "Event",
    "EventHub",
    "EventStream",
    "Hook",
    "HookRunner",
    "LoopEvent",
    "loop_event_type",
]

log = logging.getLogger("market_client")
Hook = Callable[[dict[str, Any]], Any]
# Frames a reader (MD or CMD) takes between two checkpoints, where recv() hands
# over a waiting frame without one: other tasks run under a flood.
FAIR_EVERY = 16
# Events an events() consumer takes with receive_nowait() between two that it
# takes with `await receive()`, which checkpoints first (a turn for the other
# tasks and a look for a cancellation). 64: a reader hands over at most
# FAIR_EVERY frames between two of its own turns, so a consumer that takes 64
# per turn empties what the MD and CMD readers buffered meanwhile; a cancelled
# consumer stops within 64 events; and the checkpoint (about 3 µs through
# AnyIO on asyncio, a scheduling round on Trio) costs under 0.1 µs an event,
# against about 1 µs to take one.
TURN_EVERY = 64
_Call = tuple[Callable[[dict[str, Any]], Awaitable[Any]], dict[str, Any]]


class LoopEvent(Protocol):
    """What a waiter needs of an event: ``asyncio.Event`` and ``trio.Event`` both are one."""

    def set(self) -> None: ...

    async def wait(self) -> Any: ...


def loop_event_type() -> Callable[[], LoopEvent]:
    """The running loop's own event class, for waits made once per few frames.

    ``anyio.Event()`` looks the backend up at every call (4.6 µs on asyncio,
    against 0.5 µs for ``asyncio.Event()``); the loop's own class is looked up once.
    """
    if sniffio.current_async_library() == "trio":
        import trio

        return trio.Event
    import asyncio

    return asyncio.Event


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened, as delivered by ``client.events()``.

    ``repr(evt)`` shows what happened (``Event(order.fill ABC o-7 buy 2@100.01
    filled 2/5)``), and order events have typed read-only views, so nothing
    needs to reach into ``data["payload"]``:

        async with client.events("order") as stream:
            async for evt in stream:
                if evt.fill is not None:
                    print(evt.fill["price"], evt.fill["qty"], evt.order["status"])

    Attributes:
        kind: ``"order.accepted"``, ``"order.rejected"``, ``"order.fill"``,
            ``"order.cancelled"`` (private CMD events); ``"md.trade"``,
            ``"md.book.delta"``, ``"md.book.snapshot"``, ``"md.status"``
            (market data); ``"book.restarted"`` (a symbol's MD stream went
            back below its book: it is resynced); ``"connection.lost"``, ``"connection.restored"``,
            ``"events.missed"`` (the session's own state).
        data: The raw frame (CMD event or MD message) or, for session
            events, a small dict describing it.
        sym: The symbol, when there is one.
    """

    kind: str
    data: dict[str, Any] = field(repr=False)
    sym: str | None = None

    @property
    def droppable(self) -> bool:
        """Market data may be dropped for a slow consumer; nothing else may."""
        return self.kind.startswith("md.")

    def _payload(self) -> Mapping[str, Any]:
        payload = self.data.get("payload") if self.kind.startswith("order.") else None
        return payload if isinstance(payload, Mapping) else {}

    @property
    def order(self) -> OrderDict | None:
        """The order of an ``order.*`` event (a copy: the frame stays as it came), else None."""
        order = self._payload().get("order")
        return cast(OrderDict, dict(order)) if isinstance(order, dict) else None

    @property
    def fill(self) -> FillDict | None:
        """The execution of an ``order.fill`` event (a copy), None for every other event."""
        fill = self._payload().get("fill")
        return cast(FillDict, dict(fill)) if isinstance(fill, dict) else None

    @property
    def reason(self) -> str | None:
        """Why an ``order.rejected`` event's order was rejected (an error code), else None."""
        reason = self._payload().get("reason")
        return reason if isinstance(reason, str) else None

    def __repr__(self) -> str:
        return f"Event({self.kind}{_summary(self)})"


# The slots' own setters: what a frozen dataclass's ``__init__`` reaches through
# ``object.__setattr__``, one call for each field.
_new_object = object.__new__
_set_kind = vars(Event)["kind"].__set__
_set_data = vars(Event)["data"].__set__
_set_sym = vars(Event)["sym"].__set__


def new_event(kind: str, data: dict[str, Any], sym: str | None) -> Event:
    """``Event(kind, data, sym)`` in about half the time: for the MD reader, once a message.

    The frozen ``__init__`` takes 0.58 µs on this project's benchmark machine
    (an ``object.__setattr__`` call for each field); setting the slots directly
    takes 0.33 µs. The event is the same: equal, frozen, of the same class.
    """
    event: Event = _new_object(Event)
    _set_kind(event, kind)
    _set_data(event, data)
    _set_sym(event, sym)
    return event


def _summary(evt: Event) -> str:
    """The key fields of an event, for ``repr``: short, and never the whole frame."""
    d = evt.data
    sym = f" {evt.sym}" if evt.sym else ""
    try:
        if evt.kind.startswith("order."):
            o = evt.order
            if o is None:
                return sym
            price = o.get("price") or "market"
            text = f" {o.get('sym')} {o.get('order_id')} {o.get('side')} {o.get('qty')}@{price}"
            if evt.fill is not None:
                text += f" fill {evt.fill.get('qty')}@{evt.fill.get('price')}"
            text += f" {o.get('status')} {o.get('filled_qty')}/{o.get('qty')}"
            return text + (f" reason={evt.reason}" if evt.reason else "")
        if evt.kind == "md.trade":
            return f"{sym} {d.get('qty')}@{d.get('price')} {d.get('aggressor')} seq={d.get('seq')}"
        if evt.kind == "md.book.delta":
            return f"{sym} seq={d.get('seq')} changes={len(d.get('changes') or ())}"
        if evt.kind == "md.book.snapshot":
            levels = (len(d.get("bids") or ()), len(d.get("asks") or ()))
            return f"{sym} seq={d.get('seq')} levels={levels[0]}/{levels[1]}"
        if evt.kind == "md.status":
            return f"{sym} {d.get('status')}"
        # Session events are small dicts of their own: show them whole.
        return sym + "".join(f" {k}={v!r}" for k, v in d.items())
    except (AttributeError, TypeError):  # a malformed frame must not break repr
        return sym


class _Subscriber:
    """What the hub keeps of one subscriber: its stream's sending end, its kinds and counts."""

    __slots__ = ("dropped", "every", "kinds", "missed", "send")

    def __init__(self, kinds: tuple[str, ...], send: MemoryObjectSendStream[Event]) -> None:
        self.kinds = kinds
        self.every = not kinds
        self.send = send
        self.dropped = 0  # market-data events dropped: the buffer was full
        self.missed = 0  # private events missed since the consumer's last step

    def wants(self, kind: str) -> bool:
        return self.every or any(kind == k or kind.startswith(k + ".") for k in self.kinds)


def _unsubscribe(
    hub: EventHub, sub: _Subscriber, receive: MemoryObjectReceiveStream[Event]
) -> None:
    hub._remove(sub)
    receive.close()


class EventStream:
    """An ``events()`` subscription: an async iterator of `Event` over a bounded memory stream.

    Several tasks may iterate one stream; each event goes to one of them.
    Iteration ends once the session has closed and what was buffered for
    this subscriber then has been taken. Unsubscribing (`close`, leaving an
    ``async with`` block, or dropping the last reference) closes both ends
    of the stream: what is buffered is discarded and every task iterating
    it ends.

    Raises (from iteration):
        EventOverflow: The buffer was full and private events were missed.
            Iteration may go on after it, with what is buffered.
    """

    def __init__(
        self, hub: EventHub, sub: _Subscriber, receive: MemoryObjectReceiveStream[Event]
    ) -> None:
        self._sub = sub
        self._receive = receive
        self._until_turn = TURN_EVERY  # events to take before the next `await receive()`
        # Closes both ends when called, or when this stream becomes garbage. The
        # finalizer registry holds the receiving end until then, so even in a
        # reference cycle it is closed before AnyIO could find it unclosed.
        self._unsubscribe = weakref.finalize(self, _unsubscribe, hub, sub, receive)

    @property
    def dropped(self) -> int:
        """Market-data events dropped for this subscriber because its buffer was full."""
        return self._sub.dropped

    def statistics(self) -> MemoryObjectStreamStatistics:
        """The stream's statistics: events buffered, its size, tasks waiting on it."""
        return self._receive.statistics()

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        sub = self._sub
        if sub.missed:
            missed, sub.missed = sub.missed, 0
            raise EventOverflow(missed)
        # What is buffered is taken without a checkpoint, except one event in
        # TURN_EVERY: `receive()` checkpoints first, so that a consumer under a
        # flood gives the readers their turn and sees a cancellation.
        self._until_turn -= 1
        try:
            if self._until_turn:
                try:
                    return self._receive.receive_nowait()
                except anyio.WouldBlock:
                    pass
            self._until_turn = TURN_EVERY
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            # The session closed and the buffer is empty, or unsubscribed.
            raise StopAsyncIteration from None

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Unsubscribe: close both ends of the stream, discarding what is buffered (idempotent)."""
        self._unsubscribe()


class EventHub:
    """Every ``events()`` subscriber of a session."""

    def __init__(self) -> None:
        # Replaced, never changed in place: a stream that the garbage collector
        # closes while `_targets_of` walks it cannot make it skip anyone.
        self._subs: tuple[_Subscriber, ...] = ()
        # kind -> the subscribers that want it, worked out once per kind (a session
        # has a few kinds) and again whenever a subscriber comes or goes.
        self._targets: dict[str, tuple[_Subscriber, ...]] = {}
        self.dropped_md = 0
        self.missed_private = 0
        self.closed = False

    def subscribe(self, kinds: tuple[str, ...], buffer: int) -> EventStream:
        """A new subscriber with a memory object stream of its own, of ``buffer`` events.

        After `close`, the stream ends at once.
        """
        if not isinstance(buffer, int) or isinstance(buffer, bool) or buffer <= 0:
            raise ValueError(f"buffer must be a positive integer, got {buffer!r}")
        for kind in kinds:
            if not isinstance(kind, str) or not kind:
                raise TypeError(f"event kinds are non-empty strings, got {kind!r}")
        send, receive = anyio.create_memory_object_stream[Event](buffer)
        sub = _Subscriber(kinds, send)
        if self.closed:
            send.close()
        else:
            self._subs = (*self._subs, sub)
            self._targets.clear()
        return EventStream(self, sub, receive)

    def _remove(self, sub: _Subscriber) -> None:
        if sub in self._subs:
            self._subs = tuple(s for s in self._subs if s is not sub)
            self._targets.clear()
        sub.send.close()

    def _targets_of(self, kind: str) -> tuple[_Subscriber, ...]:
        subs = self._subs
        targets = tuple(sub for sub in subs if sub.wants(kind))
        # Kept unless a subscriber came or went meanwhile (a stream closed by
        # the garbage collector in the middle of it, say).
        if self._subs is subs and len(self._targets) < 1024:
            self._targets[kind] = targets
        return targets

    def targets(self, kind: str) -> tuple[_Subscriber, ...]:
        """The subscribers that want events of ``kind`` (empty: publishers skip them).

        For a publisher that builds its event only when someone wants it: hand
        the result to `deliver` (one lookup of the kind a message, not two).
        """
        targets = self._targets.get(kind)
        if targets is None:
            targets = self._targets_of(kind)
        return targets

    def wants(self, kind: str) -> bool:
        """Whether any subscriber wants events of ``kind`` (if not, publishers skip them)."""
        return bool(self.targets(kind))

    @property
    def has_subscribers(self) -> bool:
        """Whether anyone is listening (publishers skip building events otherwise)."""
        return bool(self._subs)

    def publish(self, event: Event) -> None:
        """Offer ``event`` to every subscriber that wants its kind, without waiting."""
        self.deliver(event, self.targets(event.kind))

    def deliver(self, event: Event, targets: tuple[_Subscriber, ...]) -> None:
        """Offer ``event`` to ``targets`` (`targets` of its kind, just asked), without waiting.

        A full buffer drops market data (counted) and marks private events
        missed (the consumer's next step raises `EventOverflow`). A subscriber
        that left in between (closed by the garbage collector while the event
        was built, say) is skipped.
        """
        for sub in targets:
            try:
                sub.send.send_nowait(event)
            except anyio.WouldBlock:
                if event.droppable:
                    sub.dropped += 1
                    self.dropped_md += 1
                else:
                    sub.missed += 1
                    self.missed_private += 1
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._remove(sub)

    def close(self) -> None:
        """Close every sending end: subscribers take what is buffered, then their iteration ends."""
        self.closed = True
        subs, self._subs = self._subs, ()
        self._targets.clear()
        for sub in subs:
            sub.send.close()


class HookRunner:
    """Calls hooks (sync inline, async in a runner task), never letting one kill the session.

    An exception in a hook is logged and counted in `errors`. Async
    hooks are queued to a bounded buffer drained by `run`; when it is
    full, calls are dropped and counted in `dropped`.
    """

    def __init__(self, buffer: int = 1000) -> None:
        self.errors = 0
        self.dropped = 0
        self._buffer = buffer
        self._tx: MemoryObjectSendStream[_Call] | None = None

    def call(self, hook: Hook | None, data: dict[str, Any]) -> None:
        """Call ``hook(data)`` now if it is sync, or queue it if it is async."""
        if hook is None:
            return
        if inspect.iscoroutinefunction(hook):
            self._queue((hook, data))
            return
        try:
            result = hook(data)
        except Exception:
            self.errors += 1
            log.exception("event hook %r raised; the session goes on", hook)
            return
        # A sync callable that returned an awaitable: run it like an async hook; a
        # coroutine that finds no room is closed so it does not warn "never awaited".
        queued = inspect.isawaitable(result) and self._queue((_awaiting(result), data))
        if inspect.iscoroutine(result) and not queued:
            result.close()

    def _queue(self, call: _Call) -> bool:
        try:
            if self._tx is None:
                raise anyio.WouldBlock
            self._tx.send_nowait(call)
        except (anyio.WouldBlock, anyio.ClosedResourceError):
            self.dropped += 1
            return False
        return True

    async def run(self) -> None:
        """Run queued async hooks one at a time until cancelled or closed.

        The queue exists only while this runs, so a runner that never ran
        leaves nothing open.
        """
        tx, rx = anyio.create_memory_object_stream[_Call](self._buffer)
        self._tx = tx
        with tx, rx:
            async for hook, data in rx:
                try:
                    await hook(data)
                except Exception:
                    self.errors += 1
                    log.exception("event hook %r raised; the session goes on", hook)

    def close(self) -> None:
        """Stop accepting calls; `run` finishes the queued ones and returns."""
        if self._tx is not None:
            self._tx.close()


def _awaiting(awaitable: Awaitable[Any]) -> Callable[[dict[str, Any]], Awaitable[Any]]:
    async def call(_: dict[str, Any]) -> Any:
        return await awaitable

    return call
