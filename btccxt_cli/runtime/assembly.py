"""The cerebro, feeds and paper broker of a config: one assembly for ``run`` and ``backtest``.

A backtest proves what a live run does only if both build the same thing, so neither builds
it itself: both call these.

* ``new_cerebro()``: bounded memory (``exactbars=1``, each data keeps ``lookback`` bars),
  notifications delivered at once (``quicknotify``), no default observers.
* ``paper_broker(broker, cfg, ticks)``: backtrader's ``BackBroker`` with the config's cash,
  commission and slippage (``broker.slippage``: a fraction of the price, backtrader's
  ``set_slippage_perc``; or ``{ticks: N}``, backtrader's ``set_slippage_fixed(N * tick)`` with
  each data's own tick; applied to market fills at the bar's open too, never beyond the bar).
  Tick sizes come from ``ticks`` (a backtest: the cache's ``markets`` record) or else from the
  markets of the data's store (a run). Swaps and futures (``BTC/USDT:USDT``) get backtrader's
  futures-like margin (``broker.leverage``, ``broker.margin_mode``) and, with
  ``broker.funding``, pay their funding (``bt/funding_broker.py``): the rates a backtest read
  from the cache (``rates``), or in a run the ones polled from the exchange. Spot symbols are
  untouched.
* ``swap_specs(cfg, markets)``: the swaps of a config with their leverage and margin mode.
* ``paper_derivs(broker, datas)``: the broker panel's swap rows of a paper broker.
* ``tick_size(market, precision_mode)``: a ccxt market's price step.
* ``add_feeds(cerebro, store, cfg)``: one ``CCXTFeed`` per symbol with the config's feed
  settings (timeframe, warm-up as ``backfill_bars``/``fromdate``, lookback, mode). The store
  is a ``CCXTStore`` (live bars) or a ``ReplayStore`` (``bt/replay.py``: bars from the cache).

Imports backtrader only inside the functions.
"""

from __future__ import annotations

from typing import Any

from btccxt_cli.config.schema import BrokerConfig, Config, SlippageTicks, SymbolFeed
from btccxt_cli.errors import BtccxtError
from btccxt_cli.timeframes import to_backtrader

__all__ = ["new_cerebro", "paper_broker", "feed_kwargs", "add_feeds", "tick_size", "tick_sizes",
           "swap_specs", "paper_derivs"]

_DECIMAL_PLACES, _TICK_SIZE = 2, 4  # ccxt's precisionMode values


def new_cerebro() -> Any:
    """The cerebro of a run or a backtest (bounded memory, quick notifications)."""
    import backtrader as bt

    return bt.Cerebro(stdstats=False, quicknotify=True, exactbars=1)


def paper_broker(broker: Any, cfg: BrokerConfig, ticks: dict[str, float] | None = None, *,
                 symbols: list[str] | None = None, markets: dict[str, Any] | None = None,
                 rates: Any = None) -> Any:
    """Set up backtrader's paper broker: cash, commission and slippage of the config, and
    margin and funding for the swaps among ``symbols``.

    ``{ticks: N}`` slippage turns ``broker`` (a plain ``BackBroker``) into a ``_TickSlipBroker``
    in place, swaps into a subclass of it with margin and funding: the runner and the backtest
    both hand over ``cerebro.broker`` as it is. ``rates``: the swaps' funding rates
    (``bt/funding.py:HistoryRates``; None: polled from the data's exchange).
    """
    broker.setcash(cfg.cash)
    broker.setcommission(commission=cfg.commission)
    if isinstance(cfg.slippage, SlippageTicks):
        if cfg.slippage.ticks:
            broker.__class__ = _tick_broker_class()
            broker.btccxt_ticks = cfg.slippage.ticks
            broker.btccxt_tick_sizes = dict(ticks or {})
    elif cfg.slippage:
        broker.set_slippage_perc(cfg.slippage, slip_open=True, slip_limit=True, slip_match=True,
                                 slip_out=False)
    specs = swap_specs(cfg, symbols or [], markets)
    if specs:
        from btccxt_cli.bt.funding_broker import setup_swaps

        setup_swaps(broker, specs, cfg.commission, funding=cfg.funding, rates=rates)
    return broker


def swap_specs(cfg: BrokerConfig, symbols: list[str],
               markets: dict[str, Any] | None = None) -> dict[str, Any]:
    """``{symbol: SwapSpec(leverage, margin_mode)}`` for the swaps and futures of ``symbols``
    (a ccxt market ``swap``/``future``, or a symbol with a settle part)."""
    from btccxt_cli.bt.funding import is_swap
    from btccxt_cli.bt.funding_broker import SwapSpec

    return {s: SwapSpec(cfg.leverage_of(s), cfg.margin_mode_of(s)) for s in dict.fromkeys(symbols)
            if is_swap(s, (markets or {}).get(s))}


def paper_derivs(broker: Any, datas: list[Any]) -> list[Any]:
    """The swap rows (``model.DerivPosition``) of a paper broker, for ``BrokerStatus.derivs``."""
    if getattr(broker, "btccxt_swaps", None) is None:
        return []
    from btccxt_cli.bt.funding_broker import swap_derivs

    return swap_derivs(broker, datas)


def tick_size(market: dict[str, Any] | None, precision_mode: int | None) -> float | None:
    """A ccxt market's price step: ``precision.price`` as a tick size (``TICK_SIZE``) or as
    decimal places (``DECIMAL_PLACES``); None when unknown."""
    p = ((market or {}).get("precision") or {}).get("price")
    if p is None:
        return None
    if precision_mode == _TICK_SIZE:
        return float(p) if float(p) > 0 else None
    if precision_mode == _DECIMAL_PLACES:
        return 10.0 ** -float(p)
    return None


def tick_sizes(exchange: Any, symbols: list[str]) -> dict[str, float]:
    """The price step of each of ``symbols`` known to ``exchange``'s loaded markets."""
    mode = getattr(exchange, "precisionMode", None)
    out = {}
    for sym in symbols:
        t = tick_size((exchange.markets or {}).get(sym), mode)
        if t is not None:
            out[sym] = t
    return out


_TICK_BROKER: Any = None


def _tick_broker_class() -> Any:
    """``BackBroker`` with fixed slippage of N ticks of each order's own data."""
    global _TICK_BROKER
    if _TICK_BROKER is not None:
        return _TICK_BROKER
    import backtrader as bt

    class _TickSlipBroker(bt.brokers.BackBroker):  # type: ignore[misc,name-defined]
        btccxt_ticks: int = 0
        btccxt_tick_sizes: dict[str, float]

        def _try_exec(self, order: Any) -> Any:
            tick = self._tick_of(order.data)
            self.set_slippage_fixed(self.btccxt_ticks * tick, slip_open=True, slip_limit=True,
                                    slip_match=True, slip_out=False)
            return super()._try_exec(order)

        def _tick_of(self, data: Any) -> float:
            name = data._name
            tick = self.btccxt_tick_sizes.get(name)
            if tick is None:  # a run: the markets its store loaded at start
                store = getattr(data.p, "store", None)
                ex = store.sync_exchange() if hasattr(store, "sync_exchange") else None
                tick = tick_sizes(ex, [name]).get(name) if ex is not None else None
                if tick is None:
                    raise BtccxtError(f"broker.slippage: the price step (tick size) of {name} "
                                      "is unknown", hint="use a fraction for broker.slippage")
                self.btccxt_tick_sizes[name] = tick
            return tick

    _TICK_BROKER = _TickSlipBroker
    return _TICK_BROKER


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


def add_feeds(cerebro: Any, store: Any, cfg: Config,
              rates: dict[str, list[tuple[int, float]]] | None = None) -> list[Any]:
    """One feed per symbol of the config, added to ``cerebro`` in the config's order; after a
    swap with ``funding_feed``, its funding-rate feed ``<symbol> funding``
    (``bt/funding_feed.py``): live from the exchange, or replaying ``rates`` (a backtest's
    cached rates per symbol)."""
    feeds = []
    for sf in cfg.symbol_feeds():
        data = store.getdata(**feed_kwargs(cfg, sf))
        cerebro.adddata(data, name=sf.symbol)
        feeds.append(data)
        if sf.funding_feed:
            from btccxt_cli.bt.funding_feed import CCXTFundingFeed

            fkw: dict[str, Any] = {"rates": list(rates.get(sf.symbol, []))} if rates is not None \
                else {"store": store, "symbol": sf.symbol}
            cerebro.adddata(CCXTFundingFeed(**fkw), name=f"{sf.symbol} funding")
    return feeds
