"""market_client.testing: its names, wait_until, ScriptedWebSocket and the fixture's knobs."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import anyio
import pytest

import market_client
import market_client.testing
from market_client import ConnectionLost, GatewayError, MarketClient, RequestSession
from market_client._transports import TransportClosed
from market_client.simulator import SimulatorConfig
from market_client.testing import ScriptedWebSocket, Simulator, open_simulator, wait_until
from market_client.testing._simulator import fixture_config

pytestmark = pytest.mark.anyio


# -- public surface ------------------------------------------------------------------
def test_all_matches_the_public_names() -> None:
    module = market_client.testing
    public = {n for n in dir(module) if not n.startswith(("_", "@"))}
    assert set(module.__all__) == public
    assert module.__all__ == sorted(module.__all__)
    for name in module.__all__:
        assert getattr(module, name).__doc__, f"{name} has no docstring"
        assert name not in market_client.__all__  # only from market_client.testing


def run_python(code: str) -> None:
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_helpers_do_not_import_pytest_and_the_plugin_imports_no_server() -> None:
    run_python(
        "import sys, market_client.testing\n"
        "assert 'pytest' not in sys.modules, 'market_client.testing imports pytest'\n"
    )
    run_python(
        "import sys, market_client.testing._plugin\n"
        "heavy = {'market_client.simulator', 'hypercorn', 'starlette'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )


# -- wait_until ----------------------------------------------------------------------
async def test_wait_until_returns_the_first_true_value() -> None:
    calls: list[int] = []

    def grows() -> list[int]:
        calls.append(len(calls))
        return calls[3:]

    assert await wait_until(grows) == [3]
    assert await wait_until(lambda: "at once") == "at once"

    async def asks() -> int:
        await anyio.lowlevel.checkpoint()
        return len(calls)

    assert await wait_until(asks) == 4


async def test_wait_until_wakes_soon_after_the_condition_holds() -> None:
    flag: list[bool] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: _set_later(flag))
        start = anyio.current_time()
        await wait_until(lambda: flag, interval=0.02)
        waited = anyio.current_time() - start
    assert 0.05 <= waited < 1.0  # noticed within a few pauses, not at a timeout


async def _set_later(flag: list[bool]) -> None:
    await anyio.sleep(0.05)  # the test measures how soon wait_until notices
    flag.append(True)


async def test_wait_until_times_out_with_the_predicate_source() -> None:
    stats = {"resyncs": 0}
    with pytest.raises(TimeoutError) as info:
        await wait_until(lambda: stats["resyncs"] == 1, timeout=0.05)
    message = str(info.value)
    assert 'lambda: stats["resyncs"] == 1' in message
    assert "0.05 s" in message and "last returned False" in message
    with pytest.raises(TimeoutError, match=r"lambda: \( stats\[.resyncs.\] \+ 1 == 5 \)"):
        await wait_until(
            lambda: (
                stats["resyncs"]  # a lambda over several lines
                + 1
                == 5
            ),
            timeout=0,
        )

    def never() -> int:
        return 0

    with pytest.raises(TimeoutError, match=r"until .*never\(\), in vain: it last returned 0"):
        await wait_until(never, timeout=0.01)


async def test_wait_until_lets_errors_through_and_checks_its_arguments() -> None:
    with pytest.raises(ZeroDivisionError):
        await wait_until(lambda: 1 / 0)
    with pytest.raises(ValueError, match="timeout"):
        await wait_until(lambda: True, timeout=-1)
    with pytest.raises(ValueError, match="interval"):
        await wait_until(lambda: True, interval=0)


# -- ScriptedWebSocket ---------------------------------------------------------------
async def test_scripted_socket_plays_its_frames_then_the_close() -> None:
    ws = ScriptedWebSocket(["one", b"two", {"three": 3}], close_code=1012)
    assert [await ws.recv() for _ in range(3)] == ["one", b"two", '{"three":3}']
    await ws.send("before the close is read")
    with pytest.raises(TransportClosed) as info:
        await ws.recv()
    assert info.value.code == 1012
    with pytest.raises(TransportClosed):
        await ws.send("after")
    assert ws.sent == ["before the close is read"]
    with pytest.raises(RuntimeError, match="closed"):
        ws.push("late")
    with pytest.raises(TypeError, match="frame"):
        ScriptedWebSocket([1])  # type: ignore[list-item]


async def test_scripted_socket_left_open_waits_for_push_and_close() -> None:
    ws = ScriptedWebSocket(close_code=None)
    got: list[str | bytes] = []

    async def read() -> None:
        with pytest.raises(TransportClosed) as info:
            while True:
                got.append(await ws.recv())
        assert info.value.code == 4000

    async with anyio.create_task_group() as tg:
        tg.start_soon(read)
        ws.push("a", "b")
        await wait_until(lambda: len(got) == 2)
        ws.push({"c": None})
        ws.close(4000)
    assert got == ["a", "b", '{"c":null}']
    assert "0 frames queued" in repr(ws)


async def test_scripted_socket_closed_by_us() -> None:
    ws = ScriptedWebSocket(["unread"])
    await ws.aclose(1001)
    assert ws.closed_by_us == 1001
    with pytest.raises(TransportClosed):
        await ws.recv()
    with pytest.raises(TransportClosed):
        await ws.send("x")


async def test_scripted_socket_answers_a_request_session() -> None:
    def reply(request: Any) -> list[dict[str, Any]]:
        if request is None:
            return [{"type": "event", "event": "order.fill", "seq": 1, "payload": {}}]
        if request["op"] == "book.get":
            error = {"code": "unknown_symbol", "message": "no such symbol"}
            return [{"type": "response", "corr_id": request["msg_id"], "status": "error",
                     "error": error}]  # fmt: skip
        return [{"type": "response", "corr_id": request["msg_id"], "status": "ok",
                 "payload": {"cash": "1"}}]  # fmt: skip

    events: list[dict[str, Any]] = []
    ws = ScriptedWebSocket(reply=reply, close_code=None)
    session = RequestSession(ws, on_event=events.append)

    async def read() -> None:
        with pytest.raises(ConnectionLost, match="1006"):
            await session.run()

    async with anyio.create_task_group() as tg:
        tg.start_soon(read)
        assert await session.request("portfolio.get") == {"cash": "1"}
        with pytest.raises(GatewayError, match="unknown_symbol"):
            await session.request("book.get", {"sym": "NOPE"})
        await ws.send("not json: the reply function gets None")
        await wait_until(lambda: events)
        ws.close(1006)
    assert [e["event"] for e in events] == ["order.fill"]
    assert len(ws.sent) == 3


# -- the simulator fixture -------------------------------------------------------------
async def test_the_fixture_defaults_suit_a_bots_test(simulator: Simulator) -> None:
    assert simulator.running.config.seed == 1 and simulator.running.config.flow_hz == 0
    assert simulator.admin_token == "admin-test-token"  # from our conftest's simulator_options
    assert repr(simulator) == f"<Simulator {simulator.url}>"
    async with MarketClient.session(simulator.url, symbols=["ABC"]) as client:
        seq = client.book_snapshot("ABC")["seq"]
        assert await simulator.admin("admin.flow", {"rate_hz": 0}) == {"rate_hz": 0}
        with pytest.raises(GatewayError) as info:
            await simulator.admin("admin.halt", {"sym": "NOPE"})
        assert (info.value.code, info.value.op) == ("unknown_symbol", "admin.halt")
        assert client.book_snapshot("ABC")["seq"] == seq  # no background flow
    await wait_until(lambda: simulator.stats.cmd_connections + simulator.stats.md_connections == 0)


@pytest.mark.simulator(symbols="ABC,XYZ", flow_hz=300)
class TestMarkers:
    @pytest.mark.simulator(symbols="XYZ")
    async def test_the_closest_marker_wins(self, simulator: Simulator) -> None:
        config = simulator.running.config
        assert (config.symbols, config.flow_hz, config.seed) == ("XYZ", 300, 1)
        async with MarketClient.session(simulator.url, symbols=["XYZ"]) as client:
            first = client.book_snapshot("XYZ")["seq"]
            await wait_until(lambda: client.book_snapshot("XYZ")["seq"] > first)
            await simulator.flow(0)
            assert simulator.running.gateway.flow.rate_hz == 0

    async def test_the_class_marker_applies(self, simulator: Simulator) -> None:
        assert set(simulator.exchange.symbols) == {"ABC", "XYZ"}


def test_options_are_checked_and_the_admin_token_is_random() -> None:
    with pytest.raises(TypeError, match=r"flowhz.*fields of SimulatorConfig: admin_token"):
        fixture_config(flowhz=1)
    one, two = fixture_config(), fixture_config()
    assert one.admin_token and two.admin_token and one.admin_token != two.admin_token
    assert (one.seed, one.flow_hz) == (1, 0)


async def test_halt_and_resume(simulator: Simulator) -> None:
    async with MarketClient.session(simulator.url, symbols=["ABC"]) as client:
        await client.place_order("ABC", "buy", "90.00", 1)
        async with client.events("order.cancelled", "md.status") as events:
            await simulator.halt("ABC")
            got = {}
            for _ in range(2):
                evt = await anext(events)
                got[evt.kind] = evt.data
        assert got.keys() == {"order.cancelled", "md.status"}
        assert got["md.status"]["status"] == "halted"
        with pytest.raises(GatewayError, match="halted"):
            await client.place_order("ABC", "buy", "90.00", 1)
        await simulator.resume("ABC")
        assert (await client.place_order("ABC", "buy", "90.00", 1))["order"]["status"] == "open"


async def test_open_simulator_with_a_config_of_its_own(anyio_backend: str) -> None:
    config = SimulatorConfig(seed=3, flow_hz=0, symbols="QQQ")
    async with open_simulator(config) as sim:
        assert sim.admin_token  # a config without one gets a random one
        assert (await sim.admin("symbols.list"))["symbols"][0]["sym"] == "QQQ"
        assert await sim.inject("not_json", channel="md") == 0  # nobody listens
    assert config.admin_token is None  # the caller's config is left as it was
