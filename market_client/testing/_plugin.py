"""The pytest plugin of market_client: the ``simulator`` fixture and marker.

pytest loads it through the ``pytest11`` entry point of the installed
package, so a bot's test suite has the fixture with nothing but
``pip install market-client``. It adds one marker and two fixtures and
nothing else: no hook that touches other tests, no autouse fixture, and
no import of the simulator until a test asks for one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from ._simulator import Simulator, fixture_config, open_simulator

MARKER = (
    "simulator(**options): options of the `simulator` fixture's gateway, fields of "
    "market_client.simulator.SimulatorConfig (seed, flow_hz, symbols, rate_limit_hz, ...)"
)


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``simulator`` marker (so ``--strict-markers`` accepts it)."""
    config.addinivalue_line("markers", MARKER)


@pytest.fixture
def simulator_options() -> dict[str, Any]:
    """Options for every ``simulator`` fixture in scope: override it in a conftest.py.

    Returns:
        Fields of `SimulatorConfig`; a test's ``simulator`` marker wins over them.
    """
    return {}


@pytest.fixture
async def simulator(
    anyio_backend: object, simulator_options: dict[str, Any], request: pytest.FixtureRequest
) -> AsyncIterator[Simulator]:
    """The simulator gateway, in-process on a free port, for one test.

    Runs on the test's backend (``anyio_backend``). By default the market
    does not move by itself (no background flow) and is the same at every
    run (seed 1); change that per test, module or class with the marker,
    e.g. ``@pytest.mark.simulator(flow_hz=200, symbols="ABC,XYZ")``.

    Yields:
        The running `Simulator`: its ``url``, ``admin()`` and the fault knobs.
    """
    options = dict(simulator_options)
    # Closest marker last, so that a test's own options win over its module's.
    for marker in reversed(list(request.node.iter_markers("simulator"))):
        if marker.args:
            raise TypeError(
                f"@pytest.mark.simulator takes keyword options only, not {marker.args!r}"
            )
        options.update(marker.kwargs)
    async with open_simulator(fixture_config(**options)) as sim:
        yield sim
