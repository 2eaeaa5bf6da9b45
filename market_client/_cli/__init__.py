"""The ``market-client`` command: serve the simulator, run the demo, use a gateway from the shell.

The package is private; the console script calls `main`.
"""

from __future__ import annotations

from ._main import main

__all__ = ["main"]
