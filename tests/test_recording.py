"""Recording against the real simulator: the tables and the raw layer hold what the session saw."""

from __future__ import annotations

import datetime
import re
import signal
import subprocess
import sys
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest

from market_client import MarketClient
from market_client.recording import RawFrame, Recording, iter_raw, rebuild
from market_client.simulator import RunningSimulator

duckdb = pytest.importorskip("duckdb")
pl = pytest.importorskip("polars")
pq = pytest.importorskip("pyarrow.parquet")

pytestmark = pytest.mark.anyio

CAPTURE_EVERY = 40  # capture the local book at every 40th ABC increment


class Witness:
    """What the session itself saw: every frame (a sink beside the recorder), trades, books.

    The MD reader hands it the frames of each read through `feed_many`.
    """

    def __init__(self) -> None:
        self.client: MarketClient | None = None
        self.on = False
        self.frames: list[tuple[int, str, str | bytes]] = []
        self.trades: list[dict[str, Any]] = []
        self.books: dict[int, dict[str, Any]] = {}
        self.increments = 0

    def feed(self, channel: str, raw: str | bytes, recv_ns: int) -> None:
        self.frames.append((recv_ns, channel, raw))

    def feed_many(self, raws: Sequence[str | bytes], recv_ns: int) -> None:
        self.frames.extend((recv_ns, "md", raw) for raw in raws)

    def on_md(self, msg: dict[str, Any]) -> None:
        if not self.on:
            return
        if msg["ch"] == "trade":
            self.trades.append(msg)
        if msg.get("sym") == "ABC" and msg["ch"] in ("trade", "book.delta"):
            self.increments += 1
            if self.increments % CAPTURE_EVERY == 0 and len(self.books) < 8:
                assert self.client is not None
                book = self.client.book_snapshot("ABC", depth=1000)
                self.books[book["seq"]] = book


async def record_session(url: str, out: Path, *, trades_wanted: int = 60) -> Witness:
    """Record a session under flow (with a few own orders) and witness it independently."""
    witness = Witness()
    async with MarketClient.session(url, md=False, on_md_event=witness.on_md) as client:
        witness.client = client
        async with client.record(out, candles=[1000]) as recorder:
            # The reader appends MD frames to the recorder's buffer itself: feed
            # is only for CMD frames (and frames that fill a batch; none here).
            calls: list[str] = []
            feed = recorder.feed

            def counting_feed(channel: str, raw: str | bytes, recv_ns: int) -> None:
                calls.append(channel)
                feed(channel, raw, recv_ns)

            recorder.feed = counting_feed  # type: ignore[method-assign]
            # The witness sits beside the recorder from here to the end of the
            # block: the same frames, in the same order, with no await in between.
            client._recorders.append(witness)  # type: ignore[arg-type]
            witness.on = True
            await client.open_md()
            await client.place_order("ABC", side="buy", qty=2, type="market")
            await client.place_order("ABC", side="sell", qty=1, type="market")
            await client.place_order("XYZ", side="buy", price="1.00", qty=10)
            while len(witness.trades) < trades_wanted or len(witness.books) < 3:
                await anyio.sleep(0.05)
            witness.on = False
            client._recorders.remove(witness)  # type: ignore[arg-type]
        stats = recorder.stats()
        assert "cmd" in calls and "md" not in calls
    assert stats["dropped"] == 0 and stats["error"] is None and stats["bad_frames"] == 0
    assert stats["fed"] == len(witness.frames)
    return witness


@pytest.fixture
async def recorded(busy_sim: RunningSimulator, tmp_path: Path) -> tuple[Witness, Path]:
    out = tmp_path / "rec"
    return await record_session(busy_sim.url, out), out


@pytest.mark.time_limit(60)
async def test_trades_table_is_exactly_the_trades_seen(recorded: tuple[Witness, Path]) -> None:
    witness, out = recorded
    rows = duckdb.sql(
        f"""
        SELECT sym, seq, trade_id, price, qty, aggressor, ts_ns, ts
        FROM read_parquet('{out}/trades/**/*.parquet', hive_partitioning=true)
        ORDER BY sym, seq
        """
    ).fetchall()
    seen = sorted(witness.trades, key=lambda m: (m["sym"], m["seq"]))
    assert [(r[0], r[1], r[2], r[4], r[5], r[6]) for r in rows] == [
        (m["sym"], m["seq"], m["trade_id"], m["qty"], m["aggressor"], m["ts_ns"]) for m in seen
    ]
    for row, msg in zip(rows, seen, strict=False):
        assert isinstance(row[3], Decimal) and row[3] == Decimal(msg["price"])
        seconds, ns = divmod(msg["ts_ns"], 10**9)
        assert row[7] == datetime.datetime.fromtimestamp(
            seconds, datetime.timezone.utc
        ) + datetime.timedelta(microseconds=ns // 1000)
    schema = pq.read_schema(next(out.glob("trades/**/*.parquet")))
    assert str(schema.field("price").type) == "decimal128(18, 2)"  # the largest tick scale


@pytest.mark.time_limit(60)
async def test_book_rebuilt_from_tables_equals_the_local_book(
    recorded: tuple[Witness, Path],
) -> None:
    witness, out = recorded
    assert len(witness.books) >= 3
    con = duckdb.connect()
    for seq, book in witness.books.items():
        assert rebuild_book(con, out, "ABC", seq) == (
            [(p, q) for p, q in book["bids"]],
            [(p, q) for p, q in book["asks"]],
        ), seq


def rebuild_book(
    con: Any, out: Path, sym: str, seq: int
) -> tuple[list[tuple[Decimal, int]], list[tuple[Decimal, int]]]:
    """The book at ``seq``: the latest snapshot at or before it, then the deltas up to it."""
    (snap_seq,) = con.execute(
        f"SELECT max(seq) FROM read_parquet('{out}/book_snapshots/**/*.parquet') "
        "WHERE sym = ? AND seq <= ?",
        [sym, seq],
    ).fetchone()
    levels: dict[tuple[str, Decimal], int] = {}
    for side, price, qty in con.execute(
        f"SELECT side, price, qty FROM read_parquet('{out}/book_snapshots/**/*.parquet') "
        "WHERE sym = ? AND seq = ? AND side IS NOT NULL",
        [sym, snap_seq],
    ).fetchall():
        levels[side, price] = qty
    for side, price, qty in con.execute(
        f"SELECT side, price, qty FROM read_parquet('{out}/book_deltas/**/*.parquet') "
        "WHERE sym = ? AND seq > ? AND seq <= ? ORDER BY seq, recv_ns",
        [sym, snap_seq, seq],
    ).fetchall():
        if qty:
            levels[side, price] = qty
        else:
            levels.pop((side, price), None)
    bids = sorted(((p, q) for (s, p), q in levels.items() if s == "buy"), reverse=True)
    asks = sorted((p, q) for (s, p), q in levels.items() if s == "sell")
    return bids, asks


@pytest.mark.time_limit(60)
async def test_raw_layer_holds_every_frame_byte_for_byte(recorded: tuple[Witness, Path]) -> None:
    witness, out = recorded
    frames = list(iter_raw(out))
    assert all(isinstance(f, RawFrame) for f in frames)
    assert [(f.recv_ns, f.channel, f.raw) for f in frames] == witness.frames
    assert {f.channel for f in frames} == {"md", "cmd"}


@pytest.mark.time_limit(60)
async def test_the_documented_queries(recorded: tuple[Witness, Path]) -> None:
    _, out = recorded
    rec = Recording(out)
    # VWAP per minute in DuckDB
    vwap = duckdb.sql(
        f"""
        SELECT sym, date_trunc('minute', ts) AS minute,
               sum(price * qty) / sum(qty) AS vwap, sum(qty) AS volume
        FROM read_parquet('{out}/trades/**/*.parquet', hive_partitioning = true)
        GROUP BY ALL ORDER BY sym, minute
        """
    ).fetchall()
    assert {row[0] for row in vwap} == {"ABC", "XYZ", "QQQ", "ETH"}
    assert all(row[3] > 0 and row[2] > 0 for row in vwap)
    # Spread over time in Polars
    spread = (
        rec.polars("top_of_book")
        .filter(pl.col("sym") == "ABC")
        .with_columns((pl.col("ask_price") - pl.col("bid_price")).alias("spread"))
        .group_by_dynamic("ts", every="1s")
        .agg(pl.col("spread").mean().alias("mean_spread"), pl.len().alias("updates"))
        .collect()
    )
    assert spread.height >= 1 and spread["updates"].sum() > 0
    # Own fills joined to the top of book at fill time (the last update at or before it)
    joined = duckdb.sql(
        f"""
        SELECT f.sym, f.side, f.price, f.qty, t.bid_price, t.ask_price,
               round(f.price - (t.bid_price + t.ask_price) / 2, 4) AS vs_mid
        FROM read_parquet('{out}/fills/**/*.parquet', hive_partitioning = true) f
        ASOF JOIN read_parquet('{out}/top_of_book/**/*.parquet', hive_partitioning = true) t
          ON f.sym = t.sym AND f.recv_ns >= t.recv_ns
        ORDER BY f.recv_ns
        """
    ).fetchall()
    assert len(joined) >= 2 and {row[1] for row in joined} == {"buy", "sell"}
    buy = next(row for row in joined if row[1] == "buy")
    assert buy[2] >= buy[4]  # a market buy pays at least the bid it saw
    # The own orders: every event, and candles derived from the trades
    orders = rec.dataset("orders").to_table().to_pylist()
    assert {"accepted", "fill"} <= {o["event"] for o in orders}
    assert any(o["price"] == Decimal("1.00") and o["sym"] == "XYZ" for o in orders)
    candles = rec.table("candles").to_pylist()
    volume = duckdb.sql(
        f"SELECT sym, sum(qty) FROM read_parquet('{out}/trades/**/*.parquet') GROUP BY sym"
    ).fetchall()
    assert dict(volume) == {
        s: sum(c["volume"] for c in candles if c["sym"] == s) for s, _ in volume
    }


@pytest.mark.time_limit(60)
async def test_metadata_summary_and_rebuild(recorded: tuple[Witness, Path]) -> None:
    witness, out = recorded
    rec = Recording(out)
    meta = rec.metadata()
    assert meta["protocol_version"] == "1.0" and meta["price_scale"] == 2
    assert "table" not in meta  # what the recording is of, not which file said so
    assert meta["ticks"]["XYZ"] == "0.05" and "token" not in meta["gateway_url"]
    summary = rec.summary()
    assert summary["tables"]["trades"]["rows"] == len(witness.trades)
    before = {t: rec.table(t).sort_by([("recv_ns", "ascending")]) for t in ("trades", "fills")}
    rebuilt = rebuild(out, candles=[1000])
    assert rebuilt["trades"] == len(witness.trades)
    for table, data in before.items():
        again = rec.table(table).sort_by([("recv_ns", "ascending")])
        assert again.select(data.column_names).equals(data), table


@pytest.mark.time_limit(60)
async def test_recorder_killed_leaves_only_valid_parquet(
    busy_sim: RunningSimulator, tmp_path: Path
) -> None:
    out = tmp_path / "killed"
    proc = await anyio.open_process(
        [
            sys.executable,
            "-c",
            "import sys; from market_client._cli import main; sys.exit(main())",
            "record",
            "--url",
            busy_sim.url,
            "--out",
            str(out),
            "--rotate-seconds",
            "0.3",
            "--quiet",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Kill it once it has closed some files and is writing others.
        while len(list(out.glob("book_deltas/**/*.parquet"))) < 4 or not list(
            out.glob("**/.*.tmp")
        ):
            assert proc.returncode is None
            await anyio.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        await proc.aclose()
    parquet = list(out.glob("**/*.parquet"))
    assert parquet
    for path in parquet:
        pq.read_table(path)  # every file named *.parquet is complete
    assert all(p.name.startswith(".") and p.name.endswith(".tmp") for p in out.glob("**/*.tmp"))
    # The raw layer's unfinished file reads up to its last flushed batch.
    assert len(list(iter_raw(out, include_tmp=True))) >= len(list(iter_raw(out)))
    (count,) = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{out}/book_deltas/**/*.parquet')"
    ).fetchall()[0]
    assert count > 0


class _Boom(Exception):
    pass


@pytest.mark.time_limit(30)
async def test_a_recorded_sessions_block_keeps_its_own_exception(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    # Leaving the block cancels the session's task group; the recorder's exit,
    # inside it, must not turn the block's exception into a Cancelled that the
    # group then swallows (the block would end as if nothing had happened).
    for record in ("session", "block"):
        out = tmp_path / record
        with pytest.raises(_Boom):
            async with MarketClient.session(
                sim.url, md=False, record=out if record == "session" else None
            ) as client:
                if record == "block":
                    async with client.record(out):
                        await client.place_order("ABC", side="buy", qty=1, type="market")
                        raise _Boom
                await client.place_order("ABC", side="buy", qty=1, type="market")
                raise _Boom
        assert len(Recording(out).table("orders")) >= 1  # flushed all the same


_INTERRUPTED = """
import signal, sys
import anyio
from market_client import MarketClient

signal.signal(signal.SIGINT, signal.default_int_handler)  # even if the runner ignores it

async def main():
    async with MarketClient.session(sys.argv[1], record=sys.argv[2]):
        print("ready", flush=True)
        await anyio.sleep_forever()

try:
    anyio.run(main, backend=sys.argv[3])
except KeyboardInterrupt:
    sys.exit(3)
except BaseException as exc:  # CancelledError: how AnyIO's runner reports it before 3.11
    sys.exit(4 if type(exc).__name__ == "CancelledError" else 5)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child is POSIX")
@pytest.mark.time_limit(60)
async def test_ctrl_c_ends_a_recorded_session_with_keyboard_interrupt(
    sim: RunningSimulator, tmp_path: Path, anyio_backend: str
) -> None:
    # On asyncio, Ctrl-C cancels the main task, and asyncio.run raises
    # KeyboardInterrupt only if that cancellation comes out of it: the
    # recording's exit must not let the session take it for its own.
    out = tmp_path / "interrupted"
    async with await anyio.open_process(
        [sys.executable, "-c", _INTERRUPTED, sim.url, str(out), anyio_backend],
        stdin=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as proc:
        assert proc.stdout is not None
        seen = b""
        async for chunk in proc.stdout:
            seen += chunk
            if b"ready" in seen:
                break
        proc.send_signal(signal.SIGINT)
        # Before Python 3.11 a task cannot tell Ctrl-C's cancellation from any
        # other, and AnyIO's asyncio runner then raises CancelledError for it.
        old_asyncio = anyio_backend == "asyncio" and sys.version_info < (3, 11)
        assert await proc.wait() == (4 if old_asyncio else 3)
    assert list(iter_raw(out))  # what it recorded was flushed


def test_record_refuses_bad_options_before_it_connects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from market_client._cli import main
    from market_client.recording._cli import _symbols

    base = ["record", "--url", "http://127.0.0.1:9", "--out", str(tmp_path / "x")]
    for args, message in (
        (["--candles", "1s"], "whole milliseconds above 0 (1000 for 1 s), got '1s'"),
        (["--duration", "-1"], "--duration: must be above 0"),
        (["--rotate-mb", "0"], "--rotate-mb: must be above 0"),
        (["--rotate-seconds", "soon"], "not a number: 'soon'"),
    ):
        with pytest.raises(SystemExit) as stop:
            main([*base, *args])
        assert stop.value.code == 2 and message in capsys.readouterr().err
    afile = tmp_path / "afile"
    afile.write_text("")
    assert main(["record", "--url", "http://127.0.0.1:9", "--out", str(afile)]) == 1
    assert "is a file: give a folder" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    assert _symbols(" ABC , XYZ,") == ["ABC", "XYZ"] and _symbols(",") is None
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["recording", str(empty)]) == 1
    assert "holds no recording" in capsys.readouterr().err


async def test_the_recording_command_fits_80_columns(
    recorded: tuple[Witness, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from market_client._cli import main

    _, out = recorded
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["recording", str(out)]) == 0
    text = capsys.readouterr().out
    assert "…" not in text and all(len(line) <= 80 for line in text.splitlines())
    # The date is in the heading; the table's times are the times of day, whole.
    assert re.search(r"trades .* \d\d:\d\d:\d\d\.\d{3} \S* \d\d:\d\d:\d\d\.\d{3} ", text)
