"""``btccxt backtest CONFIG.yaml --since WHEN``: the config's strategy over cached bars, exactly
as a live run started at ``--since`` would have seen them (``docs/backtest.md``).

The config is read and checked as ``btccxt run`` reads it (the same errors, exit 2), the
strategy loaded and its params checked by the same code, and the run assembled by
``runtime/assembly.py`` like a live one. Bars come from the cache the config names
(``feed.cache``), under the source ``btccxt run`` writes (the exchange id, or
``ID@sim:seed-N`` for a simulator). Missing bars are downloaded first with ``btccxt
backfill``'s progress; ``--offline`` refuses a hole instead, naming it (exit 2).

Exit codes: 0 done; 1 the exchange kept failing while downloading missing bars; 2 bad config,
option, output path, a hole with ``--offline``, or a missing optional dependency; 3 the
strategy raised (its traceback is shown); 130 Ctrl-C (one line).

ccxt, backtrader, rich and plotly load inside the command only.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

import typer

__all__ = ["backtest_command", "parse_params"]


def parse_params(values: list[str]) -> dict[str, list[Any]]:
    """``["fast=5,10", "slow=30"]`` -> ``{"fast": [5, 10], "slow": [30]}`` (values read as YAML
    scalars: 5 is an int, 0.5 a float, true a bool, anything else text)."""
    import yaml

    from btccxt_cli.errors import ConfigError

    out: dict[str, list[Any]] = {}
    for text in values:
        name, sep, rest = text.partition("=")
        name = name.strip()
        if not sep or not name or not rest.strip():
            raise ConfigError(f"{text!r} is not NAME=V1,V2,...", key="--param",
                              hint="e.g. --param fast=5,10,20 --param slow=30,50")
        if name in out:
            raise ConfigError(f"--param {name} is given twice", key="--param",
                              hint="list every value once: --param NAME=V1,V2,...")
        vals = []
        for part in rest.split(","):
            try:
                v = yaml.safe_load(part.strip()) if part.strip() else None
            except yaml.YAMLError:
                v = part.strip()
            if v is None or isinstance(v, (list, dict)):
                raise ConfigError(f"{text!r}: {part.strip()!r} is not a value", key="--param",
                                  hint="values are numbers, true/false or words, separated by commas")
            vals.append(v)
        out[name] = vals
    return out


def backtest_command(
    config: Path = typer.Argument(..., help="The YAML config file (the one `btccxt run` reads).",
                                  show_default=False),
    since: str = typer.Option(..., "--since", help="Start of the window: the moment the replayed "
                              "live run starts (ISO date/time, UTC unless an offset is given, or a "
                              "span back from now: 30d, 12h, 90m). The warm-up (feed.backfill) "
                              "comes before it.", show_default=False),
    until: str = typer.Option("now", "--until", help="End of the window (exclusive; same forms): "
                              "bars closing by then are replayed."),
    offline: bool = typer.Option(False, "--offline", help="Use the cache only: a missing range is "
                                 "an error naming it, nothing is downloaded."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object (metrics, per "
                                  "symbol, orders, trades) on stdout."),
    trades: Path | None = typer.Option(None, "--trades", help="Write every order and trade to "
                                       "this CSV file."),
    report: Path | None = typer.Option(None, "--report", help="Write a self-contained HTML report "
                                       "(candles with entries and exits, equity, drawdown, "
                                       "metrics); needs plotly (the report extra)."),
    param: list[str] | None = typer.Option(None, "--param", metavar="NAME=V1,V2,...",
                                           help="Sweep a strategy param over values (repeat for "
                                           "more: every combination runs)."),
    jobs: int = typer.Option(0, "--jobs", min=0, help="Processes for a sweep (0: one per core)."),
    sort: str = typer.Option("sharpe", "--sort", help="Metric a sweep's table is sorted by: "
                             "sharpe, total_return, final_value, max_drawdown, win_rate, trades, "
                             "avg_trade, exposure, fees."),
) -> None:
    """Backtest a config's strategy on cached bars, exactly as a live run would have traded them."""
    from btccxt_cli.cli.common import fail
    from btccxt_cli.errors import BtccxtError
    from btccxt_cli.runtime.strategies import StrategyFailed

    sim = None
    try:
        job = _Job(config, since, until, offline, json_out, trades, report, param or [],
                   jobs or (os.cpu_count() or 1), sort)
        job.check()
        if job.cfg.exchange.sim is True:
            from btccxt_cli.sim.app import SimThread

            # the in-process simulator of `btccxt run` (same seed): its bars' cache source
            sim = SimThread(exchanges=(job.cfg.exchange.id,)).start()
            job.sim_url = sim.url(job.cfg.exchange.id)
        job.main()
    except StrategyFailed as exc:
        sys.stderr.write(exc.user_traceback)
        sys.stderr.write(f"error: {exc.message}\n")
        raise typer.Exit(exc.exit_code) from None
    except BtccxtError as exc:
        fail(exc)
    except KeyboardInterrupt:  # Ctrl-C: one line, no traceback (bars downloaded are kept)
        sys.stderr.write("interrupted: the backtest was stopped; no output file was written\n")
        raise typer.Exit(130) from None
    finally:
        if sim is not None:
            sim.stop()


class _Job:
    """One invocation: checks, cache, missing bars, the run(s), the outputs."""

    def __init__(self, config: Path, since: str, until: str, offline: bool, json_out: bool,
                 trades: Path | None, report: Path | None, params: list[str], jobs: int,
                 sort: str) -> None:
        self.config_path, self.since_text, self.until_text = config, since, until
        self.offline, self.json_out, self.trades, self.report = offline, json_out, trades, report
        self.param_texts, self.jobs, self.sort = params, jobs, sort
        self.cfg: Any = None
        self.sim_url: str | None = None
        self.since_ms = self.until_ms = 0
        self.sweep: dict[str, list[Any]] = {}
        self.cache_path: Path | None = None
        self.ticks: dict[str, float] | None = None
        self.funding: dict[str, list[tuple[int, float]]] | None = None

    # ------------------------------------------------------------ checks (before anything runs)
    def check(self) -> None:
        from btccxt_cli.cache.source import check_config_sim
        from btccxt_cli.cli.backfill import _parse_window
        from btccxt_cli.cli.backtest_view import SORT_KEYS
        from btccxt_cli.clock import SYSTEM_CLOCK
        from btccxt_cli.config.load import load_config
        from btccxt_cli.errors import ConfigError
        from btccxt_cli.exchange.describe import validate_exchange
        from btccxt_cli.paths import check_output_file, claim
        from btccxt_cli.runtime.backtest import check_param_names, check_param_values
        from btccxt_cli.runtime.strategies import check_strategy

        now = SYSTEM_CLOCK.time_ms()
        self.since_ms, until = _parse_window(self.since_text, self.until_text, now)
        self.until_ms = min(until if until is not None else now, now)
        if self.sort not in SORT_KEYS:
            raise ConfigError(f"--sort {self.sort!r} is not a metric", key="--sort",
                              hint=f"use one of: {', '.join(SORT_KEYS)}")
        self.sweep = parse_params(self.param_texts)
        if self.sweep and (self.trades or self.report):
            raise ConfigError("--trades and --report describe one run, not a sweep",
                              key="--param", hint="rerun the best combination without --param")
        claim(self.config_path, "config file")  # no output may be it
        if self.trades is not None:
            self.trades = check_output_file(self.trades, what="trades file", option="--trades")
        if self.report is not None:
            from btccxt_cli.cli.backtest_report import require_plotly

            require_plotly()
            self.report = check_output_file(self.report, what="report file", option="--report")
        self.cfg = cfg = load_config(self.config_path)  # run's reading and messages
        validate_exchange(cfg)
        check_config_sim(cfg)  # exchange.sim serves exchange.id, or one line at its line
        self.config_dir = self.config_path.resolve().parent
        cls, _ = check_strategy(cfg, self.config_dir)  # run's loading and param checks
        check_param_names(cls, list(self.sweep))
        raw = {t.partition("=")[0].strip(): [v.strip() for v in t.partition("=")[2].split(",")]
               for t in self.param_texts}
        self.sweep = check_param_values(cls, self.sweep, raw)  # types, before anything runs
        self.sim_url = cfg.exchange.sim_url
        self.cache_path = self._cache_path()

    def _cache_path(self) -> Path:
        from btccxt_cli.cache.sqlite import default_cache_path
        from btccxt_cli.paths import check_output_file

        c = self.cfg.feed.cache
        if c is True or c is False:  # a backtest needs a cache: false still reads the default
            return check_output_file(default_cache_path(), what="OHLCV cache",
                                     option="feed.cache ($BTCCXT_CACHE)")
        path = Path(c)
        if not path.is_absolute():
            path = self.config_dir / path
        return check_output_file(path, what="OHLCV cache", option="feed.cache")

    # ------------------------------------------------------------ the run
    def main(self) -> None:
        from rich.console import Console

        from btccxt_cli.bt.replay import cache_rows, memory_rows
        from btccxt_cli.cache.source import cache_source
        from btccxt_cli.cli.backfill import _open_cache
        from btccxt_cli.errors import BtccxtError
        from btccxt_cli.runtime import backtest as bk

        cfg = self.cfg
        try:
            self.source = cache_source(cfg.exchange.id, self.sim_url)
        except BtccxtError as exc:  # the config's simulator: exit 2 at its line, as `run` says
            if cfg.exchange.sim is True:
                raise
            raise cfg.source.error(("exchange", "sim"), exc.message, hint=exc.hint) from None
        assert self.cache_path is not None
        cache = _open_cache(self.cache_path)
        self.out = Console(no_color=bool(os.environ.get("NO_COLOR")) or None, highlight=False)
        try:
            plans = bk.plan(cfg, self.since_ms, self.until_ms)
            self._fill_holes(cache, plans)
            self.ticks = self._ticks(cache)
            self.funding = self._funding(cache, plans)
            if self.sweep:
                rows = memory_rows(bk.load_rows(cache, self.source, plans))  # loaded once
                self._run_sweep(rows, plans)
            else:
                self._run_one(cache_rows(cache, self.source), plans, cache)
        except sqlite3.Error as exc:
            from btccxt_cli.cache.sqlite import cache_error

            raise cache_error(self.cache_path, exc) from None
        finally:
            cache.close()

    def _fill_holes(self, cache: Any, plans: list[Any]) -> None:
        from btccxt_cli.runtime.backtest import holes

        missing = holes(cache, self.source, plans)
        if missing and not self.offline:
            self._download(cache, [p for p, _ in missing])
            missing = holes(cache, self.source, plans)
        if missing:
            raise _hole_error(missing, self.source, self.cache_path, self.offline)

    def _check_symbols(self, client: Any) -> None:
        """The exchange's markets, and the config's symbols checked against them as ``run``
        does (exit 2 at the symbol's line, with the closest market); unreachable before any
        download: exit 2 at the config's exchange."""
        from btccxt_cli.exchange.describe import check_symbols, load_markets_located

        cfg = self.cfg
        check_symbols(cfg, load_markets_located(
            cfg, client, sim_url=cfg.exchange.sim_url,
            hint="check the network, or backtest --offline on the cache"))

    def _download(self, cache: Any, plans: list[Any]) -> None:
        from btccxt_cli.cache.backfill import Backfiller
        from btccxt_cli.cli.backfill_view import ProgressView
        from btccxt_cli.exchange.factory import make_exchange
        from btccxt_cli.exchange.retry import Backoff

        client = make_exchange(self.cfg.exchange.id, kind="sync", sim_url=self.sim_url)
        self._check_symbols(client)
        with ProgressView(self.json_out) as progress:
            for p in plans:
                bf = Backfiller(client, cache, exchange_id=self.cfg.exchange.id, source=self.source,
                                symbol=p.symbol, timeframe=p.timeframe, since_ms=p.start_ms,
                                until_ms=p.end_ms, backoff=Backoff(0.5, 30.0),
                                on_progress=progress(f"{self.source} {p.symbol} {p.timeframe}"))
                bf.run()
        self._record_ticks(cache, client)

    def _record_ticks(self, cache: Any, client: Any) -> None:
        """The price steps of the markets ``client`` loaded, into the cache's markets record."""
        from btccxt_cli.runtime.assembly import tick_sizes

        if getattr(client, "markets", None):
            cache.put_tick_sizes(self.source, tick_sizes(client, list(client.markets)))

    def _ticks(self, cache: Any) -> dict[str, float] | None:
        """Each symbol's price step for ``broker.slippage: {ticks: N}``: the cache's markets
        record; online, markets are loaded (and recorded) when it lacks one."""
        from btccxt_cli.config.schema import SlippageTicks
        from btccxt_cli.errors import ConfigError

        slip = self.cfg.broker.slippage
        if not isinstance(slip, SlippageTicks) or not slip.ticks:
            return None
        symbols = list(dict.fromkeys(s.symbol for s in self.cfg.symbol_feeds()))
        have = cache.tick_sizes(self.source, symbols)
        if len(have) < len(symbols) and not self.offline:
            from btccxt_cli.exchange.errors import map_ccxt_error
            from btccxt_cli.exchange.factory import make_exchange

            client = make_exchange(self.cfg.exchange.id, kind="sync", sim_url=self.sim_url)
            try:
                client.load_markets()
            except Exception as exc:
                raise map_ccxt_error(exc, exchange=client, what="load markets") from None
            self._record_ticks(cache, client)
            have = cache.tick_sizes(self.source, symbols)
        for sym in symbols:
            if sym not in have:
                how = ("run the backtest once without --offline, or `btccxt backfill` (both record the markets)"
                       if self.offline else "use a fraction for broker.slippage")
                raise ConfigError(f"broker.slippage: the price step (tick size) of {sym} is "
                                  f"unknown ({self.source} in {self.cache_path})",
                                  key="--offline" if self.offline else "broker.slippage", hint=how)
        return have

    def _funding(self, cache: Any, plans: list[Any]) -> dict[str, list[tuple[int, float]]] | None:
        """Each swap's funding rates over the warm-up and the window (``broker.funding``): the
        cache's, the missing ones downloaded first (``fetch_funding_rate_history``); with
        ``--offline`` a missing range is one line naming the symbol."""
        from btccxt_cli.bt.funding import fill_funding, is_swap, missing_funding
        from btccxt_cli.errors import ConfigError
        from btccxt_cli.runtime.backtest_metrics import iso_ms

        symbols = list(dict.fromkeys(p.symbol for p in plans if is_swap(p.symbol)))
        wanted = {s.symbol for s in self.cfg.symbol_feeds() if s.funding_feed}
        if not self.cfg.broker.funding:  # rates only for the funding feeds that ask for them
            symbols = [s for s in symbols if s in wanted]
        if not symbols:
            return None
        lo, hi = min(p.start_ms for p in plans), self.until_ms
        client: Any = None
        out = {}
        for sym in symbols:
            gaps = missing_funding(cache, self.source, sym, lo, hi)
            if gaps and self.offline:
                a, b = gaps[0]
                raise ConfigError(f"the cache has no funding rates of {sym} from {iso_ms(a)} to "
                                  f"{iso_ms(b)} ({self.source} in {self.cache_path})",
                                  key="--offline", hint="run the backtest once without --offline "
                                  "to download them, or set broker.funding: false")
            if gaps:
                from btccxt_cli.exchange.errors import map_ccxt_error
                from btccxt_cli.exchange.factory import make_exchange

                if client is None:
                    client = make_exchange(self.cfg.exchange.id, kind="sync", sim_url=self.sim_url)
                try:
                    fill_funding(cache, client, self.source, sym, lo, hi)
                except Exception as exc:
                    raise map_ccxt_error(exc, exchange=client,
                                         what=f"download the funding rates of {sym}") from None
            out[sym] = cache.funding(self.source, sym, lo, hi + 1)
        return out

    def _window(self, plans: list[Any]) -> dict[str, Any]:
        from btccxt_cli.runtime.backtest_metrics import iso_ms

        return {"since": iso_ms(self.since_ms), "until": iso_ms(self.until_ms),
                "source": self.source, "cache": str(self.cache_path),
                "series": [{"symbol": p.symbol, "timeframe": p.timeframe,
                            "warmup_from": iso_ms(p.start_ms), "window_from": iso_ms(p.window_ms),
                            "window_bars": p.window_bars, "warmup_bars": p.warmup_bars}
                           for p in plans]}

    def _head(self) -> str:
        from btccxt_cli.runtime.backtest_metrics import iso_ms

        c = self.cfg
        return (f"backtest {c.exchange.id} ({self.source}) {', '.join(s.symbol for s in c.symbols)}"
                f" [{iso_ms(self.since_ms)} .. {iso_ms(self.until_ms)})")

    def _run_one(self, rows: Any, plans: list[Any], cache: Any) -> None:
        from btccxt_cli.cli.backtest_view import json_doc, print_summary, write_trades
        from btccxt_cli.runtime.backtest import run_backtest

        total = max((p.window_bars for p in plans), default=0)
        with _Progress(self.json_out, total, "backtest") as tick:
            res = run_backtest(self.cfg, self.config_dir, rows, self.since_ms, self.until_ms,
                               curve=self.report is not None, on_progress=tick, ticks=self.ticks,
                               funding=self.funding)
        if self.json_out:
            sys.stdout.write(json_doc(res, self._window(plans)) + "\n")
        else:
            print_summary(self.out, res, self._head())
        if self.trades is not None:
            n = write_trades(self.trades, res)
            if not self.json_out:
                self.out.print(f"wrote {n} orders and trades to {self.trades}", markup=False,
                               soft_wrap=True)
        if self.report is not None:
            self._write_report(res, plans, cache)

    def _write_report(self, res: Any, plans: list[Any], cache: Any) -> None:
        from btccxt_cli.cli.backtest_report import write_report
        from btccxt_cli.cli.backtest_view import _LABELS, _fmt

        assert self.report is not None
        candles = {p.symbol: cache.read(self.source, p.symbol, p.timeframe, p.window_ms, p.end_ms)
                   for p in plans}
        write_report(self.report, res, candles, self._head(), _LABELS, _fmt)
        if not self.json_out:
            self.out.print(f"wrote the report to {self.report}", markup=False, soft_wrap=True)

    def _run_sweep(self, rows: Any, plans: list[Any]) -> None:
        from btccxt_cli.cli.backtest_view import json_sweep, print_sweep, sort_runs
        from btccxt_cli.runtime.backtest import sweep

        names = list(self.sweep)
        combos = [dict(zip(names, vals, strict=True))
                  for vals in itertools.product(*(self.sweep[n] for n in names))]
        with _Progress(self.json_out, len(combos), "runs") as tick:
            runs = sweep(self.cfg, self.config_dir, rows, self.since_ms, self.until_ms, combos,
                         jobs=self.jobs, on_done=tick, ticks=self.ticks, funding=self.funding)
        runs = sort_runs(runs, self.sort)
        if self.json_out:
            sys.stdout.write(json_sweep(runs, self._window(plans), self.sort) + "\n")
        else:
            print_sweep(self.out, runs, self.sort, self._head())
        failed = [r.error for r in runs if r.error]
        if runs and len(failed) == len(runs):  # nothing to compare: the strategy's exit code
            from btccxt_cli.runtime.strategies import StrategyFailed

            first = (failed[0].strip().splitlines() or ["?"])[-1]
            raise StrategyFailed(f"every run of the sweep failed ({len(failed)} of {len(runs)}); "
                                 f"the first: {first}", "")


def _hole_error(missing: list[Any], source: str, cache: Path | None, offline: bool) -> Any:
    from btccxt_cli.errors import ConfigError
    from btccxt_cli.runtime.backtest_metrics import iso_ms

    plan, ranges = missing[0]
    a, b = ranges[0]
    n = sum(plan.grid.count(x, y) for p, rs in missing for x, y in rs)
    what = (f"the cache has no {plan.timeframe} bars of {plan.symbol} from {iso_ms(a)} to "
            f"{iso_ms(plan.grid.close_of(b))} ({source} in {cache})")
    more = f"; {n} bars are missing in all" if len(missing) > 1 or len(ranges) > 1 else ""
    if offline:
        return ConfigError(f"{what}{more}", key="--offline",
                           hint="run without --offline to download them first")
    return ConfigError(f"{what}{more}, and the exchange did not provide them",
                       hint="rerun to retry, or choose another window with --since/--until")


class _Progress:
    """A Rich progress bar on stderr while a long backtest runs (a terminal only)."""

    def __init__(self, quiet: bool, total: int, what: str) -> None:
        self.quiet, self.total, self.what = quiet, total, what
        self.progress: Any = None
        self.task: Any = None

    def __enter__(self) -> Any:
        from rich.console import Console

        console = Console(stderr=True)
        if not console.is_terminal or self.total <= 0:
            return None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(TextColumn(self.what), BarColumn(), MofNCompleteColumn(),
                                 TimeRemainingColumn(), console=console, transient=True)
        self.progress.start()
        self.task = self.progress.add_task(self.what, total=self.total)
        return self.tick

    def tick(self, done: int) -> None:
        self.progress.update(self.task, completed=done)

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()
