"""Every CLI error says what went wrong and what to do next (one line, no traceback)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from market_client._cli import main
from market_client._cli._profiles import CONFIG_DIR_ENV, TOKEN_ENV

from .support import gateway_process


@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    """A simulator in its own process."""
    with gateway_process("--flow-hz", "0") as url:
        yield url


@pytest.fixture(autouse=True)
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(CONFIG_DIR_ENV, str(tmp_path))
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    return tmp_path


def fails(capsys: pytest.CaptureFixture[str], *argv: str, code: int = 1) -> str:
    """Run the command; assert it fails with ``code`` and no traceback; return stderr."""
    if code == 2:  # argparse's usage errors exit
        with pytest.raises(SystemExit) as exc_info:
            main(list(argv))
        assert exc_info.value.code == 2
    else:
        assert main(list(argv)) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_interval_in_minutes_is_accepted(gateway: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["candles", "ABC", "--interval", "1m", "--url", gateway]) == 0
    assert "ABC candles, 1m" in capsys.readouterr().out


@pytest.mark.parametrize("value", ["1.5s", "soon", "500", "0s"])
def test_a_bad_interval_says_which_values_work(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = fails(capsys, "candles", "ABC", "--interval", value, code=2)
    assert "--interval" in err and "1s, 5s, 1m, 1h" in err


def test_limit_zero_says_limit(capsys: pytest.CaptureFixture[str]) -> None:
    err = fails(capsys, "candles", "ABC", "--limit", "0", code=2)
    assert "--limit: must be a positive integer" in err and "depth" not in err


def test_depth_zero_says_depth(capsys: pytest.CaptureFixture[str]) -> None:
    err = fails(capsys, "book", "ABC", "--depth", "0", code=2)
    assert "--depth: must be a positive integer" in err


@pytest.mark.parametrize("where", ["before", "after"])
def test_global_flags_go_before_or_after_the_command(
    gateway: str, where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ["--debug", "--json", "--url", gateway]
    argv = [*flags, "symbols"] if where == "before" else ["symbols", *flags]
    assert main(argv) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith('{"sym":"ABC"')


def test_acting_on_orders_without_an_identity_says_login(
    gateway: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (["orders"], ["place", "ABC", "buy", "1", "1.00"], ["cancel", "o-1"]):
        err = fails(capsys, *argv, "--url", gateway)
        assert "run `market-client login` first" in err


def test_a_cancel_of_an_unknown_order_says_how_to_list_them(
    gateway: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["login", "--url", gateway]) == 0
    capsys.readouterr()
    err = fails(capsys, "cancel", "o-999999")
    assert "not_found" in err and "`market-client orders --all`" in err


def test_an_unknown_symbol_says_how_to_list_them(
    gateway: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = fails(capsys, "book", "NOPE", "--url", gateway)
    assert "unknown_symbol" in err and "`market-client symbols`" in err


def test_a_refused_profile_token_says_login_again(
    gateway: str, config_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["login", "--url", gateway]) == 0
    capsys.readouterr()
    path = config_dir / "profiles.json"
    path.write_text(re.sub(r'"token": "[^"]+"', '"token": "forgotten"', path.read_text()))
    err = fails(capsys, "orders")
    assert "does not know the token of profile 'default'" in err
    assert "market-client login" in err and "null" not in err


def test_a_refused_flag_token_says_check_it(
    gateway: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = fails(capsys, "symbols", "--url", gateway, "--token", "bogus")
    assert "does not know the token given by --token" in err and "null" not in err


def test_an_unreachable_gateway_says_start_one(capsys: pytest.CaptureFixture[str]) -> None:
    err = fails(capsys, "symbols", "--url", "http://127.0.0.1:9")
    assert "cannot reach the gateway at http://127.0.0.1:9" in err
    assert "`market-client sim` starts one" in err


def test_an_unknown_command_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    err = fails(capsys, "buy", code=2)
    assert "invalid choice: 'buy'" in err and "place" in err


# Messages made by the library itself (market_client/_client.py), seen through the CLI.


def test_https_against_a_plain_http_gateway_gives_a_reason(
    gateway: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = fails(capsys, "symbols", "--url", gateway.replace("http://", "https://"))
    reason = err.split("cannot reach the gateway at ", 1)[1]
    assert not re.search(r": ;", reason), "the reason is empty"
    assert "http://" in reason  # it suggests the plain-http URL


def test_a_refused_token_message_from_the_library_says_what_to_do(gateway: str) -> None:
    import anyio

    from market_client import AuthError, MarketClient

    async def attempt() -> str:
        try:
            async with MarketClient.session(gateway, token="bogus", md=False):
                pass
        except AuthError as exc:
            return str(exc)
        raise AssertionError("the token was accepted")

    message = anyio.run(attempt)
    assert "handshake with null" not in message
    assert "token=None" in message  # how to get a new user instead
