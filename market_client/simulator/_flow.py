"""Simulated background order flow, so that books move and trades print.

Per symbol, one market maker keeps a short ladder of quotes around a fair
value that takes a random walk; a few traders rest passive orders near the
touch and send marketable ones through it. All randomness comes from one
``random.Random(seed)``, so a seeded gateway makes the same decisions in the
same order (wall-clock timing still varies).
"""

from __future__ import annotations

import math
import random
from collections import deque

import anyio

from ._engine import Order
from ._exchange import Exchange, OpError, User

__all__ = ["Flow"]

LADDER = 5  # market-maker orders per side
TRADER_MAX_OPEN = 8  # resting orders per trader before its oldest is cancelled
TICKS_PER_STEP = 100  # at most this many flow actions per wake-up


class Flow:
    """Background order flow at ``rate_hz`` actions per second (0 stops it)."""

    def __init__(self, exchange: Exchange, rate_hz: float = 20.0, seed: int | None = None) -> None:
        self.exchange = exchange
        self.rate_hz = rate_hz
        self.rng = random.Random(seed)
        self.actions = 0
        self._wake = anyio.Event()
        syms = list(exchange.symbols)
        self._syms = syms
        self._fair = {
            s: int(st.spec.start_price / st.spec.tick) for s, st in exchange.symbols.items()
        }
        self._mm: dict[str, User] = {s: exchange.new_user(simulated=True) for s in syms}
        self._mm_orders: dict[str, dict[str, deque[Order]]] = {
            s: {"buy": deque(), "sell": deque()} for s in syms
        }
        self._traders = [exchange.new_user(simulated=True) for _ in range(4)]
        self._trader_orders: dict[str, deque[Order]] = {t.user_id: deque() for t in self._traders}

    def set_rate(self, rate_hz: float) -> None:
        """Change the rate; takes effect at once, 0 stops the flow."""
        self.rate_hz = rate_hz
        self._wake.set()
        self._wake = anyio.Event()

    def seed_books(self, levels: int = 10) -> None:
        """Give every symbol a two-sided book of ``levels`` prices a side.

        The fair price itself is left empty, so the book opens with a spread
        of two ticks around it.
        """
        for sym in self._syms:
            fair = self._fair[sym]
            for i in range(1, levels + 1):
                for side, ticks in (("buy", fair - i), ("sell", fair + i)):
                    self._place(
                        self._mm[sym],
                        {
                            "sym": sym,
                            "side": side,
                            "price": self._price(sym, ticks),
                            "qty": self._qty(sym, 10),
                        },
                    )

    async def run(self) -> None:
        """Act at the configured rate until cancelled."""
        while True:
            rate = self.rate_hz
            if rate <= 0:
                await self._wake.wait()
                continue
            # Wake at most ~100 times a second and do a batch of actions.
            batch = min(TICKS_PER_STEP, max(1, math.ceil(rate / 100)))
            with anyio.move_on_after(batch / rate):
                await self._wake.wait()
                continue
            for _ in range(batch):
                self.step()

    def step(self) -> None:
        """One flow action on a random symbol."""
        self.actions += 1
        rng = self.rng
        sym = rng.choice(self._syms)
        if self.exchange.symbols[sym].status != "trading":
            return
        move = rng.random()
        fair = self._fair[sym]
        if move < 0.15:
            fair += 1
        elif move < 0.30:
            fair -= 1
        self._fair[sym] = max(20, fair)
        action = rng.random()
        if action < 0.45:
            self._quote(sym)
        elif action < 0.70:
            self._passive(sym)
        else:
            self._aggress(sym)

    def _price(self, sym: str, ticks: int) -> str:
        return self.exchange.symbols[sym].fmt(max(1, ticks))

    def _qty(self, sym: str, most: int) -> int:
        lot = self.exchange.symbols[sym].spec.lot
        return lot * self.rng.randint(1, most)

    def _place(self, user: User, payload: dict[str, object]) -> Order | None:
        try:
            order, _ = self.exchange.place(user, payload)
        except OpError:
            return None
        return order if order.live else None

    def _quote(self, sym: str) -> None:
        """The market maker adds one quote per side, dropping its oldest."""
        mm = self._mm[sym]
        fair = self._fair[sym]
        for side, sign in (("buy", -1), ("sell", 1)):
            queue = self._mm_orders[sym][side]
            while len(queue) >= LADDER or (queue and not queue[0].live):
                old = queue.popleft()
                if old.live:
                    self.exchange.cancel(mm, old)
            offset = self.rng.randint(1, 2 * LADDER)
            order = self._place(
                mm,
                {
                    "sym": sym,
                    "side": side,
                    "price": self._price(sym, fair + sign * offset),
                    "qty": self._qty(sym, 10),
                },
            )
            if order is not None:
                queue.append(order)

    def _passive(self, sym: str) -> None:
        trader = self.rng.choice(self._traders)
        queue = self._trader_orders[trader.user_id]
        while queue and (len(queue) >= TRADER_MAX_OPEN or not queue[0].live):
            old = queue.popleft()
            if old.live:
                self.exchange.cancel(trader, old)
        side = self.rng.choice(("buy", "sell"))
        offset = self.rng.randint(0, 6)
        ticks = self._fair[sym] + (-offset if side == "buy" else offset)
        order = self._place(
            trader,
            {"sym": sym, "side": side, "price": self._price(sym, ticks), "qty": self._qty(sym, 5)},
        )
        if order is not None:
            queue.append(order)

    def _aggress(self, sym: str) -> None:
        trader = self.rng.choice(self._traders)
        side = self.rng.choice(("buy", "sell"))
        if self.rng.random() < 0.3:
            payload: dict[str, object] = {
                "sym": sym,
                "side": side,
                "type": "market",
                "qty": self._qty(sym, 3),
            }
        else:
            through = self.rng.randint(1, 4)
            ticks = self._fair[sym] + (through if side == "buy" else -through)
            payload = {
                "sym": sym,
                "side": side,
                "price": self._price(sym, ticks),
                "tif": "IOC",
                "qty": self._qty(sym, 4),
            }
        self._place(trader, payload)
