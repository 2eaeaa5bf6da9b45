"""Argument checks: wrong arguments raise here, before anything is sent.

Each check raises ``TypeError`` for a value of the wrong type and
``ValueError`` for one out of range, with a message that says what to pass.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from ._wire import (
    MAX_CLIENT_ORDER_ID,
    MD_CHANNELS,
    ORDER_TYPES,
    PRIVATE_EVENTS,
    SIDES,
    TIFS,
    check_int64,
    price_text,
)

SYMBOL = re.compile(r"[A-Za-z0-9._-]{1,32}")  # what can travel in the MD URL's query

__all__ = [
    "EVENT_KINDS",
    "check_event_kinds",
    "check_op",
    "check_positive_int",
    "check_sym",
    "check_symbols",
    "check_timeout",
    "order_payload",
    "order_ref",
]


def check_timeout(timeout: float, name: str = "timeout") -> float:
    """A positive finite number of seconds."""
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not 0 < timeout < math.inf
    ):
        raise ValueError(f"{name} must be a positive finite number of seconds, got {timeout!r}")
    return float(timeout)


def check_sym(sym: str) -> str:
    """A non-empty symbol name."""
    if not isinstance(sym, str) or not sym:
        raise TypeError(f"sym must be a non-empty string, got {sym!r}")
    return sym


def check_positive_int(name: str, value: int) -> int:
    """A positive ``int`` that fits the wire's signed 64 bits."""
    return check_int64(name, value)


def check_symbols(symbols: Sequence[str] | None) -> list[str] | None:
    """None (every symbol) or a non-empty list of names."""
    if symbols is None:
        return None
    if isinstance(symbols, str):
        raise TypeError("symbols is a list of names, e.g. ['ABC'], not a string")
    names = list(symbols)
    if not names or not all(isinstance(s, str) and SYMBOL.fullmatch(s) for s in names):
        raise ValueError(
            "symbols must be a non-empty list of symbol names (letters, digits, '.', '_', '-'), "
            f"got {names!r:.80}"
        )
    return names


def check_op(op: str, payload: Mapping[str, Any] | None) -> None:
    """An op name and a payload mapping (or None)."""
    if not isinstance(op, str) or not op:
        raise TypeError(f"op must be a non-empty string, got {op!r}")
    if payload is not None and not isinstance(payload, Mapping):
        raise TypeError(f"payload must be a mapping, got {type(payload).__name__}")


def order_payload(
    sym: str,
    side: str,
    price: Decimal | str | None,
    qty: int,
    tif: str,
    type: str,
    client_order_id: str | None,
) -> dict[str, Any]:
    """The payload of ``order.place``, every field checked."""
    check_sym(sym)
    if side not in SIDES:
        raise ValueError(f"side must be 'buy' or 'sell', got {side!r}")
    if type not in ORDER_TYPES:
        raise ValueError(f"type must be 'limit' or 'market', got {type!r}")
    if tif not in TIFS:
        raise ValueError(f"tif must be one of GTC, IOC, FOK, got {tif!r}")
    check_int64("qty", qty)
    payload: dict[str, Any] = {"sym": sym, "side": side, "type": type, "qty": qty, "tif": tif}
    if type == "limit":
        if price is None:
            raise ValueError("a limit order needs a price (Decimal or decimal string)")
        payload["price"] = price_text(price)
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
    return payload


def order_ref(order_id: str | None, client_order_id: str | None) -> dict[str, str]:
    """``{"order_id"}`` or ``{"client_order_id"}``: exactly one of them."""
    if (order_id is None) == (client_order_id is None):
        raise ValueError("give exactly one of order_id or client_order_id")
    if order_id is not None:
        if not isinstance(order_id, str) or not order_id:
            raise TypeError("order_id must be a non-empty string")
        return {"order_id": order_id}
    if not isinstance(client_order_id, str) or not 0 < len(client_order_id) <= MAX_CLIENT_ORDER_ID:
        raise TypeError(
            f"client_order_id must be a string of 1 to {MAX_CLIENT_ORDER_ID} characters"
        )
    return {"client_order_id": client_order_id}


# Every kind events() delivers: the gateway's private events, MD channels, and
# what the session itself reports.
EVENT_KINDS = (
    *PRIVATE_EVENTS,
    "order.reconciled",
    *(f"md.{ch}" for ch in MD_CHANNELS if ch != "heartbeat"),
    "connection.lost",
    "connection.restored",
    "events.missed",
    "book.restarted",
)


def check_event_kinds(kinds: tuple[str, ...]) -> None:
    """Kinds of `events()`: each a kind in `EVENT_KINDS` or a prefix of one.

    A typo (``"ordr"``) would otherwise subscribe to nothing and wait forever.
    """
    for kind in kinds:
        if isinstance(kind, str) and not any(
            k == kind or k.startswith(kind + ".") for k in EVENT_KINDS
        ):
            raise ValueError(
                f"no event is of kind {kind!r}; kinds are {', '.join(EVENT_KINDS)} "
                "or a prefix of them ('order', 'md', 'connection')"
            )
