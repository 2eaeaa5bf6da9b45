"""What both ends of the wire agree on: names, limits and the one price parser.

The client and the simulator gateway import these, so that a rule of the
protocol is written once: the sides, order types and TIFs, the error codes,
the frame limits, and how a decimal price is read and bounded.

Prices are read without arithmetic that grows with the input: the text's
length, the number of digits and the exponent are bounded *before* the
value is formatted or divided, so ``"1e999999999"`` is refused in
microseconds instead of allocating a gigabyte.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any, Final

__all__ = [
    "BOOK_SIDES",
    "CMD_FRAME_LIMIT",
    "ERROR_CODES",
    "HTTP_BODY_LIMIT",
    "INT64_MAX",
    "MAX_CANDLES",
    "MAX_CLIENT_ORDER_ID",
    "MAX_INTERVAL_MS",
    "MAX_PRICE_DIGITS",
    "MAX_PRICE_EXPONENT",
    "MAX_PRICE_TEXT",
    "MD_CHANNELS",
    "MD_FRAME_LIMIT",
    "ORDER_TYPES",
    "PRIVATE_EVENTS",
    "SIDES",
    "TIFS",
    "PriceError",
    "check_int64",
    "parse_price",
    "price_text",
]

SIDES: Final = ("buy", "sell")
"""Order and trade sides."""
BOOK_SIDES: Final = ("both", "buy", "sell")
"""``side`` of ``book.get``."""
ORDER_TYPES: Final = ("limit", "market")
TIFS: Final = ("GTC", "IOC", "FOK")
PRIVATE_EVENTS: Final = ("order.accepted", "order.rejected", "order.fill", "order.cancelled")
"""The ``event`` names of private CMD events."""
MD_CHANNELS: Final = ("book.snapshot", "book.delta", "trade", "status", "heartbeat")
"""The ``ch`` of MD messages."""
ERROR_CODES: Final = (
    "bad_request",
    "unknown_op",
    "not_logged_in",
    "unauthorized",
    "forbidden",
    "unknown_symbol",
    "invalid_side",
    "invalid_type",
    "invalid_price",
    "invalid_qty",
    "invalid_tif",
    "duplicate_client_order_id",
    "not_found",
    "halted",
    "rate_limited",
    "too_many_orders",
    "internal",
)
"""Every error code of the protocol, in the order the contract lists them."""

MAX_CLIENT_ORDER_ID: Final = 64
"""Longest ``client_order_id``, in characters."""
CMD_FRAME_LIMIT: Final = 64 * 1024
"""Largest frame the gateway reads on CMD (and on MD), in bytes: it closes with 1009 above."""
HTTP_BODY_LIMIT: Final = 64 * 1024
"""Largest HTTP request body the gateway reads, in bytes: 413 above."""
MD_FRAME_LIMIT: Final = 16 * 1024 * 1024
"""Largest frame the client reads, in bytes: a reply or MD message never exceeds it."""
INT64_MAX: Final = 2**63 - 1
"""Integers on the wire (qty, depth, limit, ns times) are signed 64-bit."""

MAX_CANDLES: Final = 10_000
"""Most candles one ``candles.get`` returns (its ``limit``)."""
MAX_INTERVAL_MS: Final = 86_400_000
"""Widest candle interval, one day."""

MAX_PRICE_TEXT: Final = 64
"""Longest price text, in characters."""
MAX_PRICE_DIGITS: Final = 30
"""Most significant digits of a price."""
MAX_PRICE_EXPONENT: Final = 18
"""A price lies within ``10**-18`` and ``10**18`` (both excluded)."""


class PriceError(ValueError):
    """A price is not a positive decimal within the protocol's bounds."""


def parse_price(value: Any, *, name: str = "price") -> Decimal:
    """Read a price: a ``Decimal`` or a decimal string, positive, finite and bounded.

    Args:
        value: The price as given by a caller or found in a frame.
        name: What to call it in the error message.

    Returns:
        The price as a ``Decimal`` (never rounded).

    Raises:
        TypeError: ``value`` is a float, or neither a ``Decimal`` nor a string.
        PriceError: ``value`` is not a decimal number, not positive and
            finite, or outside the bounds (`MAX_PRICE_TEXT` characters,
            `MAX_PRICE_DIGITS` digits, magnitude within
            ``10**±MAX_PRICE_EXPONENT``).
    """
    if isinstance(value, str):
        if len(value) > MAX_PRICE_TEXT:
            raise PriceError(f"{name} has more than {MAX_PRICE_TEXT} characters")
        try:
            price = Decimal(value)
        except InvalidOperation:
            raise PriceError(f"{name} {value!r} is not a decimal number") from None
    elif isinstance(value, Decimal):
        price = value
    elif isinstance(value, float):
        raise TypeError(
            f"{name}s are Decimal or decimal strings, never floats: "
            f"use Decimal({str(value)!r}) or {str(value)!r}"
        )
    else:
        raise TypeError(f"{name} must be a Decimal or a decimal string, got {type(value).__name__}")
    if not price.is_finite() or price <= 0:
        raise PriceError(f"{name} must be a positive finite decimal, got {_short(value)}")
    digits = price.as_tuple().digits
    # adjusted() is the exponent of the leading digit: cheap, no formatting.
    if len(digits) > MAX_PRICE_DIGITS or not (
        -MAX_PRICE_EXPONENT < price.adjusted() < MAX_PRICE_EXPONENT
    ):
        raise PriceError(
            f"{name} {_short(value)} is out of range: at most {MAX_PRICE_DIGITS} digits, "
            f"between 1e-{MAX_PRICE_EXPONENT} and 1e{MAX_PRICE_EXPONENT}"
        )
    return price


def price_text(value: Any, *, name: str = "price") -> str:
    """The wire text of a price (plain notation, no exponent), checked by `parse_price`."""
    return format(parse_price(value, name=name), "f")


def check_int64(name: str, value: Any, *, minimum: int = 1) -> int:
    """An ``int`` (not a bool) from ``minimum`` to `INT64_MAX`.

    Raises:
        TypeError: Not an ``int``.
        ValueError: Out of range.
    """
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        what = "positive" if minimum == 1 else f"at least {minimum}"
        raise ValueError(f"{name} must be {what}, got {value}")
    if value > INT64_MAX:
        raise ValueError(f"{name} must fit in a signed 64-bit integer (at most 2**63 - 1)")
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
