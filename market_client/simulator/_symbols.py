"""What trades on the gateway: symbol specs, the ``--symbols`` parser, the tick rule."""

from __future__ import annotations

import decimal
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from .._wire import PriceError, parse_price
from ._fields import OpError

__all__ = ["DEFAULT_SYMBOLS", "SymbolSpec", "parse_symbols", "price_ticks"]

# Wide enough for any quotient below the tick bound, whatever the caller's context.
_EXACT = decimal.Context(prec=60, traps=[InvalidOperation])


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """A tradable symbol: tick size, minimum quantity, lot and a start price."""

    sym: str
    tick: Decimal
    min_qty: int = 1
    lot: int = 1
    start_price: Decimal = Decimal("100")


DEFAULT_SYMBOLS: tuple[SymbolSpec, ...] = (
    SymbolSpec("ABC", Decimal("0.01"), 1, 1, Decimal("100.00")),
    SymbolSpec("XYZ", Decimal("0.05"), 10, 10, Decimal("50.00")),
    SymbolSpec("QQQ", Decimal("0.25"), 1, 1, Decimal("400.00")),
    SymbolSpec("ETH", Decimal("0.1"), 1, 1, Decimal("2500.0")),
)


def parse_symbols(text: str | Iterable[str] | None) -> tuple[SymbolSpec, ...]:
    """Parse ``--symbols``: names (``ABC,XYZ``) or ``SYM:tick:price[:lot]`` specs.

    Known names take their default spec; an unknown bare name trades with a
    0.01 tick around 100.

    Args:
        text: Comma-separated specs, an iterable of them, or None for the defaults.

    Returns:
        The specs, in the order given.

    Raises:
        ValueError: A name or spec is malformed, or names repeat.
    """
    if text is None:
        return DEFAULT_SYMBOLS
    parts = [p.strip() for p in (text.split(",") if isinstance(text, str) else text)]
    known = {s.sym: s for s in DEFAULT_SYMBOLS}
    out: list[SymbolSpec] = []
    for part in filter(None, parts):
        name, *rest = part.split(":")
        if not name.isalnum() or not name.isupper():
            raise ValueError(f"symbol names are upper-case letters and digits, got {name!r}")
        if not rest:
            out.append(known.get(name, SymbolSpec(name, Decimal("0.01"))))
            continue
        try:
            tick = parse_price(rest[0], name="tick")
            price = parse_price(rest[1]) if len(rest) > 1 else Decimal("100")
            lot = int(rest[2]) if len(rest) > 2 else 1
        except (PriceError, ValueError, InvalidOperation) as exc:
            raise ValueError(f"bad symbol spec {part!r}: use SYM:tick:price[:lot]") from exc
        if lot <= 0 or _EXACT.remainder(price, tick):
            raise ValueError(f"bad symbol spec {part!r}: tick, price, lot > 0, price on tick")
        out.append(SymbolSpec(name, tick, lot, lot, price))
    if not out:
        raise ValueError("at least one symbol is needed")
    if len({s.sym for s in out}) != len(out):
        raise ValueError("symbol names must be unique")
    return tuple(out)


def price_ticks(spec: SymbolSpec, value: Any, max_ticks: int) -> int:
    """A wire price of ``spec`` as a whole number of ticks from 1 to ``max_ticks``.

    The text is bounded by ``parse_price`` before any arithmetic, then
    compared with the highest price before it is divided, so that no input
    makes the division slow or inexact.

    Raises:
        OpError: ``invalid_price`` when the value is not a decimal string,
            is out of range or is not on the tick.
    """
    if not isinstance(value, str):
        raise OpError("invalid_price", 'price must be a decimal string such as "100.25"')
    try:
        price = parse_price(value)
    except (TypeError, PriceError) as exc:
        raise OpError("invalid_price", str(exc)) from None
    tick = spec.tick
    highest = _EXACT.multiply(tick, max_ticks)
    if price > highest:
        raise OpError("invalid_price", f"price {value} is above {highest}")
    ticks, rem = _EXACT.divmod(price, tick)
    if rem:
        raise OpError("invalid_price", f"price {value} is not on the tick {tick}")
    return int(ticks)
