"""The ``btccxt`` Typer app: global options, command registration, errors -> exit codes.

Heavy libraries (ccxt, backtrader, aiohttp) are imported inside the commands, never here,
so ``btccxt --help`` stays fast (a subprocess test checks ``sys.modules``).
"""

from __future__ import annotations

import logging
import sys

import typer

from btccxt_cli import __version__
from btccxt_cli.errors import BtccxtError

__all__ = ["app", "main"]

logger = logging.getLogger(__name__)

app = typer.Typer(
    name="btccxt",
    help="Live-trading runner for crypto exchanges (backtrader + ccxt + ccxt.pro), "
    "with an offline exchange simulator.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"btccxt {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Show the version and exit."),
    log_level: str = typer.Option("WARNING", "--log-level", envvar="BTCCXT_LOG_LEVEL",
                                  help="Logging level for library messages."),
) -> None:
    """btccxt command line."""
    from btccxt_cli.log import setup_logging
    from btccxt_cli.paths import begin_command

    begin_command()  # every file named in this command gets one role (paths.claim)
    setup_logging(log_level)


def _register() -> None:
    from btccxt_cli.cli.helpfix import apply
    from btccxt_cli.cli.run import run_command
    from btccxt_cli.cli.sim import SIMULATED_EXCHANGES, sim_command

    apply()  # flags without a type label, arguments in upper case

    app.command("run", help="Run a strategy live from a YAML config (paper trading by default).")(
        run_command)

    app.command("sim", help=f"Serve the exchange simulator ({', '.join(SIMULATED_EXCHANGES)}) "
                "on 127.0.0.1.")(sim_command)

    from btccxt_cli.cli.validate import config_app, validate_command

    app.command("validate", help="Check a config file offline: schema, rules, exchange facts.")(
        validate_command)
    app.add_typer(config_app, name="config")

    from btccxt_cli.cli.check_ws import check_ws_command
    from btccxt_cli.cli.exchanges import exchanges_command

    app.command("check-ws", help="Diagnose an exchange's OHLCV WebSocket step by step "
                "(REST, clock, symbol, connect, first candle, rate, keepalive).")(check_ws_command)
    app.command("exchanges", help="List ccxt's exchanges: REST/WebSocket OHLCV, timeframes, "
                "simulator support (offline).")(exchanges_command)

    from btccxt_cli.cli.backfill import backfill_command

    app.command("backfill", help="Download closed OHLCV bars into the local SQLite cache "
                "(resumable: reruns fetch only what is missing).")(backfill_command)

    from btccxt_cli.cli.backtest import backtest_command

    app.command("backtest", help="Backtest a config's strategy on cached bars, exactly as a live "
                "run would have traded them (same feeds, warm-up and paper broker).")(backtest_command)

    from btccxt_cli.cli.hub import hub_command

    app.command("hub", help="Publish the config's bars to Redis Streams for runners with "
                "feed.mode: hub (one exchange connection for many runners); --check a URL.")(hub_command)

    from btccxt_cli.cli.cache import cache_app

    app.add_typer(cache_app, name="cache")

    from btccxt_cli.cli.notify_test import notify_test_command
    from btccxt_cli.cli.status import status_command

    app.command("status", help="Health of a running btccxt from its metrics port: a table or "
                "--json; exit 0 ready, 1 degraded, 2 unreachable.")(status_command)
    app.command("notify-test", help="Send one test message to the config's notify.urls.")(
        notify_test_command)


_register()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app, turn our errors into one line and an exit code."""
    try:
        app(args=argv, standalone_mode=True)
    except BtccxtError as exc:  # raised outside a command's own handling
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
