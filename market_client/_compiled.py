"""Whether the sans-I/O hot path runs compiled (mypyc) or as pure Python.

The build (``hatch_build.py``) compiles ``_wire``, ``_book``, ``_candles`` and
``_state`` with mypyc when it can (``MARKET_CLIENT_PURE=1`` asks for pure Python: see
``hatch_build.py``).
"""

from __future__ import annotations

import importlib.machinery
import warnings
from pathlib import Path
from types import ModuleType

from . import _book, _candles, _state, _wire

__all__ = ["HOT_MODULES", "compiled", "is_extension"]

HOT_MODULES: tuple[ModuleType, ...] = (_wire, _book, _candles, _state)
"""The modules a compiled build compiles."""


def is_extension(module: ModuleType) -> bool:
    """Whether ``module`` was loaded from an extension module (a compiled one)."""
    # The suffix of the origin is right even where mypyc gets its folder wrong.
    origin = getattr(module.__spec__, "origin", None) or ""
    return origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def _warn_if_stale() -> None:
    """Warn when a source checkout's ``.py`` is newer than its compiled module.

    An editable install compiles into the source tree: a module edited since
    then would otherwise run its old compiled code.
    """
    package = Path(__file__).parent
    if not (package.parent / "pyproject.toml").is_file():
        return  # an installed wheel: its sources and modules were built together
    for module in HOT_MODULES:
        # Not module.__file__: mypyc's modules that another compiled module
        # imported first report a wrong folder in it (and in __spec__.origin).
        name = module.__name__.rpartition(".")[2]
        source = package / f"{name}.py"
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            built = package / f"{name}{suffix}"
            if built.is_file():
                if source.is_file() and source.stat().st_mtime > built.stat().st_mtime:
                    warnings.warn(
                        f"{built.name} was compiled before {source.name} last changed: "
                        "run `pip install -e .` again (MARKET_CLIENT_PURE=1 for pure Python)",
                        RuntimeWarning,
                        stacklevel=3,
                    )
                break  # the one the import system loaded (suffixes in its order)


compiled: bool = is_extension(_state)
"""True when the sans-I/O core (``market_client._state`` and the rest) runs compiled by mypyc."""

if compiled:
    _warn_if_stale()
