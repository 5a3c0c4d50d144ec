"""Error diagnosis and suggestions for ``btccxt check-ws``: what went wrong, and what to do.

Role: :func:`explain_error` turns a ccxt or network exception into a :class:`Diagnosis` (a stable
``kind`` such as ``dns`` or ``geo_blocked``, a detail and a hint a person can act on);
:func:`nearest_timeframes` and :func:`suggest_symbols` propose what was probably meant; the
``*_HINT`` texts are advice shared by several steps. Pure functions over exceptions and
mappings: no I/O, no asyncio networking.

ccxt is imported inside :func:`explain_error` only. Must not import: typer, rich, backtrader,
the simulator, or ``diagnose``/``diagnose_probe``/``diagnose_socket`` (they import this one).
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from btccxt_cli.errors import BtccxtError
from btccxt_cli.exchange.errors import retry_after_s
from btccxt_cli.log import redact
from btccxt_cli.timeframes import timeframe_ms

__all__ = ["Diagnosis", "explain_error", "nearest_timeframes", "suggest_symbols", "short_text",
           "SILENT_HINT", "NTP_HINT"]

SILENT_HINT = ("the exchange accepts the subscription but sends nothing; try another "
               "symbol/timeframe or REST mode (feed.mode: rest)")
NTP_HINT = "sync your clock (NTP), e.g. `sudo timedatectl set-ntp true` or chrony"


# --------------------------------------------------------------------------- error diagnosis
@dataclass(frozen=True)
class Diagnosis:
    """What went wrong, in words: ``kind`` is a stable label (``dns``, ``geo_blocked`` ...)."""

    kind: str
    detail: str
    hint: str
    status: int | None = None


_DNS_TEXT = re.compile(r"name or service not known|nodename nor servname|temporary failure in "
                       r"name resolution|getaddrinfo failed|no address associated|"
                       r"name resolution|could not resolve|dns", re.IGNORECASE)
_REFUSED_TEXT = re.compile(r"connect call failed|connection refused|cannot connect to host|"
                           r"network is unreachable|no route to host", re.IGNORECASE)
# ccxt: "binance GET https://... 451 Unavailable For Legal Reasons ..."; aiohttp WS: "503, message="
_STATUS_TEXT = re.compile(r"(?:^|\s)([1-5]\d\d)(?=[ ,])")


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc``, its causes/contexts, and exceptions passed as arguments (ccxt's ``NetworkError(e)``)."""
    seen: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo and len(seen) < 12:
        e = todo.pop(0)
        if any(e is s for s in seen):
            continue
        seen.append(e)
        todo += [a for a in getattr(e, "args", ()) if isinstance(a, BaseException)]
        for nxt in (e.__cause__, e.__context__):
            if nxt is not None:
                todo.append(nxt)
    return seen


def _status_of(exc: BaseException, status: int | None) -> int | None:
    if status is not None and status >= 400:
        return status
    for e in _chain(exc):
        s = getattr(e, "status", None)
        if isinstance(s, int) and s >= 400:
            return s
    m = _STATUS_TEXT.search(str(exc))
    return int(m.group(1)) if m and int(m.group(1)) >= 400 else None


def short_text(text: str, limit: int = 180) -> str:
    """``text`` on one line, secrets masked, cut to ``limit`` characters."""
    text = redact(" ".join(str(text).split()))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def explain_error(exc: BaseException, *, exchange: Any = None, where: str = "REST",
                  status: int | None = None) -> Diagnosis:
    """Classify ``exc`` (a ccxt or network exception) and say what to do about it.

    Args:
        exc: the exception a ccxt call raised.
        exchange: the client, to read ``Retry-After`` from its last response headers.
        where: ``"REST"`` or ``"WebSocket"``, used in the wording.
        status: the HTTP status of the answer that raised, when known.
    """
    import ccxt

    chain = _chain(exc)
    text = " ".join(str(e) for e in chain)
    code = _status_of(exc, status)
    name = getattr(exchange, "id", None) or "the exchange"
    lead = "" if where == "REST" else f"{where}: "
    root = chain[-1]
    cause = f" <- {type(root).__name__}: {root}" if root is not exc and str(root) not in str(exc) else ""
    short = short_text(f"{type(exc).__name__}: {exc}{cause}", 240)
    if isinstance(exc, (ccxt.DDoSProtection, ccxt.RateLimitExceeded)) or code in (429, 418):
        wait = retry_after_s(exchange) if exchange is not None else None
        when = f"wait {wait:g} s (Retry-After)" if wait is not None else "wait a minute"
        if code == 418:
            return Diagnosis("banned", f"{lead}IP banned for now (HTTP 418 after ignored 429s)",
                             f"{when} before trying again; send fewer requests", code)
        return Diagnosis("rate_limited", f"{lead}rate limited" + (f" (HTTP {code})" if code else ""),
                         f"{when}, then retry; lower the request rate (fewer symbols, longer "
                         "timeframe, no other bots on this IP)", code)
    if isinstance(exc, ccxt.AuthenticationError):
        return Diagnosis("auth", f"{lead}credentials rejected: {short}",
                         "check the API key, secret and passphrase (the --api-key-env/--secret-env/"
                         "--password-env variables), the key's permissions and its IP whitelist", code)
    if code in (451, 403):
        what = "unavailable for legal reasons" if code == 451 else "forbidden"
        return Diagnosis("geo_blocked", f"{lead}HTTP {code} ({what}): {name} refuses requests "
                         "from this location or network",
                         "run from a region the exchange serves (or its regional variant, e.g. "
                         "binanceus); check VPN/proxy and firewall rules", code)
    if isinstance(exc, ccxt.OnMaintenance):
        return Diagnosis("maintenance", f"{lead}{name} is under maintenance: {short}",
                         "wait and retry; check the exchange's status page", code)
    dns = any(isinstance(e, socket.gaierror) or type(e).__name__ == "ClientConnectorDNSError"
              for e in chain) or (isinstance(exc, (ccxt.NetworkError, OSError))
                                  and _DNS_TEXT.search(text) is not None)
    if dns:
        return Diagnosis("dns", f"{lead}DNS lookup failed (no network?): {short}",
                         "check the internet connection and DNS (resolver, VPN, proxy settings)", code)
    if isinstance(exc, ccxt.RequestTimeout) or isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return Diagnosis("timeout", f"{lead}timed out: {short}",
                         "the network is slow or filtered; check firewall/proxy and retry", code)
    if code is not None and code >= 500:
        label = "WebSocket upgrade refused" if where == "WebSocket" else "answered"
        hint = "the exchange is down or overloaded; retry later and check its status page"
        if where == "WebSocket":
            hint += "; a proxy that blocks WebSockets does this too (REST mode may still work)"
        return Diagnosis("unavailable", f"{lead}{label} with HTTP {code}: {short}", hint, code)
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or _REFUSED_TEXT.search(text) \
            or isinstance(exc, ccxt.ExchangeNotAvailable):
        return Diagnosis("unreachable", f"{lead}cannot connect: {short}",
                         "check the network, firewall or proxy; is the exchange (or `btccxt sim`) "
                         "running at that address?", code)
    if isinstance(exc, ccxt.BadSymbol):
        return Diagnosis("bad_symbol", f"{lead}unknown symbol: {short}",
                         "check the symbol (spot BTC/USDT, perpetual swap BTC/USDT:USDT)", code)
    if isinstance(exc, ccxt.NotSupported):
        return Diagnosis("unsupported", f"{lead}not supported: {short}",
                         "use another mode or exchange", code)
    if isinstance(exc, (ccxt.NetworkError, OSError)):
        return Diagnosis("network", f"{lead}network error: {short}",
                         "check the network; btccxt retries such errors with backoff", code)
    if isinstance(exc, ccxt.ExchangeError):
        return Diagnosis("exchange_error", f"{lead}the exchange refused the request: {short}",
                         "read the exchange's message above", code)
    if isinstance(exc, BtccxtError):
        return Diagnosis("error", f"{lead}{short_text(str(exc))}", exc.hint, code)
    return Diagnosis("error", f"{lead}{short}", "unexpected error; rerun with --log-level DEBUG", code)


# --------------------------------------------------------------------------- suggestions
def nearest_timeframes(value: str, offered: list[str]) -> list[str]:
    """The offered timeframes just below and just above ``value`` (or close spellings)."""
    try:
        target = timeframe_ms(value)
    except ValueError:
        return difflib.get_close_matches(value, offered, n=2, cutoff=0.3)
    lengths: list[tuple[int, str]] = []
    for tf in offered:
        with contextlib.suppress(ValueError, KeyError):
            lengths.append((timeframe_ms(tf), tf))
    lengths.sort()
    below = [tf for ms, tf in lengths if ms < target][-1:]
    above = [tf for ms, tf in lengths if ms > target][:1]
    return below + above


def _squash(s: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", s.upper())


def suggest_symbols(symbol: str, markets: Mapping[str, Any], n: int = 3) -> list[str]:
    """Close matches of ``symbol`` among ``markets``: case, ``BTCUSDT``/``BTC-USDT`` ids, the
    swap form ``BTC/USDT:USDT``, then similar spellings."""
    names = list(markets)
    out: list[str] = []

    def add(s: str | None) -> None:
        if s and s in markets and s not in out:
            out.append(s)

    upper = {k.upper(): k for k in names}
    add(upper.get(symbol.upper()))
    squashed = _squash(symbol)
    for k, m in markets.items():
        mid = str(m.get("id", "")) if isinstance(m, Mapping) else ""
        if squashed and (_squash(mid) == squashed or _squash(k.split(":")[0]) == squashed):
            add(k)
    quote = symbol.split("/")[-1].split(":")[0]
    add(f"{symbol}:{quote}")
    if not out:
        for close in difflib.get_close_matches(symbol, names, n=n, cutoff=0.6):
            add(close)
    return out[:n]
