"""What ccxt knows about an exchange, offline, and the config checks that need it.

Role: ``describe(id)`` reads ccxt's static metadata (no network: exchange objects are built but
never asked to load markets) into a frozen ``ExchangeFacts``; ``check_against_exchange`` and
``check_symbols`` hold a ``Config`` against those facts and raise located ``ConfigError``s.
``validate_exchange(config)`` runs every offline check and returns the facts.

ccxt and ccxt.pro are imported inside functions only (``import ccxt`` ~0.5 s, ``ccxt.pro`` ~1 s;
see field-notes.md), and results are cached. Must not import: typer, rich, backtrader.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from btccxt_cli.config.schema import Config, KeyPath
from btccxt_cli.errors import CredentialsError, UnsupportedError
from btccxt_cli.timeframes import timeframe_ms

__all__ = [
    "ExchangeFacts",
    "SIMULATED_EXCHANGES",
    "SIMULATOR_EXTRA_TIMEFRAMES",
    "exchange_ids",
    "suggest_exchange",
    "describe",
    "check_exchange_id",
    "check_against_exchange",
    "check_symbols",
    "validate_exchange",
    "load_markets_located",
]

logger = logging.getLogger(__name__)

SIMULATED_EXCHANGES = ("binance", "okx")
"""Exchanges the simulator (``btccxt_cli.sim.venues``) speaks."""
SIMULATED_EXCHANGES += ("bybit", "kucoin")  # bybit v5 (spot, linear), kucoin (spot)
SIMULATED_EXCHANGES += ("bitget", "kraken")  # bitget v2 (spot, linear), kraken (spot)

SIMULATOR_EXTRA_TIMEFRAMES = ("1s",)
"""Timeframes the simulator serves for every venue, even where the real exchange lacks them."""


@dataclass(frozen=True)
class ExchangeFacts:
    """ccxt's static facts about one exchange."""

    id: str
    name: str
    has_fetch_ohlcv: bool
    has_watch_ohlcv: bool
    """ccxt.pro implements watchOHLCV (False when ccxt.pro lacks the exchange)."""
    timeframes: list[str]
    """ccxt's keys of ``exchange.timeframes`` (may be empty when ccxt declares none)."""
    needs_password: bool
    """``requiredCredentials.password``: an API passphrase is needed besides key and secret."""


@lru_cache(maxsize=1)
def _ids() -> tuple[str, ...]:
    import ccxt

    return tuple(ccxt.exchanges)


@lru_cache(maxsize=1)
def _pro_ids() -> frozenset[str]:
    try:
        import ccxt.pro as ccxtpro
    except ImportError:  # an old ccxt without pro: no WebSocket feeds at all
        logger.debug("ccxt.pro is not importable; WebSocket mode unavailable")
        return frozenset()
    return frozenset(ccxtpro.exchanges)


def exchange_ids() -> list[str]:
    """Every exchange id ccxt knows (``ccxt.exchanges``)."""
    return list(_ids())


def suggest_exchange(exchange_id: str) -> str | None:
    """The closest known exchange id (``"binanc"`` -> ``"binance"``), or None."""
    ids = _ids()
    lowered = exchange_id.strip().lower()
    if lowered in ids:
        return lowered
    close = difflib.get_close_matches(lowered, ids, n=1, cutoff=0.6)
    return close[0] if close else None


@lru_cache(maxsize=64)
def describe(exchange_id: str) -> ExchangeFacts:
    """Read ccxt's (and ccxt.pro's) metadata for ``exchange_id``; no network.

    Raises:
        UnsupportedError: ccxt does not know ``exchange_id`` (with a suggestion).
    """
    if exchange_id not in _ids():
        close = suggest_exchange(exchange_id)
        raise UnsupportedError(f"unknown exchange {exchange_id!r}",
                               hint=f"did you mean {close!r}?" if close
                               else "run `btccxt exchanges` for the ids ccxt knows")
    import ccxt

    exchange = getattr(ccxt, exchange_id)()
    has: Mapping[str, Any] = exchange.has or {}
    watch = False
    if exchange_id in _pro_ids():
        import ccxt.pro as ccxtpro

        # Constructing a ccxt.pro exchange opens no connection; only its `has` is read.
        watch = bool((getattr(ccxtpro, exchange_id)().has or {}).get("watchOHLCV"))
    required = exchange.requiredCredentials or {}
    return ExchangeFacts(
        id=exchange_id,
        name=str(exchange.name or exchange_id),
        has_fetch_ohlcv=bool(has.get("fetchOHLCV")),
        has_watch_ohlcv=watch,
        timeframes=list((exchange.timeframes or {}).keys()),
        needs_password=bool(required.get("password")),
    )


def check_exchange_id(config: Config, ids: list[str] | None = None) -> None:
    """``exchange.id`` is a ccxt exchange id; suggests the closest one otherwise."""
    known = _ids() if ids is None else tuple(ids)
    ex_id = config.exchange.id
    if ex_id in known:
        return
    lowered = ex_id.strip().lower()
    close = lowered if lowered in known else (
        difflib.get_close_matches(lowered, known, n=1, cutoff=0.6) or [None])[0]
    message = f"unknown exchange {ex_id!r}"
    if close:
        message += f"; did you mean {close!r}?"
    raise config.source.error(("exchange", "id"), message,
                              hint="ccxt ids are lower case, e.g. binance, okx, bybit, kraken")


def _nearest_timeframes(value: str, offered: list[str]) -> list[str]:
    """The offered timeframes just below and just above ``value`` in length."""
    try:
        target = timeframe_ms(value)
    except ValueError:
        return difflib.get_close_matches(value, offered, n=2, cutoff=0.3)
    lengths = []
    for tf in offered:
        try:
            lengths.append((timeframe_ms(tf), tf))
        except (ValueError, KeyError):
            continue
    below = [tf for ms, tf in sorted(lengths) if ms < target][-1:]
    above = [tf for ms, tf in sorted(lengths) if ms > target][:1]
    return below + above


def _check_mode(config: Config, facts: ExchangeFacts) -> None:
    mode = config.feed.mode
    if mode == "websocket" and not facts.has_watch_ohlcv:
        raise config.source.error(
            ("feed", "mode"),
            f"{facts.id} has no WebSocket OHLCV in ccxt.pro; use mode: rest or threaded")
    if mode in ("rest", "threaded") and not facts.has_fetch_ohlcv:
        hint = "use mode: websocket and backfill: 0" if facts.has_watch_ohlcv else ""
        raise config.source.error(("feed", "mode"), f"{facts.id} has no fetchOHLCV in ccxt",
                                  hint=hint)
    if not facts.has_fetch_ohlcv and any(_wants_backfill(f.backfill) for f in config.symbol_feeds()):
        raise config.source.error(("feed", "backfill"),
                                  f"{facts.id} has no fetchOHLCV in ccxt, so nothing can be backfilled",
                                  hint="set backfill: 0")


def _wants_backfill(value: int | object) -> bool:
    return not (isinstance(value, int) and value == 0)


def _check_timeframes(config: Config, facts: ExchangeFacts) -> None:
    if not facts.timeframes:  # ccxt declares none for this exchange: nothing to hold it to
        return
    sim = config.exchange.uses_simulator
    offered = list(facts.timeframes) + [t for t in SIMULATOR_EXTRA_TIMEFRAMES
                                        if sim and t not in facts.timeframes]
    places: list[tuple[KeyPath, str]] = [(("feed", "timeframe"), config.feed.timeframe)]
    places += [(("symbols", i, "timeframe"), s.timeframe)
               for i, s in enumerate(config.symbols) if s.timeframe is not None]
    for path, tf in places:
        if tf in offered:
            continue
        near = _nearest_timeframes(tf, offered)
        message = f"{facts.id} has no {tf} bars"
        if near:
            message += "; nearest: " + ", ".join(near)
        hint = f"{facts.id} offers: " + " ".join(offered)
        if tf in SIMULATOR_EXTRA_TIMEFRAMES and not sim:
            hint = f"{tf} bars come from the simulator only, with sim: true; " + hint
        raise config.source.error(path, message, hint=hint)


def _check_simulator(config: Config, facts: ExchangeFacts) -> None:
    if config.exchange.uses_simulator and facts.id not in SIMULATED_EXCHANGES:
        raise config.source.error(
            ("exchange", "id"),
            f"the simulator does not speak {facts.id}; it serves "
            + " and ".join(SIMULATED_EXCHANGES),
            hint="pick one of those, or set sim: false to use the real exchange")


def _check_password(config: Config, facts: ExchangeFacts) -> None:
    ex = config.exchange
    if facts.needs_password and ex.has_credentials and ex.password is None:
        raise config.source.error(
            ("exchange", "api_key" if ex.api_key is not None else "secret"),
            f"{facts.id} needs an API passphrase as well as api_key and secret",
            hint=f"add password: ${{{facts.id.upper()}_PASSPHRASE}}", at_key=True, cls=CredentialsError)


def check_against_exchange(config: Config, facts: ExchangeFacts) -> None:
    """Hold ``config`` against ccxt's facts about its exchange; raise the first ``ConfigError``.

    Checks: the simulator speaks the exchange; the feed mode is implemented (watchOHLCV for
    websocket, fetchOHLCV for rest/threaded and for any backfill); every timeframe is offered
    (plus ``1s`` when ``sim`` is set); a passphrase is given when the exchange requires one.
    """
    _check_simulator(config, facts)
    _check_mode(config, facts)
    _check_timeframes(config, facts)
    _check_password(config, facts)


def load_markets_located(config: Config, ex: Any, *, sim_url: str | None, hint: str,
                         what: str = "") -> Mapping[str, Any]:
    """``ex.load_markets()``; unreachable (no network, a simulator not running): exit 2 at the
    config's line (``exchange.sim`` for a simulator URL, else ``exchange.id``), like every
    other reason the config cannot run. ``what`` ends the message (", symbols not checked")."""
    from btccxt_cli.exchange.errors import is_temporary, map_ccxt_error

    try:
        return ex.load_markets()
    except Exception as exc:
        err = map_ccxt_error(exc, exchange=ex, what="load markets")
        if not is_temporary(exc):
            raise err from exc
        key: KeyPath = ("exchange", "sim") if sim_url else ("exchange", "id")
        name = f"the simulator at {sim_url}" if sim_url else config.exchange.id
        raise config.source.error(key, f"{name} is unreachable{what}: {err.message}",
                                  hint=hint) from exc


def check_symbols(config: Config, markets: Mapping[str, Any]) -> None:
    """Every configured symbol is in ``markets`` (``exchange.load_markets()``); suggests close ones.

    Inactive markets are logged as a warning but not refused.
    """
    names = list(markets)
    upper = {n.upper(): n for n in names}
    for i, item in enumerate(config.symbols):
        symbol = item.symbol
        path: KeyPath = ("symbols", i) if ("symbols", i, "symbol") not in config.source.keys \
            else ("symbols", i, "symbol")
        if symbol in markets:
            market = markets[symbol]
            if isinstance(market, Mapping) and market.get("active") is False:
                logger.warning("%s is marked inactive on %s", symbol, config.exchange.id)
            continue
        options: list[str] = []
        if symbol.upper() in upper:
            options.append(upper[symbol.upper()])
        quote = symbol.split("/")[-1].split(":")[0]
        swap = f"{symbol}:{quote}"
        if swap in markets and swap not in options:
            options.append(swap)
        for close in difflib.get_close_matches(symbol, names, n=3, cutoff=0.6):
            if close not in options:
                options.append(close)
        message = f"{config.exchange.id} has no market {symbol}"
        if options:
            message += "; did you mean " + " or ".join(options[:3]) + "?"
        raise config.source.error(path, message,
                                  hint="spot symbols look like BTC/USDT, perpetual swaps like BTC/USDT:USDT")


def validate_exchange(config: Config) -> ExchangeFacts:
    """Every offline exchange check (id, mode, timeframes, credentials); returns the facts."""
    check_exchange_id(config)
    facts = describe(config.exchange.id)
    check_against_exchange(config, facts)
    return facts
