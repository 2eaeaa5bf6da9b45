"""Property tests of the matching engine against a plain reference model."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from market_client.simulator._engine import Book, Order
from market_client.simulator._exchange import Exchange
from market_client.simulator._flow import Flow

_ids = itertools.count()


@dataclass
class Req:
    side: str
    type: str
    price: int
    qty: int
    tif: str


reqs = st.builds(
    Req,
    side=st.sampled_from(["buy", "sell"]),
    type=st.sampled_from(["limit", "limit", "limit", "market"]),
    price=st.integers(95, 105),
    qty=st.integers(1, 20),
    tif=st.sampled_from(["GTC", "GTC", "IOC", "FOK"]),
)
actions = st.lists(st.one_of(reqs, st.integers(0, 50)), max_size=80)  # int: cancel the n-th resting


def run_engine(
    book: Book, req: Req, cap: int | None = None
) -> tuple[Order, list[tuple[str, int, int]]]:
    order = Order(
        f"o{next(_ids)}",
        None,
        "u",
        "S",
        req.side,
        req.type,
        req.price if req.type == "limit" else None,
        req.qty,
        req.tif,
        0,
    )
    if req.tif == "FOK" and book.available(req.side, order.price, cap) < req.qty:
        return order, []
    executions, _ = book.match(order, cap)
    return order, [(e.maker.order_id, e.price, e.qty) for e in executions]


def reference(
    resting: list[Order], order: Order, cap: int | None = None
) -> list[tuple[str, int, int]]:
    """Price-time priority by brute force over a list of resting orders, oldest first.

    With ``cap``, only the first ``cap`` resting orders in priority can trade.
    """
    opposite = [o for o in resting if o.side != order.side and o.qty > o.filled_qty]
    if order.side == "buy":
        opposite.sort(key=lambda o: o.price or 0)  # stable: time order kept within a price
    else:
        opposite.sort(key=lambda o: -(o.price or 0))
    opposite = opposite[:cap]
    want = order.qty
    if order.tif == "FOK":
        reachable = sum(
            o.qty - o.filled_qty
            for o in opposite
            if order.price is None
            or (o.price <= order.price if order.side == "buy" else o.price >= order.price)
        )
        if reachable < want:
            return []
    out = []
    for o in opposite:
        if not want:
            break
        assert o.price is not None
        if order.price is not None and (
            o.price > order.price if order.side == "buy" else o.price < order.price
        ):
            break
        take = min(want, o.qty - o.filled_qty)
        out.append((o.order_id, o.price, take))
        want -= take
    return out


@settings(max_examples=150, deadline=None)
@given(actions, st.none() | st.integers(1, 4))
def test_matching_invariants(steps: list[Req | int], cap: int | None) -> None:
    book = Book()
    orders: list[Order] = []
    for step in steps:
        if isinstance(step, int):
            live = list(book.resting())
            if live:
                victim = live[step % len(live)]
                book.cancel(victim)
                victim.status = "cancelled"
            continue
        # The reference sees the resting orders in arrival order.
        model = sorted(book.resting(), key=lambda o: int(o.order_id[1:]))
        expected_copy = [
            Order(
                o.order_id, None, "u", "S", o.side, o.type, o.price, o.qty, o.tif, 0, o.filled_qty
            )
            for o in model
        ]
        order, fills = run_engine(book, step, cap)
        orders.append(order)
        assert fills == reference(expected_copy, order, cap)
        # A capped sweep does not rest: resting it could cross the book.
        if cap is not None and len(fills) == cap:
            assert order.order_id not in {o.order_id for o in book.resting()}
        # The book never crosses after matching.
        bid, ask = book.best_bid(), book.best_ask()
        assert bid is None or ask is None or bid < ask
        # Levels hold exactly what their orders leave.
        for side in ("buy", "sell"):
            for price, qty in book.levels(side):
                assert qty == sum(
                    o.qty - o.filled_qty
                    for o in book.resting()
                    if o.side == side and o.price == price
                )
    # Conservation: bought == sold, and every order's qty is filled + resting + gone.
    bought = sum(o.filled_qty for o in orders if o.side == "buy")
    sold = sum(o.filled_qty for o in orders if o.side == "sell")
    assert bought == sold
    resting_ids = {o.order_id for o in book.resting()}
    for o in orders:
        assert 0 <= o.filled_qty <= o.qty
        if o.order_id in resting_ids:
            assert o.type == "limit" and o.tif == "GTC" and o.filled_qty < o.qty


class RecordingSink:
    def __init__(self) -> None:
        self.messages: list[dict[str, object]] = []
        self.events: list[tuple[str, dict[str, object]]] = []

    def md(self, sym: str, msg: dict[str, object]) -> None:
        self.messages.append(msg)

    def event(self, user_id: str, frame: dict[str, object]) -> None:
        self.events.append((user_id, frame))

    def disconnect(self, user_id: str | None) -> None:
        pass

    def set_flow(self, rate_hz: float) -> None:
        pass


def test_exchange_seq_is_contiguous_and_candles_match_trades() -> None:
    sink = RecordingSink()
    sink_md = sink.messages
    ex = Exchange(sink=sink)
    flow = Flow(ex, seed=5)
    flow.seed_books()
    for _ in range(3000):
        flow.step()
    last: dict[object, int] = {}
    for msg in sink_md:
        if msg["ch"] in ("book.delta", "trade"):
            sym = msg["sym"]
            assert msg["seq"] == last.get(sym, 0) + 1
            last[sym] = msg["seq"]  # type: ignore[assignment]
    trades = [m for m in sink_md if m["ch"] == "trade" and m["sym"] == "ABC"]
    assert trades
    candles = ex.candles("ABC", 3_600_000, limit=10)
    assert sum(c["v"] for c in candles["candles"]) == sum(t["qty"] for t in trades)  # type: ignore[misc]
    assert candles["last_seq"] == trades[-1]["seq"]


def test_seeded_flow_is_deterministic() -> None:
    def book_after(seed: int) -> list[object]:
        ex = Exchange()
        flow = Flow(ex, seed=seed)
        flow.seed_books()
        for _ in range(500):
            flow.step()
        return [ex.symbols[s].book.levels(side) for s in ex.symbols for side in ("buy", "sell")]

    assert book_after(11) == book_after(11)
    assert book_after(11) != book_after(12)
