"""Reading a recording back: Arrow datasets, DuckDB relations, Polars lazy frames."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

from ._raw import iter_raw, raw_files, raw_meta
from ._tables import TABLES

__all__ = ["Recording", "open_recording"]


class Recording:
    """A recording's folder, read with whichever engine is installed.

    Every table is a hive-partitioned Parquet dataset
    (``TABLE/date=YYYY-MM-DD/sym=SYM/*.parquet``): `dataset` needs only
    pyarrow; `duckdb` and `polars` need those packages.

    Args:
        directory: The folder a `Recorder` wrote.

    Raises:
        FileNotFoundError: ``directory`` does not exist.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.path = Path(directory)
        if not self.path.is_dir():
            raise FileNotFoundError(f"no recording at {self.path}")

    def __repr__(self) -> str:
        return f"Recording({os.fspath(self.path)!r}, tables={self.tables})"

    @property
    def tables(self) -> list[str]:
        """The tables that have at least one file."""
        return [t for t in TABLES if self.files(t)]

    def files(self, table: str) -> list[Path]:
        """The complete Parquet files of ``table`` (never a file still being written)."""
        _check(table)
        return sorted((self.path / table).glob("date=*/sym=*/*.parquet"))

    def glob(self, table: str) -> str:
        """The glob engines take: ``DIR/TABLE/**/*.parquet``."""
        _check(table)
        return os.fspath(self.path / table / "**" / "*.parquet")

    def dataset(self, table: str) -> Any:
        """``table`` as a ``pyarrow.dataset.Dataset`` (``date`` and ``sym`` from the paths).

        Raises:
            ValueError: Unknown table.
            FileNotFoundError: The table has no file yet.
        """
        import pyarrow as pa
        import pyarrow.dataset as ds

        files = self.files(table)
        if not files:
            raise FileNotFoundError(f"{self.path} has no {table} file")
        partitioning = ds.partitioning(
            pa.schema([("date", pa.string()), ("sym", pa.string())]), flavor="hive"
        )
        return ds.dataset(
            [os.fspath(f) for f in files],
            format="parquet",
            partitioning=partitioning,
            partition_base_dir=os.fspath(self.path / table),
        )

    def duckdb(self, table: str, connection: Any = None) -> Any:
        """``table`` as a DuckDB relation (needs ``duckdb``).

        Args:
            table: One of the tables.
            connection: A DuckDB connection (default: DuckDB's default one).

        Returns:
            A ``duckdb.DuckDBPyRelation`` of ``read_parquet(..., hive_partitioning=true)``.
        """
        import duckdb

        con = connection if connection is not None else duckdb.default_connection()
        if not self.files(table):
            raise FileNotFoundError(f"{self.path} has no {table} file")
        return con.read_parquet(self.glob(table), hive_partitioning=True)

    def polars(self, table: str) -> Any:
        """``table`` as a Polars ``LazyFrame`` (needs ``polars``)."""
        import polars as pl

        if not self.files(table):
            raise FileNotFoundError(f"{self.path} has no {table} file")
        return pl.scan_parquet(self.glob(table), hive_partitioning=True)

    def table(self, table: str) -> Any:
        """``table`` read whole into a ``pyarrow.Table``."""
        return self.dataset(table).to_table()

    def metadata(self) -> dict[str, Any]:
        """What the recording is of (gateway, versions, symbols, ticks), from its files.

        From a Parquet file's metadata, else (a raw-only recording) from the
        raw layer's header line; ``{}`` for a folder with neither.
        """
        import pyarrow.parquet as pq

        for table in TABLES:
            for path in self.files(table)[:1]:
                meta = pq.read_schema(path).metadata or {}
                out: dict[str, Any] = {}
                for key, value in meta.items():
                    name = key.decode()
                    if name.startswith("market_client.") and name != "market_client.table":
                        text = value.decode()
                        json_valued = name[14:] in ("symbols", "ticks", "price_scale")
                        out[name[14:]] = orjson.loads(text) if json_valued else text
                return out
        for path in raw_files(self.path)[:1]:
            meta = raw_meta(path)
            meta.pop("format", None)
            return meta
        return {}

    def frames(self, *, gaps: bool = False) -> Any:
        """The raw layer's frames in receive order (see `iter_raw`)."""
        return iter_raw(self.path, gaps=gaps)

    def summary(self) -> dict[str, Any]:
        """What the folder holds: time span, symbols, rows and files per table, bytes.

        Returns:
            ``{"tables": {name: {"rows", "files", "bytes", "symbols", "first_ns",
            "last_ns"}}, "raw": {"files", "bytes"}, "symbols": [...],
            "first_ns": ..., "last_ns": ...}`` (times are receive times).
        """
        import pyarrow.compute as pc

        tables: dict[str, Any] = {}
        symbols: set[str] = set()
        first: int | None = None
        last: int | None = None
        for table in self.tables:
            files = self.files(table)
            data = self.dataset(table).to_table(
                columns=["recv_ns", "sym"] if table != "candles" else ["t_ns", "sym"]
            )
            times = data.column(0)
            lo, hi = pc.min(times).as_py(), pc.max(times).as_py()
            syms = sorted(pc.unique(data.column("sym")).to_pylist())
            symbols.update(syms)
            if table != "candles" and lo is not None:
                first = lo if first is None else min(first, lo)
                last = hi if last is None else max(last, hi)
            tables[table] = {
                "rows": data.num_rows,
                "files": len(files),
                "bytes": sum(f.stat().st_size for f in files),
                "symbols": syms,
                "first_ns": lo,
                "last_ns": hi,
            }
        raws = raw_files(self.path)
        return {
            "tables": tables,
            "raw": {"files": len(raws), "bytes": sum(f.stat().st_size for f in raws)},
            "symbols": sorted(symbols),
            "first_ns": first,
            "last_ns": last,
        }


def _check(table: str) -> None:
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; tables: {', '.join(TABLES)}")


def open_recording(directory: str | os.PathLike[str]) -> Recording:
    """Open a recording's folder for reading.

    Args:
        directory: The folder a `Recorder` wrote.

    Returns:
        A `Recording`: ``rec.dataset("trades")``, ``rec.duckdb("trades")``,
        ``rec.polars("top_of_book")``, ``rec.summary()``.

    Raises:
        FileNotFoundError: ``directory`` does not exist.
    """
    return Recording(directory)
