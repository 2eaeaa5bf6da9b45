"""Nox sessions: ``nox`` runs the tests (compiled, lowest versions, pure), lint, types, docs.

Interpreters installed by pyenv are found even when pyenv's shims do not
expose them (its versions' ``bin`` folders are put on PATH first).
"""

from __future__ import annotations

import glob
import os

import nox

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]

# tests_pure after tests: it leaves the 3.11 tree pure (each build removes its own Python's
# compiled modules first), and the sessions share the source tree, so they run one at a time.
nox.options.sessions = ["tests", "tests_lowest", "tests_pure", "lint", "types", "docs"]
nox.options.reuse_existing_virtualenvs = True


def _expose_pyenv_pythons() -> None:
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    dirs = sorted(glob.glob(os.path.join(root, "versions", "3.1[0-9]*", "bin")))
    path = os.environ.get("PATH", "").split(os.pathsep)
    os.environ["PATH"] = os.pathsep.join([d for d in dirs if d not in path] + path)


_expose_pyenv_pythons()


def _pytest_args(session: nox.Session) -> list[str]:
    # The tests are independent: one worker a core (two on CI), unless told otherwise.
    return list(session.posargs) or ["-n", "auto"]


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The test suite on the compiled build (mypyc), every async test on Trio and on asyncio."""
    env = {"MARKET_CLIENT_REQUIRE_COMPILED": "1"}  # a failed compile fails, never runs pure
    session.install("-e", ".[test]", env=env)
    session.run("pytest", *_pytest_args(session), env=env)


@nox.session(python="3.11")
def tests_pure(session: nox.Session) -> None:
    """The test suite on the pure-Python build (what installs where there is no C compiler)."""
    env = {"MARKET_CLIENT_PURE": "1"}
    session.install("-e", ".[test]", env=env)  # also removes this Python's compiled modules
    session.run("pytest", *_pytest_args(session), env=env)


@nox.session(python=PYTHONS[0])
def tests_lowest(session: nox.Session) -> None:
    """The test suite with the lowest versions pyproject.toml allows of our direct dependencies.

    A floor we declare and never install is a guess: this checks it. The
    dependencies of our dependencies are resolved as usual (their newest).
    """
    session.install("uv")
    python = os.path.join(session.bin, "python")
    # --upgrade: resolve afresh, not keeping what a reused virtualenv already has.
    session.run(
        "uv", "pip", "install", "--python", python, "--resolution", "lowest-direct", "--upgrade",
        "-e", ".[test]",
    )  # fmt: skip
    session.run("pytest", *_pytest_args(session))


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff>=0.8")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def types(session: nox.Session) -> None:
    """mypy --strict over market_client/ and the typing checks of the public API."""
    session.install("-e", ".[types]")
    session.run("mypy")
    # The public API's types as a user sees them (a misspelt keyword must not pass).
    session.run("mypy", "--strict", "tests/typing")


@nox.session
def demo(session: nox.Session) -> None:
    """The demo against the embedded simulator (``nox -s demo -- --duration 10``)."""
    session.install("-e", ".")
    session.run("market-client", "demo", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks; prints tables and rewrites docs/benchmarks.md."""
    session.install("-e", ".[bench]")
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site with warnings as errors."""
    session.install("-e", ".[docs]")
    session.run("mkdocs", "build", "--strict", env={"NO_MKDOCS_2_WARNING": "1"})


@nox.session
def screenshots(session: nox.Session) -> None:
    """Regenerate docs/img/demo.svg: the demo's dashboard, exported by Rich as SVG."""
    session.install("-e", ".")
    session.run(
        "python",
        "-c",
        "from market_client._cli._demo import save_screenshot; "
        "save_screenshot('docs/img/demo.svg')",
    )


@nox.session
def diagrams(session: nox.Session) -> None:
    """Redraw docs/img/architecture.svg from the code (needs Graphviz's ``dot``)."""
    session.run("python", "docs/diagram.py")
