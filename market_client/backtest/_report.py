"""What a backtest reports: fills, position, cash, P&L, fees, drawdown, turnover, equity curve."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ..simulator._accounts import STARTING_CASH, User
from ..simulator._replay import ReplayExchange, ReplayFrame

__all__ = ["BacktestReport", "Ledger"]

_BPS = Decimal(10_000)
_PLACES = Decimal("1e-8")


def _exact(value: Decimal) -> Decimal:
    """``value`` to at most 8 decimal places (average prices divide; money need not show 28)."""
    exponent = value.as_tuple().exponent
    return value.quantize(_PLACES) if isinstance(exponent, int) and exponent < -8 else value


@dataclass
class BacktestReport:
    """The result of `run`.

    Attributes:
        fills: Every fill of the strategy, in order (the ``order.fill`` fill objects).
        orders: Orders the strategy placed (accepted or rejected).
        position: Final position per symbol.
        cash: Final cash (the gateway's: fees are not taken from it).
        starting_cash: Cash at the start.
        realized_pnl: P&L of the closed part of positions.
        unrealized_pnl: Open positions marked at the recorded mid at the end.
        fees: Fees by the configured rates (maker and taker, in basis points of notional).
        net_pnl: ``realized_pnl + unrealized_pnl - fees``.
        max_drawdown: Largest fall of the net P&L curve from a previous peak.
        turnover: Sum of the fills' notional (price times quantity).
        frames: Recorded MD messages replayed.
        recorded_seconds: Recorded time covered.
        wall_seconds: Wall time the run took.
        equity: ``[(recorded ns, net P&L)]``, sampled every ``sample_ms`` and at every fill.
    """

    fills: list[dict[str, Any]]
    orders: int
    position: dict[str, int]
    cash: Decimal
    starting_cash: Decimal
    realized_pnl: Decimal
    unrealized_pnl: Decimal
    fees: Decimal
    net_pnl: Decimal
    max_drawdown: Decimal
    turnover: Decimal
    frames: int
    recorded_seconds: float
    wall_seconds: float
    equity: list[tuple[int, Decimal]] = field(repr=False)

    @property
    def events_per_second(self) -> float:
        """Recorded MD messages replayed per wall second."""
        return self.frames / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def to_json(self, *, fills: bool = True) -> dict[str, Any]:
        """The report as JSON-ready values (decimals as strings, exact).

        Args:
            fills: Include the fills and the equity curve.
        """
        out: dict[str, Any] = {
            "orders": self.orders,
            "fill_count": len(self.fills),
            "position": self.position,
            "cash": str(self.cash),
            "starting_cash": str(self.starting_cash),
            "realized_pnl": str(self.realized_pnl),
            "unrealized_pnl": str(self.unrealized_pnl),
            "fees": str(self.fees),
            "net_pnl": str(self.net_pnl),
            "max_drawdown": str(self.max_drawdown),
            "turnover": str(self.turnover),
            "frames": self.frames,
            "recorded_seconds": round(self.recorded_seconds, 6),
            "wall_seconds": round(self.wall_seconds, 6),
            "events_per_second": round(self.events_per_second, 1),
        }
        if fills:
            out["fills"] = self.fills
            out["equity"] = [[t, str(v)] for t, v in self.equity]
        return out

    def table(self) -> Any:
        """The report as a Rich table."""
        from rich.table import Table

        table = Table(title="backtest", show_header=False)
        table.add_column("", style="bold")
        table.add_column("", justify="right")
        position = ", ".join(f"{s} {q:+d}" for s, q in self.position.items()) or "flat"
        rows = [
            ("orders", str(self.orders)),
            ("fills", str(len(self.fills))),
            ("position", position),
            ("cash", str(self.cash)),
            ("realised P&L", str(self.realized_pnl)),
            ("unrealised P&L", str(self.unrealized_pnl)),
            ("fees", str(self.fees)),
            ("net P&L", str(self.net_pnl)),
            ("max drawdown", str(self.max_drawdown)),
            ("turnover", str(self.turnover)),
            ("recorded time", f"{self.recorded_seconds:.1f} s"),
            ("wall time", f"{self.wall_seconds:.2f} s"),
            ("events/s", f"{self.events_per_second:,.0f}"),
        ]
        for name, value in rows:
            table.add_row(name, value)
        return table

    def plot(self, path: str | os.PathLike[str]) -> None:
        """Write the equity curve (net P&L over recorded time) as a PNG.

        Raises:
            ImportError: matplotlib is not installed.
        """
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(9, 4))
        if self.equity:
            t0 = self.equity[0][0]
            ax.plot(
                [(t - t0) / 1e9 for t, _ in self.equity],
                [float(v) for _, v in self.equity],
                drawstyle="steps-post",
            )
        ax.set_xlabel("recorded seconds")
        ax.set_ylabel("net P&L")
        ax.set_title(
            f"{len(self.fills)} fills, net P&L {self.net_pnl}, max drawdown {self.max_drawdown}"
        )
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)


class Ledger:
    """Follows one user's fills and marks through a replay, and writes the report."""

    def __init__(
        self,
        exchange: ReplayExchange,
        *,
        maker_fee_bps: Decimal,
        taker_fee_bps: Decimal,
        sample_ns: int,
    ) -> None:
        self.exchange = exchange
        self.user: User | None = None
        self.maker_fee = maker_fee_bps / _BPS
        self.taker_fee = taker_fee_bps / _BPS
        self.sample_ns = sample_ns
        self.fills: list[dict[str, Any]] = []
        self.fees = Decimal(0)
        self.turnover = Decimal(0)
        self.equity: list[tuple[int, Decimal]] = []
        self.marks: dict[str, Decimal] = {}
        self._next_sample = 0
        self._peak: Decimal | None = None
        self.max_drawdown = Decimal(0)

    def on_fill(self, fill: dict[str, Any]) -> None:
        """One fill of the user: fees, turnover, a point of the curve."""
        notional = Decimal(fill["price"]) * fill["qty"]
        self.turnover += notional
        rate = self.maker_fee if fill["liquidity"] == "maker" else self.taker_fee
        self.fees += notional * rate
        self.fills.append(dict(fill))
        self.sample(fill["ts_ns"])

    def on_frame(self, frame: ReplayFrame) -> None:
        """After each recorded frame: a point of the curve every ``sample_ns``."""
        if frame.recv_ns >= self._next_sample:
            self._next_sample = frame.recv_ns + self.sample_ns
            self.sample(frame.recv_ns)

    def pnl(self) -> tuple[Decimal, Decimal, Decimal]:
        """``(realized, unrealized, net)`` now."""
        user = self.user
        if user is None:
            return Decimal(0), Decimal(0), Decimal(0)
        _, _, marks = self.exchange.user_equity(user)
        realized = Decimal(0)
        unrealized = Decimal(0)
        for sym, position in user.positions.items():
            mark = marks.get(sym)
            if mark is not None:
                self.marks[sym] = mark
            else:
                mark = self.marks.get(sym)
            realized += position.realized_pnl
            if position.qty and mark is not None:
                unrealized += (mark - position.avg_price) * position.qty
        realized, unrealized = _exact(realized), _exact(unrealized)
        return realized, unrealized, realized + unrealized - _exact(self.fees)

    def sample(self, t_ns: int) -> None:
        """Add one point to the equity curve and the drawdown."""
        if self.user is None:
            return
        net = self.pnl()[2]
        if self._peak is None or net > self._peak:
            self._peak = net
        self.max_drawdown = max(self.max_drawdown, self._peak - net)
        if self.equity and self.equity[-1][0] == t_ns:
            self.equity[-1] = (t_ns, net)
        else:
            self.equity.append((t_ns, net))

    def report(
        self, *, orders: int, frames: int, recorded_seconds: float, wall_seconds: float
    ) -> BacktestReport:
        """The final report."""
        user = self.user
        realized, unrealized, net = self.pnl()
        return BacktestReport(
            fills=self.fills,
            orders=orders,
            position={s: p.qty for s, p in user.positions.items()} if user else {},
            cash=user.cash if user else STARTING_CASH,
            starting_cash=STARTING_CASH,
            realized_pnl=realized,
            unrealized_pnl=unrealized,
            fees=_exact(self.fees),
            net_pnl=net,
            max_drawdown=self.max_drawdown,
            turnover=self.turnover,
            frames=frames,
            recorded_seconds=recorded_seconds,
            wall_seconds=wall_seconds,
            equity=self.equity,
        )
