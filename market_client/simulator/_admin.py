"""Admin ops and the fault knobs: halts, disconnects, MD gaps, flow rate, bad frames."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ._accounts import Accounts, Session
from ._fields import Json, OpError, integer, number, text
from ._marketdata import MarketData
from ._orders import Orders
from ._sink import Sink

__all__ = ["FRAME_FAULTS", "Admin", "Faults"]

MAX_FAULT_SECONDS = 3600.0

FRAME_FAULTS = (
    "not_json",
    "not_object",
    "wrong_types",
    "unknown_type",
    "unknown_corr_id",
    "oversized",
    "bad_price",
)
"""Malformed frames the gateway can send on purpose (``admin.fault``)."""

_FAULTS = ("clear", "md_stall", "delay", "drop", "fail", "frame")


@dataclass(slots=True)
class Faults:
    """Knobs that make the gateway misbehave on purpose, for tests.

    ``delay`` (seconds per op) and ``drop`` (ops never answered) are applied
    by the I/O layer; ``fail`` makes an op raise inside the engine, which the
    client sees as error code ``internal``. Stalling market data and sending
    malformed frames are done by the gateway (``RunningSimulator.stall_md``
    and ``RunningSimulator.inject``, or the ``admin.fault`` op).
    """

    delay: dict[str, float] = field(default_factory=dict)
    drop: set[str] = field(default_factory=set)
    fail: set[str] = field(default_factory=set)

    def clear(self) -> None:
        """Back to a well-behaved gateway."""
        self.delay.clear()
        self.drop.clear()
        self.fail.clear()


class Admin:
    """The ``admin.*`` ops.

    Args:
        accounts: To check that a user to disconnect exists.
        market: Symbol status and MD gaps.
        orders: A halt cancels the symbol's resting orders.
        sink: Carries out disconnects, flow changes, stalls and bad frames.
        faults: The knobs ``admin.fault`` sets.
        known_ops: Every op name, to check the op a fault names.
    """

    def __init__(
        self,
        accounts: Accounts,
        market: MarketData,
        orders: Orders,
        sink: Sink,
        faults: Faults,
        known_ops: Mapping[str, object],
    ) -> None:
        self.accounts = accounts
        self.market = market
        self.orders = orders
        self.sink = sink
        self.faults = faults
        self.known_ops = known_ops
        self.ops: dict[str, Callable[[Session, Json], Json]] = {
            "admin.halt": self._op_halt,
            "admin.resume": self._op_resume,
            "admin.disconnect": self._op_disconnect,
            "admin.md_gap": self._op_md_gap,
            "admin.flow": self._op_flow,
            "admin.fault": self._op_fault,
        }

    def halt(self, sym: str) -> None:
        """Halt ``sym``: cancel its resting orders, reject new ones, publish the status."""
        state = self.market.symbols[sym]
        state.status = "halted"
        self.orders.cancel_all(state)
        self.market.set_status(state, "halted")

    def _op_halt(self, session: Session, payload: Json) -> Json:
        state = self.market.get(payload)
        self.halt(state.spec.sym)
        return {"sym": state.spec.sym, "status": state.status}

    def _op_resume(self, session: Session, payload: Json) -> Json:
        state = self.market.get(payload)
        self.market.set_status(state, "trading")
        return {"sym": state.spec.sym, "status": state.status}

    def _op_disconnect(self, session: Session, payload: Json) -> Json:
        user_id = text(payload, "user_id", required=False)
        if user_id is not None and user_id not in self.accounts.users:
            raise OpError("not_found", f"no user {user_id!r}")
        self.sink.disconnect(user_id)
        return {"user_id": user_id}

    def _op_md_gap(self, session: Session, payload: Json) -> Json:
        state = self.market.get(payload)
        count = integer(payload, "count", None, 1, self.market.max_gap)
        return {"sym": state.spec.sym, "count": self.market.add_gap(state, count)}

    def _op_flow(self, session: Session, payload: Json) -> Json:
        rate = number(payload, "rate_hz", 0, 100_000)
        self.sink.set_flow(rate)
        return {"rate_hz": payload["rate_hz"]}

    def _op_fault(self, session: Session, payload: Json) -> Json:
        fault = payload.get("fault")
        if not isinstance(fault, str) or fault not in _FAULTS:
            raise OpError("bad_request", f"'fault' must be one of {', '.join(_FAULTS)}")
        if fault == "clear":
            self.faults.clear()
            self.sink.stall_md(0)
            return {"fault": fault}
        if fault == "md_stall":
            seconds = number(payload, "seconds", 0, MAX_FAULT_SECONDS)
            self.sink.stall_md(seconds)
            return {"fault": fault, "seconds": payload["seconds"]}
        if fault == "frame":
            return self._frame_fault(payload)
        op = payload.get("op")
        if not isinstance(op, str) or op not in self.known_ops or op.startswith("admin."):
            raise OpError("bad_request", "'op' must name a non-admin op")
        if fault == "delay":
            self.faults.delay[op] = number(payload, "seconds", 0, MAX_FAULT_SECONDS, lo_open=True)
        elif fault == "drop":
            self.faults.drop.add(op)
        else:
            self.faults.fail.add(op)
        return {"fault": fault, "op": op}

    def _frame_fault(self, payload: Json) -> Json:
        kind = payload.get("kind")
        channel = payload.get("channel", "cmd")
        if not isinstance(kind, str) or kind not in FRAME_FAULTS:
            raise OpError("bad_request", f"'kind' must be one of {', '.join(FRAME_FAULTS)}")
        if not isinstance(channel, str) or channel not in ("cmd", "md"):
            raise OpError("bad_request", "'channel' must be 'cmd' or 'md'")
        user_id = text(payload, "user_id", required=False)
        if kind == "bad_price":
            # A real seq, so that a client's sequencer accepts it and must
            # find the bad price itself.
            state = self.market.get(payload)
            self.market.delta_wire(state, [["buy", "not-a-price", 1]], self.market.now_ns())
            return {"fault": "frame", "kind": kind, "sockets": -1}
        sent = self.sink.inject(channel, kind, user_id)
        return {"fault": "frame", "kind": kind, "sockets": sent}
