"""The replay market: a recording's books and trades, and the user's orders against them (sans-I/O).

`ReplaySource` reads a recording's raw layer (``market_client.recording``)
into `ReplayFrame` values; `ReplayExchange` is the gateway's `Exchange` with
two parts swapped: the books follow the recorded market (`ReplayExchange.apply`
takes one recorded MD message) instead of a matching engine, and `ReplayOrders`
fills the user's orders by the queue-position model of docs/backtesting.md:

- a marketable order walks the recorded book at arrival (liquidity it took
  stays taken until the recording next changes that level);
- a resting order joins the back of its level, with the recorded quantity
  there ahead of it;
- the queue ahead shrinks by recorded trades at that price, and by recorded
  cancels pro rata (a cancel of ``c`` out of a level of ``q`` removes
  ``c * ahead // q`` from ahead of us);
- it fills when a recorded trade reaches it (the trade's quantity beyond what
  is ahead), or entirely when the market trades through its price;
- the user's orders and fills never change the recorded market.

No sockets, no ``await``: the I/O layer (``_replay_app``) paces the frames,
or at full speed sends them a block at a time (`ReplaySource.blocks`).
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from .._wire import PriceError, parse_price
from ._accounts import Accounts, User
from ._engine import Book, Level, Order
from ._exchange import Exchange, Json, Limits, OpError, Sink, SymbolSpec
from ._marketdata import MarketData, SymbolState
from ._orders import Orders

__all__ = [
    "ReplayExchange",
    "ReplayFrame",
    "ReplayOrders",
    "ReplaySource",
    "Resting",
    "parse_time",
    "recording_specs",
    "set_level",
]


class ReplayFrame(NamedTuple):
    """One recorded MD message: receive time, symbol, the exact text, and its decoded form."""

    recv_ns: int
    sym: str
    text: str
    msg: dict[str, Any]


def parse_time(text: str) -> int:
    """A ``--from`` / ``--to`` time: integer nanoseconds since the epoch, or ISO 8601.

    An ISO time without a zone is UTC.

    Raises:
        ValueError: Neither form.
    """
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    # Python 3.10's fromisoformat takes 3 or 6 digits of a second only.
    iso = re.sub(r"\.(\d{1,6})\d*", lambda m: "." + m.group(1).ljust(6, "0"), text)
    try:
        when = dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"not a time: {text!r} (ISO 8601, or nanoseconds since the epoch)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    delta = when - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def _read_meta(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The header of the recording's first raw file (``{}`` when there is none)."""
    import zstandard

    from ..recording._raw import raw_files

    for path in raw_files(directory, include_tmp=True):
        with open(path, "rb") as f, zstandard.ZstdDecompressor().stream_reader(f) as reader:
            data = b""
            while b"\n" not in data:
                chunk = reader.read(1 << 16)
                if not chunk:
                    break
                data += chunk
        try:
            obj = orjson.loads(data.split(b"\n", 1)[0])
        except orjson.JSONDecodeError:
            continue
        meta = obj.get("meta") if isinstance(obj, dict) else None
        if isinstance(meta, dict):
            return meta
    return {}


def recording_specs(
    directory: str | os.PathLike[str], symbols: Iterable[str] | None = None
) -> tuple[SymbolSpec, ...]:
    """The symbols of a recording (tick, min_qty, lot), from its raw layer's header.

    Args:
        directory: The recording.
        symbols: Only these (None: all of the recording's).

    Raises:
        ValueError: No raw layer, or a symbol asked for is not in it.
    """
    if not Path(directory, "raw").is_dir():
        raise ValueError(f"{os.fspath(directory)!r} holds no recording (no raw/ folder)")
    entries = _read_meta(directory).get("symbols") or []
    if isinstance(entries, dict):  # {"ABC": {"tick": ...}}, as the recorder writes it
        entries = [{"sym": sym, **entry} for sym, entry in entries.items()]
    specs: dict[str, SymbolSpec] = {}
    for entry in entries:
        try:
            specs[entry["sym"]] = SymbolSpec(
                str(entry["sym"]),
                parse_price(entry["tick"], name="tick"),
                int(entry.get("min_qty", 1)),
                int(entry.get("lot", 1)),
            )
        except (KeyError, TypeError, ValueError, PriceError):
            continue
    if not specs:
        raise ValueError(f"the recording in {os.fspath(directory)!r} names no symbols")
    if symbols is None:
        return tuple(specs.values())
    wanted = list(dict.fromkeys(symbols))
    missing = [s for s in wanted if s not in specs]
    if missing:
        raise ValueError(f"not in the recording: {', '.join(missing)} (it has {', '.join(specs)})")
    return tuple(specs[s] for s in wanted)


#: Compressed bytes of a raw file read at a time (a few thousand frames).
READ_CHUNK = 1 << 16
#: Frames decoded ahead, at most: a short block, so that its decoded messages die young
#: (the cyclic garbage collector's work grows with the containers that outlive a collection).
BLOCK_FRAMES = 128


class ReplaySource:
    """A recording's MD frames for a replay: the pre-roll, then the frames to send.

    The pre-roll is every frame received before ``start_ns`` and the leading
    snapshots: applied before anyone connects, so that a subscriber's first
    snapshot is the recorded one. Heartbeats and frames of other symbols are
    left out; the rest is yielded in receive order up to ``end_ns``, one
    frame at a time (iterating the source) or a block at a time (`blocks`).

    Each frame's text is the recorded frame exactly (a bytes frame's UTF-8
    text), never encoded again; it is decoded once, for the exchange
    (``ReplayFrame.msg``). The raw layer is read a decompressed chunk at a
    time, up to `BLOCK_FRAMES` lines decoded by one ``orjson.loads`` (a JSON
    array of them), then one per frame. Any line that is not a plain MD
    frame (a header, a gap, a snapshot, a base64 frame, a torn line) goes
    through the recording's own ``decode_line``, so the source yields, and
    raises, what reading ``iter_raw`` a frame at a time did.

    Args:
        directory: The recording (its ``raw/`` layer).
        symbols: Replay only these symbols (None: all).
        start_ns: First receive time to send (None: from the start).
        end_ns: Last receive time to send (None: to the end).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        symbols: Iterable[str] | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
    ) -> None:
        self.directory = directory
        self.specs = recording_specs(directory, symbols)
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.bad_frames = 0
        self._blocks = self._read()
        self._block: list[ReplayFrame] = []
        self._at = 0  # the next frame is self._block[self._at]
        self._ended = False

    def _read(self) -> Iterator[list[ReplayFrame]]:
        from ..recording._raw import RawFrame, decode_line, line_blocks, raw_files

        names = frozenset(s.sym for s in self.specs)
        loads = orjson.loads
        make = tuple.__new__  # ReplayFrame(...) without its Python-level __new__
        for path in raw_files(self.directory, include_tmp=True):
            for chunk in line_blocks(path, READ_CHUNK):
                for at in range(0, len(chunk), BLOCK_FRAMES):
                    lines = chunk[at : at + BLOCK_FRAMES]
                    # The writer's lines are JSON objects: one array decodes them all
                    # (a line that is not one, a torn or foreign line, is read alone).
                    try:
                        records = loads(b"[" + b",".join(lines) + b"]")
                    except orjson.JSONDecodeError:
                        records = None
                    if records is None or len(records) != len(lines):
                        records = [None] * len(lines)
                    block: list[ReplayFrame] = []
                    append = block.append
                    for line, rec in zip(lines, records, strict=True):
                        # A plain MD text frame, as the writer puts it: {recv_ns, ch, raw}
                        # (a bytes frame adds "bin": true; its text is "raw" all the same).
                        if (
                            type(rec) is dict
                            and rec.get("ch") == "md"
                            and type(text := rec.get("raw")) is str
                            and type(recv_ns := rec.get("recv_ns")) is int
                            and len(rec) <= 4
                        ):
                            pass
                        else:  # anything else, as iter_raw reads it (and raises what it raises)
                            record = decode_line(line)
                            if not isinstance(record, RawFrame) or record.channel != "md":
                                continue
                            recv_ns, raw = record.recv_ns, record.raw
                            try:
                                text = raw if isinstance(raw, str) else raw.decode()
                            except UnicodeDecodeError:
                                self.bad_frames += 1
                                continue
                        try:
                            msg = loads(text)
                        except orjson.JSONDecodeError:
                            self.bad_frames += 1
                            continue
                        if type(msg) is not dict:
                            self.bad_frames += 1
                            continue
                        sym = msg.get("sym")
                        if sym in names and msg.get("ch") != "heartbeat":
                            append(make(ReplayFrame, (recv_ns, sym, text, msg)))
                    if block:
                        yield block

    def _peek(self) -> ReplayFrame | None:
        """The next frame, without taking it (None at the end)."""
        while self._at >= len(self._block):
            if self._ended:
                return None
            block = next(self._blocks, None)
            if block is None:
                self._ended = True
                self._block, self._at = [], 0
                return None
            self._block, self._at = block, 0
        return self._block[self._at]

    def preroll(self) -> Iterator[ReplayFrame]:
        """The frames to apply before serving (nothing is sent for them)."""
        while (frame := self._peek()) is not None:
            leading = frame.msg.get("ch") == "book.snapshot"
            early = self.start_ns is not None and frame.recv_ns < self.start_ns
            if not (leading or early):
                return
            self._at += 1
            yield frame

    def blocks(self) -> Iterator[list[ReplayFrame]]:
        """The frames to send, a block (a list, in receive order) at a time.

        Taken from the same place as iterating the source, so the two may be mixed.
        """
        end_ns = self.end_ns
        while self._peek() is not None:
            block = self._block[self._at :] if self._at else self._block
            self._block, self._at = [], 0
            if end_ns is not None and block[-1].recv_ns > end_ns:
                block = list(itertools.takewhile(lambda f: f.recv_ns <= end_ns, block))
                self._ended = True
                if block:
                    yield block
                return
            yield block

    def __iter__(self) -> Iterator[ReplayFrame]:
        for block in self.blocks():
            yield from block


def set_level(book: Book, side: str, ticks: int, qty: int) -> int:
    """Set a recorded level's total (0 removes it); returns the total it had."""
    tree = book.bids if side == "buy" else book.asks
    key = -ticks if side == "buy" else ticks
    level = tree.get(key)
    old = level.qty if level is not None else 0
    if qty <= 0:
        if level is not None:
            del tree[key]
    elif level is None:
        tree[key] = Level(qty=qty)
    else:
        level.qty = qty
    return old


@dataclass(slots=True, eq=False)
class Resting:
    """One of the user's resting orders and the recorded quantity still ahead of it."""

    order: Order
    ahead: int


class ReplayOrders(Orders):
    """The order ops against the recorded market, by the queue-position model.

    The user's orders never enter the recorded book (nor its MD): they rest
    here, each with the quantity ahead of it, and fill from the recorded
    trades. ``fill_log`` keeps every fill in order (for backtest reports).
    """

    def __init__(
        self, accounts: Accounts, market: MarketData, limits: Limits, now_ns: Callable[[], int]
    ) -> None:
        super().__init__(accounts, market, limits, now_ns)
        # per symbol: (side, ticks) -> the user's resting orders there, oldest first
        self.resting: dict[str, dict[tuple[str, int], list[Resting]]] = {
            sym: {} for sym in market.symbols
        }
        # recorded liquidity the user took, per level, until the recording changes that level
        self.taken: dict[str, dict[tuple[str, int], int]] = {sym: {} for sym in market.symbols}
        # recorded trade volume per level not yet matched by the level's next delta
        self.traded: dict[str, dict[tuple[str, int], int]] = {sym: {} for sym in market.symbols}
        self.fill_log: deque[Json] = deque(maxlen=1_000_000)
        self.on_fill: Callable[[Json], None] | None = None
        self._fill_ids = 0
        self.placed = 0

    # -- the user's orders -----------------------------------------------------
    def place(self, user: User, payload: Json) -> tuple[Order, list[Json]]:
        """Check one order, fill what the recorded book allows, rest a GTC remainder.

        Raises:
            OpError: As `Orders.place`.
        """
        state, order = self._parse(user, payload)
        self.placed += 1  # refused orders count too: they have an id and an event
        self._take_in(user, state, order)
        walk = self._walk(state, order)
        fills: list[Json] = []
        if order.tif != "FOK" or sum(q for _, q in walk) >= order.qty:
            taken = self.taken[order.sym]
            opposite = "sell" if order.side == "buy" else "buy"
            for ticks, qty in walk:
                taken[(opposite, ticks)] = taken.get((opposite, ticks), 0) + qty
                fills.append(self._fill(user, state, order, ticks, qty, "taker"))
        remaining = order.qty - order.filled_qty
        if remaining and order.type == "limit" and order.tif == "GTC":
            assert order.price is not None
            key = (order.side, order.price)
            level = (state.book.bids if order.side == "buy" else state.book.asks).get(
                -order.price if order.side == "buy" else order.price
            )
            queue = self.resting[order.sym].setdefault(key, [])
            queue.append(Resting(order, level.qty if level is not None else 0))
        elif order.live:
            order.status = "cancelled"
            self._finish(user, order)
            self.accounts.event(user, "order.cancelled", {"order": self.order_json(order)})
        return order, fills

    def _walk(self, state: SymbolState, order: Order) -> list[tuple[int, int]]:
        """``[(ticks, qty)]`` the order takes from the recorded opposite side, best first."""
        book = state.book
        taken = self.taken[order.sym]
        if order.side == "buy":
            tree, sign, opposite = book.asks, 1, "sell"
        else:
            tree, sign, opposite = book.bids, -1, "buy"
        remaining = order.qty - order.filled_qty
        limit = order.price
        out: list[tuple[int, int]] = []
        cap = self.limits.max_fills_per_order
        for key, level in tree.items():
            if not remaining or len(out) >= cap:
                break
            ticks = sign * key
            if limit is not None and (ticks > limit if sign == 1 else ticks < limit):
                break
            free = level.qty - taken.get((opposite, ticks), 0)
            if free <= 0:
                continue
            qty = min(free, remaining)
            out.append((ticks, qty))
            remaining -= qty
        return out

    def _fill(
        self, user: User, state: SymbolState, order: Order, ticks: int, qty: int, liquidity: str
    ) -> Json:
        """Book one fill of ``order``: status, cash, position, the fill event."""
        order.filled_qty += qty
        order.status = "filled" if order.filled_qty == order.qty else "partially_filled"
        self._fill_ids += 1
        now = self.now_ns()
        fill: Json = {
            "trade_id": f"r-{self._fill_ids}",
            "order_id": order.order_id,
            "sym": order.sym,
            "side": order.side,
            "price": state.fmt(ticks),
            "qty": qty,
            "liquidity": liquidity,
            "ts_ns": now,
        }
        self.accounts.settle(user, order.sym, order.side, ticks * state.spec.tick, qty)
        kept = user.fills.get(order.order_id)
        if kept is None:
            kept = user.fills[order.order_id] = deque(maxlen=self.limits.max_fills_per_order)
        kept.append(fill)
        self.fill_log.append(fill)
        if self.on_fill is not None:
            self.on_fill(fill)
        self.accounts.event(user, "order.fill", {"order": self.order_json(order), "fill": fill})
        if order.status == "filled":
            self._finish(user, order)
        return fill

    def cancel(self, user: User, order: Order) -> None:
        """Cancel a live resting order of ``user`` (the recorded book does not change)."""
        assert order.price is not None
        queue = self.resting[order.sym].get((order.side, order.price), [])
        for i, rest in enumerate(queue):
            if rest.order is order:
                del queue[i]
                break
        if not queue:
            self.resting[order.sym].pop((order.side, order.price), None)
        order.status = "cancelled"
        self._finish(user, order)
        self.accounts.event(user, "order.cancelled", {"order": self.order_json(order)})

    def cancel_all(self, state: SymbolState) -> None:
        """Cancel every resting order of a symbol (a recorded halt)."""
        users = self.accounts.users
        for queue in list(self.resting[state.spec.sym].values()):
            for rest in list(queue):
                owner = users.get(rest.order.user_id)
                if owner is not None:
                    self.cancel(owner, rest.order)

    # -- the recorded market moves -------------------------------------------------
    def on_level(self, state: SymbolState, side: str, ticks: int, old: int, new: int) -> None:
        """A recorded level changed from ``old`` to ``new``: cancels shrink the queue pro rata."""
        sym = state.spec.sym
        key = (side, ticks)
        self.taken[sym].pop(key, None)
        traded = self.traded[sym].pop(key, 0)
        queue = self.resting[sym].get(key)
        if not queue:
            return
        cancelled = max(0, old - new - traded)
        for rest in queue:
            if cancelled and old > 0:
                rest.ahead -= cancelled * rest.ahead // old
            rest.ahead = min(rest.ahead, new)

    def on_trade(self, state: SymbolState, ticks: int, qty: int, aggressor: str) -> None:
        """A recorded trade: it reaches the orders it would have, and trades through others."""
        sym = state.spec.sym
        maker = "sell" if aggressor == "buy" else "buy"
        traded = self.traded[sym]
        traded[(maker, ticks)] = traded.get((maker, ticks), 0) + qty
        levels = self.resting[sym]
        if not levels:
            return
        users = self.accounts.users
        # Traded through: a buyer paid more than our ask, a seller took less than our bid.
        through = sorted(
            key
            for key in levels
            if key[0] == maker and (key[1] < ticks if maker == "sell" else key[1] > ticks)
        )
        for key in through:
            for rest in list(levels.get(key, ())):
                owner = users.get(rest.order.user_id)
                if owner is not None and rest.order.live:
                    self._fill(owner, state, rest.order, key[1], rest.order.leaves_qty, "maker")
            levels.pop(key, None)
        queue = levels.get((maker, ticks))
        if not queue:
            return
        own_ahead = 0
        for rest in list(queue):
            order = rest.order
            leaves = order.leaves_qty
            reach = qty - rest.ahead - own_ahead
            rest.ahead = max(0, rest.ahead - qty)
            own_ahead += leaves
            if reach > 0 and leaves:
                owner = users.get(order.user_id)
                if owner is not None:
                    self._fill(owner, state, order, ticks, min(reach, leaves), "maker")
        queue[:] = [r for r in queue if r.order.live]
        if not queue:
            del levels[(maker, ticks)]


class ReplayExchange(Exchange):
    """The gateway's `Exchange` over a recorded market (see the module docstring).

    Every op works as on the live gateway; ``order.place`` and
    ``order.cancel`` go to `ReplayOrders`; the books, ``seq``s, candles and
    statuses follow the recording through `apply`.

    Args:
        symbols: The recording's symbols (`recording_specs`).
        sink: Where MD, events and side effects go.
        **options: The other arguments of `Exchange`.
    """

    def __init__(self, symbols: Iterable[SymbolSpec], sink: Sink | None = None, **options: Any):
        super().__init__(symbols, sink, **options)
        self.orders: ReplayOrders = ReplayOrders(
            self.accounts, self.market, self.limits, self.now_ns
        )
        self.admin.orders = self.orders
        self._ops.update(self.orders.ops)
        self._ticks: dict[str, dict[str, int]] = {sym: {} for sym in self.market.symbols}
        self.applied = 0
        self.bad_frames = 0

    def _price(self, state: SymbolState, text: object) -> int:
        cache = self._ticks[state.spec.sym]
        ticks = cache.get(text) if isinstance(text, str) else None
        if ticks is None:
            if not isinstance(text, str):
                raise ValueError("a price is a string")
            try:
                value = Decimal(text) / state.spec.tick
            except InvalidOperation:
                raise ValueError(f"bad price {text[:40]!r}") from None
            if value != value.to_integral_value():
                raise ValueError(f"price {text[:40]!r} is not on the tick")
            if len(cache) > 100_000:
                cache.clear()
            ticks = cache[text] = int(value)
        return ticks

    def apply(self, msg: dict[str, Any]) -> bool:
        """Move the market by one recorded MD message; whether subscribers should get it.

        A malformed message is counted in ``bad_frames`` and not sent. A
        ``book.delta`` of one level (most of them) takes a short path: at full
        speed this runs for every recorded frame.
        """
        state = self.market.symbols.get(msg.get("sym"))  # type: ignore[arg-type]
        if state is None:
            return False
        ch = msg.get("ch")
        try:
            if ch == "book.delta":
                sym = state.spec.sym
                cache = self._ticks[sym]
                changes = msg["changes"]
                seq = int(msg["seq"])
                orders = self.orders
                # The queue model has work only where the user rests, took, or a trade printed.
                watched = orders.resting[sym] or orders.taken[sym] or orders.traded[sym]
                book = state.book
                if len(changes) == 1:
                    ((side, text, q),) = changes
                    ticks = cache.get(text)
                    if ticks is None:
                        ticks = self._price(state, text)
                    qty = int(q)  # checked before the book moves
                    # set_level, inline
                    if side == "buy":
                        tree, key = book.bids, -ticks
                    else:
                        tree, key = book.asks, ticks
                    level = tree.get(key)
                    if level is None:
                        old = 0
                        if qty > 0:
                            tree[key] = Level(qty=qty)
                    else:
                        old = level.qty
                        if qty > 0:
                            level.qty = qty
                        else:
                            del tree[key]
                    if watched:
                        orders.on_level(state, side, ticks, old, qty)
                else:
                    price = self._price
                    moves = [
                        (s, price(state, p) if (t := cache.get(p)) is None else t, int(q))
                        for s, p, q in changes
                    ]  # every change is checked before the book moves
                    for side, ticks, qty in moves:
                        old = set_level(book, side, ticks, qty)
                        if watched:
                            orders.on_level(state, side, ticks, old, qty)
                state.seq = seq
                self.applied += 1
                if state.gap > 0:  # admin.md_gap, as on the live gateway
                    state.gap -= 1
                    return False
                return True
            if ch == "trade":
                ticks = self._price(state, msg["price"])
                qty = int(msg["qty"])
                state.seq = int(msg["seq"])
                state.candles.add(int(msg["ts_ns"]), ticks, qty, state.seq)
                self.orders.on_trade(state, ticks, qty, msg.get("aggressor", "buy"))
            elif ch == "book.snapshot":
                self._snapshot(state, msg)
            elif ch == "status":
                status = msg.get("status")
                if not isinstance(status, str):
                    raise ValueError("status is a string")
                state.status = status
                if status != "trading":
                    self.orders.cancel_all(state)
            else:
                return False
        except (KeyError, TypeError, ValueError, OpError):
            self.bad_frames += 1
            return False
        self.applied += 1
        if ch == "trade" and state.gap > 0:  # admin.md_gap, as on the live gateway
            state.gap -= 1
            return False
        return True

    def _snapshot(self, state: SymbolState, msg: dict[str, Any]) -> None:
        book = Book()
        for side, key in (("buy", "bids"), ("sell", "asks")):
            for price, qty in msg[key]:
                set_level(book, side, self._price(state, price), int(qty))
        old = state.book
        state.book = book
        state.seq = int(msg["seq"])
        for side, tree in (("buy", old.bids), ("sell", old.asks)):
            for key in list(tree):
                ticks = -key if side == "buy" else key
                if not book.has_level(side, ticks):
                    self.orders.on_level(state, side, ticks, tree[key].qty, 0)
        for side, tree in (("buy", book.bids), ("sell", book.asks)):
            for key, level in tree.items():
                ticks = -key if side == "buy" else key
                before = old.bids if side == "buy" else old.asks
                was = before.get(key)
                self.orders.on_level(state, side, ticks, was.qty if was else 0, level.qty)

    def user_equity(self, user: User) -> tuple[Decimal, dict[str, int], dict[str, Decimal | None]]:
        """``(cash, positions, marks)``: marks are recorded mids (None with an empty side)."""
        positions = {sym: p.qty for sym, p in user.positions.items()}
        marks: dict[str, Decimal | None] = {}
        for sym in positions:
            state = self.market.symbols[sym]
            bid, ask = state.book.best_bid(), state.book.best_ask()
            marks[sym] = None if bid is None or ask is None else (bid + ask) * state.spec.tick / 2
        return user.cash, positions, marks
