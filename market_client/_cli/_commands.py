"""The commands that talk to a gateway: one session each, as the saved identity."""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import anyio
from rich.text import Text

from .._client import MarketClient
from .._events import Event
from .._exceptions import AuthError
from ._output import Output, human_time
from ._profiles import Identity, Profile, ProfileStore, config_path, resolve_identity

__all__ = ["NEEDS_IDENTITY", "NotLoggedIn", "identity_of", "run_command"]

# Commands that only make sense as one user across invocations.
NEEDS_IDENTITY = frozenset({"orders", "place", "cancel", "history", "portfolio"})


class NotLoggedIn(Exception):
    """A command that acts on your orders was run with no saved or given identity."""


def identity_of(args: argparse.Namespace) -> Identity:
    """The gateway and token ``args`` ask for (see `resolve_identity`)."""
    return resolve_identity(url=args.url, token=args.token, profile=args.profile)


async def run_command(args: argparse.Namespace, out: Output) -> None:
    """Run one gateway command and print its result.

    Raises:
        NotLoggedIn: The command acts on your orders and no identity is known.
        MarketClientError: The gateway could not be reached or refused the request.
    """
    if args.command == "login":
        return await _login(args, out)
    if args.command == "logout":
        return _logout(args, out)
    ident = identity_of(args)
    if args.command in NEEDS_IDENTITY and ident.token is None:
        raise NotLoggedIn(
            f"`{args.command}` acts on your orders, and no identity is saved for profile "
            f"{ident.profile!r}: run `market-client login` first (or pass --token, or set "
            "MARKET_CLIENT_TOKEN); without one, every command is a new user"
        )
    watching = args.command == "watch"
    async with MarketClient.session(
        ident.url, token=ident.token, md=watching, symbols=[args.sym] if watching else None
    ) as client:
        if args.command == "whoami":
            out.fields(
                {
                    "user": client.user_id,
                    "gateway": ident.url,
                    "admin": "yes" if client.is_admin else "no",
                    "token from": ident.source or "none (a new user for this command only)",
                    "profile": ident.profile,
                    "profile file": str(config_path()),
                }
            )
        elif args.command == "symbols":
            out.symbols(await client.get_symbols())
        elif args.command == "book":
            out.book(await client.get_book(args.sym, depth=args.depth))
        elif args.command == "candles":
            reply = await client.send(
                "candles.get", {"sym": args.sym, "interval_ms": args.interval, "limit": args.limit}
            )
            out.candles(args.sym, args.interval, reply.get("candles", []))
        elif args.command == "orders":
            orders = await client.list_orders("all" if args.all else "open")
            out.orders(orders, title="your orders" if args.all else "your open orders")
        elif args.command == "place":
            out.order_reply(
                await client.place_order(
                    args.sym,
                    args.side,
                    args.price,
                    args.qty,
                    tif=args.tif,
                    type="market" if args.price is None else "limit",
                    client_order_id=args.client_order_id,
                )
            )
        elif args.command == "cancel":
            out.order_reply(await client.cancel_order(args.order_id))
        elif args.command == "history":
            out.order_reply(await client.order_history(args.order_id))
        elif args.command == "portfolio":
            out.portfolio(await client.get_portfolio())
        elif watching:
            await _watch(client, args, out)
    return None


async def _login(args: argparse.Namespace, out: Output) -> None:
    store = ProfileStore()
    name = args.profile or "default"
    saved = store.get(name)
    url = args.url or (saved.url if saved else None) or "http://127.0.0.1:8000"
    token = args.token
    if token is None and saved is not None and saved.url == url and not args.new:
        token = saved.token
    note = "resumed" if token else "new user"
    try:
        async with MarketClient.session(url, token=token, md=False) as client:
            pass
    except AuthError:
        if args.token is not None:
            raise
        # The saved user is gone (a gateway restarted without --secret): start afresh.
        async with MarketClient.session(url, md=False) as client:
            pass
        note = "new user (the gateway no longer knew the saved one)"
    assert client.user_id is not None and client.token is not None
    store.save(Profile(name, url, client.user_id, client.token))
    out.fields(
        {
            "logged in as": client.user_id,
            "gateway": url,
            "profile": name,
            "how": note,
            "saved in": str(store.path),
        }
    )


def _logout(args: argparse.Namespace, out: Output) -> None:
    store = ProfileStore()
    name = args.profile or "default"
    gone = store.remove(name)
    if gone is None:
        out.fields({"logged out": f"nothing to forget: no profile {name!r}"})
    else:
        out.fields({"logged out": gone.user_id, "gateway": gone.url, "profile": name})


def _level(quote: Any) -> list[Any] | None:
    return None if quote is None else [str(quote["price"]), quote["qty"]]


def _top_of(client: MarketClient, sym: str) -> dict[str, Any]:
    """The top of the local book as wire-shaped ``[price, qty]`` levels (None: empty side)."""
    try:
        top = client.best_bid_ask(sym)
    except LookupError:  # no snapshot yet
        return {"bid": None, "ask": None}
    return {"bid": _level(top["bid"]), "ask": _level(top["ask"])}


async def _watch(client: MarketClient, args: argparse.Namespace, out: Output) -> None:
    """Print each trade once, and the top of book only when it changes."""
    sym = args.sym
    shown = 0
    limit = args.count or math.inf
    last_top: dict[str, Any] | None = None

    def show_top(ts_ns: int | None, seq: int | None) -> None:
        nonlocal last_top, shown
        top = _top_of(client, sym)
        if top == last_top:
            return
        last_top = top
        shown += 1
        if out.json_lines:
            out.line({"ch": "top", "sym": sym, "seq": seq, **top, "ts_ns": ts_ns})
            return
        line = Text(f"{human_time(ts_ns)}  {sym}  top    ")
        bid, ask = top["bid"], top["ask"]
        line.append("bid " + (f"{bid[1]} @ {bid[0]}" if bid else "-"), style="green")
        line.append("   ")
        line.append("ask " + (f"{ask[1]} @ {ask[0]}" if ask else "-"), style="red")
        out.text(line)

    def show(evt: Event) -> None:
        nonlocal shown
        d = evt.data
        shown += 1
        if out.json_lines:
            out.line(d if evt.kind.startswith("md.") else {"event": evt.kind, **d})
            return
        if evt.kind == "md.trade":
            style = "green" if d.get("aggressor") == "buy" else "red"
            line = Text(f"{human_time(d.get('ts_ns'))}  {sym}  trade  ")
            line.append(f"{d['qty']} @ {d['price']}  {d.get('aggressor')}", style=style)
            out.text(line)
        elif evt.kind == "md.status":
            out.text(f"{human_time(d.get('ts_ns'))}  {sym}  status {d.get('status')}")
        else:
            out.text(f"{evt.kind}: {d}")

    with anyio.move_on_after(args.duration if args.duration is not None else math.inf):
        async with client.events("md.trade", "md.book", "md.status", "connection") as stream:
            try:
                seq: int | None = client.book_snapshot(sym, depth=1)["seq"]
            except LookupError:
                seq = None
            show_top(time.time_ns(), seq)
            async for evt in stream:
                if shown >= limit:
                    break
                if evt.kind.startswith("md.book"):
                    show_top(evt.data.get("ts_ns"), evt.data.get("seq"))
                else:
                    show(evt)
                    if evt.kind == "md.trade" and shown < limit:  # --count is exact
                        show_top(evt.data.get("ts_ns"), evt.data.get("seq"))
                if shown >= limit:
                    break
