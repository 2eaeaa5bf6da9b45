"""Backtests: a bot written against `MarketClient`, run against a recording, deterministically.

```python
from market_client import backtest

async def strategy(client):
    await client.place_order("ABC", "buy", "99.50", 1)
    await anyio.sleep(30)  # recorded time: no wall time passes

report = backtest.run(strategy, data="rec")
print(report.net_pnl, report.max_drawdown)
```

The model and its biases are in docs/backtesting.md.
"""

from ._clock import VirtualClockLoop
from ._inprocess import IN_PROCESS_URL, InProcessClient, InProcessTransport
from ._report import BacktestReport
from ._run import Strategy, run

__all__ = [
    "IN_PROCESS_URL",
    "BacktestReport",
    "InProcessClient",
    "InProcessTransport",
    "Strategy",
    "VirtualClockLoop",
    "run",
]
