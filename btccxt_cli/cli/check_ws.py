"""``btccxt check-ws EXCHANGE``: is this exchange's OHLCV WebSocket usable from here?

Role: parse the options, start the simulator when asked (``--sim``), run
``btccxt_cli.exchange.diagnose.check_ws`` and render its report: a Rich table on a terminal,
plain lines otherwise, one JSON object with ``--json``. Exit code 0 when every step passed,
1 degraded (a warning), 2 failed (a failure) or bad arguments (one line, no traceback).

Imports typer only at module level; ccxt, aiohttp, rich and the simulator load inside the
command (``btccxt --help`` stays fast).
"""

from __future__ import annotations

import json
import logging
import os
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

import typer

from btccxt_cli.errors import CredentialsError, UnsupportedError

if TYPE_CHECKING:
    from rich.table import Table

    from btccxt_cli.exchange.diagnose import CheckReport, Step

__all__ = ["check_ws_command", "render_plain", "render_table", "verdict_line"]

logger = logging.getLogger(__name__)

_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}
_VERDICT = {"pass": "PASS", "degraded": "DEGRADED", "failed": "FAILED"}


def check_ws_command(
    exchange: Annotated[str, typer.Argument(help="A ccxt exchange id (binance, okx ...).",
                                            show_default=False)],
    symbol: Annotated[str, typer.Option("--symbol", "-s", help="Unified symbol to watch.")] = "BTC/USDT",
    timeframe: Annotated[str, typer.Option("--timeframe", "-t", help="Candle timeframe.")] = "1m",
    seconds: Annotated[float, typer.Option(
        "--seconds", min=0.1,
        help="How long to wait for the first candle, then how long to measure the stream.")] = 30.0,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    sim: Annotated[bool, typer.Option("--sim", help="Check the built-in simulator instead of "
                                                    "the exchange (binance, okx ...).")] = False,
    sim_url: Annotated[str | None, typer.Option(
        "--sim-url", metavar="URL", help="Check a running `btccxt sim` (its base URL).")] = None,
    reconnect_test: Annotated[bool, typer.Option(
        "--reconnect-test", help="Also close the socket and time the recovery.")] = False,
    api_key_env: Annotated[str | None, typer.Option(
        "--api-key-env", metavar="NAME", help="Environment variable holding the API key.")] = None,
    secret_env: Annotated[str | None, typer.Option(
        "--secret-env", metavar="NAME", help="Environment variable holding the API secret.")] = None,
    password_env: Annotated[str | None, typer.Option(
        "--password-env", metavar="NAME", help="Environment variable holding the passphrase.")] = None,
) -> None:
    """Check REST, clock, symbol, WebSocket connect, first candle, message rate and keepalive."""
    import asyncio

    from btccxt_cli.cli.common import fail
    from btccxt_cli.errors import BtccxtError

    try:
        config = _credentials(api_key_env, secret_env, password_env)
        _check_arguments(exchange, sim, sim_url)
    except BtccxtError as exc:
        fail(exc)
    from btccxt_cli.exchange.diagnose import check_ws

    thread: Any = None
    if sim:
        from btccxt_cli.sim.app import SimThread

        thread = SimThread(exchanges=(exchange,)).start()
        sim_url = thread.url(exchange)
    console = None if json_out else _console()
    status: Any = None
    try:
        if console is not None and console.is_terminal:
            status = console.status(f"checking {exchange} {symbol} {timeframe} ...")
            status.start()
        on_step = _progress(status, seconds) if status is not None else None
        report = asyncio.run(check_ws(exchange, symbol=symbol, timeframe=timeframe, seconds=seconds,
                                      sim_url=sim_url, config=config, reconnect_test=reconnect_test,
                                      on_step=on_step))
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None
    finally:
        if status is not None:
            status.stop()
        if thread is not None:
            thread.stop()
    if json_out:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    elif console is not None and console.is_terminal:
        console.print(render_table(report))
        console.print(verdict_line(report), style=_verdict_style(report.verdict), highlight=False)
    else:
        typer.echo(render_plain(report))
    raise typer.Exit(report.exit_code)


def _console() -> Any:
    from rich.console import Console

    return Console()


def _progress(status: Any, seconds: float) -> Any:
    from btccxt_cli.exchange.diagnose import STEP_TITLES

    order = list(STEP_TITLES)

    def on_step(step: Step) -> None:
        i = order.index(step.name) if step.name in order else -1
        nxt = order[i + 1] if 0 <= i < len(order) - 1 else ""
        wait = f" (up to {seconds:g} s)" if nxt in ("first_candle", "stream") else ""
        status.update(f"{step.title}: {step.status}; next: {STEP_TITLES.get(nxt, nxt)}{wait} ..."
                      if nxt else f"{step.title}: {step.status}")

    return on_step


def _credentials(api_key_env: str | None, secret_env: str | None,
                 password_env: str | None) -> dict[str, str]:
    """ccxt config from the named environment variables; values are registered for redaction."""
    from btccxt_cli.log import register_secret

    config: dict[str, str] = {}
    for key, option, name in (("apiKey", "--api-key-env", api_key_env),
                              ("secret", "--secret-env", secret_env),
                              ("password", "--password-env", password_env)):
        if name is None:
            continue
        value = os.environ.get(name, "")
        if not value:
            raise CredentialsError(f"{option} {name}: the environment variable is not set or empty",
                                   hint=f"export {name}=... first")
        register_secret(value)
        config[key] = value
    if config and ("apiKey" not in config or "secret" not in config):
        raise CredentialsError("give both --api-key-env and --secret-env (and --password-env "
                               "where the exchange needs a passphrase)")
    return config


def _check_arguments(exchange: str, sim: bool, sim_url: str | None) -> None:
    from btccxt_cli.exchange.describe import SIMULATED_EXCHANGES, describe

    if sim and sim_url:
        raise UnsupportedError("--sim and --sim-url exclude each other",
                               hint="--sim starts a simulator; --sim-url uses a running one")
    describe(exchange)  # unknown ids: UnsupportedError with the closest match
    if (sim or sim_url) and exchange not in SIMULATED_EXCHANGES:
        served = ", ".join(SIMULATED_EXCHANGES[:-1]) + " and " + SIMULATED_EXCHANGES[-1]
        raise UnsupportedError(f"the simulator does not speak {exchange}; it serves {served}")
    if sim_url is not None:
        parts = urlsplit(sim_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UnsupportedError(f"--sim-url {sim_url!r} is not a URL",
                                   hint="use the base URL `btccxt sim` prints, e.g. "
                                        "http://127.0.0.1:43817")


# --------------------------------------------------------------------------- rendering
def _verdict_style(verdict: str) -> str:
    return {"pass": "bold green", "degraded": "bold yellow", "failed": "bold red"}[verdict]


def verdict_line(report: CheckReport) -> str:
    """``verdict: FAILED (exit 2): first candle failed; 1 warning (clock skew)``."""
    fails = [s.title for s in report.steps if s.status == "fail"]
    warns = [s.title for s in report.steps if s.status == "warn"]
    passed = sum(s.status == "pass" for s in report.steps)
    parts = []
    if fails:
        parts.append(f"{len(fails)} failed ({', '.join(fails)})")
    if warns:
        parts.append(f"{len(warns)} warning{'s' if len(warns) > 1 else ''} ({', '.join(warns)})")
    if not parts:
        parts.append(f"all {passed} checks passed")
    else:
        parts.append(f"{passed} passed")
    return (f"verdict: {_VERDICT[report.verdict]} (exit {report.exit_code}): " + "; ".join(parts)
            + f" in {report.seconds:.1f} s")


def _header(report: CheckReport) -> str:
    where = f"simulator at {report.sim_url}" if report.sim_url else "real exchange"
    return f"check-ws {report.exchange} {report.symbol} {report.timeframe} ({where})"


def render_plain(report: CheckReport) -> str:
    """The report as plain text lines (no colour), hints indented under their step."""
    width = max(len(s.title) for s in report.steps) if report.steps else 10
    lines = [_header(report)]
    for s in report.steps:
        took = f"{s.seconds:6.2f} s" if s.status != "skip" else " " * 8
        lines.append(f"  {s.status.upper():4}  {s.title:<{width}}  {took}  {s.detail}")
        if s.hint:
            lines.append(f"  {'':4}  {'':<{width}}  {'':8}  hint: {s.hint}")
    lines.append(verdict_line(report))
    return "\n".join(lines)


def render_table(report: CheckReport) -> Table:
    """The report as a Rich table: step, status, time, detail (with the hint below it)."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=_header(report), title_justify="left", expand=False)
    table.add_column("step", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("time", justify="right", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for s in report.steps:
        detail = Text(s.detail, style="dim" if s.status == "skip" else "")
        if s.hint:
            detail.append("\nhint: " + s.hint, style="italic " + _STYLE[s.status].replace("bold ", ""))
        table.add_row(s.title, Text(s.status.upper(), style=_STYLE[s.status]),
                      f"{s.seconds:.2f} s" if s.status != "skip" else "", detail)
    return table
