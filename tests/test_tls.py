"""https:// gives wss:// with certificate checks; a supplied SSLContext is used."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from market_client import ConnectError, MarketClient
from market_client._transports import TRANSPORTS, TransportName
from market_client.simulator import serve

from .support import skip_unless_runs_on

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command"),
]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


async def test_self_signed_is_refused_by_default_and_accepted_with_a_context(
    anyio_backend: str, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    async with serve(flow_hz=0, certfile=str(cert), keyfile=str(key)) as sim:
        assert sim.url.startswith("https://")
        with pytest.raises(ConnectError, match="cannot reach"):
            async with MarketClient.session(sim.url):
                pass
        context = ssl.create_default_context(cafile=str(cert))
        async with MarketClient.session(sim.url, ssl=context, symbols=["ABC"]) as client:
            assert (await client.get_book("ABC"))["sym"] == "ABC"
            assert client.best_bid_ask("ABC")["bid"] is not None
            assert client.stats()["http_requests"] == 1


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_every_transport_over_tls(
    anyio_backend: str, transport: TransportName, certificate: tuple[Path, Path]
) -> None:
    skip_unless_runs_on(anyio_backend, transport)
    cert, key = certificate
    context = ssl.create_default_context(cafile=str(cert))
    async with (
        serve(flow_hz=0, certfile=str(cert), keyfile=str(key)) as sim,
        MarketClient.session(
            sim.url,
            ssl=context,
            symbols=["ABC"],
            transport=transport,
        ) as client,
    ):
        assert (await client.get_book("ABC"))["sym"] == "ABC"
        assert client.best_bid_ask("ABC")["bid"] is not None
