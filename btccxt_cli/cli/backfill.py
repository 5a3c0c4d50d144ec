"""``btccxt backfill SYMBOL...``: download closed OHLCV bars into the local SQLite cache.

Resumable (what is cached is skipped, the newest cached bar re-read), one committed page at a
time; see ``docs/backfill.md``. Progress goes to stderr (a Rich bar on a terminal, plain lines
otherwise), the summary to stdout (``--json`` for machines). ``--export csv|parquet --out FILE``
writes the requested window from the cache afterwards.

Exit codes: 0 done, or stopped by Ctrl-C (everything committed is kept; rerun to resume);
1 the exchange kept failing (what was stored is kept); 2 bad exchange, symbol, timeframe,
time, option, file path, a missing optional dependency (all checked before any download), or
a cache file that cannot be used (full disk, damaged); 130 a second Ctrl-C.

Bars are stored under the source ``cache.source.cache_source`` names: the exchange id, or
``ID@sim:seed-N`` for a simulator (``--sim``, ``--sim-url``), never the exchange's own name.

Modules: ``cli/backfill`` (this one: options, checks, the run, Ctrl-C), ``cli/backfill_view``
(progress and summary lines), ``cache/export`` (the CSV/Parquet writers; ``export_csv``,
``export_parquet`` and ``EXPORT_COLUMNS`` are re-exported here).

ccxt, the simulator, rich and pyarrow load inside the command only.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import sqlite3
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from btccxt_cli.cache.export import (
    EXPORT_COLUMNS,
    export_csv,
    export_parquet,
    export_rows,
    iso_utc,
)
from btccxt_cli.cache.sqlite import cache_error, default_cache_path
from btccxt_cli.cli.backfill_view import ProgressView, describe
from btccxt_cli.errors import (
    BtccxtError,
    ConfigError,
    DependencyError,
    TemporaryError,
    UnsupportedError,
)

if TYPE_CHECKING:
    from btccxt_cli.cache.backfill import Backfiller, BackfillResult
    from btccxt_cli.cache.sqlite import OhlcvCache

__all__ = ["backfill_command", "parse_when", "export_csv", "export_parquet", "EXPORT_COLUMNS"]

logger = logging.getLogger(__name__)

_REL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$", re.IGNORECASE)
_REL_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the last instant datetime can show
_SYMBOL = re.compile(r"^[^\s/]+/[^\s/]+$")  # BASE/QUOTE, BASE/QUOTE:SETTLE, ...-EXPIRY
_MAX_SYMBOL = 100


def parse_when(text: str, now_ms: int) -> int:
    """A point in time as epoch ms: ISO date/time (naive = UTC), ``30d``/``12h``/``90m``/``2w``
    ago, ``now``, or epoch milliseconds.

    Raises:
        ValueError: with a message naming the accepted forms, or a time before 1970 or
            after 9999.
    """
    ms = _parse_when(text, now_ms)
    if not 0 <= ms <= _MAX_MS:
        raise ValueError(f"{_short(text)!r} is out of range (times run from 1970-01-01 to "
                         "9999-12-31)")
    return ms


def _parse_when(text: str, now_ms: int) -> int:
    t = text.strip()
    if t.lower() == "now":
        return now_ms
    m = _REL.match(t)
    if m:
        unit = m.group(2).lower()
        try:
            return now_ms - int(float(m.group(1)) * _REL_MS[unit])
        except OverflowError:  # 1e400d
            return -1
    if t.isdigit() and len(t) >= 10:
        return int(t) if len(t) >= 12 else int(t) * 1000
    try:
        dt = datetime.fromisoformat(t.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a time: {_short(text)!r} (use an ISO date/time like 2024-01-31 or "
                         "2024-01-31T12:00, a span back from now like 30d, 12h, 90m, 2w, "
                         "'now', or epoch milliseconds)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)


def backfill_command(
    symbols: Annotated[list[str], typer.Argument(
        help="Unified ccxt symbols, e.g. BTC/USDT ETH/USDT BTC/USDT:USDT.", metavar="SYMBOL...",
        show_default=False)],
    exchange: str = typer.Option("binance", "--exchange", "-e", help="ccxt exchange id."),
    timeframe: str = typer.Option("1m", "--timeframe", "-t", help="Bar timeframe (1s 1m 5m 1h 1d ...)."),
    since: str = typer.Option("1d", "--since", help="First bar: ISO date/time (UTC unless an "
                              "offset is given) or a span back from now (30d, 12h, 90m)."),
    until: str = typer.Option("now", "--until", help="End (exclusive), same forms; never later "
                              "than the exchange's now (the forming bar is not stored)."),
    db: Path | None = typer.Option(None, "--db", help="SQLite cache file ($BTCCXT_CACHE overrides "
                                   "the default).", show_default=str(default_cache_path())),
    json_out: bool = typer.Option(False, "--json", help="Print a machine-readable summary on stdout."),
    sim: bool = typer.Option(False, "--sim", help="Start the built-in exchange simulator in-process "
                             "and backfill from it."),
    sim_url: str | None = typer.Option(None, "--sim-url", help="Backfill from a running "
                                       "`btccxt sim` at this URL (http://127.0.0.1:PORT)."),
    export: str | None = typer.Option(None, "--export", help="After the backfill, write the window "
                                      "from the cache as csv or parquet (needs --out).",
                                      metavar="csv|parquet"),
    out: Path | None = typer.Option(None, "--out", help="File for --export."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Bars per request (default: "
                                     "the exchange's maximum, from ccxt)."),
    max_retries: int = typer.Option(8, "--max-retries", min=1, help="Failed attempts of one page "
                                    "before giving up (earlier pages stay stored)."),
) -> None:
    """Download closed OHLCV bars into the local cache; reruns fetch only what is missing."""
    from btccxt_cli.cli.common import fail
    from btccxt_cli.clock import SYSTEM_CLOCK

    now = SYSTEM_CLOCK.time_ms()
    try:  # every argument is checked before the simulator starts or anything is downloaded
        symbols = _check_symbols(symbols)
        since_ms, until_ms = _parse_window(since, until, now)
        fmt = _check_export(export, out)
        _check_timeframe(timeframe)
        if sim and sim_url:
            raise ConfigError("use either --sim or --sim-url, not both")
        db_path, out = _check_files(db, out)
    except BtccxtError as exc:
        fail(exc)
    simulator = None
    try:
        if sim:
            simulator = _start_sim(exchange)
            sim_url = simulator.url(exchange)
        _Run(exchange=exchange, timeframe=timeframe, symbols=symbols, since_ms=since_ms,
             until_ms=until_ms, db_path=db_path, json_out=json_out, sim_url=sim_url, fmt=fmt,
             out=out, limit=limit, max_retries=max_retries).main()
    except BtccxtError as exc:
        fail(exc)
    finally:
        if simulator is not None:
            simulator.stop()


# ---------------------------------------------------------------- argument checks
def _short(text: str, most: int = 40) -> str:
    return text if len(text) <= most else f"{text[:most]}... ({len(text)} characters)"


def _check_symbols(symbols: list[str]) -> list[str]:
    """Each symbol looks like a unified ccxt symbol (the exchange's list is checked later)."""
    for s in symbols:
        if len(s) > _MAX_SYMBOL or not _SYMBOL.match(s):
            raise ConfigError(f"{_short(s)!r} is not a unified symbol",
                              key="SYMBOL", hint="write BASE/QUOTE like BTC/USDT, or "
                              "BASE/QUOTE:SETTLE for a swap like BTC/USDT:USDT")
    return list(dict.fromkeys(symbols))


def _check_files(db: Path | None, out: Path | None) -> tuple[Path, Path | None]:
    """The cache and export paths, checked (a missing folder is created only inside btccxt's
    data folder, as for every file a user names)."""
    from btccxt_cli.paths import check_output_file

    option = "--db" if db is not None else ("$BTCCXT_CACHE" if os.environ.get("BTCCXT_CACHE")
                                            else "the default cache")
    db_path = check_output_file(db if db is not None else default_cache_path(), what="cache",
                                option=option)
    if out is None:
        return db_path, None
    # the cache was claimed when it was checked: an export file that is it is refused
    return db_path, check_output_file(out, what="export file", option="--out")


def _parse_window(since: str, until: str, now: int) -> tuple[int, int | None]:
    try:
        since_ms = parse_when(since, now)
        until_ms = None if until.strip().lower() == "now" else parse_when(until, now)
    except ValueError as exc:
        raise ConfigError(str(exc), key="--since/--until") from None
    if since_ms >= now:
        raise ConfigError(f"{_short(since)!r} is {iso_utc(since_ms)}, not in the past: "
                          "no bar has closed since then", key="--since",
                          hint="give an earlier time, e.g. --since 1d or --since 2024-01-31")
    if until_ms is not None and until_ms <= since_ms:
        raise ConfigError(f"--until ({iso_utc(until_ms)}) must be after --since ({iso_utc(since_ms)})")
    return since_ms, until_ms


def _check_export(export: str | None, out: Path | None) -> str | None:
    if export is None:
        if out is not None:
            raise ConfigError("--out needs --export csv|parquet")
        return None
    fmt = export.strip().lower()
    if fmt not in ("csv", "parquet"):
        raise ConfigError(f"--export must be csv or parquet, not {export!r}")
    if out is None:
        raise ConfigError(f"--export {fmt} needs --out FILE")
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise DependencyError("--export parquet needs pyarrow, which is not installed",
                                  hint="pip install 'btccxt[parquet]' (or pip install pyarrow), "
                                       "or use --export csv") from None
    return fmt


def _check_timeframe(timeframe: str) -> None:
    from btccxt_cli.timeframes import parse_timeframe

    try:
        parse_timeframe(timeframe)
    except ValueError as exc:
        raise UnsupportedError(str(exc)) from None


def _start_sim(exchange: str) -> Any:
    from btccxt_cli.sim.app import SimThread
    from btccxt_cli.sim.venues import VENUES

    if exchange not in VENUES:
        raise UnsupportedError(f"--sim: {exchange!r} is not simulated",
                               hint=f"simulated exchanges: {', '.join(sorted(VENUES))}")
    # the markets `btccxt sim` lists, never the symbols asked for: an unknown one is refused
    return SimThread(exchanges=(exchange,)).start()


# ---------------------------------------------------------------- the run
class _Run:
    """One invocation: client, cache, one Backfiller per symbol, progress, summary, export."""

    def __init__(self, *, exchange: str, timeframe: str, symbols: list[str], since_ms: int,
                 until_ms: int | None, db_path: Path, json_out: bool, sim_url: str | None,
                 fmt: str | None, out: Path | None, limit: int | None, max_retries: int) -> None:
        self.exchange_id, self.timeframe, self.symbols = exchange, timeframe, symbols
        self.since_ms, self.until_ms = since_ms, until_ms
        self.db_path, self.json_out, self.sim_url = db_path, json_out, sim_url
        self.fmt, self.out, self.limit, self.max_retries = fmt, out, limit, max_retries
        self.results: list[BackfillResult] = []
        self.fillers: list[Backfiller] = []
        self.interrupted = False
        self.source = exchange

    def main(self) -> None:
        from btccxt_cli.cache.limits import share_rate_budget
        from btccxt_cli.cache.source import cache_source
        from btccxt_cli.exchange.factory import make_exchange

        client = make_exchange(self.exchange_id, kind="sync", sim_url=self.sim_url)
        share_rate_budget(client)  # $BTCCXT_RATE_LIMIT_SHARED: one budget for the IP (docs/hub.md)
        try:
            self.source = cache_source(self.exchange_id, self.sim_url,  # never plain for a
                                       option="--exchange")  # simulator
        except TemporaryError as exc:  # no network at the start: exit 2, like bad input
            raise ConfigError(exc.message, key="--sim-url", hint=exc.hint) from None
        cache = _open_cache(self.db_path)
        error: BtccxtError | None = None
        export_info: dict[str, Any] | None = None
        try:
            self.fillers = fillers = [self._filler(client, cache, s) for s in self.symbols]
            with _sigint_stops(self):
                try:
                    for bf in fillers:  # reject every bad symbol before downloading anything
                        if not bf.prepare():
                            break
                except BtccxtError as exc:
                    if exc.exit_code == 2:  # bad input: one line, no summary
                        raise
                    if isinstance(exc, TemporaryError):  # unreachable before any download
                        raise ConfigError(
                            f"{self.exchange_id} is unreachable: {exc.message}",
                            key="--sim-url" if self.sim_url else "--exchange",
                            hint=exc.hint or "check the network and run it again") from None
                    error = exc
                if error is None:  # markets are loaded: keep their price steps for
                    error = self._keep_tick_sizes(client, cache)  # an --offline backtest
                with ProgressView(self.json_out) as progress:
                    for bf in fillers:
                        if self.interrupted or error is not None:
                            break
                        bf.on_progress = progress(f"{self.source} {bf.symbol} {self.timeframe}")
                        try:
                            res = bf.run()
                        except (BtccxtError, sqlite3.Error) as exc:
                            if bf.result is not None:
                                self.results.append(bf.result)
                            error = exc if isinstance(exc, BtccxtError) else \
                                cache_error(self.db_path, exc)
                            break
                        self.results.append(res)
                        self.interrupted = self.interrupted or res.interrupted
            if error is None and self.fmt is not None and self.out is not None:
                try:
                    export_info = self._export(cache)
                except sqlite3.Error as exc:
                    error = cache_error(self.db_path, exc)
                except OSError as exc:
                    error = ConfigError(f"cannot write the export file {str(self.out)!r} "
                                        f"({exc.strerror or exc})", key="--out",
                                        hint="free some space or choose another file")
        finally:
            cache.close()
        self._summary(error, export_info)
        if error is not None:
            if self.json_out:
                raise typer.Exit(error.exit_code)
            raise error

    def _keep_tick_sizes(self, client: Any, cache: OhlcvCache) -> BtccxtError | None:
        """Record each symbol's price step (``broker.slippage: {ticks: N}`` in a backtest)."""
        from btccxt_cli.runtime.assembly import tick_sizes

        try:
            cache.put_tick_sizes(self.source, tick_sizes(client, self.symbols))
        except sqlite3.Error as exc:
            return cache_error(self.db_path, exc)
        return None

    def _filler(self, client: Any, cache: OhlcvCache, symbol: str) -> Backfiller:
        from btccxt_cli.cache.backfill import Backfiller
        from btccxt_cli.exchange.retry import Backoff

        return Backfiller(client, cache, exchange_id=self.exchange_id, source=self.source,
                          symbol=symbol, timeframe=self.timeframe, since_ms=self.since_ms,
                          until_ms=self.until_ms, limit=self.limit, max_retries=self.max_retries,
                          backoff=Backoff(0.5, 30.0))

    def request_stop(self) -> None:
        self.interrupted = True
        for bf in self.fillers:
            bf.request_stop()

    # ------------------------------------------------------------ output
    def _export(self, cache: OhlcvCache) -> dict[str, Any]:
        assert self.out is not None
        windows = [(r.symbol, r.start_ms, r.end_ms) for r in self.results]
        rows = export_rows(cache, self.source, self.timeframe, windows)
        writer = export_csv if self.fmt == "csv" else export_parquet
        n = writer(self.out, rows)
        return {"format": self.fmt, "path": str(self.out), "rows": n}

    def _summary(self, error: BtccxtError | None, export_info: dict[str, Any] | None) -> None:
        if self.json_out:
            doc = {
                "exchange": self.exchange_id, "source": self.source, "timeframe": self.timeframe,
                "db": str(self.db_path),
                "since": self.since_ms, "until": self.until_ms, "interrupted": self.interrupted,
                "symbols": [r.to_dict() for r in self.results], "export": export_info,
                "error": str(error) if error is not None else None,
            }
            sys.stdout.write(json.dumps(doc, indent=2) + "\n")
            sys.stdout.flush()
            if error is not None:
                sys.stderr.write(f"error: {error}\n")
            return
        for r in self.results:
            typer.echo(describe(r))
            if r.shortfall:  # fewer bars than asked, and why (kraken keeps only its newest 720)
                typer.echo(f"{r.symbol}: {r.shortfall}")
        if export_info is not None:
            typer.echo(f"exported {export_info['rows']} bars to {export_info['path']} "
                       f"({export_info['format']})")
        typer.echo(f"cache: {self.db_path}" + (f" (simulated bars, kept as {self.source})"
                                               if self.source != self.exchange_id else ""))
        if self.interrupted:
            typer.echo("interrupted; rerun to resume")


def _open_cache(path: Path) -> OhlcvCache:
    from btccxt_cli.cache.sqlite import OhlcvCache

    try:
        return OhlcvCache(path)
    except sqlite3.Error as exc:
        raise cache_error(path, exc) from None
    except OSError as exc:
        raise ConfigError(f"cannot open the cache {str(path)!r}: {exc}",
                          hint="pass a writable file with --db") from None


# ---------------------------------------------------------------- Ctrl-C
class _sigint_stops:
    """First SIGINT: stop after the page in flight. Second: leave now (exit 130)."""

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.previous: Any = None
        self.installed = False

    def __enter__(self) -> _sigint_stops:
        import threading

        if threading.current_thread() is threading.main_thread():
            self.previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handler)
            self.installed = True
        return self

    def _handler(self, signum: int, frame: Any) -> None:
        if self.run.interrupted:
            sys.stderr.write("second interrupt: leaving now\n")
            os._exit(130)
        sys.stderr.write("interrupt: stopping after the current page ...\n")
        self.run.request_stop()

    def __exit__(self, *exc: object) -> None:
        if self.installed:
            signal.signal(signal.SIGINT, self.previous)

