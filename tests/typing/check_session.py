"""Checked by ``nox -s types`` (mypy --strict): the public API keeps its types.

Each ``type: ignore`` here marks a call that must NOT type-check; mypy's
``warn_unused_ignores`` (part of --strict) fails if one of them starts to.
"""

from __future__ import annotations

from market_client import MarketClient


def sessions_keep_every_argument_type() -> None:
    client: MarketClient = MarketClient.session("http://127.0.0.1:8000", timeout=5)
    MarketClient.session("http://127.0.0.1:8000", timout=5)  # type: ignore[call-arg]
    MarketClient.session("http://127.0.0.1:8000", timeout="5")  # type: ignore[arg-type]
    del client
