"""``wait_until``: await a condition in a test instead of sleeping for a guess."""

from __future__ import annotations

import inspect
import io
import tokenize
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

import anyio

__all__ = ["wait_until"]

T = TypeVar("T")

FIRST_INTERVAL = 0.001  # the first re-check; the pause doubles from here up to `interval`


@overload
async def wait_until(
    predicate: Callable[[], Awaitable[T]], *, timeout: float = ..., interval: float = ...
) -> T: ...


@overload
async def wait_until(
    predicate: Callable[[], T], *, timeout: float = ..., interval: float = ...
) -> T: ...


async def wait_until(
    predicate: Callable[[], object], *, timeout: float = 10.0, interval: float = 0.02
) -> object:
    """Wait until ``predicate()`` returns a true value, and return that value.

    For state that nothing announces (a counter in ``client.stats()``, a
    level in the local book): the predicate is checked at once, then again
    after pauses that grow from 1 ms to ``interval``, so a condition that is
    already true costs nothing and a long wait does not spin. When the thing
    you wait for can itself be awaited (an event from ``client.events()``,
    an ``anyio.Event`` set by a hook), await that instead: it wakes at the
    exact moment.

    The predicate may be a plain function or a coroutine function (say, a
    request to the gateway); an exception it raises propagates at once.

    For example:

    ```python
    await wait_until(lambda: client.stats()["malformed_frames"] == 3)
    order = await wait_until(lambda: client.get_transactions()[-1:])
    ```

    Args:
        predicate: Called with no argument; its result is tested for truth.
        timeout: Seconds to wait at most.
        interval: Longest pause between two checks, in seconds.

    Returns:
        The predicate's first true result.

    Raises:
        TimeoutError: The predicate was still false after ``timeout``; the
            message shows the predicate's source and its last result.
        ValueError: ``timeout`` is negative or ``interval`` is not positive.
    """
    if timeout < 0:
        raise ValueError(f"timeout must be 0 or more seconds, not {timeout!r}")
    if interval <= 0:
        raise ValueError(f"interval must be more than 0 seconds, not {interval!r}")
    last: object = None
    pause = min(FIRST_INTERVAL, interval)
    with anyio.move_on_after(timeout):
        while True:
            last = predicate()
            if inspect.isawaitable(last):
                last = await last
            if last:
                return last
            await anyio.sleep(pause)
            pause = min(pause * 2, interval)
    raise TimeoutError(
        f"waited {timeout:g} s until {describe(predicate)}, in vain: it last returned {last!r}"
    )


def describe(fn: Callable[..., object]) -> str:
    """The source of a lambda (``lambda: x > 1``), else the function's name."""
    name = getattr(fn, "__qualname__", None) or repr(fn)
    if getattr(fn, "__name__", None) != "<lambda>":
        return f"{name}()"
    try:
        lines, _ = inspect.getsourcelines(fn)
    except (OSError, TypeError):
        return name
    return _lambda_text("".join(lines)) or name


def _lambda_text(source: str) -> str | None:
    """The first ``lambda ...`` expression in ``source``, up to where it ends."""
    start = source.find("lambda")
    if start < 0:
        return None
    text = source[start:]
    depth = 0
    end = len(text)
    comments: list[tuple[int, int]] = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.COMMENT and depth > 0:
                comments.append((_offset(text, tok.start), _offset(text, tok.end)))
            elif tok.type == tokenize.OP and tok.string in "([{":
                depth += 1
            elif tok.type == tokenize.OP and tok.string in ")]}":
                if depth == 0:
                    end = _offset(text, tok.start)
                    break
                depth -= 1
            elif depth == 0 and (
                (tok.type == tokenize.OP and tok.string == ",")
                or tok.type in (tokenize.NEWLINE, tokenize.COMMENT)
            ):
                end = _offset(text, tok.start)
                break
    except (tokenize.TokenError, SyntaxError):
        pass  # the source ended inside brackets: keep what there is
    for first, last in reversed(comments):
        text = text[:first] + text[last:]
        end -= last - first
    return " ".join(text[:end].split())


def _offset(text: str, position: tuple[int, int]) -> int:
    row, col = position
    return sum(len(line) for line in text.splitlines(keepends=True)[: row - 1]) + col
