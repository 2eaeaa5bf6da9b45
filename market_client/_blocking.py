"""A blocking facade for code outside an event loop: notebooks, a REPL, a plain script.

`BlockingClient` runs a `MarketClient` on an event loop of its own in a
background thread (AnyIO's blocking portal) and offers the same methods,
which block until done and raise the same errors:

```python
with MarketClient.blocking("http://127.0.0.1:8000") as client:
    with client.events("order") as events:  # subscribe first, then act
        client.place_order("ABC", side="buy", price="100.00", qty=1)
        for evt in events:
            print(evt)
            if evt.kind == "order.accepted":
                break
```

Every call, async or not, runs on the loop's thread, so reads of the local
books never race with the reader that updates them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from anyio.from_thread import BlockingPortal, start_blocking_portal

from ._events import Event, EventStream

if TYPE_CHECKING:
    from ._client import MarketClient

__all__ = ["BlockingClient", "BlockingEvents"]


class BlockingEvents:
    """An ``events()`` subscription to iterate without ``async``; close it with ``with``."""

    def __init__(self, portal: BlockingPortal, stream: EventStream) -> None:
        self._portal = portal
        self._stream = stream

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        future = self._portal.start_task_soon(self._stream.__anext__)
        try:
            return future.result()
        except StopAsyncIteration:
            raise StopIteration from None
        except BaseException:
            # Ctrl-C here: stop the wait on the loop too, so no event is taken
            # by a wait nobody will read.
            future.cancel()
            raise

    def __enter__(self) -> BlockingEvents:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop receiving events."""
        self._portal.call(self._stream.close)


class BlockingClient:
    """A `MarketClient` whose methods block; open it with ``with``.

    Args:
        base_url: The gateway, as for `MarketClient`.
        backend: The event loop to run in the background thread.
        **kwargs: The `MarketClient` constructor's keywords.
    """

    def __init__(
        self, base_url: str, *, backend: Literal["asyncio", "trio"] = "asyncio", **kwargs: Any
    ) -> None:
        from ._client import MarketClient

        self._client: MarketClient = MarketClient(base_url, **kwargs)
        self._backend = backend
        self._stack: contextlib.ExitStack | None = None
        self._portal: BlockingPortal | None = None

    def __enter__(self) -> BlockingClient:
        stack = contextlib.ExitStack()
        try:
            portal = stack.enter_context(start_blocking_portal(self._backend))
            stack.enter_context(portal.wrap_async_context_manager(self._client))
        except BaseException:
            stack.close()
            raise
        self._stack, self._portal = stack, portal
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack, self._portal = self._stack, None, None
        if stack is not None:
            stack.__exit__(exc_type, exc, tb)

    def open(self) -> BlockingClient:
        """Open the session without ``with`` (a notebook keeps it across cells); `close` ends it."""
        return self.__enter__()

    def close(self) -> None:
        """Close the session and stop its thread (``with`` does it for you)."""
        self.__exit__(None, None, None)

    @property
    def client(self) -> MarketClient:
        """The async client underneath (use it only through `call`)."""
        return self._client

    def call(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``func(*args, **kwargs)`` (async or not) on the session's loop; return its result."""
        if self._portal is None:
            raise RuntimeError(
                "the client is not open: use `with MarketClient.blocking(url) as c:`"
            )
        if kwargs:
            return self._portal.call(lambda: func(*args, **kwargs))
        return self._portal.call(func, *args)

    def events(self, *kinds: str, buffer: int = 1000) -> BlockingEvents:
        """Subscribe to events (see `MarketClient.events`); iterate with ``for``."""
        stream = self.call(self._client.events, *kinds, buffer=buffer)
        assert self._portal is not None
        return BlockingEvents(self._portal, stream)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        attr = getattr(self._client, name)
        if not callable(attr):
            return self.call(getattr, self._client, name) if self._portal else attr

        def blocking(*args: Any, **kwargs: Any) -> Any:
            result = self.call(attr, *args, **kwargs)
            if hasattr(result, "__aenter__") and self._portal is not None:
                # client.record(DIR) and the like: a ``with`` block here.
                return self._portal.wrap_async_context_manager(result)
            return result

        blocking.__name__ = name
        blocking.__doc__ = attr.__doc__
        return blocking

    def __dir__(self) -> list[str]:
        return sorted(
            set(super().__dir__()) | {n for n in dir(self._client) if not n.startswith("_")}
        )

    def __repr__(self) -> str:
        return f"<BlockingClient {self._client!r}>"
