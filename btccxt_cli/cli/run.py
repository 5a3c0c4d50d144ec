"""``btccxt run config.yaml``: the live run, with a Rich dashboard or plain lines.

Orders go to the exchange only with ``broker.mode: live`` in the config AND ``--live`` here,
after a summary of exchange, account and symbols is confirmed (``--yes`` confirms ahead; a
non-interactive run without it is refused). SIGUSR1 (and ``broker.kill_switch_file``) cancels
open orders and stops the run.

Stop means stop: SIGINT/SIGTERM handlers are installed first thing, so a signal during
start-up is a normal stop too (exit 0). After a stop request the run gets ``--stop-grace``
seconds to return; a strategy stuck in ``next()`` is then stopped by force with one line naming
where it was stuck (exit 4; ``runtime/stopping.py``). A signal the main thread cannot handle
at once (Python runs handlers there only, between bytecodes: it landed just before a blocking
call) still asks for the stop: a thread reads the signal wakeup fd. A second Ctrl-C/SIGTERM
leaves at once.
Non-daemon threads still running after the run ended (a strategy's) get the same grace, then
the process leaves without them.

Exit codes (README's table): 0 stopped normally (duration, max bars, Ctrl-C/SIGTERM, also during
start-up, feeds ended); 1 the run failed after it started; 2 bad config/option/output path/
credentials/exchange/symbol/timeframe, or the exchange unreachable at start; 3 the strategy
raised (its traceback is shown); 4 stopped by force; N the strategy called sys.exit(N);
130/143 a second Ctrl-C/SIGTERM forced the exit at once.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import typer

__all__ = ["run_command"]

MAX_DURATION = 366 * 86400.0
"""Longest ``--duration`` (a year); leave it out to run until stopped."""


class _EarlyStop(BaseException):
    """A stop signal during start-up: unwinds start-up; the run then ends normally (exit 0)."""


class _Signals:
    """SIGINT/SIGTERM for the whole command: before the run starts they unwind start-up
    (``_EarlyStop``); once it runs they ask the runner to stop. A second one leaves at once."""

    def __init__(self) -> None:
        self.count = 0
        self.reason: str | None = None
        self.runner: Any = None
        self.grace = 5.0
        self.unwound = threading.Event()  # start-up let go after an early stop
        self.finished = threading.Event()  # the command is done
        self.watch: Any = None  # forces an early stop that start-up does not let go of
        self._wake_fds: tuple[int, int, int] | None = None  # (read, write, previous wakeup fd)

    def arm(self) -> None:
        from btccxt_cli.runtime.stopping import StopWatch

        self.watch = StopWatch(grace=self.grace, returned=self.unwound, finished=self.finished,
                               thread_id=threading.get_ident(), strategy_path=None,
                               close=lambda: None, on_force=_leave_forced).arm()

    def install(self) -> None:
        signal.signal(signal.SIGINT, self.handler)
        signal.signal(signal.SIGTERM, self.handler)
        self._wake_fds = self._watch_wakeup_fd()

    def _watch_wakeup_fd(self) -> tuple[int, int, int] | None:
        """Python runs ``handler`` on the main thread only, between bytecodes: a signal that
        lands just before the strategy enters a blocking call (or while it blocks it) is not
        handled until that call returns, maybe never. The C-level handler also writes the
        signal's number to the wakeup fd on whatever thread got it: a thread reading it asks
        for the stop at once (the first signal's effect; ``handler`` later counts it once)."""
        try:
            r, w = os.pipe()
            os.set_blocking(w, False)
            old = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        except (ValueError, OSError):  # not the main thread (an in-process test runner)
            return None
        threading.Thread(target=self._read_wakeups, args=(r,), name="btccxt-signals",
                         daemon=True).start()
        return r, w, old

    def _read_wakeups(self, fd: int) -> None:
        try:
            while data := os.read(fd, 64):  # b"": the write end was closed (uninstall)
                for signum in data:
                    if signum in (signal.SIGINT, signal.SIGTERM):
                        self.wake(signal.Signals(signum).name)
        except OSError:
            pass
        finally:
            os.close(fd)

    def wake(self, name: str) -> None:
        """(signal thread) A stop signal was received: ask for the stop now, whatever the
        main thread is doing; the stop watch forces it after the grace."""
        runner, watch = self.runner, self.watch
        if runner is not None:
            runner.stop(f"signal {name}")
        elif watch is not None:
            watch.request(f"signal {name} during start-up")

    def uninstall(self) -> None:
        fds, self._wake_fds = self._wake_fds, None
        if fds is not None:
            _, w, old = fds
            try:
                signal.set_wakeup_fd(old)
            except ValueError:  # noqa: S110 - not the main thread: leaving it as it is
                pass
            os.close(w)  # the reading thread ends on the pipe's end (and closes its side)

    def handler(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        self.count += 1
        if self.count > 1:  # the second one: leave now
            sys.stderr.write(f"{name} again: leaving at once (exit {128 + signum})\n")
            sys.stderr.flush()
            os._exit(128 + signum)
        self.reason = f"signal {name}"
        if self.runner is not None:
            self.runner.stop(self.reason)
            return
        if self.watch is not None:
            self.watch.request(f"{self.reason} during start-up")
        raise _EarlyStop(self.reason)


def _leave_forced(line: str) -> None:
    from btccxt_cli.runtime.stopping import EXIT_FORCED

    _flush()
    os._exit(EXIT_FORCED)


def _flush() -> None:
    for h in (*logging.getLogger("btccxt_cli").handlers, *logging.getLogger().handlers):
        try:
            h.flush()
        except Exception:  # noqa: S110 - best effort on the way out
            pass
    sys.stdout.flush()
    sys.stderr.flush()


def run_command(
    config: Path = typer.Argument(..., help="The YAML config file.", show_default=False),
    plain: bool = typer.Option(False, "--plain", help="One plain line per bar and event instead of the dashboard."),
    duration: str | None = typer.Option(None, "--duration", metavar="SECONDS",
                                        help="Stop after SECONDS (0.1 to a year)."),
    max_bars: int | None = typer.Option(None, "--max-bars", min=1,
                                        help="Stop after N live bars on every symbol."),
    events: Path | None = typer.Option(None, "--events", help="Write bars and events as JSON Lines to FILE."),
    metrics_port: int | None = typer.Option(None, "--metrics-port", min=0, max=65535,
                                            help="Serve Prometheus metrics on 127.0.0.1:PORT."),
    live: bool = typer.Option(False, "--live", help="Place real orders (needs broker.mode: live in "
                              "the config); without it nothing is sent to the exchange."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Confirm the live pre-flight summary ahead "
                             "(required when stdin is not a terminal)."),
    stop_grace: str = typer.Option("5", "--stop-grace", metavar="SECONDS",
                                   help="After Ctrl-C, SIGTERM or --duration, seconds the strategy "
                                   "gets to return before the run is stopped by force (exit 4)."),
) -> None:
    """Run a strategy live on the bars of the config's exchange (paper trading by default)."""
    signals = _Signals()
    signals.install()  # first: a signal during start-up is a normal stop, not a kill
    code = 0
    try:
        code = _start(signals, config, plain=plain, duration=duration, max_bars=max_bars,
                      events=events, metrics_port=metrics_port, live=live, yes=yes,
                      stop_grace=stop_grace)
    except _EarlyStop as stop:
        signals.unwound.set()
        sys.stdout.write(f"stopped: {stop} during start-up\n")
        code = 0
    finally:
        signals.unwound.set()
        if signals.watch is not None:
            signals.watch.disarm()
        signals.uninstall()
    _leave_despite_threads(code, signals.grace)
    raise typer.Exit(code)


def _leave_despite_threads(code: int, grace: float) -> None:
    """Python waits at exit for every non-daemon thread: one the strategy started and never
    ends would keep the process alive after the run ended. Give them ``grace`` seconds, then
    name them in one line and leave with the run's exit code."""
    import time

    main = threading.main_thread()
    end = time.monotonic() + grace
    for t in threading.enumerate():
        if t is not main and not t.daemon:
            t.join(max(0.0, end - time.monotonic()))
    left = [t.name for t in threading.enumerate() if t is not main and not t.daemon and t.is_alive()]
    if left:
        logging.getLogger(__name__).warning(
            "thread(s) %s still running %g s after the run ended (started by the strategy?); "
            "leaving anyway with exit code %d", ", ".join(left), grace, code)
        _flush()
        os._exit(code)


def _start(signals: _Signals, config: Path, *, plain: bool, duration: str | None,
           max_bars: int | None, events: Path | None, metrics_port: int | None, live: bool,
           yes: bool, stop_grace: str) -> int:
    from btccxt_cli.cache.source import check_config_sim
    from btccxt_cli.cli.common import fail, parse_seconds, setup_run_logging
    from btccxt_cli.config.load import load_config
    from btccxt_cli.errors import BtccxtError
    from btccxt_cli.exchange.describe import validate_exchange
    from btccxt_cli.paths import check_output_file, claim

    try:  # options first (cheap), then the config; all before anything starts
        seconds = parse_seconds(duration, "--duration", low=0.1, high=MAX_DURATION,
                                hint="leave --duration out to run until stopped")
        grace = parse_seconds(stop_grace, "--stop-grace", low=0.0, high=600.0,
                              hint="e.g. --stop-grace 5")
        assert grace is not None
        signals.grace = grace
        signals.arm()
        claim(config, "config file")  # no output may be it
        if events is not None:
            events = check_output_file(events, what="events file", option="--events")
        cfg = load_config(config)
        validate_exchange(cfg)
        check_config_sim(cfg)  # exchange.sim serves exchange.id, or one line at its line
        _check_default_files(cfg, live)
        _check_hub_redis(cfg)
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
            sim = SimThread(exchanges=(cfg.exchange.id,), api_keys=keys)
            sim.start()
            sim_url = sim.url(cfg.exchange.id)
        return _run(cfg, config, sim_url, out, use_dashboard, signals, duration=seconds,
                    max_bars=max_bars, events=events, metrics_port=metrics_port, live=live,
                    yes=yes, stop_grace=grace)
    except BtccxtError as exc:
        fail(exc)
    finally:
        if sim is not None:
            sim.stop()


def _check_hub_redis(cfg: Any) -> None:
    """``feed.mode: hub``: Redis answers before anything starts; else one line at hub.url,
    exit 2 (an outage later is DISCONNECTED, then LIVE again)."""
    if cfg.feed.mode != "hub" or not cfg.hub.url:
        return
    from btccxt_cli.runtime.hubcheck import REDIS_HINT, reachable

    why = reachable(cfg.hub.url)
    if why is not None:
        raise cfg.source.error(("hub", "url"), why, hint=REDIS_HINT)


def _check_default_files(cfg: Any, live: bool) -> None:
    """The files the config does not name (default cache, orders database, or the paths of
    ``$BTCCXT_CACHE``/``$BTCCXT_ORDERS_DB``), checked before anything starts; the config's own
    paths were checked when it was loaded."""
    from btccxt_cli.paths import check_output_file

    if cfg.feed.cache is True:
        from btccxt_cli.cache.sqlite import default_cache_path

        check_output_file(default_cache_path(), what="OHLCV cache", option="feed.cache ($BTCCXT_CACHE)")
    if live and cfg.broker.orders_db is None:
        from btccxt_cli.cache.orders import default_orders_path

        check_output_file(default_orders_path(), what="orders database",
                          option="$BTCCXT_ORDERS_DB (default orders database)")


def _run(cfg: Any, path: Path, sim_url: str | None, out: Any, use_dashboard: bool,
         signals: _Signals, *, duration: float | None, max_bars: int | None, events: Path | None,
         metrics_port: int | None = None, live: bool = False, yes: bool = False,
         stop_grace: float = 5.0) -> int:
    from btccxt_cli.runtime.runner import Runner, StrategyFailed

    on_line = None if use_dashboard else (lambda line: print(line, flush=True))  # noqa: T201 - CLI output
    shown: dict[str, Any] = {}  # the dashboard's Live display, to close on a forced stop

    def on_force(summary: Any) -> None:  # (stop watch thread) print, flush, leave
        display = shown.get("live")
        if display is not None:
            try:
                display.stop()
            except Exception:  # noqa: S110 - leaving anyway
                pass
        for line in summary.lines():
            out.print(line, markup=False, soft_wrap=True)
        _flush()
        os._exit(summary.exit_code)

    runner = Runner(cfg, sim_url=sim_url, events=events, max_bars=max_bars, duration=duration,
                    on_line=on_line, config_dir=path.resolve().parent, metrics_port=metrics_port,
                    live=live, stop_grace=stop_grace, on_force=on_force)
    try:
        runner.build()
        if live:
            # Ctrl-C at the prompt is a "no" (KeyboardInterrupt); SIGTERM stays a stop
            signal.signal(signal.SIGINT, signal.default_int_handler)
            try:
                confirmed = _confirm_live(runner, out, yes)
            finally:
                signal.signal(signal.SIGINT, signals.handler)
            if not confirmed:
                runner._shutdown()
                return 1
    except _EarlyStop:
        runner._shutdown()
        raise
    signals.runner = runner
    if signals.watch is not None:
        signals.watch.disarm()  # from here on the runner's own watch forces a stuck stop
    if signals.reason is not None:  # a start-up stop that start-up swallowed
        runner.stop(signals.reason)
    _install_kill_switch(runner)
    try:
        if use_dashboard:
            from rich.live import Live

            from btccxt_cli.dashboard.view import DashboardView

            assert runner.monitor is not None
            mon = runner.monitor
            view = DashboardView()  # remembers column widths from one refresh to the next
            with Live(get_renderable=lambda: view(mon.snapshot()), console=out,
                      refresh_per_second=cfg.dashboard.refresh_per_second, transient=False) as display:
                shown["live"] = display
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


def _install_kill_switch(runner: Any) -> None:
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
