"""The cerebro, feeds and paper broker of a config: one assembly for ``run`` and ``backtest``.

A backtest proves what a live run does only if both build the same thing, so neither builds
it itself: both call these.

* ``new_cerebro()``: bounded memory (``exactbars=1``, each data keeps ``lookback`` bars),
  notifications delivered at once (``quicknotify``), no default observers.
* ``paper_broker(broker, cfg)``: backtrader's ``BackBroker`` with the config's cash,
  commission and slippage (``broker.slippage``: a fraction of the price, backtrader's
  ``set_slippage_perc``, applied to market fills at the bar's open too).
* ``add_feeds(cerebro, store, cfg)``: one ``CCXTFeed`` per symbol with the config's feed
  settings (timeframe, warm-up as ``backfill_bars``/``fromdate``, lookback, mode). The store
  is a ``CCXTStore`` (live bars) or a ``ReplayStore`` (``bt/replay.py``: bars from the cache).

Imports backtrader only inside the functions.
"""

from __future__ import annotations

from typing import Any

from btccxt_cli.config.schema import BrokerConfig, Config, SymbolFeed
from btccxt_cli.timeframes import to_backtrader

__all__ = ["new_cerebro", "paper_broker", "feed_kwargs", "add_feeds"]


def new_cerebro() -> Any:
    """The cerebro of a run or a backtest (bounded memory, quick notifications)."""
    import backtrader as bt

    return bt.Cerebro(stdstats=False, quicknotify=True, exactbars=1)


def paper_broker(broker: Any, cfg: BrokerConfig) -> Any:
    """Set up backtrader's paper broker: cash, commission and slippage of the config."""
    broker.setcash(cfg.cash)
    broker.setcommission(commission=cfg.commission)
    if cfg.slippage:
        broker.set_slippage_perc(cfg.slippage, slip_open=True, slip_limit=True, slip_match=True,
                                 slip_out=False)
    return broker


def feed_kwargs(cfg: Config, sf: SymbolFeed) -> dict[str, Any]:
    """``getdata`` keyword arguments of one symbol of the config."""
    f = cfg.feed
    tf, comp = to_backtrader(sf.timeframe)
    kw: dict[str, Any] = {}
    if isinstance(sf.backfill, int):
        kw["backfill_bars"] = sf.backfill or None
        kw["backfill_start"] = bool(sf.backfill)
    else:
        kw["fromdate"] = sf.backfill.replace(tzinfo=None) if sf.backfill.tzinfo else sf.backfill
    return dict(
        dataname=sf.symbol, name=sf.symbol, timeframe=tf, compression=comp,
        use_websocket=f.mode == "websocket", use_threaded_data=f.mode == "threaded",
        ohlcv_limit=sf.ohlcv_limit, drop_newest=sf.drop_newest, settle_delay=f.settle_delay,
        ws_reconnect_delay=f.reconnect_delay, ws_max_reconnect_delay=f.max_reconnect_delay,
        watchdog_silence=f.watchdog_silence, lookback=cfg.lookback, **kw)


def add_feeds(cerebro: Any, store: Any, cfg: Config) -> list[Any]:
    """One feed per symbol of the config, added to ``cerebro`` in the config's order."""
    feeds = []
    for sf in cfg.symbol_feeds():
        data = store.getdata(**feed_kwargs(cfg, sf))
        cerebro.adddata(data, name=sf.symbol)
        feeds.append(data)
    return feeds
