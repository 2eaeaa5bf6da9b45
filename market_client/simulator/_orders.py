"""Orders: the order rules, place / cancel / list / history, settlement of executions.

Each user's orders are indexed by id and by ``client_order_id``; an order
leaves every index when it is forgotten, so nothing here outgrows the bounds
of `Limits`.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable

from .._wire import MAX_CLIENT_ORDER_ID, ORDER_TYPES, SIDES, TIFS
from ._accounts import Accounts, Session, User
from ._engine import Execution, Order
from ._fields import Json, OpError, choice
from ._limits import Limits
from ._marketdata import MarketData, SymbolState
from ._symbols import price_ticks

__all__ = ["MAX_QTY", "Orders"]

MAX_QTY = 10**9
"""Largest order quantity: level totals stay far inside 64 bits."""


class Orders:
    """Every user's orders and the rules that place, match, settle and cancel them.

    Args:
        accounts: Owners, their money and their private events.
        market: Books and the MD they publish.
        limits: The open-order cap, levels per side, closed orders and fills kept.
        now_ns: The exchange's clock.
    """

    def __init__(
        self, accounts: Accounts, market: MarketData, limits: Limits, now_ns: Callable[[], int]
    ) -> None:
        self.accounts = accounts
        self.market = market
        self.limits = limits
        self.now_ns = now_ns
        self._order_ids = itertools.count(1)
        self._trade_ids = itertools.count(1)
        self.ops: dict[str, Callable[[Session, Json], Json]] = {
            "order.place": self._op_place,
            "order.cancel": self._op_cancel,
            "order.list": self._op_list,
            "order.history": self._op_history,
        }

    # -- rules -----------------------------------------------------------------
    def _parse(self, user: User, payload: Json) -> tuple[SymbolState, Order]:
        """Check every field of an ``order.place`` payload; the order it describes."""
        state = self.market.get(payload)
        spec = state.spec
        side = choice(payload, "side", "", SIDES, "invalid_side")
        otype = choice(payload, "type", "limit", ORDER_TYPES, "invalid_type")
        tif = choice(payload, "tif", "GTC", TIFS, "invalid_tif")
        qty = payload.get("qty")
        if (
            not isinstance(qty, int)
            or isinstance(qty, bool)
            or not spec.min_qty <= qty <= MAX_QTY
            or qty % spec.lot
        ):
            raise OpError(
                "invalid_qty",
                f"qty must be an integer from {spec.min_qty} to {MAX_QTY}, "
                f"a multiple of the lot {spec.lot}",
            )
        raw_price = payload.get("price")
        price: int | None = None
        if otype == "limit":
            price = price_ticks(spec, raw_price, self.limits.max_price_ticks)
        elif raw_price is not None:
            raise OpError("invalid_price", "a market order takes no price")
        coid = payload.get("client_order_id")
        if coid is not None and (
            not isinstance(coid, str) or not 0 < len(coid) <= MAX_CLIENT_ORDER_ID
        ):
            raise OpError(
                "bad_request",
                f"client_order_id must be a string of 1 to {MAX_CLIENT_ORDER_ID} characters",
            )
        order_id = f"o-{next(self._order_ids)}"
        order = Order(
            order_id, coid, user.user_id, spec.sym, side, otype, price, qty, tif, self.now_ns()
        )
        return state, order

    def _refusal(self, user: User, state: SymbolState, order: Order) -> OpError | None:
        """Why a well-formed order is rejected (it is then kept as ``rejected``), or None."""
        coid = order.client_order_id
        if state.status != "trading":
            return OpError("halted", f"{order.sym} is halted")
        if coid is not None and coid in user.live_by_coid:
            return OpError(
                "duplicate_client_order_id", f"client_order_id {coid!r} is already on a live order"
            )
        if order.type != "limit" or order.tif != "GTC":
            return None  # never rests: no cap applies
        limits = self.limits
        if len(user.open_orders) >= limits.max_open_orders:
            return OpError(
                "too_many_orders",
                f"you have {limits.max_open_orders} open orders, the most allowed",
            )
        assert order.price is not None
        book = state.book
        if book.level_count(order.side) >= limits.max_levels_per_side and not book.has_level(
            order.side, order.price
        ):
            return OpError(
                "too_many_orders",
                f"the {order.side} side of {order.sym} has {limits.max_levels_per_side} "
                "price levels, the most allowed",
            )
        return None

    # -- place and cancel ------------------------------------------------------
    def admit(self, user: User, payload: Json) -> tuple[SymbolState, Order]:
        """Read an order and take it in, or reject it: the first steps of every placement.

        Returns:
            The symbol's state and the accepted order (``order.accepted`` sent).

        Raises:
            OpError: A field is malformed (no order), or the order is refused
                (kept as ``rejected``, ``order.rejected`` sent).
        """
        state, order = self._parse(user, payload)
        self._take_in(user, state, order)
        return state, order

    def _take_in(self, user: User, state: SymbolState, order: Order) -> None:
        """Refuse a parsed order (kept as ``rejected``) or accept it, with its event.

        Raises:
            OpError: The order is refused.
        """
        refusal = self._refusal(user, state, order)
        if refusal is not None:
            order.status = "rejected"
            self._remember(user, order)
            self.accounts.event(
                user, "order.rejected", {"order": self.order_json(order), "reason": refusal.code}
            )
            raise refusal
        self._remember(user, order)
        self.accounts.event(user, "order.accepted", {"order": self.order_json(order)})

    def place(self, user: User, payload: Json) -> tuple[Order, list[Json]]:
        """Check and run one order; returns it and the user's (taker) fills.

        Raises:
            OpError: A field is malformed (no order is created), or the order
                is rejected (it is kept with status ``rejected`` and an
                ``order.rejected`` event is sent).
        """
        state, order = self.admit(user, payload)
        book = state.book
        cap = self.limits.max_fills_per_order
        executions: list[Execution] = []
        changes: dict[tuple[str, int], int] = {}
        if order.tif != "FOK" or book.available(order.side, order.price, cap) >= order.qty:
            executions, changes = book.match(order, cap)
        now = order.ts_ns
        fills = self._settle(state, executions, now)
        if changes:
            self.market.delta(state, changes, now)
        if order.live and order.order_id not in book.by_id:
            # IOC / market remainder, an FOK that could not fill, or a capped sweep.
            order.status = "cancelled"
            self._finish(user, order)
            self.accounts.event(user, "order.cancelled", {"order": self.order_json(order)})
        return order, fills

    def cancel(self, user: User, order: Order) -> None:
        """Cancel a live resting order of ``user``."""
        state = self.market.symbols[order.sym]
        changes = state.book.cancel(order)
        order.status = "cancelled"
        self._finish(user, order)
        if changes:
            self.market.delta(state, changes, self.now_ns())
        self.accounts.event(user, "order.cancelled", {"order": self.order_json(order)})

    def cancel_all(self, state: SymbolState) -> None:
        """Cancel every resting order of a symbol (a halt)."""
        users = self.accounts.users
        for order in list(state.book.resting()):
            owner = users.get(order.user_id)
            if owner is not None:
                self.cancel(owner, order)
            else:  # pragma: no cover - a user with open orders is never forgotten
                state.book.cancel(order)

    def _settle(self, state: SymbolState, executions: list[Execution], now: int) -> list[Json]:
        """Trades on MD, fills to both owners, cash and positions updated."""
        taker_fills: list[Json] = []
        sym = state.spec.sym
        tick = state.spec.tick
        users = self.accounts.users
        keep = self.limits.max_fills_per_order
        for ex in executions:
            trade_id = f"t-{next(self._trade_ids)}"
            self.market.trade(state, trade_id, ex.price, ex.qty, ex.taker.side, now)
            price_text = state.fmt(ex.price)
            price = ex.price * tick
            for order, liquidity in ((ex.maker, "maker"), (ex.taker, "taker")):
                fill = {
                    "trade_id": trade_id,
                    "order_id": order.order_id,
                    "sym": sym,
                    "side": order.side,
                    "price": price_text,
                    "qty": ex.qty,
                    "liquidity": liquidity,
                    "ts_ns": now,
                }
                owner = users.get(order.user_id)
                if owner is None:  # pragma: no cover - a user with open orders is never forgotten
                    continue
                self.accounts.settle(owner, sym, order.side, price, ex.qty)
                if not owner.simulated:
                    kept = owner.fills.get(order.order_id)
                    if kept is None:
                        kept = owner.fills[order.order_id] = deque(maxlen=keep)
                    kept.append(fill)
                if liquidity == "taker":
                    taker_fills.append(fill)
                self.accounts.event(
                    owner, "order.fill", {"order": self.order_json(order), "fill": fill}
                )
                if liquidity == "maker" and not order.live:
                    self._finish(owner, order)
        taker = executions[-1].taker if executions else None
        if taker is not None and taker.status == "filled":
            owner = users.get(taker.user_id)
            if owner is not None:
                self._finish(owner, taker)
        return taker_fills

    # -- the user's indexes ------------------------------------------------------
    def _remember(self, user: User, order: Order) -> None:
        user.orders[order.order_id] = order
        user.open_orders[order.order_id] = order
        coid = order.client_order_id
        if coid is not None:
            # A rejected duplicate never takes the id from the live order it
            # duplicates: a cancel or a history by client_order_id finds that
            # one, now and after it finished.
            if order.live:
                user.live_by_coid[coid] = order
                user.by_coid[coid] = order
            elif coid not in user.live_by_coid:
                user.by_coid[coid] = order
        if not order.live:
            self._finish(user, order)

    def _finish(self, user: User, order: Order) -> None:
        """Move a finished order out of the live indexes; forget the oldest finished ones."""
        if user.open_orders.pop(order.order_id, None) is None:
            return  # already finished
        coid = order.client_order_id
        if coid is not None and user.live_by_coid.get(coid) is order:
            del user.live_by_coid[coid]
        if user.simulated:  # nobody reads a background participant's history
            self._forget(user, order.order_id)
            return
        user.closed.append(order.order_id)
        while len(user.closed) > self.limits.max_closed_orders:
            self._forget(user, user.closed.popleft())

    @staticmethod
    def _forget(user: User, order_id: str) -> None:
        order = user.orders.pop(order_id, None)
        user.fills.pop(order_id, None)
        coid = order.client_order_id if order is not None else None
        if coid is not None and user.by_coid.get(coid) is order:
            del user.by_coid[coid]

    def _lookup(self, user: User, payload: Json) -> Order:
        order_id = payload.get("order_id")
        coid = payload.get("client_order_id")
        if order_id is not None:
            if not isinstance(order_id, str):
                raise OpError("bad_request", "'order_id' must be a string")
            order = user.orders.get(order_id)
            if order is None:
                raise OpError("not_found", f"no order {order_id[:80]!r} of yours")
            return order
        if coid is not None:
            if not isinstance(coid, str):
                raise OpError("bad_request", "'client_order_id' must be a string")
            order = user.live_by_coid.get(coid) or user.by_coid.get(coid)
            if order is None:
                raise OpError("not_found", f"no order with client_order_id {coid[:80]!r} of yours")
            return order
        raise OpError("bad_request", "give 'order_id' or 'client_order_id' (a string)")

    # -- wire forms and ops --------------------------------------------------------
    def order_json(self, order: Order) -> Json:
        """Wire form of an order."""
        fmt = self.market.symbols[order.sym].fmt
        return {
            "order_id": order.order_id,
            "client_order_id": order.client_order_id,
            "user_id": order.user_id,
            "sym": order.sym,
            "side": order.side,
            "type": order.type,
            "price": None if order.price is None else fmt(order.price),
            "qty": order.qty,
            "filled_qty": order.filled_qty,
            "leaves_qty": order.leaves_qty,
            "status": order.status,
            "tif": order.tif,
            "ts_ns": order.ts_ns,
        }

    def _op_place(self, session: Session, payload: Json) -> Json:
        order, fills = self.place(session.user, payload)
        return {"order": self.order_json(order), "fills": fills}

    def _op_cancel(self, session: Session, payload: Json) -> Json:
        user = session.user
        order = self._lookup(user, payload)
        if not order.live:
            raise OpError("not_found", f"order {order.order_id} is not open (it is {order.status})")
        self.cancel(user, order)
        return {"order": self.order_json(order)}

    def _op_list(self, session: Session, payload: Json) -> Json:
        status = choice(payload, "status", "open", ("open", "all"), "bad_request")
        user = session.user
        orders = user.open_orders if status == "open" else user.orders
        return {"orders": [self.order_json(o) for o in orders.values()]}

    def _op_history(self, session: Session, payload: Json) -> Json:
        user = session.user
        order = self._lookup(user, payload)
        return {"order": self.order_json(order), "fills": list(user.fills.get(order.order_id, ()))}
