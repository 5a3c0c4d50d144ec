"""``btccxt cache``: what the local OHLCV cache holds per source, and a way out of bad rows.

    btccxt cache list                                  # per source, symbol, timeframe
    btccxt cache verify binance BTC/USDT -t 1m --since 30d [--fix]
    btccxt cache drop binance BTC/USDT [-t 1m] [--since ... --until ...] [--yes]

A source is what ``cache.source.cache_source`` names: the exchange id for the exchange's own
bars, ``ID@sim:seed-N`` for a simulator's. ``verify`` reads the window again from the exchange
(a simulator source: from a simulator reporting the same identity, ``--sim-url``) and reports,
or with ``--fix`` replaces, what differs. The real exchange's rows are never checked against,
or replaced by, a simulator.

Exit codes: 0 done (verify: the cache matches, or was fixed); 1 verify found differences
(rerun with ``--fix``), the exchange kept failing, or drop was not confirmed; 2 bad input
(source, symbol, time, file), checked before anything is read or changed.

ccxt loads inside ``verify`` only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from btccxt_cli.cache.export import iso_utc
from btccxt_cli.cache.sqlite import default_cache_path
from btccxt_cli.errors import BtccxtError, ConfigError

if TYPE_CHECKING:
    from btccxt_cli.cache.sqlite import OhlcvCache

__all__ = ["cache_app"]

cache_app = typer.Typer(
    name="cache", no_args_is_help=True, add_completion=False,
    help="What the local OHLCV cache holds per source; re-check or drop a range.")

_DB_HELP = "SQLite cache file ($BTCCXT_CACHE overrides the default)."


def _db_option() -> Any:
    return typer.Option(None, "--db", help=_DB_HELP, show_default=str(default_cache_path()))


@cache_app.command("list")
def list_command(
    db: Path | None = _db_option(),
    json_out: bool = typer.Option(False, "--json", help="Print JSON on stdout."),
) -> None:
    """List every series: source, symbol, timeframe, bars, first and last bar."""
    from btccxt_cli.cli.common import fail

    try:
        with _open(db) as cache:
            rows = _guard(cache, cache.series)
    except BtccxtError as exc:
        fail(exc)
    items = [{"source": s, "kind": _kind(s), "symbol": sym, "timeframe": tf, "bars": n,
              "first": lo, "last": hi} for s, sym, tf, n, lo, hi in rows]
    if json_out:
        sys.stdout.write(json.dumps({"db": str(cache.path), "series": items}, indent=2) + "\n")
        return
    if not items:
        typer.echo(f"cache {cache.path}: empty")
        return
    typer.echo(f"cache {cache.path}:")
    width = max(len(i["source"]) for i in items)
    for i in items:
        typer.echo(f"  {i['source']:<{width}}  {i['symbol']:<14} {i['timeframe']:>4} "
                   f"{i['bars']:>9} bars  {iso_utc(i['first'])} .. {iso_utc(i['last'])}  "
                   f"{i['kind']}")


@cache_app.command("verify")
def verify_command(
    source: str = typer.Argument(..., help="Source as `btccxt cache list` shows it: binance, "
                                 "or binance@sim:seed-1 for a simulator's bars."),
    symbol: str = typer.Argument(..., help="Unified symbol, e.g. BTC/USDT."),
    timeframe: str = typer.Option("1m", "--timeframe", "-t", help="Bar timeframe."),
    since: str | None = typer.Option(None, "--since", help="First bar (same forms as "
                                     "backfill; default: the first cached bar)."),
    until: str | None = typer.Option(None, "--until", help="End, exclusive (default: after "
                                     "the last cached bar)."),
    fix: bool = typer.Option(False, "--fix", help="Replace differing rows with the exchange's, "
                             "add missing ones, remove ones the exchange does not have."),
    sim_url: str | None = typer.Option(None, "--sim-url", help="For a simulator source: a "
                                       "running `btccxt sim` with the same seed."),
    db: Path | None = _db_option(),
    json_out: bool = typer.Option(False, "--json", help="Print JSON on stdout."),
    max_retries: int = typer.Option(8, "--max-retries", min=1, help="Failed attempts of one "
                                    "page before giving up."),
) -> None:
    """Read a range again from the exchange; report (or --fix) rows that differ."""
    from btccxt_cli.cache.source import cache_source, split_source
    from btccxt_cli.cli.common import fail

    try:
        exchange_id, identity = split_source(source)
        if identity == "":
            raise ConfigError(f"{source!r} holds simulated bars of an unknown seed (written by "
                              "an older btccxt): nothing can check them",
                              hint=f"drop them: btccxt cache drop {source}")
        if identity is None and sim_url:
            raise ConfigError(f"{source!r} holds the real exchange's bars: they are never "
                              "checked against, or replaced by, a simulator", key="--sim-url",
                              hint="drop --sim-url to check against the exchange")
        if identity is not None and not sim_url:
            raise ConfigError(f"{source!r} holds simulated bars: check them against a simulator",
                              key="--sim-url", hint=f"start `btccxt sim -e {exchange_id} --seed "
                              f"{identity.removeprefix('seed-')}` and pass its URL")
        with _open(db) as cache:
            since_ms, until_ms = _window(cache, source, symbol, timeframe, since, until)
            if cache_source(exchange_id, sim_url) != source:
                raise ConfigError(f"the simulator at {sim_url} is not {source!r}",
                                  key="--sim-url", hint="start one with the same --seed")
            result = _verify(cache, exchange_id, source, symbol, timeframe, since_ms, until_ms,
                             fix, sim_url, max_retries)
    except BtccxtError as exc:
        fail(exc)
    if json_out:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
    else:
        typer.echo(_describe(result))
    if not result.clean and not result.fixed:
        raise typer.Exit(1)


@cache_app.command("drop")
def drop_command(
    source: str = typer.Argument(..., help="Source as `btccxt cache list` shows it."),
    symbol: str | None = typer.Argument(None, help="Only this symbol (default: every one)."),
    timeframe: str | None = typer.Option(None, "--timeframe", "-t", help="Only this timeframe."),
    since: str | None = typer.Option(None, "--since", help="First bar to drop (default: all)."),
    until: str | None = typer.Option(None, "--until", help="End, exclusive (default: all)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    db: Path | None = _db_option(),
) -> None:
    """Delete a source's bars (one symbol, timeframe or range of them) from the cache."""
    from btccxt_cli.cli.backfill import parse_when
    from btccxt_cli.cli.common import fail
    from btccxt_cli.clock import SYSTEM_CLOCK

    now = SYSTEM_CLOCK.time_ms()
    try:
        since_ms = None if since is None else _when(parse_when, since, now, "--since")
        until_ms = None if until is None else _when(parse_when, until, now, "--until")
        if since_ms is not None and until_ms is not None and until_ms <= since_ms:
            raise ConfigError("--until must be after --since", key="--until")
        with _open(db) as cache:
            series = [(s, sym, tf) for s, sym, tf, *_ in _guard(cache, cache.series)
                      if s == source and symbol in (None, sym) and timeframe in (None, tf)]
            counts = [(k, _guard(cache, cache.count, *k, since_ms, until_ms)) for k in series]
            total = sum(n for _, n in counts)
            if total == 0:
                raise ConfigError(f"cache {cache.path} holds no bars of {_what(source, symbol, timeframe)}"
                                  f"{_range_text(since_ms, until_ms)}",
                                  hint="see `btccxt cache list`")
            typer.echo(f"{total} bars of {_what(source, symbol, timeframe)}"
                       f"{_range_text(since_ms, until_ms)} in {cache.path}")
            if not yes and not _confirm("drop them?"):
                typer.echo("nothing dropped")
                raise typer.Exit(1)
            dropped = sum(_guard(cache, cache.delete, *k, since_ms, until_ms) for k, _ in counts)
    except BtccxtError as exc:
        fail(exc)
    typer.echo(f"dropped {dropped} bars")


# ---------------------------------------------------------------- helpers
def _kind(source: str) -> str:
    from btccxt_cli.cache.source import split_source

    _, identity = split_source(source)
    if identity is None:
        return "exchange"
    return f"simulator ({identity})" if identity else "simulator (seed unknown)"


def _what(source: str, symbol: str | None, timeframe: str | None) -> str:
    return " ".join(x for x in (source, symbol, timeframe) if x)


def _range_text(since_ms: int | None, until_ms: int | None) -> str:
    if since_ms is None and until_ms is None:
        return ""
    a = iso_utc(since_ms) if since_ms is not None else "first"
    b = iso_utc(until_ms) if until_ms is not None else "last"
    return f" in [{a} .. {b})"


def _confirm(question: str) -> bool:
    try:
        return bool(typer.confirm(question, default=False))
    except (typer.Abort, EOFError, KeyboardInterrupt):
        return False


def _when(parse: Any, text: str, now: int, option: str) -> int:
    try:
        return int(parse(text, now))
    except ValueError as exc:
        raise ConfigError(str(exc), key=option) from None


def _open(db: Path | None) -> OhlcvCache:
    """The existing cache file (never created here)."""
    import sqlite3

    from btccxt_cli.cache.sqlite import OhlcvCache, cache_error

    path = (db if db is not None else default_cache_path()).expanduser()
    option = "--db" if db is not None else "$BTCCXT_CACHE or the default cache"
    if path.is_dir():
        raise ConfigError(f"cache {str(path)!r} is a folder", key=option,
                          hint="name the cache file, e.g. ohlcv.sqlite inside it")
    if not path.is_file():
        raise ConfigError(f"there is no cache at {str(path)!r}", key=option,
                          hint="run `btccxt backfill` first, or pass the file with --db")
    try:
        return OhlcvCache(path)
    except sqlite3.Error as exc:
        raise cache_error(path, exc) from None


def _guard(cache: OhlcvCache, fn: Any, *args: Any) -> Any:
    """Run a cache call; an SQLite failure becomes one line naming the file and the cause."""
    import sqlite3

    from btccxt_cli.cache.sqlite import cache_error

    try:
        return fn(*args)
    except sqlite3.Error as exc:
        raise cache_error(cache.path, exc) from None


def _window(cache: OhlcvCache, source: str, symbol: str, timeframe: str, since: str | None,
            until: str | None) -> tuple[int, int | None]:
    from btccxt_cli.cli.backfill import parse_when
    from btccxt_cli.clock import SYSTEM_CLOCK
    from btccxt_cli.timeframes import timeframe_ms

    now = SYSTEM_CLOCK.time_ms()
    bounds = _guard(cache, cache.bounds, source, symbol, timeframe)
    if bounds is None and (since is None or until is None):
        raise ConfigError(f"cache {cache.path} holds no bars of {source} {symbol} {timeframe}",
                          hint="see `btccxt cache list`, or give --since and --until")
    try:
        tf = timeframe_ms(timeframe)
    except ValueError as exc:
        raise ConfigError(str(exc), key="--timeframe") from None
    since_ms = bounds[0] if since is None else _when(parse_when, since, now, "--since")
    until_ms = bounds[1] + tf if until is None else _when(parse_when, until, now, "--until")
    if until_ms <= since_ms:
        raise ConfigError(f"--until ({iso_utc(until_ms)}) must be after --since "
                          f"({iso_utc(since_ms)})", key="--until")
    if since_ms >= now:
        raise ConfigError(f"{since!r} is not in the past", key="--since",
                          hint="give an earlier time, e.g. --since 1d")
    return since_ms, until_ms


def _verify(cache: OhlcvCache, exchange_id: str, source: str, symbol: str, timeframe: str,
            since_ms: int, until_ms: int | None, fix: bool, sim_url: str | None,
            max_retries: int) -> Any:
    import sqlite3

    from btccxt_cli.cache.sqlite import cache_error
    from btccxt_cli.cache.verify import verify_range
    from btccxt_cli.exchange.factory import make_exchange
    from btccxt_cli.exchange.retry import Backoff

    client = make_exchange(exchange_id, kind="sync", sim_url=sim_url)
    try:
        return verify_range(client, cache, exchange_id=exchange_id, source=source, symbol=symbol,
                            timeframe=timeframe, since_ms=since_ms, until_ms=until_ms, fix=fix,
                            max_retries=max_retries, backoff=Backoff(0.5, 30.0))
    except sqlite3.Error as exc:
        raise cache_error(cache.path, exc) from None


def _describe(r: Any) -> str:
    head = (f"{r.source} {r.symbol} {r.timeframe} [{iso_utc(r.start_ms)} .. {iso_utc(r.end_ms)}): "
            f"{r.cached_bars} cached, {r.exchange_bars} on the exchange, {r.same} equal")
    if r.clean:
        return head + "; the cache matches the exchange"
    parts = [f"{len(r.differ)} differ", f"{len(r.missing)} missing from the cache",
             f"{len(r.extra)} not on the exchange"]
    first = sorted(r.differ + r.missing + r.extra)[0]
    tail = "; replaced with the exchange's bars" if r.fixed else "; rerun with --fix to replace them"
    return f"{head}; {', '.join(parts)} (first at {iso_utc(first)}){tail}"
