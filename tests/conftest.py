"""Every async test runs on Trio and on asyncio, each bounded by ``fail_after``.

The gateway fixtures come from our own pytest plugin (``market_client.testing``,
loaded through its entry point as in a user's suite): ``sim`` is its
``simulator`` fixture under our short name.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import pytest

from market_client._cli._profiles import CONFIG_DIR_ENV, TOKEN_ENV
from market_client.simulator import SimulatorConfig
from market_client.testing import Simulator, open_simulator

DEFAULT_TEST_TIMEOUT = 30.0
ADMIN_TOKEN = "admin-test-token"


@pytest.fixture(autouse=True, scope="session")
def _no_saved_identity(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No test, nor any process it starts, acts as the developer's own `market-client login`."""
    saved = {name: os.environ.get(name) for name in (CONFIG_DIR_ENV, TOKEN_ENV)}
    os.environ[CONFIG_DIR_ENV] = str(tmp_path_factory.mktemp("config"))
    os.environ.pop(TOKEN_ENV, None)
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(params=[pytest.param("trio", id="trio"), pytest.param("asyncio", id="asyncio")])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "time_limit(seconds): bound for an async test")


def _bounded(fn: Callable[..., Any], seconds: float) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        with anyio.fail_after(seconds):
            return await fn(*args, **kwargs)

    wrapper.bounded = True  # type: ignore[attr-defined]
    return wrapper


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Wrap every async test in ``anyio.fail_after`` so none can hang.

    A Hypothesis test (``@given`` on an ``async def``) is bounded example by
    example: its inner test is what AnyIO runs on the backend.
    """
    for item in items:
        if not isinstance(item, pytest.Function):
            continue
        marker = item.get_closest_marker("time_limit")
        seconds = float(marker.args[0]) if marker else DEFAULT_TEST_TIMEOUT
        hypothesis = getattr(item.obj, "hypothesis", None)
        if hypothesis is not None:
            inner = hypothesis.inner_test
            if inspect.iscoroutinefunction(inner) and not getattr(inner, "bounded", False):
                hypothesis.inner_test = _bounded(inner, seconds)
        elif inspect.iscoroutinefunction(item.obj):
            item.obj = _bounded(item.obj, seconds)


@pytest.fixture
def simulator_options() -> dict[str, Any]:
    """Our gateways take a known admin token, which the raw-socket tests use."""
    return {"admin_token": ADMIN_TOKEN}


@pytest.fixture
def sim(simulator: Simulator) -> Simulator:
    """A quiet simulator (seed 1, no background flow): the plugin's ``simulator``."""
    return simulator


@pytest.fixture
async def busy_sim(anyio_backend: str) -> AsyncIterator[Simulator]:
    """A simulator with brisk background flow (seed 2, 400 actions a second)."""
    config = SimulatorConfig(seed=2, flow_hz=400, admin_token=ADMIN_TOKEN)
    async with open_simulator(config) as running:
        yield running
