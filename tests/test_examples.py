"""Every example runs against the simulator."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

from market_client.simulator import RunningSimulator

pytestmark = pytest.mark.anyio
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


async def test_simple_example(sim: RunningSimulator, capsys: pytest.CaptureFixture[str]) -> None:
    module = runpy.run_path(str(EXAMPLES / "simple.py"))
    await module["quickstart"](sim.url)
    out = capsys.readouterr().out
    assert "symbols: ['ABC'" in out
    assert "market buy: filled" in out
    assert "order.accepted" in out
