"""examples/market_maker.py as a backtest strategy: the same bot, against a recording.

    market-client backtest examples/backtest_market_maker.py --data rec --png equity.png

`strategy(client)` is what ``market-client backtest`` (or
``market_client.backtest.run``) calls with a client connected to the replay;
the bot is the very class the live script runs.
"""

from __future__ import annotations

from decimal import Decimal

from market_maker import MarketMaker  # the file beside this one

from market_client import MarketClient

SYM = "ABC"
PERIOD = 0.5
SPREAD = 2
MAX_POSITION = 10


async def strategy(client: MarketClient) -> None:
    """Quote ``SYM`` as examples/market_maker.py does, until the data ends."""
    spec = next(s for s in await client.get_symbols() if s["sym"] == SYM)
    bot = MarketMaker(
        client,
        SYM,
        Decimal(spec["tick"]),
        spec["lot"],
        spread_ticks=SPREAD,
        max_position=MAX_POSITION * spec["lot"],
    )
    await bot.run(PERIOD)
