"""The blocking facade, from plain threads: the same methods, the same errors."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from anyio.from_thread import start_blocking_portal

from market_client import GatewayError, MarketClient
from market_client.simulator import RunningSimulator, serve

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def gateway_url() -> Iterator[str]:
    """A simulator on its own loop thread, as a notebook user would have one."""
    with start_blocking_portal("asyncio") as portal:
        cm = portal.wrap_async_context_manager(serve(seed=3, flow_hz=0))
        sim: RunningSimulator
        with cm as sim:
            yield sim.url


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_blocking_client_places_reads_and_iterates_events(gateway_url: str, backend: str) -> None:
    threads = threading.active_count()
    with MarketClient.blocking(gateway_url, symbols=["ABC"], backend=backend) as client:
        assert client.best_bid_ask("ABC")["bid"]["price"] == Decimal("99.99")
        with client.events("order") as events:
            placed = client.place_order("ABC", side="buy", price="1.00", qty=1)
            first = next(iter(events))
        assert first.kind == "order.accepted"
        assert client.open_orders()[0]["order_id"] == placed["order"]["order_id"]
        with pytest.raises(GatewayError) as err:
            client.place_order("ABC", side="buy", price="1.001", qty=1)
        assert err.value.code == "invalid_price"
        with pytest.raises(TypeError, match="never floats"):
            client.place_order("ABC", side="buy", price=1.5, qty=1)
    assert threading.active_count() == threads  # the loop's thread is gone


def test_blocking_client_outside_with_says_how_to_open() -> None:
    client = MarketClient.blocking("http://127.0.0.1:1")
    with pytest.raises(RuntimeError, match=r"with MarketClient\.blocking"):
        client.get_symbols()


def test_the_notebook_example_runs_cell_by_cell(gateway_url: str) -> None:
    notebook = json.loads((ROOT / "examples" / "notebook.ipynb").read_text())
    namespace: dict[str, object] = {"GATEWAY_URL": gateway_url}
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            exec("".join(cell["source"]), namespace)
    assert namespace["summary"]
