"""Frictions a new user met, each with the test that would have caught it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from market_client import MarketClient
from market_client._cli import main
from market_client._cli._profiles import CONFIG_DIR_ENV, TOKEN_ENV
from market_client.testing import Simulator

from .test_cli_errors import fails, gateway  # noqa: F401 - gateway is a fixture


def test_a_price_in_scientific_notation_is_refused_by_the_cli(
    capsys: pytest.CaptureFixture[str],
) -> None:
    err = fails(capsys, "place", "ABC", "buy", "1", "1e2", code=2)
    assert "not a price" in err and "100.25" in err


def test_output_into_a_pipe_that_closes_early_ends_quietly(gateway: str) -> None:  # noqa: F811
    cli = [sys.executable, "-c", "from market_client._cli import main; raise SystemExit(main())"]
    with subprocess.Popen(
        [*cli, "symbols", "--json", "--url", gateway],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # as `| head -0` would
        err = proc.stderr.read().decode()
        proc.wait(timeout=30)
    assert "Traceback" not in err and "Exception Group" not in err, err


@pytest.mark.anyio
async def test_place_order_without_a_price_is_a_market_order(sim: Simulator) -> None:
    async with MarketClient.session(sim.url, md=False) as client:
        reply = await client.place_order("ABC", side="buy", qty=1)
        assert reply["order"]["type"] == "market"
        assert reply["order"]["status"] == "filled"


@pytest.mark.anyio
async def test_a_misspelt_event_kind_is_refused(sim: Simulator) -> None:
    async with MarketClient.session(sim.url, md=False) as client:
        with pytest.raises(ValueError, match="no event is of kind 'ordr'"):
            client.events("ordr")
        async with client.events("order", "md.book", "connection"):
            pass


def test_record_acts_as_the_saved_login(
    gateway: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(CONFIG_DIR_ENV, str(tmp_path / "cfg"))
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    assert main(["login", "--url", gateway]) == 0
    # No --url: the profile's gateway; no --token: the profile's user.
    assert main(["record", "--out", str(tmp_path / "rec"), "--duration", "1", "--quiet"]) == 0
    from market_client import recording

    meta = recording.open(tmp_path / "rec").metadata()
    assert meta["gateway_url"] == gateway  # resolved as every command resolves it


def test_record_refuses_a_symbol_the_gateway_lacks_and_leaves_no_folder(
    gateway: str,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "rec"
    args = ["record", "--url", gateway, "--out", str(out), "--symbols", "ABC, NOPE", "--quiet"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "--symbols: the gateway has no NOPE (it lists ABC, " in err
    assert not out.exists()
