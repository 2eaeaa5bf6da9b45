"""One identity across separate shell commands: login, whoami, place, orders, cancel, logout."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from market_client._cli import main
from market_client._cli._profiles import (
    CONFIG_DIR_ENV,
    TOKEN_ENV,
    Profile,
    ProfileError,
    ProfileStore,
    config_path,
    resolve_identity,
)

from .support import gateway_process


@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    """A simulator in its own process (the commands run their own event loops)."""
    with gateway_process("--flow-hz", "0") as url:
        yield url


@pytest.fixture(autouse=True)
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(CONFIG_DIR_ENV, str(tmp_path / "cfg"))
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    return tmp_path / "cfg"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def jsonl(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines()]


def test_place_list_cancel_history_portfolio_as_one_user(
    gateway: str, config_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "login", "--url", gateway)
    assert code == 0
    user = re.search(r"logged in as\s+(u-\S+)", out)
    assert user, out
    path = config_dir / "profiles.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # the token is a secret
    assert user.group(1) in path.read_text()

    code, out, _ = run(capsys, "whoami")
    assert code == 0 and user.group(1) in out and gateway in out and "profile 'default'" in out

    # No --url from here on: the profile remembers the gateway.
    code, out, _ = run(capsys, "place", "ABC", "buy", "3", "99.00", "--json")
    assert code == 0
    [placed] = jsonl(out)
    order_id = placed["order"]["order_id"]  # type: ignore[index]

    code, out, _ = run(capsys, "--json", "orders")  # a global flag before the command
    assert [o["order_id"] for o in jsonl(out)] == [order_id]

    code, out, _ = run(capsys, "orders")  # a table for people
    assert order_id in out and re.search(r"buy\s+99\.00\s+3\s+0\s+3\s+open", out)

    code, out, _ = run(capsys, "cancel", order_id)
    assert code == 0 and "cancelled" in out

    code, out, _ = run(capsys, "history", order_id, "--json")
    assert jsonl(out)[0]["order"]["status"] == "cancelled"  # type: ignore[index]

    code, out, _ = run(capsys, "portfolio", "--json")
    assert code == 0 and "cash" in jsonl(out)[0]

    code, out, _ = run(capsys, "logout")
    assert code == 0 and user.group(1) in out
    code, _, err = run(capsys, "orders")
    assert code == 1 and "market-client login" in err


def test_the_same_user_across_processes(gateway: str, config_dir: Path) -> None:
    cli = [
        sys.executable,
        "-c",
        "import sys; from market_client._cli import main; sys.exit(main())",
    ]
    env = {**os.environ, CONFIG_DIR_ENV: str(config_dir)}

    def shell(*argv: str) -> str:
        done = subprocess.run([*cli, *argv], capture_output=True, text=True, timeout=60, env=env)
        assert done.returncode == 0, done.stderr
        return done.stdout

    shell("login", "--url", gateway)
    placed = json.loads(shell("place", "ABC", "buy", "1", "98.00", "--json"))
    order_id = placed["order"]["order_id"]
    assert order_id in shell("orders")
    assert json.loads(shell("cancel", order_id, "--json"))["order"]["status"] == "cancelled"


def test_login_again_resumes_the_saved_user_and_new_creates_one(
    gateway: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _, first, _ = run(capsys, "login", "--url", gateway, "--json")
    _, again, _ = run(capsys, "login", "--json")
    _, fresh, _ = run(capsys, "login", "--new", "--json")
    assert jsonl(first)[0]["logged in as"] == jsonl(again)[0]["logged in as"]
    assert "resumed" in str(jsonl(again)[0]["how"])
    assert jsonl(fresh)[0]["logged in as"] != jsonl(first)[0]["logged in as"]


def test_profiles_are_separate(gateway: str, capsys: pytest.CaptureFixture[str]) -> None:
    _, a, _ = run(capsys, "login", "--url", gateway, "--profile", "alice", "--json")
    _, b, _ = run(capsys, "login", "--url", gateway, "--profile", "bob", "--json")
    run(capsys, "place", "ABC", "buy", "1", "97.00", "--profile", "alice")
    _, alice, _ = run(capsys, "orders", "--profile", "alice", "--json")
    _, bob, _ = run(capsys, "orders", "--profile", "bob", "--json")
    assert len(jsonl(alice)) == 1 and jsonl(bob) == []
    assert jsonl(a)[0]["logged in as"] != jsonl(b)[0]["logged in as"]
    code, _, err = run(capsys, "orders", "--profile", "carol")
    assert code == 1 and "market-client login --profile carol" in err


def test_token_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ProfileStore(tmp_path / "p.json")
    store.save(Profile("default", "http://127.0.0.1:1", "u-1", "from-profile"))

    def ident(**kw: str | None) -> tuple[str | None, str | None, str]:
        got = resolve_identity(url=kw.get("url"), token=kw.get("token"), profile=None, store=store)
        return got.token, got.source, got.url

    assert ident() == ("from-profile", "profile 'default'", "http://127.0.0.1:1")
    monkeypatch.setenv(TOKEN_ENV, "from-env")
    assert ident()[:2] == ("from-env", TOKEN_ENV)
    assert ident(token="from-flag")[:2] == ("from-flag", "--token")
    assert ident(url="http://127.0.0.1:2")[2] == "http://127.0.0.1:2"


def test_profile_file_location_and_damage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(CONFIG_DIR_ENV)
    assert config_path().name == "profiles.json"  # the platform's per-user folder
    monkeypatch.setenv(CONFIG_DIR_ENV, str(tmp_path))
    assert config_path() == tmp_path / "profiles.json"
    (tmp_path / "profiles.json").write_text("{not json")
    with pytest.raises(ProfileError, match="delete it"):
        ProfileStore().get("default")
    code, _, err = run(capsys, "orders")
    assert code == 1 and "delete it" in err and "Traceback" not in err
