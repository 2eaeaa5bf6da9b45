"""The HFT simulator gateway that ships with market_client.

A real ASGI server (Starlette on Hypercorn, under Trio or asyncio) that
serves the gateway wire protocol: a price-time priority matching engine over
several symbols, background order flow, candles, market data and the admin
ops that tests use to drive it.

Start it from the shell (``market-client sim`` or ``python -m
market_client.simulator``) or from Python:

```python
from market_client.simulator import serve

async with serve(seed=7) as sim:
    print(sim.url)
```

"""

from ._app import Gateway, GatewayStats
from ._exchange import DEFAULT_SYMBOLS, Exchange, Faults, OpError, SymbolSpec, parse_symbols
from ._server import RunningSimulator, SimulatorConfig, serve, serve_forever

__all__ = [
    "DEFAULT_SYMBOLS",
    "Exchange",
    "Faults",
    "Gateway",
    "GatewayStats",
    "OpError",
    "RunningSimulator",
    "SimulatorConfig",
    "SymbolSpec",
    "parse_symbols",
    "serve",
    "serve_forever",
]
