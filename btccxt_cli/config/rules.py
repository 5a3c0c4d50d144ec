"""Cross-field checks on a validated ``Config``: one small function per rule.

Role: the second pass after the schema (freqtrade's ``_validate_*`` split). Each rule takes a
``Config`` and raises a located ``ConfigError`` through ``config.source``; ``check_config`` runs
them all, in the order their keys appear in a typical file. Checks that need ccxt's metadata
(exchange id, WebSocket support, timeframes offered) live in ``btccxt_cli.exchange.describe``.

Pure: no I/O. Must not import: ccxt, yaml, typer, rich.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timezone

from btccxt_cli.clock import SYSTEM_CLOCK, Clock
from btccxt_cli.config.schema import Config, KeyPath
from btccxt_cli.errors import CredentialsError
from btccxt_cli.timeframes import parse_timeframe

__all__ = [
    "RULES",
    "check_config",
    "check_broker_leverage",
    "check_funding_feed",
    "check_sim_and_sandbox",
    "check_credentials_pair",
    "check_symbol_format",
    "check_duplicate_symbols",
    "check_timeframes",
    "check_backfill_start",
    "check_reconnect_delays",
    "check_strategy_source",
    "check_broker_mode",
    "check_broker_limits",
    "suggest_timeframe",
    "suggest_symbol",
    "EXCHANGE_UNITS",
]

EXCHANGE_UNITS = "smhdwM"
"""Timeframe units as exchanges write them (``y`` parses but no exchange offers it)."""

_PART = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_SYMBOL = re.compile(rf"^{_PART}/{_PART}(:{_PART})?$")
_QUOTES = ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "USD", "EUR", "BTC", "ETH", "BNB", "TRY")
_UNIT_WORDS = {
    "s": "s", "sec": "s", "secs": "s", "second": "s", "seconds": "s",
    "m": "m", "min": "m", "mins": "m", "minute": "m", "minutes": "m", "t": "m",
    "h": "h", "hr": "h", "hrs": "h", "hour": "h", "hours": "h",
    "d": "d", "day": "d", "days": "d",
    "w": "w", "wk": "w", "week": "w", "weeks": "w",
    "mo": "M", "mon": "M", "month": "M", "months": "M",
}


def check_sim_and_sandbox(config: Config) -> None:
    """``sandbox`` and ``sim`` exclude each other: both would replace the exchange's URLs."""
    ex = config.exchange
    if ex.sandbox and ex.uses_simulator:
        raise config.source.error(
            ("exchange", "sandbox"), "sandbox and sim cannot both be set",
            hint="the simulator replaces every exchange URL; set sandbox: false")


def check_credentials_pair(config: Config) -> None:
    """``api_key`` and ``secret`` come together (a password alone is meaningless too)."""
    ex = config.exchange
    have = {k: getattr(ex, k) is not None for k in ("api_key", "secret", "password")}
    if have["api_key"] != have["secret"]:
        present, absent = ("api_key", "secret") if have["api_key"] else ("secret", "api_key")
        raise config.source.error(
            ("exchange", present), f"{present} is set but {absent} is not",
            hint=f"add {absent}: ${{ENV_VAR}} or remove {present}", cls=CredentialsError)
    if have["password"] and not have["api_key"]:
        raise config.source.error(
            ("exchange", "password"), "password is set without api_key and secret",
            hint="add api_key and secret, or remove password", cls=CredentialsError)


def suggest_symbol(text: str) -> str | None:
    """A likely BASE/QUOTE spelling of a malformed symbol (``BTCUSDT``, ``btc-usdt``), or None."""
    t = text.strip().upper()
    for sep in ("-", "_", " ", "|"):
        parts = [p for p in t.split(sep) if p]
        if len(parts) == 2:
            return f"{parts[0]}/{parts[1]}"
    if "/" not in t:
        for quote in _QUOTES:
            if t.endswith(quote) and len(t) > len(quote):
                return f"{t[: -len(quote)]}/{quote}"
    if _SYMBOL.match(t):
        return t
    return None


def check_symbol_format(config: Config) -> None:
    """Every symbol looks like ccxt's ``BASE/QUOTE`` or ``BASE/QUOTE:SETTLE``."""
    for i, item in enumerate(config.symbols):
        if _SYMBOL.match(item.symbol):
            continue
        path: KeyPath = ("symbols", i) if _is_bare(config, i) else ("symbols", i, "symbol")
        better = suggest_symbol(item.symbol)
        hint = f"did you mean {better}?" if better and better != item.symbol else (
            "ccxt symbols look like BTC/USDT (spot) or BTC/USDT:USDT (perpetual swap)")
        raise config.source.error(
            path, f"{item.symbol!r} is not a ccxt symbol (expected BASE/QUOTE or BASE/QUOTE:SETTLE)",
            hint=hint)


def check_duplicate_symbols(config: Config) -> None:
    """A (symbol, timeframe) pair is listed once; one symbol on two timeframes is allowed."""
    seen: dict[tuple[str, str], int] = {}
    for feed in config.symbol_feeds():
        key = (feed.symbol, feed.timeframe)
        if key in seen:
            path: KeyPath = ("symbols", feed.index)
            raise config.source.error(
                path, f"{feed.symbol} at {feed.timeframe} is listed twice (also symbols[{seen[key]}])",
                hint="remove one, or give it another timeframe")
        seen[key] = feed.index


def suggest_timeframe(text: str) -> str | None:
    """``"1H"`` -> ``"1h"``, ``"5min"`` -> ``"5m"``, ``"1 month"`` -> ``"1M"``; None if no guess."""
    m = re.match(r"^\s*(\d+)\s*([A-Za-z]+)\s*$", text)
    if not m:
        return None
    n, unit = m.group(1), m.group(2)
    if unit == "M":
        return f"{n}M"
    mapped = _UNIT_WORDS.get(unit.lower())
    return f"{int(n)}{mapped}" if mapped and int(n) > 0 else None


def _check_timeframe(config: Config, path: KeyPath, value: str) -> None:
    try:
        _, unit = parse_timeframe(value)
        if unit not in EXCHANGE_UNITS:
            raise ValueError(value)
    except ValueError:
        better = suggest_timeframe(value)
        hint = f"did you mean {better}?" if better and better != value else (
            "write a number and a unit: 1s 1m 5m 15m 1h 4h 1d 1w 1M")
        raise config.source.error(path, f"{value!r} is not a timeframe", hint=hint) from None


def check_timeframes(config: Config) -> None:
    """``feed.timeframe`` and every per-symbol override parse as exchange timeframes."""
    _check_timeframe(config, ("feed", "timeframe"), config.feed.timeframe)
    for i, item in enumerate(config.symbols):
        if item.timeframe is not None:
            _check_timeframe(config, ("symbols", i, "timeframe"), item.timeframe)


def check_backfill_start(config: Config, clock: Clock = SYSTEM_CLOCK) -> None:
    """A backfill start time is in the past: there is no history after now to load."""
    now = datetime.fromtimestamp(clock.time_ms() / 1000, tz=timezone.utc)
    feeds: list[tuple[KeyPath, object]] = [(("feed", "backfill"), config.feed.backfill)]
    feeds += [(("symbols", i, "backfill"), s.backfill) for i, s in enumerate(config.symbols)]
    for path, start in feeds:
        if isinstance(start, datetime) and start > now:
            raise config.source.error(
                path, f"the backfill start {start.isoformat().replace('+00:00', 'Z')} is in the "
                f"future (now is {now.strftime('%Y-%m-%dT%H:%M:%SZ')})",
                hint="give a start time in the past, a bar count (e.g. 500), or 0 for none")


def check_reconnect_delays(config: Config) -> None:
    """``max_reconnect_delay`` is at least ``reconnect_delay``."""
    feed = config.feed
    if feed.max_reconnect_delay < feed.reconnect_delay:
        raise config.source.error(
            ("feed", "max_reconnect_delay"),
            f"max_reconnect_delay ({feed.max_reconnect_delay:g}) is less than reconnect_delay "
            f"({feed.reconnect_delay:g})",
            hint="the backoff grows from reconnect_delay up to max_reconnect_delay")


def check_strategy_source(config: Config) -> None:
    """Exactly one of ``strategy.name`` and ``strategy.path``."""
    s = config.strategy
    if s.name is not None and s.path is not None:
        raise config.source.error(("strategy", "path"), "set either name or path, not both",
                                  hint="name: a module in strategies/; path: a .py file", at_key=True)
    if s.name is None and s.path is None:
        raise config.source.error(("strategy",), "missing name or path",
                                  hint="e.g. strategy: {name: sma_cross}", at_key=True)


def check_broker_mode(config: Config) -> None:
    """Live orders need credentials (``--live`` on the command line is checked by ``run``)."""
    if config.broker.mode == "live" and not (config.exchange.api_key and config.exchange.secret):
        raise config.source.error(
            ("broker", "mode"), "mode: live needs exchange.api_key and exchange.secret",
            hint="add them as ${ENV_VAR} references, or use mode: paper", cls=CredentialsError)


def check_broker_limits(config: Config) -> None:
    """Every symbol named in ``broker.limits`` is one of ``symbols``."""
    listed = {s.symbol for s in config.symbols}
    for key in ("max_position", "max_notional", "max_leverage"):
        for symbol in getattr(config.broker.limits, key):
            if symbol not in listed:
                raise config.source.error(
                    ("broker", "limits", key, symbol), f"{symbol} is not one of the symbols",
                    hint=f"symbols: {', '.join(sorted(listed))}", at_key=True)


def check_funding_feed(config: Config) -> None:
    """``funding_feed`` only on swaps (a symbol with a settle currency)."""
    for i, s in enumerate(config.symbols):
        if s.funding_feed and ":" not in s.symbol:
            raise config.source.error(
                ("symbols", i, "funding_feed"), f"{s.symbol} is not a swap: it has no funding rates",
                hint="a swap has a settle currency, e.g. BTC/USDT:USDT", at_key=True)


def check_broker_leverage(config: Config) -> None:
    """Per-symbol ``leverage`` and ``margin_mode`` name listed symbols; no symbol's leverage is
    above its ``limits.max_leverage``."""
    b = config.broker
    listed = {s.symbol for s in config.symbols}
    for key in ("leverage", "margin_mode"):
        value = getattr(b, key)
        for symbol in value if isinstance(value, dict) else ():
            if symbol not in listed:
                raise config.source.error(
                    ("broker", key, symbol), f"{symbol} is not one of the symbols",
                    hint=f"symbols: {', '.join(sorted(listed))}", at_key=True)
    for symbol, cap in b.limits.max_leverage.items():
        lev = b.leverage_of(symbol)
        if lev > cap:
            path = ("broker", "leverage", symbol) if isinstance(b.leverage, dict) else ("broker", "leverage")
            raise config.source.error(
                path, f"leverage {lev:g} for {symbol} is above broker.limits.max_leverage[{symbol}] "
                f"= {cap:g}", hint=f"lower the leverage to {cap:g} or less, or raise the limit")


RULES: tuple[Callable[[Config], None], ...] = (
    check_sim_and_sandbox,
    check_credentials_pair,
    check_symbol_format,
    check_timeframes,
    check_duplicate_symbols,
    check_backfill_start,
    check_reconnect_delays,
    check_strategy_source,
    check_broker_mode,
    check_broker_limits,
    check_broker_leverage,
    check_funding_feed,
)
"""Every rule, in order; ``check_config`` stops at the first that fails."""


def check_config(config: Config) -> None:
    """Run every rule in ``RULES``; raise the first ``ConfigError``."""
    for rule in RULES:
        rule(config)


def _is_bare(config: Config, index: int) -> bool:
    # A symbol written as a plain string has no 'symbol' key in the source map.
    return ("symbols", index, "symbol") not in config.source.keys
