"""Recording what a session sees (the ``record`` extra): raw frames and Parquet tables.

Write with a `Recorder` (``MarketClient.session(url, record=DIR)`` or
``async with client.record(DIR):``); read with `open` (Arrow, DuckDB, Polars)
and `iter_raw` (every frame exactly as received, for replay). The format is
described in ``docs/recording.md``.
"""

from __future__ import annotations

from ._raw import RAW_FORMAT, RawFrame, RawGap, RawSnapshot, iter_raw
from ._read import Recording
from ._read import open_recording as open
from ._recorder import Recorder
from ._tables import TABLES, arrow_schema
from ._writer import finish_leftovers, rebuild

__all__ = [
    "RAW_FORMAT",
    "TABLES",
    "RawFrame",
    "RawGap",
    "RawSnapshot",
    "Recorder",
    "Recording",
    "arrow_schema",
    "finish_leftovers",
    "iter_raw",
    "open",
    "rebuild",
]
