"""Every async test runs on Trio and on asyncio, each bounded by ``fail_after``."""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest

from market_client.simulator import RunningSimulator, serve

DEFAULT_TEST_TIMEOUT = 30.0
ADMIN_TOKEN = "admin-test-token"


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

    return wrapper


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Wrap every async test in ``anyio.fail_after`` so none can hang."""
    for item in items:
        if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(item.obj):
            marker = item.get_closest_marker("time_limit")
            seconds = float(marker.args[0]) if marker else DEFAULT_TEST_TIMEOUT
            item.obj = _bounded(item.obj, seconds)


@pytest.fixture
async def sim(anyio_backend: str) -> AsyncIterator[RunningSimulator]:
    """A quiet simulator (no background flow) with an admin token."""
    async with serve(seed=1, flow_hz=0, admin_token=ADMIN_TOKEN) as running:
        yield running


@pytest.fixture
async def busy_sim(anyio_backend: str) -> AsyncIterator[RunningSimulator]:
    """A simulator with brisk background flow."""
    async with serve(seed=2, flow_hz=400, admin_token=ADMIN_TOKEN) as running:
        yield running
