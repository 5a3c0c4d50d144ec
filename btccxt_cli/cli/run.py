"""``btccxt run config.yaml``: the live run, with a Rich dashboard or plain lines.

Orders go to the exchange only with ``broker.mode: live`` in the config AND ``--live`` here,
after a summary of exchange, account and symbols is confirmed (``--yes`` confirms ahead; a
non-interactive run without it is refused). SIGUSR1 (and ``broker.kill_switch_file``) cancels
open orders and stops the run.

Exit codes: 0 stopped normally (duration, max bars, Ctrl-C/SIGTERM, feeds ended); 1 the run
failed (exchange unreachable ...); 2 bad config/credentials/exchange/symbol/timeframe;
3 the strategy raised (its traceback is shown); 130 a second Ctrl-C forced the exit.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import typer

__all__ = ["run_command"]


def run_command(
    config: Path = typer.Argument(..., help="The YAML config file.", show_default=False),
    plain: bool = typer.Option(False, "--plain", help="One plain line per bar and event instead of the dashboard."),
    duration: float | None = typer.Option(None, "--duration", min=0.1, help="Stop after SECONDS."),
    max_bars: int | None = typer.Option(None, "--max-bars", min=1,
                                        help="Stop after N live bars on every symbol."),
    events: Path | None = typer.Option(None, "--events", help="Write bars and events as JSON Lines to FILE."),
    metrics_port: int | None = typer.Option(None, "--metrics-port", min=0, max=65535,
                                            help="Serve Prometheus metrics on 127.0.0.1:PORT."),
    live: bool = typer.Option(False, "--live", help="Place real orders (needs broker.mode: live in "
                              "the config); without it nothing is sent to the exchange."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Confirm the live pre-flight summary ahead "
                             "(required when stdin is not a terminal)."),
) -> None:
    """Run a strategy live on the bars of the config's exchange (paper trading by default)."""
    from btccxt_cli.cli.common import fail, setup_run_logging
    from btccxt_cli.config.load import load_config
    from btccxt_cli.errors import BtccxtError
    from btccxt_cli.exchange.describe import validate_exchange

    try:
        cfg = load_config(config)
        validate_exchange(cfg)
    except BtccxtError as exc:
        fail(exc)
    _check_live_flags(cfg, config, live)
    from rich.console import Console

    out = Console(no_color=bool(os.environ.get("NO_COLOR")) or None, highlight=False)
    use_dashboard = cfg.dashboard.enabled and not plain and out.is_terminal
    setup_run_logging(cfg, out if use_dashboard else None)
    sim = None
    try:
        sim_url = cfg.exchange.sim_url
        if cfg.exchange.sim is True:
            from btccxt_cli.sim.app import SimThread

            keys = None
            if live:  # the built-in simulator accepts the config's keys
                from btccxt_cli.sim.accounts import SimKey

                ex = cfg.exchange
                keys = [SimKey(ex.api_key.get_secret_value(), ex.secret.get_secret_value(),
                               ex.password.get_secret_value() if ex.password else None)]
            # the markets `btccxt sim` lists, not the config's symbols: an unknown one is refused
            sim = SimThread(exchanges=(cfg.exchange.id,), api_keys=keys).start()
            sim_url = sim.url(cfg.exchange.id)
        code = _run(cfg, config, sim_url, out, use_dashboard, duration=duration, max_bars=max_bars,
                    events=events, metrics_port=metrics_port, live=live, yes=yes)
    except BtccxtError as exc:
        fail(exc)
    finally:
        if sim is not None:
            sim.stop()
    raise typer.Exit(code)


def _run(cfg: Any, path: Path, sim_url: str | None, out: Any, use_dashboard: bool, *,
         duration: float | None, max_bars: int | None, events: Path | None,
         metrics_port: int | None = None, live: bool = False, yes: bool = False) -> int:
    from btccxt_cli.runtime.runner import Runner, StrategyFailed

    on_line = None if use_dashboard else (lambda line: print(line, flush=True))  # noqa: T201 - CLI output
    runner = Runner(cfg, sim_url=sim_url, events=events, max_bars=max_bars, duration=duration,
                    on_line=on_line, config_dir=path.resolve().parent, metrics_port=metrics_port,
                    live=live)
    runner.build()
    if live and not _confirm_live(runner, out, yes):
        runner._shutdown()
        return 1
    _install_signals(runner)
    try:
        if use_dashboard:
            from rich.live import Live

            from btccxt_cli.dashboard.view import DashboardView

            assert runner.monitor is not None
            mon = runner.monitor
            view = DashboardView()  # remembers column widths from one refresh to the next
            with Live(get_renderable=lambda: view(mon.snapshot()), console=out,
                      refresh_per_second=cfg.dashboard.refresh_per_second, transient=False):
                summary = runner.run()
        else:
            summary = runner.run()
    except StrategyFailed as exc:
        sys.stderr.write(exc.user_traceback)
        sys.stderr.write(f"error: {exc.message}; the run was stopped\n")
        return exc.exit_code
    for line in summary.lines():
        out.print(line, markup=False, soft_wrap=True)  # a terminal's width never splits a line
    return summary.exit_code


def _install_signals(runner: Any) -> None:
    state = {"n": 0}

    def handler(signum: int, frame: Any) -> None:
        state["n"] += 1
        if state["n"] > 1:
            os._exit(130)  # second Ctrl-C: leave now
        runner.stop(f"signal {signal.Signals(signum).name}")

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    if hasattr(signal, "SIGUSR1"):  # the kill switch: cancel open orders, then stop
        signal.signal(signal.SIGUSR1, lambda signum, frame: runner.kill("SIGUSR1"))


def _check_live_flags(cfg: Any, path: Path, live: bool) -> None:
    """Live orders need both the config's ``broker.mode: live`` and ``--live``."""
    if cfg.broker.mode == "live" and not live:
        sys.stderr.write(f"error: {path}: broker.mode is live, but --live was not given; nothing "
                         "is sent to an exchange without both (add --live, or set broker.mode: "
                         "paper)\n")
        raise typer.Exit(2)
    if live and cfg.broker.mode != "live":
        sys.stderr.write(f"error: --live needs broker.mode: live in {path} (it is "
                         f"{cfg.broker.mode}); live orders need both\n")
        raise typer.Exit(2)


def _confirm_live(runner: Any, out: Any, yes: bool) -> bool:
    """Print the pre-flight summary; True when the user (or ``--yes``) confirms."""
    from btccxt_cli.errors import BtccxtError

    try:
        lines = runner.preflight()
    except BtccxtError:
        runner._shutdown()
        raise
    for line in lines:
        out.print(line, markup=False, soft_wrap=True)  # a terminal's width never splits a line
    if yes:
        out.print("confirmed by --yes", markup=False)
        return True
    if not sys.stdin.isatty():
        runner._shutdown()
        sys.stderr.write("error: live orders need confirmation: stdin is not a terminal, so nobody "
                         "can answer; pass --yes to confirm the summary above ahead\n")
        raise typer.Exit(2)
    try:
        if typer.confirm("Place live orders with this account?", default=False):
            return True
    except (typer.Abort, KeyboardInterrupt, EOFError):  # Ctrl-D / Ctrl-C at the prompt: a no
        out.print("")
    out.print("aborted: no orders were sent", markup=False)
    return False
