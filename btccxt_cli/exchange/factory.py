"""Build ccxt / ccxt.async_support / ccxt.pro clients, optionally pointed at the simulator.

``make_exchange("binance", kind="pro", sim_url=sim.url("binance"))`` returns an unmodified
ccxt.pro object whose every URL leads to the simulator. ccxt reads ``exchange.urls`` at call
time, so rewriting them after construction is enough (field notes). EVERY string in
``exchange.urls`` that starts with http(s):// or ws(s):// is rewritten, recursively (api, test,
demo, ws, ws-api, www ...), so an endpoint nobody expected reaches a logged 404 on the simulator
and never the internet. Paths are kept: ``https://fapi.binance.com/fapi/v1`` becomes
``http://127.0.0.1:PORT/fapi/v1``, ``wss://ws.okx.com:443/ws/v5`` ``ws://127.0.0.1:PORT/ws/v5``.

Two venue quirks are handled here:

* binance: ccxt.pro files klines under the spot symbol only when the WS URL contains
  ``/stream`` (``is_spot_url``), so ``urls.*.ws.spot`` and ``.margin`` become ``.../stream/ws``
  (ccxt appends ``/0``, ``/1`` ...), which the simulator serves.
* okx: the simulator serves 1s bars which ccxt's okx lacks; ``1s`` is added to
  ``exchange.timeframes`` in simulator mode so ccxt.pro files 1s candles under ``"1s"``.
* bybit and kucoin: likewise ``1s`` (bybit interval ``"1s"``, kucoin type ``"1sec"``).

ccxt is imported inside :func:`make_exchange` only (``import ccxt.pro`` takes ~1 s).
Must not import: typer, rich, backtrader, the simulator.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import re
from typing import Any
from urllib.parse import urlsplit

from btccxt_cli.errors import UnsupportedError

__all__ = ["make_exchange", "localize_urls", "KINDS"]

logger = logging.getLogger(__name__)

KINDS = {"sync": "ccxt", "async": "ccxt.async_support", "pro": "ccxt.pro"}
_URL_RE = re.compile(r"^(https?|wss?)://", re.IGNORECASE)
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def make_exchange(exchange_id: str, *, kind: str = "sync", config: dict[str, Any] | None = None,
                  sim_url: str | None = None, sandbox: bool = False,
                  market_types: list[str] | None = None) -> Any:
    """A ccxt client for ``exchange_id``.

    Args:
        exchange_id: a ccxt id (``"binance"``, ``"okx"`` ...).
        kind: ``"sync"`` (ccxt), ``"async"`` (ccxt.async_support) or ``"pro"`` (ccxt.pro).
        config: the ccxt constructor config (keys, options ...); ``enableRateLimit``
            defaults to True unless given.
        sim_url: base URL of a btccxt simulator (``http://127.0.0.1:PORT``); every URL the
            client knows is rewritten to it.
        sandbox: call ``set_sandbox_mode(True)`` (stays local with ``sim_url``).
        market_types: restrict ``options.fetchMarkets.types`` (e.g. ``["spot"]``) so
            ``load_markets`` asks only for those; default: ccxt's choice.

    Raises:
        UnsupportedError: unknown exchange id (with the closest match), or ``kind="pro"`` for
            an exchange ccxt.pro does not support.
        ValueError: unknown ``kind`` or a malformed ``sim_url``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, not {kind!r}")
    import ccxt

    if exchange_id not in ccxt.exchanges:
        close = difflib.get_close_matches(exchange_id.strip().lower(), ccxt.exchanges, n=1, cutoff=0.6)
        raise UnsupportedError(f"unknown exchange {exchange_id!r}",
                               hint=f"did you mean {close[0]!r}?" if close
                               else "run `btccxt exchanges` for the ids ccxt knows")
    module = importlib.import_module(KINDS[kind])
    if kind == "pro" and exchange_id not in getattr(module, "exchanges", ()):
        raise UnsupportedError(
            f"ccxt.pro has no WebSocket support for {exchange_id!r}",
            hint="use REST polling (kind 'sync' or 'async'), or upgrade ccxt with "
                 "`pip install -U ccxt` (ccxt.pro ships inside ccxt; never install 'ccxtpro')")
    cfg: dict[str, Any] = dict(config or {})
    cfg.setdefault("enableRateLimit", True)
    if market_types is not None:
        options = dict(cfg.get("options") or {})
        fetch_markets = dict(options.get("fetchMarkets") or {})
        fetch_markets["types"] = list(market_types)
        options["fetchMarkets"] = fetch_markets
        cfg["options"] = options
    if exchange_id in UTC_BARS:
        _use_utc_bars(exchange_id, cfg)
    if sim_url is not None and exchange_id == "okx":
        # deep-merged into ccxt's okx timeframes: 1s is a simulator extra (see docs/simulator.md)
        cfg["timeframes"] = {"1s": "1s", **dict(cfg.get("timeframes") or {})}
    if sim_url is not None and exchange_id == "bybit":
        # 1s is a simulator extra (bybit's shortest kline is 1m): REST interval and WS topic
        # "kline.1s.BTCUSDT"; ccxt.pro files candles by a reverse lookup of this table
        cfg["timeframes"] = {"1s": "1s", **dict(cfg.get("timeframes") or {})}
    if sim_url is not None and exchange_id == "kucoin":
        # 1s is a simulator extra spelled like kucoin's types (1min, 1hour): "1sec"
        cfg["timeframes"] = {"1s": "1sec", **dict(cfg.get("timeframes") or {})}
    if sim_url is not None and exchange_id == "bitget":
        # 1s is a simulator extra (bitget's shortest candle is 1m). ccxt's bitget keeps three
        # tables besides `timeframes`: REST granularities per market type
        # (options.fetchOHLCV.timeframes.spot/.swap) and WS channels (options.timeframes, which
        # ccxt.pro also reverse-looks-up to file candles); all get "1s". ccxt deep-merges them.
        cfg["timeframes"] = {"1s": "1s", **dict(cfg.get("timeframes") or {})}
        opts = dict(cfg.get("options") or {})
        opts["timeframes"] = {"1s": "1s", **dict(opts.get("timeframes") or {})}
        ohlcv = dict(opts.get("fetchOHLCV") or {})
        tables = dict(ohlcv.get("timeframes") or {})
        for market_type in ("spot", "swap"):
            tables[market_type] = {"1s": "1s", **dict(tables.get(market_type) or {})}
        ohlcv["timeframes"] = tables
        opts["fetchOHLCV"] = ohlcv
        cfg["options"] = opts
    if sim_url is not None and exchange_id == "kraken":
        # 1s is a simulator extra. kraken's interval is an integer number of minutes and ccxt
        # subtracts interval*60 s from `since` (the rows before it are filtered out again), so
        # 1 s bars need an unused positive integer: 2 (kraken has no 2-minute bars). Keep in
        # step with SIM_1S_INTERVAL in btccxt_cli/sim/venues/kraken.py (see docs/simulator.md).
        cfg["timeframes"] = {"1s": 2, **dict(cfg.get("timeframes") or {})}
    exchange = getattr(module, exchange_id)(cfg)
    if sim_url is not None:
        exchange.urls = localize_urls(exchange.urls, sim_url, exchange_id)
    #: where this client's prices come from: a simulator's bars are cached under their own name
    #: (``cache.source.cache_source``), never the exchange's
    exchange.btccxt_sim_url = sim_url
    if sandbox:
        exchange.set_sandbox_mode(True)
    return exchange


#: the UTC-aligned raw bars of exchanges whose plain 6H..1M bars open at midnight Hong Kong
#: time (a 1D bar at 16:00 UTC). ccxt 4.5's REST asks for these, its WebSocket for the others.
UTC_BARS: dict[str, dict[str, str]] = {
    "okx": {"6h": "6Hutc", "12h": "12Hutc", "1d": "1Dutc", "1w": "1Wutc", "1M": "1Mutc",
            "3M": "3Mutc"},
    "bitget": {"6h": "6Hutc", "12h": "12Hutc", "1d": "1Dutc", "3d": "3Dutc", "1w": "1Wutc",
               "1M": "1Mutc"},
}


def _use_utc_bars(exchange_id: str, cfg: dict[str, Any]) -> None:
    """Make REST and WebSocket ask for the same, UTC-aligned bars (``timeframes.bar_grid``).

    okx: ccxt's ``fetch_ohlcv`` appends ``utc`` to ``exchange.timeframes[tf]`` from 6h up while
    ``watch_ohlcv`` subscribes ``candle`` + the plain value, so one feed would mix two grids.
    The UTC names go into ``timeframes`` (both sides read it; ccxt.pro files candles by its
    reverse lookup) and the REST suffix is switched off (any ``timezone`` but ``"UTC"``).
    bitget: REST already uses its ``options.fetchOHLCV.timeframes``; ccxt.pro subscribes
    ``options.timeframes``, which gets the same UTC names.
    """
    names = UTC_BARS[exchange_id]
    opts = dict(cfg.get("options") or {})
    if exchange_id == "okx":
        cfg["timeframes"] = {**names, **dict(cfg.get("timeframes") or {})}
        ohlcv = dict(opts.get("fetchOHLCV") or {})
        ohlcv.setdefault("timezone", "UTC, named in timeframes")
        opts["fetchOHLCV"] = ohlcv
    else:
        opts["timeframes"] = {**names, **dict(opts.get("timeframes") or {})}
    cfg["options"] = opts


def localize_urls(urls: Any, sim_url: str, exchange_id: str = "") -> Any:
    """A copy of ccxt's ``urls`` tree with every http(s)/ws(s) URL moved to ``sim_url``."""
    base = urlsplit(sim_url)
    if base.scheme not in ("http", "https") or not base.hostname:
        raise ValueError(f"sim_url must look like http://127.0.0.1:PORT, not {sim_url!r}")
    if base.hostname not in _LOOPBACK:
        logger.warning("sim_url %s is not a loopback address", sim_url)
    prefix = base.path.rstrip("/")
    http = f"{base.scheme}://{base.netloc}{prefix}"
    ws = f"{'wss' if base.scheme == 'https' else 'ws'}://{base.netloc}{prefix}"

    def move(url: str) -> str:
        # "https://{hostname}" (okx) has no path: the host part is replaced wholesale
        parts = urlsplit(url.replace("{hostname}", "hostname"))
        root = ws if parts.scheme.lower() in ("ws", "wss") else http
        out = root + parts.path
        if parts.query:
            out += "?" + parts.query
        return out

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        if isinstance(node, str) and _URL_RE.match(node):
            return move(node)
        return node

    out = walk(urls)
    if exchange_id == "binance":
        # ccxt.pro's binance tells spot from futures by "/stream" in the socket URL
        for section in ("api", "test", "demo"):
            ws_urls = (out.get(section) or {}).get("ws") if isinstance(out.get(section), dict) else None
            if isinstance(ws_urls, dict):
                for market in ("spot", "margin"):
                    if market in ws_urls:
                        ws_urls[market] = ws + "/stream/ws"
    return out
