"""The rules both ends of the wire share: price bounds and integer ranges."""

from __future__ import annotations

import tracemalloc
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from market_client._wire import (
    INT64_MAX,
    MAX_PRICE_TEXT,
    PriceError,
    check_int64,
    parse_price,
    price_text,
)


@pytest.mark.parametrize(
    ("given_", "expected"),
    [("100.25", "100.25"), (Decimal("0.01"), "0.01"), ("1E+2", "100"), ("0.000001", "0.000001")],
)
def test_price_text_is_plain_notation(given_: object, expected: str) -> None:
    assert price_text(given_) == expected


@pytest.mark.parametrize(
    "bad",
    [
        "abc",
        "",
        "0",
        "-1",
        "NaN",
        "Infinity",
        "1e999999999",
        "1e-999999999",
        "1e18",
        "1" * 31,
        "1" * (MAX_PRICE_TEXT + 1),
        Decimal("1e30"),
    ],
)
def test_bad_prices_are_price_errors(bad: object) -> None:
    with pytest.raises(PriceError):
        parse_price(bad)


@pytest.mark.parametrize("bad", [1.5, 100, None, b"1", True])
def test_prices_of_other_types_are_type_errors(bad: object) -> None:
    with pytest.raises(TypeError):
        parse_price(bad)


def test_a_float_price_says_what_to_use() -> None:
    with pytest.raises(TypeError, match=r"Decimal\('1.5'\)"):
        parse_price(1.5)


def test_absurd_exponents_are_refused_without_arithmetic() -> None:
    # formatting Decimal("1e999999999") would allocate about 1 GB
    tracemalloc.start()
    try:
        with pytest.raises(PriceError):
            price_text("1e999999999")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


@given(st.decimals(min_value=Decimal("1e-12"), max_value=Decimal("1e12"), places=6))
def test_parse_price_round_trips_its_text(value: Decimal) -> None:
    if value > 0:
        assert parse_price(price_text(value)) == value


def test_check_int64() -> None:
    assert check_int64("qty", INT64_MAX) == INT64_MAX
    with pytest.raises(ValueError, match="64-bit"):
        check_int64("qty", 2**64)
    with pytest.raises(ValueError, match="positive"):
        check_int64("qty", 0)
    assert check_int64("since_ns", 0, minimum=0) == 0
    with pytest.raises(TypeError):
        check_int64("qty", True)
