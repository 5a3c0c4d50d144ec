"""``btccxt backtest``: a config's strategy over cached bars, as a live run would have seen them.

Parity by construction: the cerebro, feeds and paper broker come from ``runtime/assembly.py``
(the same calls ``btccxt run`` makes), the strategy from ``check_strategy`` (the same checks),
and the feeds are ``CCXTFeed``s on a ``ReplayStore`` (``bt/replay.py``) instead of the
exchange: warm-up bars as history, the ``LIVE`` notification, then every closed bar of the
window, with the same stamps, alignment and lookback.

* ``plan(cfg, since, until)``: per symbol, the bars needed (warm-up and window).
* ``holes(cache, source, plans)``: slots the cache neither holds nor knows to be empty.
* ``load_rows(...)``: every needed bar in memory, once (parameter sweeps share them).
* ``run_backtest(...)``: one run; returns a ``BacktestResult``.

No typer or rich here (the CLI renders); backtrader loads inside functions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from btccxt_cli.bars.gaps import Range, find_gaps, subtract_ranges
from btccxt_cli.config.schema import Config
from btccxt_cli.errors import BtccxtError, ConfigError
from btccxt_cli.runtime.strategies import StrategyFailed, check_strategy, user_traceback
from btccxt_cli.timeframes import BarGrid, bar_grid, timeframe_ms

__all__ = ["SeriesPlan", "BacktestResult", "plan", "holes", "load_rows", "run_backtest", "sweep",
           "check_param_names", "check_param_values", "YEAR_MS"]

logger = logging.getLogger(__name__)

YEAR_MS = 365 * 86_400_000


@dataclass(frozen=True)
class SeriesPlan:
    """The bars one symbol needs: ``[start_ms, end_ms)`` of bar opens, the window from
    ``window_ms`` (the bar forming at ``--since``), warm-up before it."""

    symbol: str
    timeframe: str
    grid: BarGrid
    start_ms: int
    window_ms: int
    end_ms: int

    @property
    def warmup_bars(self) -> int:
        return self.grid.bars_in(self.start_ms, self.window_ms)

    @property
    def window_bars(self) -> int:
        return self.grid.bars_in(self.window_ms, self.end_ms)


@dataclass
class BacktestResult:
    """One run: ``metrics`` (``backtest_metrics.METRIC_KEYS``), per symbol, orders, trades."""

    params: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    per_symbol: dict[str, dict[str, Any]] = field(default_factory=dict)
    orders: list[dict[str, Any]] = field(default_factory=list)
    trades: list[dict[str, Any]] = field(default_factory=list)
    curve: list[tuple[int, float]] = field(default_factory=list)
    funding: list[Any] = field(default_factory=list)  # bt/funding_broker.py: FundingPaid
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"params": self.params, "metrics": self.metrics, "per_symbol": self.per_symbol,
                "orders": self.orders, "trades": self.trades, "error": self.error}


# ---------------------------------------------------------------- what is needed
def plan(cfg: Config, since_ms: int, until_ms: int) -> list[SeriesPlan]:
    """Per symbol of the config: the warm-up a live run started at ``since_ms`` loads (the
    same rule as ``Series.begin``) and the bars that close by ``until_ms``."""
    from btccxt_cli.bt.replay import warmup_start
    from btccxt_cli.sources.base import SeriesParams, to_ms

    out = []
    for sf in cfg.symbol_feeds():
        if isinstance(sf.backfill, int):
            sp = SeriesParams(sf.symbol, sf.timeframe, backfill_bars=sf.backfill or None,
                              backfill_start=bool(sf.backfill), exchange_id=cfg.exchange.id)
        else:
            sp = SeriesParams(sf.symbol, sf.timeframe, fromdate_ms=to_ms(sf.backfill),
                              exchange_id=cfg.exchange.id)
        grid = bar_grid(cfg.exchange.id, sf.timeframe)
        window = grid.open_of(since_ms)
        end = max(window, grid.open_of(until_ms))  # bars closing by until_ms
        out.append(SeriesPlan(sf.symbol, sf.timeframe, grid, warmup_start(sp, since_ms), window, end))
    return out


def holes(cache: Any, source: str, plans: list[SeriesPlan]) -> list[tuple[SeriesPlan, list[Range]]]:
    """Per plan, the bar ranges the cache neither holds nor knows the exchange has none of."""
    out = []
    for p in plans:
        have = cache.timestamps(source, p.symbol, p.timeframe, p.start_ms, p.end_ms)
        gaps = find_gaps(have, p.grid, p.start_ms, p.end_ms)
        if gaps:
            empty = cache.empty_ranges(source, p.symbol, p.timeframe, p.start_ms, p.end_ms)
            gaps = subtract_ranges(gaps, empty, p.grid)
        if gaps:
            out.append((p, gaps))
    return out


def load_rows(cache: Any, source: str, plans: list[SeriesPlan]) -> dict[tuple[str, str], list[Any]]:
    """Every bar the plans need, read once (what a parameter sweep's runs share)."""
    return {(p.symbol, p.timeframe): cache.read(source, p.symbol, p.timeframe, p.start_ms, p.end_ms)
            for p in plans}


def check_param_names(cls: type, names: list[str]) -> None:
    """Each ``--param`` names a param of the strategy (one line naming the fix)."""
    import difflib

    known = list(cls.params._getkeys())  # type: ignore[attr-defined]
    for key in names:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            raise ConfigError(f"unknown parameter {key!r} for {cls.__name__}", key="--param",
                              hint=f"did you mean {close[0]!r}?" if close
                              else f"{cls.__name__} takes: {', '.join(known) or 'no params'}")


def _fits(default: Any, value: Any) -> tuple[bool, str]:
    """Whether ``value`` suits a param whose default is ``default``, and what that takes."""
    if isinstance(default, bool):
        return isinstance(value, bool), "true or false (bool)"
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool), "a whole number (int)"
    if isinstance(default, float):
        return (isinstance(value, (int, float)) and not isinstance(value, bool),
                "a number (float)")
    return True, "anything"


def check_param_values(cls: type, sweep: dict[str, list[Any]],
                       raw: dict[str, list[str]]) -> dict[str, list[Any]]:
    """Each ``--param`` value suits the type of the param's default in ``cls`` (an int param
    takes whole numbers, a float one numbers, a bool one true/false, a text one anything: the
    value as typed, ``raw``), else one ``ConfigError`` naming the param and the type (exit 2).

    Returns the sweep with text params' values as typed (``--param label=05`` is ``"05"``).
    """
    defaults = dict(zip(cls.params._getkeys(), cls.params._getdefaults(), strict=True))  # type: ignore[attr-defined]
    out: dict[str, list[Any]] = {}
    for name, values in sweep.items():
        default = defaults.get(name)
        texts = raw.get(name) or []
        if isinstance(default, str):
            out[name] = [texts[i] if i < len(texts) else str(v) for i, v in enumerate(values)]
            continue
        for i, value in enumerate(values):
            ok, takes = _fits(default, value)
            if not ok:
                shown = texts[i] if i < len(texts) else (
                    str(value).lower() if isinstance(value, bool) else str(value))
                raise ConfigError(f"{cls.__name__}'s {name} takes {takes}; got {shown!r}",
                                  key="--param", hint=f"its default is {default!r}; e.g. "
                                  f"--param {name}={default!r}")
        out[name] = list(values)
    return out


# ---------------------------------------------------------------- one run
def run_backtest(cfg: Config, config_dir: Path | None, rows: Any, since_ms: int, until_ms: int,
                 *, params: dict[str, Any] | None = None, curve: bool = False,
                 on_progress: Any = None, ticks: dict[str, float] | None = None,
                 funding: dict[str, list[tuple[int, float]]] | None = None) -> BacktestResult:
    """Run the config's strategy over ``rows`` (``bt/replay.py``: ``cache_rows`` or
    ``memory_rows``) as a live run started at ``since_ms``, until ``until_ms``.

    ``params`` override the config's strategy params (a sweep's combination); ``ticks``: each
    symbol's price step, for ``broker.slippage: {ticks: N}`` (the cache's markets);
    ``funding``: each swap's funding rates ``(settlement ms, rate)`` (the cache's; a swap
    without any pays none). Raises
    ``StrategyFailed`` (exit 3) when the strategy raises, with its own traceback.
    """
    import backtrader as bt

    from btccxt_cli.bt.funding import HistoryRates
    from btccxt_cli.bt.replay import ReplayStore
    from btccxt_cli.runtime.assembly import add_feeds, new_cerebro, paper_broker
    from btccxt_cli.runtime.backtest_metrics import make_recorder, metrics_of

    cls, path = check_strategy(cfg, config_dir)  # run's loading and param checks
    merged = {**cfg.strategy.params, **(params or {})}
    cerebro = new_cerebro()
    paper_broker(cerebro.broker, cfg.broker, ticks, symbols=[s.symbol for s in cfg.symbol_feeds()],
                 rates=HistoryRates(funding or {}))
    store = ReplayStore(cfg.exchange.id, rows, since_ms, until_ms)
    add_feeds(cerebro, store, cfg, rates=funding or {})
    cerebro.addstrategy(cls, **merged)
    plans = plan(cfg, since_ms, until_ms)
    window_ms = min(p.window_ms for p in plans)
    cerebro.addanalyzer(make_recorder(), _name="recorder", window_ms=window_ms, curve=curve,
                        on_progress=on_progress)
    cerebro.addanalyzer(bt.analyzers.TradeAnalyzer, _name="trades")
    try:
        strat = cerebro.run()[0]
    except BtccxtError:
        raise
    except Exception as exc:
        raise StrategyFailed(f"the strategy raised {type(exc).__name__}: {exc}",
                             user_traceback(exc, path)) from exc
    finally:
        store.stop()
    rec = strat.analyzers.recorder
    base_ms = min(timeframe_ms(p.timeframe) for p in plans)
    got = metrics_of(strat, rec, cash=cfg.broker.cash, periods_per_year=YEAR_MS / base_ms)
    got["metrics"]["start"] = _iso(window_ms)
    res = BacktestResult(params=merged, metrics=got["metrics"], per_symbol=got["per_symbol"],
                         orders=rec.orders, trades=rec.trades)
    for sym, counts in _bars_seen(store).items():
        res.per_symbol.setdefault(sym, {}).update(counts)
    swaps = getattr(strat.broker, "btccxt_swaps", None)
    if swaps is not None:  # funding paid per swap (negative: received)
        for sym in swaps.specs:
            res.per_symbol.setdefault(sym, {})["funding"] = swaps.paid.get(sym, 0.0)
        res.funding = list(swaps.payments)
    if curve:
        res.curve = rec.curve()
    return res


def _bars_seen(store: Any) -> dict[str, dict[str, int]]:
    return {st.symbol: {"warmup_bars": st.bars.get("backfill", 0), "bars": st.bars.get("live", 0)}
            for st in store.status()}


def _iso(ms: int) -> str | None:
    from btccxt_cli.runtime.backtest_metrics import iso_ms

    return iso_ms(ms)


# ---------------------------------------------------------------- parameter sweeps
_SHARED: dict[str, Any] = {}  # a sweep's inputs, inherited by forked workers (loaded once)


def sweep(cfg: Config, config_dir: Path | None, rows: Any, since_ms: int, until_ms: int,
          combos: list[dict[str, Any]], *, jobs: int = 1, on_done: Any = None,
          ticks: dict[str, float] | None = None,
          funding: dict[str, list[tuple[int, float]]] | None = None) -> list[BacktestResult]:
    """One run per combination of params, on ``jobs`` processes; the bars (``rows``, from
    ``memory_rows``) are loaded once by the caller and inherited by every worker (fork).

    A combination whose strategy raises is a result with ``error`` set (the others go on).
    ``on_done(n)`` is called as runs finish.
    """
    import multiprocessing

    _SHARED.update(cfg=cfg, config_dir=config_dir, rows=rows, since=since_ms, until=until_ms,
                   ticks=ticks, funding=funding)
    results: list[BacktestResult] = []
    try:
        if jobs <= 1 or len(combos) <= 1 or "fork" not in multiprocessing.get_all_start_methods():
            for combo in combos:
                results.append(_one(combo))
                if on_done is not None:
                    on_done(len(results))
            return results
        from concurrent.futures import ProcessPoolExecutor

        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=min(jobs, len(combos)), mp_context=ctx) as pool:
            for res in pool.map(_one, combos):
                results.append(res)
                if on_done is not None:
                    on_done(len(results))
        return results
    finally:
        _SHARED.clear()


def _one(combo: dict[str, Any]) -> BacktestResult:
    s = _SHARED
    try:
        return run_backtest(s["cfg"], s["config_dir"], s["rows"], s["since"], s["until"],
                            params=combo, ticks=s["ticks"], funding=s["funding"])
    except StrategyFailed as exc:
        return BacktestResult(params={**s["cfg"].strategy.params, **combo}, error=exc.message)
