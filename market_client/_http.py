"""The HTTP part of a session: ``POST /auth/handshake`` and ``POST /api/request``.

`HttpApi` owns one ``httpx.AsyncClient`` for the session: it opens it in
``__aenter__`` and closes it in ``__aexit__``, nothing else closes it.
"""

from __future__ import annotations

import ssl as ssl_module
from collections.abc import Mapping
from types import TracebackType
from typing import Any, cast

import httpx

from ._exceptions import AuthError, ConnectError, GatewayError, RequestTimeout
from ._models import HandshakeReply
from ._protocol import payload_or_raise

__all__ = ["HttpApi"]


class HttpApi:
    """HTTP requests to the gateway at ``base_url``.

    Args:
        base_url: ``http://host:port`` or ``https://host:port``.
        ssl: TLS context for ``https`` (default: the system trust store).
        timeout: Default deadline of a request, in seconds.
    """

    def __init__(self, base_url: str, *, ssl: ssl_module.SSLContext | None, timeout: float) -> None:
        self.base_url = base_url
        self.timeout = timeout
        self.requests = 0
        # A plain-http gateway needs no TLS context: building one costs about 1 MiB.
        verify: ssl_module.SSLContext | bool = (
            ssl if ssl is not None else base_url.startswith("https://")
        )
        self._client = httpx.AsyncClient(base_url=base_url, timeout=timeout, verify=verify)

    async def __aenter__(self) -> HttpApi:
        await self._client.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._client.__aexit__(exc_type, exc, tb)

    async def handshake(self, token: str | None) -> HandshakeReply:
        """Create a user (``token=None``) or resume the one ``token`` names.

        Raises:
            AuthError: The gateway does not know the token.
            ConnectError: The gateway cannot be reached.
            RequestTimeout: No answer within the session's timeout.
        """
        reply = await self.post("/auth/handshake", {"token": token}, op="handshake")
        if reply.get("status") != "ok":
            payload_or_raise({"status": "error", "error": reply.get("error")}, "handshake")
        if not isinstance(reply.get("token"), str) or not isinstance(reply.get("user_id"), str):
            raise GatewayError("bad_response", "the handshake reply has no token", "handshake")
        return cast(HandshakeReply, reply)

    async def request(
        self,
        op: str,
        payload: Mapping[str, Any],
        *,
        token: str,
        as_role: str | None,
        timeout: float,
    ) -> dict[str, Any]:
        """One request over ``POST /api/request``; returns the payload, raising like CMD."""
        body: dict[str, Any] = {"op": op, "payload": dict(payload)}
        if as_role is not None:
            body["as"] = as_role
        frame = await self.post(
            "/api/request", body, op=op, headers={"X-Auth-Token": token}, timeout=timeout
        )
        return payload_or_raise(frame, op)

    async def post(
        self,
        path: str,
        body: Any,
        *,
        op: str,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """POST ``body`` as JSON; returns the JSON object the gateway answered.

        Raises:
            AuthError: HTTP 401.
            ConnectError: No connection (the message says what to check).
            RequestTimeout: No answer in time.
            GatewayError: The answer is not a JSON object (``bad_response``).
        """
        limit = timeout or self.timeout
        self.requests += 1
        try:
            response = await self._client.post(path, json=body, headers=headers, timeout=limit)
        except httpx.TimeoutException as exc:
            raise RequestTimeout(op, limit) from exc
        except httpx.HTTPError as exc:
            raise ConnectError(self._unreachable(exc)) from exc
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code == 401:
            raise AuthError(
                "unauthorized",
                "the gateway does not know this token (a gateway restarted with another "
                "secret forgets its users): pass token=None for a new user",
                op,
                data if isinstance(data, dict) else {},
            )
        if not isinstance(data, dict):
            raise GatewayError("bad_response", f"HTTP {response.status_code} with no JSON body", op)
        return data

    def _unreachable(self, exc: httpx.HTTPError) -> str:
        cause = exc.__cause__ or exc.__context__
        reason = str(exc) or (str(cause) if cause is not None else "") or type(exc).__name__
        hint = "is it running? (`market-client sim` starts one)"
        if self.base_url.startswith("https://") and isinstance(exc, httpx.ConnectError):
            plain = "http://" + self.base_url.removeprefix("https://")
            hint = (
                f"is it running, and does it serve TLS? for a plain-http gateway use {plain}; "
                "`market-client sim` starts one"
            )
        return f"cannot reach the gateway at {self.base_url}: {reason}; {hint}"
