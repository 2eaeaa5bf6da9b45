"""Test helpers for code that uses market_client: your bot's tests, and ours.

- The ``simulator`` pytest fixture (a plugin the package registers with
  pytest; nothing to configure) runs the real gateway in-process for one
  test and yields a `Simulator`: its ``url``, admin requests and the fault
  knobs (disconnects, halts, market-data gaps and stalls, malformed frames).
  `open_simulator` does the same outside a fixture.
- `wait_until` awaits a condition instead of sleeping for a guess.
- `ScriptedWebSocket` plays frames you script to the client's readers, for
  unit tests without a server.

See "Testing your bot" in the documentation. This module does not import
pytest: the helpers work under any test runner.
"""

from ._scripted import ScriptedWebSocket
from ._simulator import Simulator, open_simulator
from ._wait import wait_until

__all__ = ["ScriptedWebSocket", "Simulator", "open_simulator", "wait_until"]
