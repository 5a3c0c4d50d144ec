"""Typed, frozen models of the YAML that ``btccxt run config.yaml`` reads.

Role: the *shape* of a configuration and the checks that need one value only (types, ranges,
enumerations, the backfill and simulator notations). Cross-field checks live in ``rules.py``;
reading the file, line numbers and ``${ENV}`` expansion live in ``load.py``.

Every model is frozen and forbids unknown keys. Field descriptions end up in the JSON Schema
(``btccxt config schema``). Credentials are ``SecretStr``: their values never appear in a repr,
a str or an error message.

Must not import: ccxt, yaml, typer, rich, or anything that does I/O.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    SecretStr,
    StrictBool,
    StrictStr,
    Tag,
)

from btccxt_cli.errors import ConfigError
from btccxt_cli.log import redact, register_notify_url, register_secret

__all__ = [
    "Config",
    "ExchangeConfig",
    "SymbolConfig",
    "FeedConfig",
    "StrategyConfig",
    "BrokerConfig",
    "BrokerLimitsConfig",
    "SlippageTicks",
    "DashboardConfig",
    "LoggingConfig",
    "EventsConfig",
    "NotifyConfig",
    "NOTIFY_EVENTS",
    "HubConfig",
    "RateLimitConfig",
    "check_redis_url",
    "REDIS_URL_EXAMPLE",
    "SymbolFeed",
    "SourceMap",
    "KeyPath",
    "format_path",
    "FeedMode",
    "BrokerMode",
    "MAX_BACKFILL_BARS",
]

logger = logging.getLogger(__name__)

FeedMode = Literal["rest", "threaded", "websocket", "hub"]
BrokerMode = Literal["paper", "live"]
MarginMode = Literal["isolated", "cross"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

KeyPath = tuple[str | int, ...]
"""A location inside the document: ``("symbols", 1, "timeframe")``."""

MAX_BACKFILL_BARS = 10_000_000
"""Upper bound for a backfill bar count (a typo guard, not a limit of any exchange)."""

_BACKFILL_EXPECTED = (
    "expected a bar count, a start time in ISO 8601 (2024-01-01 or 2024-01-01T00:00:00Z), or none"
)


# --------------------------------------------------------------------------- locations


def format_path(path: KeyPath) -> str:
    """``("symbols", 1, "timeframe")`` -> ``"symbols[1].timeframe"``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not _PLAIN_KEY.fullmatch(str(part)):
            out += f"[{str(part)!r}]"  # odd keys (spaces, dots, newlines) stay on one line
        else:
            out += f".{part}" if out else str(part)
    return out


_PLAIN_KEY = re.compile(r"[^\s.\[\]'\"]+")


@dataclass(frozen=True)
class SourceMap:
    """Where each key and value of a loaded document sits (1-based line and column).

    ``keys`` maps a path to the position of its key, ``values`` to the position of its value;
    ``scalars`` holds the paths whose value is a scalar. An empty map (a ``Config`` built in
    code) still produces errors, just without a position.
    """

    file: str | None = None
    keys: Mapping[KeyPath, tuple[int, int]] = field(default_factory=dict)
    values: Mapping[KeyPath, tuple[int, int]] = field(default_factory=dict)
    scalars: frozenset[KeyPath] = frozenset()

    def locate(self, path: KeyPath, *, at_key: bool = False) -> tuple[int | None, int | None]:
        """Position of ``path``: its value for scalars, its key otherwise (or with ``at_key``).

        A path that is not in the document (a missing key) resolves to its nearest ancestor.
        """
        path = tuple(path)
        while True:
            if path in self.keys and (at_key or path not in self.scalars):
                return self.keys[path]
            if path in self.values:
                return self.values[path]
            if path in self.keys:
                return self.keys[path]
            if not path:
                return (1, 1) if self.file else (None, None)
            path = path[:-1]
            at_key = True

    def error(self, path: KeyPath, message: str, *, hint: str = "", at_key: bool = False,
              cls: type[ConfigError] = ConfigError) -> ConfigError:
        """Build (not raise) a located ``ConfigError``; registered secrets are masked."""
        line, column = self.locate(path, at_key=at_key)
        return cls(redact(message), file=self.file, line=line, column=column,
                   key=format_path(path) or None, hint=redact(hint))


# --------------------------------------------------------------------------- value parsers


def _parse_backfill(value: Any) -> int | datetime:
    """A bar count (int >= 0), a start time (aware UTC datetime), or 0 for none."""
    if value is None:
        return 0
    if isinstance(value, bool):
        raise ValueError(_BACKFILL_EXPECTED)
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a bar count cannot be negative; use 0 or none for no backfill")
        if value > MAX_BACKFILL_BARS:
            raise ValueError(f"at most {MAX_BACKFILL_BARS} bars; use a start time for long histories")
        return value
    if isinstance(value, datetime):
        return _as_utc(value)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in ("", "none", "null", "0"):
            return 0
        if text.isdigit():
            return _parse_backfill(int(text))
        if text[-1:] in ("Z", "z"):  # Python 3.10's fromisoformat does not read "Z"
            text = text[:-1] + "+00:00"
        try:
            return _as_utc(datetime.fromisoformat(text))
        except ValueError:
            raise ValueError(_BACKFILL_EXPECTED) from None
    raise ValueError(_BACKFILL_EXPECTED)


def _parse_backfill_override(value: Any) -> int | datetime:
    # Only runs when the key is present: an explicit null means "no backfill for this symbol".
    return _parse_backfill(value)


def _as_utc(value: datetime) -> datetime:
    # YAML timestamps without an offset are UTC by the YAML spec; so are ours.
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def _parse_sim(value: Any) -> bool | str:
    """``true``/``false``/null or an ``http://host:port`` simulator URL (no trailing slash)."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    expected = "expected true, false, or a simulator URL like http://127.0.0.1:8765"
    if not isinstance(value, str):
        raise ValueError(expected)
    text = value.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError(expected) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None:
        raise ValueError(expected + " (scheme, host and port are required)")
    if parts.query or parts.fragment:
        raise ValueError(expected + " (no query or fragment)")
    return text.rstrip("/")


def _parse_credential(value: Any) -> Any:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        # Never echo the value: it may be a real key written as a YAML number.
        raise ValueError("expected text written as a ${ENV_VAR} reference")
    return value


def _symbol_item(value: Any) -> Any:
    return {"symbol": value} if isinstance(value, str) else value


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def _strategy_name(value: Any) -> Any:
    if value is None or not isinstance(value, str):
        return value
    if value.endswith(".py") or "/" in value or "\\" in value:
        raise ValueError("name is a module in strategies/ (like sma_cross); use path: for a file")
    if not _MODULE_NAME.match(value):
        raise ValueError("expected a module name in strategies/, like sma_cross")
    return value


Backfill = Annotated[
    int | datetime,
    BeforeValidator(_parse_backfill, json_schema_input_type=int | str | None),
]
BackfillOverride = Annotated[
    int | datetime | None,
    BeforeValidator(_parse_backfill_override, json_schema_input_type=int | str | None),
]
SimSetting = Annotated[
    bool | str,
    BeforeValidator(_parse_sim, json_schema_input_type=bool | str | None),
]
Credential = Annotated[
    SecretStr | None,
    BeforeValidator(_parse_credential, json_schema_input_type=str | None),
]

_FROZEN = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

_TIMEFRAME_DOC = (
    "Bar length as exchanges write it: 1s 1m 3m 5m 15m 30m 1h 2h 4h 6h 12h 1d 1w 1M "
    "(which ones exist depends on the exchange; the simulator adds 1s)."
)


# --------------------------------------------------------------------------- models


class ExchangeConfig(BaseModel):
    """Which exchange to talk to, and how."""

    model_config = _FROZEN

    id: str = Field(min_length=1, description="ccxt exchange id, e.g. binance, okx, bybit.")
    sandbox: bool = Field(False, strict=True, description="Use the exchange's testnet (ccxt sandbox mode).")
    sim: SimSetting = Field(
        False,
        description="true: start the built-in simulator in-process; a URL such as "
        "http://127.0.0.1:8765: use a simulator started with `btccxt sim`; false: the real exchange.",
    )
    api_key: Credential = Field(None, description="API key, written as a ${ENV_VAR} reference.")
    secret: Credential = Field(None, description="API secret, written as a ${ENV_VAR} reference.")
    password: Credential = Field(
        None, description="API passphrase (okx and others that require one), as a ${ENV_VAR} reference."
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Passed through unchanged to the ccxt exchange's `options`."
    )
    rate_limit: bool = Field(True, strict=True, description="ccxt enableRateLimit: space REST calls.")

    @property
    def uses_simulator(self) -> bool:
        """True when bars come from the simulator (built-in or by URL)."""
        return self.sim is not False

    @property
    def sim_url(self) -> str | None:
        """The simulator URL when ``sim`` is a URL, else None."""
        return self.sim if isinstance(self.sim, str) else None

    @property
    def has_credentials(self) -> bool:
        """True when an API key or secret is configured."""
        return self.api_key is not None or self.secret is not None


class SymbolConfig(BaseModel):
    """One market to trade, optionally overriding feed settings. A bare string is accepted too."""

    model_config = _FROZEN

    symbol: str = Field(min_length=1, description="ccxt unified symbol: BASE/QUOTE or BASE/QUOTE:SETTLE.")
    timeframe: str | None = Field(None, strict=True, description="Overrides feed.timeframe.")
    backfill: BackfillOverride = Field(None, description="Overrides feed.backfill.")
    drop_newest: bool | None = Field(None, strict=True, description="Overrides feed.drop_newest.")
    ohlcv_limit: int | None = Field(None, strict=True, ge=1, le=1000,
                                    description="Overrides feed.ohlcv_limit.")
    funding_feed: bool = Field(
        False, strict=True, description="Swaps: also add a data feed named '<symbol> funding' "
        "whose close is the funding rate at each settlement (history, then live; a backtest "
        "replays the cached rates). docs/swaps.md.")


SymbolItem = Annotated[
    SymbolConfig,
    BeforeValidator(_symbol_item, json_schema_input_type=str | SymbolConfig),
]


class FeedConfig(BaseModel):
    """How bars are fetched; every symbol inherits these unless it overrides them."""

    model_config = _FROZEN

    mode: FeedMode = Field(
        "rest",
        description="rest: poll on the event loop; threaded: poll from a worker thread; "
        "websocket: ccxt.pro watch_ohlcv with REST confirmation and gap filling; "
        "hub: bars from a `btccxt hub` over Redis (hub.url), no exchange connection.",
    )
    timeframe: str = Field("1m", strict=True, description=_TIMEFRAME_DOC)
    backfill: Backfill = Field(
        100,
        description="History loaded before going live: a bar count, a start time "
        "(ISO 8601, e.g. 2024-01-01), or 0/none.",
    )
    drop_newest: bool = Field(
        False, strict=True, description="Drop the newest REST bar, which may still be forming."
    )
    ohlcv_limit: int = Field(100, strict=True, ge=1, le=1000, description="Bars per REST page (1..1000).")
    settle_delay: float = Field(
        0.25, strict=True, ge=0, le=3600,
        description="Seconds after a bar's end before the REST read that confirms it (rest/threaded).",
    )
    reconnect_delay: float = Field(
        5.0, strict=True, gt=0, le=3600, description="First WebSocket reconnect delay in seconds."
    )
    max_reconnect_delay: float = Field(
        60.0, strict=True, gt=0, le=86400,
        description="Upper bound of the exponential reconnect backoff, in seconds (>= reconnect_delay).",
    )
    watchdog_silence: float | None = Field(
        None, strict=True, gt=0, le=86400,
        description="Seconds without a message before a socket counts as dead; null: a default "
        "derived from the timeframe.",
    )
    cache: StrictBool | StrictStr = Field(
        True,
        description="Local OHLCV cache (the file `btccxt backfill` fills): history is read from it "
        "first, bars are written back. true: the default file; a path; false: off.",
    )


class StrategyConfig(BaseModel):
    """The backtrader strategy to run: exactly one of ``name`` and ``path``."""

    model_config = _FROZEN

    name: Annotated[str | None, BeforeValidator(_strategy_name)] = Field(
        None, description="A module in strategies/, e.g. sma_cross."
    )
    path: Path | None = Field(
        None, description="A Python file holding the strategy (relative to the config file)."
    )
    params: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for the strategy.")


class BrokerLimitsConfig(BaseModel):
    """Local limits of the live broker: an order that would breach one is Rejected unsent."""

    model_config = _FROZEN

    max_position: dict[str, Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict,
        description="Per symbol, the largest absolute position (base units) open orders may reach.")
    max_notional: dict[str, Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict,
        description="Per symbol, the largest absolute position value (quote units) open orders may reach.")
    max_orders_per_minute: int | None = Field(
        None, strict=True, ge=1, description="Orders sent in any 60 s window; null: no limit.")
    max_leverage: dict[str, Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict,
        description="Swaps: per symbol, the highest broker.leverage the run may set (a config "
        "asking for more is refused at load).")
    min_liquidation_distance: float | None = Field(
        None, strict=True, gt=0, lt=1,
        description="Swaps: an order that would bring the position's estimated liquidation "
        "price within this fraction of the price (0.1 = 10 %) is rejected unsent; null: no check.")


def _slippage_kind(v: Any) -> str:
    """A mapping is the ticks form, anything else the fraction (one branch's error only)."""
    return "ticks" if isinstance(v, dict | SlippageTicks) else "fraction"


class SlippageTicks(BaseModel):
    """Paper slippage in ticks: ``{ticks: N}`` moves fills N price steps against the order."""

    model_config = _FROZEN

    ticks: int = Field(..., strict=True, ge=0, le=100_000,
                       description="Price steps (the market's price precision) per fill.")


class BrokerConfig(BaseModel):
    """Where orders go."""

    model_config = _FROZEN

    def leverage_of(self, symbol: str) -> float:
        """``leverage`` for ``symbol`` (1 when a per-symbol map does not name it)."""
        lev = self.leverage
        return float(lev.get(symbol, 1.0)) if isinstance(lev, dict) else float(lev)

    def margin_mode_of(self, symbol: str) -> str:
        """``margin_mode`` for ``symbol`` (isolated when a per-symbol map does not name it)."""
        mode = self.margin_mode
        return str(mode.get(symbol, "isolated")) if isinstance(mode, dict) else str(mode)

    mode: BrokerMode = Field(
        "paper", description="paper: simulated fills in backtrader's broker; live: real orders on "
        "the exchange (also needs --live on the command line)."
    )
    cash: float = Field(10_000.0, strict=True, gt=0, description="Starting cash of the paper broker.")
    commission: float = Field(
        0.001, strict=True, ge=0, lt=1, description="Commission per trade as a fraction (0.001 = 0.1%)."
    )
    slippage: Annotated[
        Annotated[Annotated[float, Field(strict=True, ge=0, lt=0.5)], Tag("fraction")]
        | Annotated[SlippageTicks, Tag("ticks")],
        Discriminator(_slippage_kind)] = Field(
        0.0, description="Paper broker (paper runs and backtests alike): fills move against the "
        "order by this fraction of the price (0.0005 = 0.05%), or by {ticks: N} ticks of each "
        "symbol's price step (its market's price precision), market fills at the bar's open too, "
        "never beyond the bar's range; 0: fills at the bar's prices.")
    limits: BrokerLimitsConfig = Field(default_factory=BrokerLimitsConfig,
                                       description="Live broker: per-symbol and rate limits.")
    adopt_holdings: bool = Field(
        False, strict=True, description="Live broker: let the bot trade the coins the account "
        "already holds (its position in each symbol starts as the account's whole balance of the "
        "base currency). false: its position starts at zero and moves only with its own fills, "
        "and it never sells coins it did not buy.")
    leverage: Annotated[float, Field(strict=True, ge=1, le=125)] | dict[
        str, Annotated[float, Field(strict=True, ge=1, le=125)]] = Field(
        1.0, description="Swaps and futures: leverage, one number for every symbol or one per "
        "symbol (others: 1). Live: set on the exchange at start; paper and backtest: the margin "
        "an order locks is its value / leverage. Spot symbols ignore it.")
    margin_mode: MarginMode | dict[str, MarginMode] = Field(
        "isolated", description="Swaps and futures: isolated (each position risks only its own "
        "margin) or cross (the whole wallet backs every position), one for every symbol or one "
        "per symbol (others: isolated). Live: set on the exchange at start.")
    funding: bool = Field(
        True, strict=True, description="Swaps, paper and backtest: pay and receive the "
        "exchange's historical funding rates on open positions (live: the exchange pays them).")
    kill_switch_file: Path | None = Field(
        None, description="Live broker: when this file exists, open orders are cancelled and the run "
        "stops (relative to the config file). SIGUSR1 does the same.")
    orders_db: Path | None = Field(
        None, description="Live broker: SQLite file of orders and fills (relative to the config "
        "file; default: orders.sqlite in btccxt's data folder).")
    poll_interval: float = Field(1.0, strict=True, ge=0.05, le=60,
                                 description="Live broker: seconds between polls of open orders "
                                 "when no WebSocket order stream is up.")
    updates: Literal["auto", "websocket", "poll"] = Field(
        "auto", description="Live broker: how order changes are learnt. auto: pushed by WebSocket "
        "on binance and okx (tested order streams), REST polling elsewhere; websocket: wherever "
        "ccxt.pro streams orders; poll: REST only.")
    reconcile_interval: float = Field(
        10.0, strict=True, ge=1, le=600,
        description="Live broker: seconds between REST checks of open orders while the WebSocket "
        "order stream is up.")
    run_scope: str | None = Field(
        None, min_length=1, max_length=200, description="Live broker: the run's identity in the "
        "orders database: a run adopts, sweeps and cancels only the orders of its scope, and a "
        "second live run on the same database, account and scope is refused. Default: the config "
        "file and the strategy; give two runs of one config different scopes to run both.")


class DashboardConfig(BaseModel):
    """The terminal dashboard."""

    model_config = _FROZEN

    enabled: bool = Field(True, strict=True, description="Show the live dashboard.")
    refresh_per_second: float = Field(4.0, strict=True, gt=0, le=60, description="Redraws per second.")


class LoggingConfig(BaseModel):
    """Library logging."""

    model_config = _FROZEN

    level: Annotated[LogLevel, BeforeValidator(_upper)] = Field("INFO", description="Log level.")
    file: Path | None = Field(None, description="Also log to this file (relative to the config file).")
    format: Literal["text", "json"] = Field(
        "text", description="text: one readable line per record; json: one JSON object per line "
        "(time, level, logger, message; secrets masked) for log shippers, on stderr and the file.")
    rotate: Literal["size", "daily", "none"] = Field(
        "size", description="logging.file rotation: size (at max_bytes), daily (at midnight UTC), "
        "or none (one growing file).")
    max_bytes: int = Field(10 * 1024 * 1024, strict=True, ge=1024, le=1 << 40,
                           description="rotate: size: start a new file at this size (bytes).")
    backups: int = Field(5, strict=True, ge=0, le=1000,
                         description="Rotated files kept (run.log.1 ... or run.log.2026-12-05).")


def _notify_url(value: Any) -> Any:
    """A notification URL holds a token: registered as a secret, never echoed in an error."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a notification URL written as a ${ENV_VAR} reference")
    register_notify_url(value)
    return value.strip()


NotifyUrl = Annotated[str, BeforeValidator(_notify_url, json_schema_input_type=str)]
NotifyEvent = Literal["disconnected", "live", "strategy_error", "kill", "order_rejected",
                      "order_filled", "position_closed", "stopped", "daily_summary"]
NOTIFY_EVENTS: tuple[NotifyEvent, ...] = (
    "disconnected", "live", "strategy_error", "kill", "order_rejected", "order_filled",
    "position_closed", "stopped", "daily_summary")
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")


def _hhmm(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):  # YAML 1.1 reads 08:30 as 510
        value = f"{value // 60:02d}:{value % 60:02d}"
    if not isinstance(value, str) or not _HHMM.match(value):
        raise ValueError("expected a time of day in UTC as HH:MM, e.g. \"08:00\"")
    return value


class NotifyConfig(BaseModel):
    """Notifications through apprise (Telegram, Discord, Slack, e-mail, ntfy, webhooks ...)."""

    model_config = _FROZEN

    urls: tuple[NotifyUrl, ...] = Field(
        (), description="apprise URLs (https://github.com/caronc/apprise/wiki), written as "
        "${ENV_VAR} references: they hold tokens, and are masked like other secrets.")
    events: tuple[NotifyEvent, ...] = Field(
        NOTIFY_EVENTS, description="What to send: disconnected, live, strategy_error, kill, "
        "order_rejected, order_filled (live runs), stopped, daily_summary. Default: all.")
    disconnected_after: float = Field(
        60.0, strict=True, ge=0, le=86400,
        description="Seconds a feed stays DISCONNECTED before a message (shorter drops are quiet).")
    batch_seconds: float = Field(
        2.0, strict=True, ge=0, le=600,
        description="Events within this many seconds of the first go out as one message.")
    max_per_minute: int = Field(10, strict=True, ge=1, le=600,
                                description="Messages sent in any 60 s (later events are merged).")
    timeout: float = Field(10.0, strict=True, gt=0, le=300,
                           description="Seconds one delivery may take.")
    daily_summary_at: Annotated[str, BeforeValidator(_hhmm)] = Field(
        "00:00", description="Time of day (UTC, HH:MM) of the daily summary.")
    title: str = Field("btccxt", strict=True, min_length=1, description="Title of every message.")


class EventsConfig(BaseModel):
    """Machine-readable event log."""

    model_config = _FROZEN

    file: Path | None = Field(
        None, description="Write bars, states and orders as JSON Lines here (relative to the config file)."
    )


REDIS_URL_EXAMPLE = "redis://127.0.0.1:6379/0"


def check_redis_url(url: str) -> str:
    """``url`` if redis-py can connect with it, else ``ValueError`` saying what to fix.

    The one check of a Redis URL, for the config's ``hub.url`` and ``rate_limit.shared`` and the
    command line's ``--url`` and ``--check``: a scheme redis-py accepts (``redis://``,
    ``rediss://``, ``unix://``), a port from 1 to 65535, a database number after the host.
    Nothing is connected to. A password in the URL is registered as a secret first (masked in
    every log line and error).
    """
    try:
        register_secret(urlsplit(url).password)
    except ValueError:
        pass
    expected = f"expected a Redis URL such as {REDIS_URL_EXAMPLE} (redis://, rediss:// or unix://)"
    if not re.fullmatch(r"(?i)(redis|rediss|unix)://\S+", url):
        raise ValueError(expected)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # "Port out of range 0-65535", "Invalid IPv6 URL" ...
        if "port" in str(exc).lower():
            raise ValueError("the port must be a number from 1 to 65535, e.g. "
                             f"{REDIS_URL_EXAMPLE}") from None
        raise ValueError(f"{expected}: {exc}") from None
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"the port must be a number from 1 to 65535, e.g. {REDIS_URL_EXAMPLE}")
    db = parts.path.replace("/", "")
    if parts.scheme.lower() != "unix" and db and not db.isdigit():
        raise ValueError(f"the database after the host must be a number, e.g. {REDIS_URL_EXAMPLE}")
    return url


def _redis_url(v: str | None) -> str | None:
    return v if v is None else check_redis_url(v)


RedisUrl = Annotated[StrictStr | None, AfterValidator(_redis_url)]


class HubConfig(BaseModel):
    """The market-data hub on Redis Streams (`btccxt hub`, feed.mode: hub; docs/hub.md)."""

    model_config = _FROZEN

    url: RedisUrl = Field(None,
                            description="Redis or Valkey (>= 6.2) URL, e.g. redis://127.0.0.1:6379/0.")
    namespace: str | None = Field(None, strict=True, min_length=1, pattern=r"^[A-Za-z0-9_.@-]+$",
                                  description="Key prefix btccxt:NAMESPACE:...; null: the exchange id.")
    maxlen: int = Field(100_000, strict=True, ge=100, le=100_000_000,
                        description="Bars kept per stream (XADD MAXLEN ~): bounds Redis memory.")
    max_wanted: int = Field(200, strict=True, ge=0, le=10_000,
                            description="Series runners may add to the hub beyond its config's.")
    lease: float = Field(5.0, strict=True, ge=1, le=600,
                         description="Leader lease in seconds: a standby takes over this long "
                         "after the leader stopped renewing it.")
    heartbeat: float = Field(3.0, strict=True, ge=0.5, le=600,
                             description="Heartbeat TTL in seconds: runners report DISCONNECTED "
                             "this long after the hub stopped.")


class RateLimitConfig(BaseModel):
    """One REST budget shared by every process on an IP (docs/hub.md)."""

    model_config = _FROZEN

    shared: RedisUrl = Field(None,
                               description="redis://... : draw REST requests from a token bucket in "
                               "Redis shared with the hub, other runners and backfills.")


class MetricsConfig(BaseModel):
    """Prometheus metrics over HTTP."""

    model_config = _FROZEN

    port: int | None = Field(None, strict=True, ge=0, le=65535,
                             description="Serve Prometheus metrics on this port (0: a free port); null: off.")
    host: str = Field("127.0.0.1", strict=True, description="Address to bind the metrics server to.")


@dataclass(frozen=True)
class SymbolFeed:
    """Feed settings of one symbol after applying its overrides to ``feed``."""

    symbol: str
    timeframe: str
    backfill: int | datetime
    drop_newest: bool
    ohlcv_limit: int
    index: int
    """Position of the symbol in ``symbols`` (for error locations)."""
    funding_feed: bool = False
    """Also a funding-rate feed named ``<symbol> funding`` (swaps)."""


class Config(BaseModel):
    """A whole btccxt configuration. Only exchange.id, symbols and strategy are required."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, title="btccxt config")

    exchange: ExchangeConfig = Field(description="The exchange (ccxt id, simulator, credentials).")
    symbols: tuple[SymbolItem, ...] = Field(
        min_length=1, description="Markets to trade: strings, or mappings with per-symbol overrides."
    )
    feed: FeedConfig = Field(default_factory=FeedConfig, description="How bars are fetched.")
    strategy: StrategyConfig = Field(description="The strategy to run.")
    broker: BrokerConfig = Field(default_factory=BrokerConfig, description="Paper or live orders.")
    dashboard: DashboardConfig = Field(default_factory=DashboardConfig, description="Terminal dashboard.")
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="Library logging.")
    events: EventsConfig = Field(default_factory=EventsConfig, description="JSON Lines event log.")
    metrics: MetricsConfig = Field(default_factory=MetricsConfig, description="Prometheus metrics.")
    notify: NotifyConfig = Field(default_factory=NotifyConfig,
                                 description="Notifications through apprise.")
    hub: HubConfig = Field(default_factory=HubConfig, description="Market-data hub on Redis.")
    rate_limit: RateLimitConfig = Field(default_factory=RateLimitConfig,
                                        description="A REST budget shared across processes.")
    lookback: int = Field(
        1000, strict=True, ge=1, le=10_000_000,
        description="Bars kept in memory per data feed (bounded buffers for long runs).",
    )

    _source: SourceMap = PrivateAttr(default_factory=SourceMap)

    @property
    def source(self) -> SourceMap:
        """Where each key came from (empty for a Config built in code)."""
        return self._source

    def with_source(self, source: SourceMap) -> Config:
        """Attach a ``SourceMap`` (done by the loader) and return self."""
        self._source = source
        return self

    def symbol_feeds(self) -> tuple[SymbolFeed, ...]:
        """Per-symbol feed settings, overrides applied, in the order of ``symbols``."""
        feed = self.feed
        out = []
        for i, s in enumerate(self.symbols):
            out.append(SymbolFeed(
                symbol=s.symbol,
                timeframe=s.timeframe if s.timeframe is not None else feed.timeframe,
                backfill=s.backfill if s.backfill is not None else feed.backfill,
                drop_newest=s.drop_newest if s.drop_newest is not None else feed.drop_newest,
                ohlcv_limit=s.ohlcv_limit if s.ohlcv_limit is not None else feed.ohlcv_limit,
                index=i, funding_feed=s.funding_feed,
            ))
        return tuple(out)

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """The JSON Schema of the YAML file (what ``btccxt config schema`` prints)."""
        schema = cls.model_json_schema()
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        return schema
