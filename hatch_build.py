"""Hatchling build hook: the sans-I/O hot path compiled with mypyc, pure Python as the fallback.

The wheel (and the editable install) compiles `HOT_MODULES` with mypyc from
the same typed ``.py`` files that the pure-Python package runs, the way black
and mypy ship themselves. The ``.py`` files stay in the package either way.

The build is pure Python, and says why on pip's verbose output, when:

- ``MARKET_CLIENT_PURE=1`` is set (the user asks for it);
- mypyc is not available (no mypy in the build environment), or there is no
  C compiler or no Python headers;
- compiling fails, unless ``MARKET_CLIENT_REQUIRE_COMPILED=1`` is set, which
  turns that failure into a build error (CI sets it, so that a compiled run
  can never quietly be a pure one).

An editable install (``pip install -e .``) puts the extension modules next to
the ``.py`` files in ``market_client/`` (the import system prefers an
extension module to the ``.py`` of the same name), so tests that import the
source tree run the compiled code. Their names carry the interpreter's tag
(``_state.cpython-311-x86_64-linux-gnu.so``), so builds for several Pythons
sit side by side; every editable build first removes the ones of its own
interpreter, so a pure build of a Python never runs a stale compiled module.
A regular wheel takes them from ``build/mypyc/`` and leaves the tree as it is.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import os
import shutil
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

PACKAGE = "market_client"
HOT_MODULES = ("_wire", "_book", "_candles", "_state")
"""The modules compiled: the decode, sequencer, book and candle path of every MD frame."""
GROUP = f"{PACKAGE}._hot"
"""mypyc's shared library of the group, ``market_client/_hot__mypyc<suffix>``."""
BUILD_REQUIRES = ["mypy>=1.17", "setuptools>=70"]  # 1.17: mypycify(group_name=)
"""What compiling needs besides hatchling (setuptools drives the C compiler)."""


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _artifact_names() -> list[str]:
    """File names of every extension module the build can leave, for this interpreter."""
    stems = [*HOT_MODULES, GROUP.rpartition(".")[2] + "__mypyc"]
    return [stem + suffix for stem in stems for suffix in importlib.machinery.EXTENSION_SUFFIXES]


def _why_pure(*, need_mypyc: bool = True) -> str | None:
    """Why this build cannot or must not compile, or None when it can."""
    if _flag("MARKET_CLIENT_PURE"):
        return "MARKET_CLIENT_PURE is set"
    if sys.implementation.name != "cpython":
        return f"mypyc compiles for CPython, not {sys.implementation.name}"
    if need_mypyc and importlib.util.find_spec("mypyc") is None:
        return "mypyc is not installed"
    if not Path(sysconfig.get_paths()["include"], "Python.h").is_file():
        return "the Python headers (Python.h) are missing"
    cc = sysconfig.get_config_var("CC")  # None on Windows: setuptools finds MSVC itself
    if cc and shutil.which(str(cc).split()[0]) is None:
        return f"no C compiler ({str(cc).split()[0]} not found)"
    return None


@contextlib.contextmanager
def _cwd(path: str) -> Iterator[None]:
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


class MypycBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    """Compile `HOT_MODULES` into the wheel; fall back to pure Python."""

    PLUGIN_NAME = "custom"

    def dependencies(self) -> list[str]:
        """What the build environment needs to compile (nothing for a pure build)."""
        # Asked before mypyc is there: a machine that cannot compile downloads nothing more.
        return [] if _why_pure(need_mypyc=False) else list(BUILD_REQUIRES)

    def clean(self, versions: list[str]) -> None:
        """``hatch clean``: remove the compiled modules from the tree and ``build/mypyc``."""
        self._remove_in_tree()
        shutil.rmtree(Path(self.root, "build", "mypyc"), ignore_errors=True)

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        """Compile, or say why the build is pure Python."""
        if self.target_name != "wheel":
            return
        editable = version == "editable"
        if editable:
            self._remove_in_tree()  # a pure build must not leave an old compiled one behind
        why = _why_pure()
        if why is None:
            try:
                built = self._compile()
            except (Exception, SystemExit) as exc:  # mypyc exits on a type error
                if _flag("MARKET_CLIENT_REQUIRE_COMPILED"):
                    raise
                why = f"mypyc failed ({type(exc).__name__}: {exc})"
        elif _flag("MARKET_CLIENT_REQUIRE_COMPILED") and not _flag("MARKET_CLIENT_PURE"):
            raise RuntimeError(f"MARKET_CLIENT_REQUIRE_COMPILED is set, but {why}")
        if why is not None:
            self.app.display_warning(f"market_client: pure-Python build: {why}")
            return
        package = Path(self.root, PACKAGE)
        for path in built:
            if editable:
                shutil.copy2(path, package / path.name)
            else:
                build_data["force_include"][str(path)] = f"{PACKAGE}/{path.name}"
        if not editable:
            build_data["pure_python"] = False
            build_data["infer_tag"] = True  # cp311-cp311-<platform>
        self.app.display_info(f"market_client: compiled {', '.join(p.name for p in built)}")

    def _remove_in_tree(self) -> None:
        package = Path(self.root, PACKAGE)
        for name in _artifact_names():
            (package / name).unlink(missing_ok=True)

    def _compile(self) -> list[Path]:
        """Run mypyc and the C compiler; return the extension modules built."""
        from mypyc.build import mypycify
        from setuptools import Distribution  # type: ignore[import-untyped]

        # build/mypyc/<interpreter>/ (ignored by git), emptied first: what it holds
        # is what this build made.
        work = Path(self.root, "build", "mypyc", sys.implementation.cache_tag)
        shutil.rmtree(work, ignore_errors=True)
        lib = work / "lib"
        files = [f"{PACKAGE}/{name}.py" for name in HOT_MODULES]
        with _cwd(self.root):
            extensions = mypycify(
                [
                    # The package's own mypy settings (strict) apply to the four
                    # modules. Whatever they import from elsewhere (orjson,
                    # sortedcontainers, _models) is Any to mypyc, which then
                    # checks nothing about it: those need not be installed in
                    # the build environment, mypyc takes a second instead of
                    # twenty (gcc then takes some 7 s), and a type error
                    # elsewhere in the package (`nox -s types` reports those)
                    # does not stop the build.
                    "--config-file=pyproject.toml",
                    "--follow-imports=skip",
                    "--ignore-missing-imports",
                    f"--cache-dir={os.devnull}",
                    *files,
                ],
                target_dir=str(work / "c"),
                group_name=GROUP,
            )
            dist = Distribution({"name": "market-client", "ext_modules": extensions})
            build_ext = dist.get_command_obj("build_ext")
            build_ext.build_lib = str(lib)
            build_ext.build_temp = str(work / "temp")
            build_ext.parallel = os.cpu_count() or 1
            build_ext.ensure_finalized()
            build_ext.run()
        built = sorted(p for p in (lib / PACKAGE).iterdir() if p.name in _artifact_names())
        if len(built) != len(HOT_MODULES) + 1:
            raise RuntimeError(f"expected {len(HOT_MODULES) + 1} extension modules, got {built}")
        return built
