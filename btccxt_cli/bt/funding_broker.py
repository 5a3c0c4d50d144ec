"""The paper broker's swaps: margin, leverage and funding on backtrader's ``BackBroker``.

``runtime/assembly.py:paper_broker`` calls ``setup_swaps`` for the swaps of a config (paper runs
and backtests alike):

* **Margin.** Each swap gets a commission info of its own (``name=symbol``): futures-like
  (``stocklike=False``), margin ``price / leverage`` (``automargin=1/leverage``), the percent
  commission of ``broker.commission``, ``mult`` 1. Shorts are allowed and an order locks only
  its margin. backtrader then moves the cash with the price every bar (mark to market) and
  gives the margin back on close, so the cash after a round trip is ``size * (exit - entry) -
  fees``.
* **Value.** backtrader values an open future at ``|size| * margin(close)``, the margin at
  today's price, while the cash holds the margin locked at the entry; ``_get_value`` takes the
  difference out, so the value is ``cash + |size| * entry / leverage`` (the locked margin):
  starting cash plus the price P&L, minus fees and funding.
* **Funding.** With ``broker.funding``, every settlement ``t`` of the symbol's funding series
  (``bt/funding.py``: ``HistoryRates`` in a backtest, ``LiveRates`` polled from the exchange in
  a paper run) that falls in a bar ``(previous close, close]`` charges the position held
  through that bar ``size * mark * rate`` (``mark``: the bar's close; longs pay a positive
  rate, shorts receive it) with ``add_cash``. A rate not known yet (a paper run, just after
  the settlement) is charged when it is, with the size and mark of its bar.

``swap_derivs(broker, datas)``: the swaps' rows for the broker panel (``model.DerivPosition``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from btccxt_cli.bt import liquidation
from btccxt_cli.bt.derivs import MAINT_RATE
from btccxt_cli.bt.funding import LiveRates
from btccxt_cli.model import DerivPosition

__all__ = ["SwapSpec", "FundingPaid", "setup_swaps", "swap_derivs", "liquidation_estimate",
           "MAINT_RATE"]

logger = logging.getLogger(__name__)

_MAX_WINDOWS = 10_000  # bars kept while a run's funding schedule is unknown


@dataclass(frozen=True)
class SwapSpec:
    leverage: float
    margin_mode: str


@dataclass(frozen=True)
class FundingPaid:
    """One settlement charged: ``amount`` paid (negative: received)."""

    symbol: str
    time_ms: int
    size: float
    mark: float
    rate: float
    amount: float


@dataclass
class _SwapState:
    """The broker's swap bookkeeping (reset when cerebro starts the broker)."""

    specs: dict[str, SwapSpec]
    rates: Any  # HistoryRates | LiveRates | None (a run: LiveRates made at the first bar)
    funding: bool
    paid: dict[str, float] = field(default_factory=dict)
    payments: list[FundingPaid] = field(default_factory=list)
    closes: dict[Any, int] = field(default_factory=dict)  # data -> close ms of its last bar
    pending: list[tuple[str, int, float, float]] = field(default_factory=list)  # sym, t, size, mark
    windows: list[tuple[str, int, int, float, float]] = field(default_factory=list)  # + lo, close
    warned: bool = False
    # liquidation (bt/liquidation.py)
    bars: dict[Any, int] = field(default_factory=dict)  # data -> len at its last check
    plan: Any = None  # liquidation.Plan of the bar, while its orders run (its fills)
    owners: dict[Any, Any] = field(default_factory=dict)  # data -> owner of its last fill
    liquidations: list[tuple[str, float, float]] = field(default_factory=list)  # sym, size, px


def liquidation_estimate(entry: float, size: float, leverage: float, margin_mode: str) -> float | None:
    """Where the paper broker liquidates an isolated position (``bt/liquidation.py``: margin
    plus unrealised P&L down to the maintenance margin, ``entry * (1 - 1/lev) / (1 - 0.004)``
    long, ``entry * (1 + 1/lev) / (1 + 0.004)`` short); cross: None (it depends on the whole
    account: ``swap_derivs`` works it out from the broker)."""
    if margin_mode != "isolated":
        return None
    return liquidation.isolated_price(entry, size, leverage)


def setup_swaps(broker: Any, specs: dict[str, SwapSpec], commission: float, *, funding: bool,
                rates: Any = None) -> Any:
    """Margin commission infos for ``specs`` and the swap broker class, on ``broker`` in place
    (a ``BackBroker``, or the tick-slippage subclass of it). Returns ``broker``."""
    import backtrader as bt

    for sym, spec in specs.items():
        broker.setcommission(commission=commission, commtype=bt.CommInfoBase.COMM_PERC,
                             percabs=True, stocklike=False, mult=1.0, leverage=1.0,
                             automargin=1.0 / spec.leverage, name=sym)
    broker.__class__ = swap_broker_class(type(broker))
    broker.btccxt_swaps = _SwapState(dict(specs), rates, funding)
    return broker


_CLASSES: dict[type, type] = {}


def swap_broker_class(base: type) -> type:
    """``base`` (a ``BackBroker`` class) with the swaps' value and funding."""
    if base in _CLASSES or getattr(base, "_btccxt_swap_class", False):
        return _CLASSES.get(base, base)

    class _SwapBroker(base):  # type: ignore[misc,valid-type]
        _btccxt_swap_class = True
        btccxt_swaps: _SwapState

        def start(self) -> None:
            st = self.btccxt_swaps
            st.paid.clear()
            st.payments.clear()
            st.closes.clear()
            st.pending.clear()
            st.windows.clear()
            st.bars.clear()
            st.owners.clear()
            st.liquidations.clear()
            st.plan = None
            super().start()

        def stop(self) -> None:
            rates = self.btccxt_swaps.rates
            if rates is not None:
                rates.stop()
            super().stop()

        def next(self) -> None:
            st = self.btccxt_swaps
            plan = liquidation.plan(self, st)
            super().next()
            liquidation.settle(self, st, plan)
            if st.funding and _charge(self, st):
                self._get_value()  # the funding is in this cycle's value

        def submit(self, order: Any, check: bool = True) -> Any:
            if order.data._name in self.btccxt_swaps.specs and _reduces_only(self, order):
                order.addinfo(reduce_only=True)  # as the live broker sends it
            return super().submit(order, check)

        def _execute(self, order: Any, ago: Any = None, price: Any = None, *args: Any,
                     **kwargs: Any) -> Any:
            if ago is not None and price is not None:
                st = self.btccxt_swaps
                if st.plan is not None:
                    st.plan.fill(order.data, self.positions[order.data], price)
                if order.owner is not None:
                    st.owners[order.data] = order.owner
                if order.info.get("reduce_only"):
                    return _execute_reducing(self, super()._execute, order, ago, price)
            return super()._execute(order, ago, price, *args, **kwargs)

        def _get_value(self, datas: Any = None, lever: bool = False) -> Any:
            if datas is not None and len(datas) == 1:
                return super()._get_value(datas, lever)
            super()._get_value(datas, lever)
            specs = self.btccxt_swaps.specs
            over = 0.0
            for data in datas or self.positions:
                spec = specs.get(data._name)
                pos = self.positions[data]
                if spec is not None and pos.size:
                    over += abs(pos.size) * (data.close[0] - pos.price) / spec.leverage
            if over:  # backtrader counted the margin at today's price, not the one locked
                self._value -= over
                self._valuemkt -= over
                self._valuelever -= over
                self._valuemktlever -= over
                self._fundval = self._value / self._fundshares
            return self._value if not lever else self._valuelever

    _CLASSES[base] = _SwapBroker
    return _SwapBroker


_TOL = 1e-9  # relative: sizes that equal a position up to float error


def _reduces_only(broker: Any, order: Any) -> bool:
    """The live broker's rule (``swapbook.reduce_only``): the order only takes the position
    towards zero, counting the open orders of the same side that reduce it too."""
    held = float(broker.getposition(order.data).size)
    size = abs(float(order.created.size))
    if not held or (held > 0) == order.isbuy():
        return False
    same = sum(abs(float(o.executed.remsize)) for o in list(broker.pending) + list(broker.submitted)
               if o.data is order.data and o.alive() and o.isbuy() == order.isbuy())
    return size <= abs(held) - same + _TOL * max(1.0, abs(held))


def _execute_reducing(broker: Any, execute: Any, order: Any, ago: Any, price: float) -> Any:
    """A reduce-only order fills at most up to the position against it; the rest, or all of
    it when nothing is left to reduce, is cancelled (the exchanges' rule, and the
    simulator's: okx 51169, binance -2022)."""
    held = float(broker.positions[order.data].size)
    rem = abs(float(order.executed.remsize))
    room = abs(held) if held and (held > 0) != order.isbuy() else 0.0
    tol = _TOL * max(1.0, rem)
    if room > tol:
        if rem <= room + tol:
            return execute(order, ago, price)
        filler = broker.p.filler
        broker.p.filler = lambda _o, _p, _a: room
        try:
            execute(order, ago, price)
        finally:
            broker.p.filler = filler
    order.addinfo(reason="reduce-only: nothing left to reduce" if room <= tol else
                  f"reduce-only: filled up to the position ({room:g}); the rest is cancelled")
    order.cancel()
    broker.notify(order)
    broker._ococheck(order)
    broker._bracketize(order, cancel=True)
    logger.info("paper: reduce-only %s %s %g: %s", "buy" if order.isbuy() else "sell",
                order.data._name, rem, order.info["reason"])
    return None


def _charge(broker: Any, st: _SwapState) -> bool:
    """Charge the settlements in each swap's newest bar; True when any cash moved."""
    _held_bars(broker, st)
    if st.rates is None:
        return False
    if st.windows:  # bars seen before a run's rates knew the schedule
        windows, st.windows = st.windows, []
        for sym, lo, close, size, mark in windows:
            ts = st.rates.times(sym, lo, close)
            if ts is None:
                st.windows.append((sym, lo, close, size, mark))
            else:
                st.pending.extend((sym, t, size, mark) for t in ts)
    moved = False
    still = []
    for sym, t, size, mark in st.pending:
        rate = st.rates.rate(sym, t)
        if rate is None:
            still.append((sym, t, size, mark))
        else:
            moved |= _pay(broker, st, sym, t, size, mark, rate)
    st.pending = still
    return moved


def _held_bars(broker: Any, st: _SwapState) -> None:
    """Each swap's newest bar with a position: its settlements into ``pending``."""
    for data, pos in list(broker.positions.items()):
        sym = data._name
        if sym not in st.specs or not len(data):
            continue
        close = _bar_close_ms(data)
        last = st.closes.get(data)
        if close is None or last == close:
            continue
        st.closes[data] = close
        if not pos.size:
            continue
        rates = st.rates if st.rates is not None else _live_rates(st, data)
        if rates is None:
            continue
        lo = last if last is not None else _bar_open_ms(data, close)
        size, mark = float(pos.size), float(data.close[0])
        ts = rates.times(sym, lo, close)
        if ts is None:  # the schedule is not known yet
            if len(st.windows) >= _MAX_WINDOWS:
                del st.windows[0]
                logger.warning("funding: the schedule of %s is still unknown; a settlement "
                               "may go uncharged", sym)
            st.windows.append((sym, lo, close, size, mark))
        else:
            st.pending.extend((sym, t, size, mark) for t in ts)


def _pay(broker: Any, st: _SwapState, sym: str, t: int, size: float, mark: float,
         rate: float) -> bool:
    amount = size * mark * rate
    broker.add_cash(-amount)
    st.paid[sym] = st.paid.get(sym, 0.0) + amount
    st.payments.append(FundingPaid(sym, t, size, mark, rate, amount))
    logger.debug("funding %s at %d: %g x %g x %g = %g paid", sym, t, size, mark, rate, amount)
    return amount != 0


def _bar_close_ms(data: Any) -> int | None:
    """Close time (ms) of ``data``'s current bar (a ``CCXTFeed``: its series' grid)."""
    ev = data.current_event() if hasattr(data, "current_event") else None
    series = getattr(data, "series", None)
    if ev is not None and series is not None:
        return int(series.grid.close_of(ev.candle.ts))
    import backtrader as bt

    return int(round(bt.num2date(data.datetime[0]).timestamp() * 1000)) if len(data) else None


def _bar_open_ms(data: Any, close_ms: int) -> int:
    ev = data.current_event() if hasattr(data, "current_event") else None
    return int(ev.candle.ts) if ev is not None else close_ms - 1


def _live_rates(st: _SwapState, data: Any) -> Any:
    """A paper run: rates polled from the data's exchange (made once, at the first bar)."""
    store = getattr(data.p, "store", None)
    make = getattr(store, "_make", None)
    if make is None:
        if not st.warned:
            st.warned = True
            logger.warning("funding: no funding rates for %s (its store cannot poll them); "
                           "no funding is charged", data._name)
        return None
    st.rates = LiveRates(lambda: _loaded(make("sync")), list(st.specs),
                         clock=getattr(store, "clock", None) or _system_clock()).start()
    if hasattr(store, "on_stop"):
        store.on_stop(st.rates.stop)
    return st.rates


def _loaded(ex: Any) -> Any:
    ex.load_markets()
    return ex


def _system_clock() -> Any:
    from btccxt_cli.clock import SYSTEM_CLOCK

    return SYSTEM_CLOCK


def swap_derivs(broker: Any, datas: list[Any]) -> list[DerivPosition]:
    """The broker panel's swap rows of a paper broker: each swap with a position or funding
    paid (entry, mark = last close, unrealised P&L, the price at which the paper broker would
    liquidate it, leverage, margin mode, funding paid in this run)."""
    st = getattr(broker, "btccxt_swaps", None)
    if st is None:
        return []
    held = getattr(broker, "positions", {})
    out = []
    for d in datas:
        spec = st.specs.get(d._name)
        if spec is None:
            continue
        pos = held[d] if d in held else None
        size = float(pos.size) if pos is not None else 0.0
        paid = st.paid.get(d._name, 0.0)
        if not size and not paid:
            continue
        entry = float(pos.price) if pos is not None and size else 0.0
        mark = float(d.close[0]) if len(d) else entry
        out.append(DerivPosition(
            symbol=d._name, size=size, entry=entry, mark=mark,
            upnl=size * (mark - entry) if size else 0.0,
            liquidation=liquidation.estimate(broker, st, d) if size else None,
            leverage=spec.leverage, margin_mode=spec.margin_mode, funding=paid))
    return out
