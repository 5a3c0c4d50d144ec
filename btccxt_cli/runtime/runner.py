"""Config -> store, feeds, cerebro and strategy; run; stop in order; summarise.

No rich and no typer here: the CLI passes callbacks for output. Imports backtrader (through
``bt``) only when a run is built.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from btccxt_cli.clock import SYSTEM_CLOCK, Clock
from btccxt_cli.config.schema import Config
from btccxt_cli.errors import BtccxtError, ConfigError, TemporaryError
from btccxt_cli.model import BrokerStatus, ConnectionStatus, FeedStatus
from btccxt_cli.paths import check_output_file
from btccxt_cli.runtime.assembly import paper_derivs
from btccxt_cli.runtime.backtest_metrics import clean, order_bar_ms
from btccxt_cli.runtime.state import RunMonitor
from btccxt_cli.runtime.stopping import EXIT_FORCED, STOP_GRACE, StopWatch, exit_code_of, raised_at
from btccxt_cli.runtime.strategies import (
    StrategyFailed,
    check_strategy,
    load_strategy,
    user_traceback,
)
from btccxt_cli.sources.pipe import ring

__all__ = ["Runner", "RunSummary", "StrategyFailed", "load_strategy", "EXIT_CODES", "connection_status"]

logger = logging.getLogger(__name__)

EXIT_CODES = {
    "ok": 0,  # stopped by --duration, --max-bars, Ctrl-C/SIGTERM, or every feed ended
    "failed": 1,  # the run could not go on (exchange unreachable, every feed refused)
    "config": 2,  # bad config, unknown exchange/symbol/timeframe, missing credentials
    "strategy": 3,  # the user's strategy raised
    "forced": EXIT_FORCED,  # stopped by force: the run did not return within the stop grace
}



@dataclass
class RunSummary:
    reason: str
    bars: dict[str, dict[str, int]] = field(default_factory=dict)
    reconnects: int = 0
    gaps_filled: int = 0  # gap-filled bars the strategy saw, all symbols
    rest_calls: int = 0
    trades: int = 0
    pnl: float = 0.0
    value: float = 0.0
    exit_code: int = 0
    data_notes: list[str] = field(default_factory=list)  # skipped/revised bars, short history

    def lines(self) -> list[str]:
        out = [f"stopped: {self.reason}"]
        for sym, counts in self.bars.items():
            parts = ", ".join(f"{k} {v}" for k, v in counts.items())
            out.append(f"  {sym}: {parts}")
        out += [f"  {n}" for n in self.data_notes]
        out.append(f"  reconnects {self.reconnects}, gap-filled bars {self.gaps_filled}, "
                   f"REST calls {self.rest_calls}")
        out.append(f"  trades {self.trades}, P&L {self.pnl:+.2f}, value {self.value:.2f}")
        return out


# --------------------------------------------------------------------------- the runner
class Runner:
    """One live run of a config.

    Args:
        config: a loaded, validated ``Config``.
        sim_url: the simulator's base URL when ``config.exchange.sim`` is set.
        events: JSON Lines path (overrides ``config.events.file``).
        max_bars: stop once every symbol has seen this many live bars.
        metrics_port: serve Prometheus metrics on this port (overrides ``config.metrics.port``).
        duration: stop after this many seconds.
        on_line: receives one plain line per bar and event (``--plain``), or None.
        live: place real orders with ``CCXTBroker`` (the CLI's ``--live`` and
            ``broker.mode: live`` together); default: paper trading.
        stop_grace: seconds the run gets to return after a stop request before it is stopped
            by force (``runtime/stopping.py``).
        on_force: receives the summary of a run stopped by force (the CLI prints it and ends
            the process with exit code 4); None: the run is closed and left blocked.
    """

    def __init__(self, config: Config, *, sim_url: str | None = None, events: Path | None = None,
                 max_bars: int | None = None, duration: float | None = None,
                 on_line: Any = None, config_dir: Path | None = None, clock: Clock = SYSTEM_CLOCK,
                 metrics_port: int | None = None, live: bool = False,
                 stop_grace: float = STOP_GRACE, on_force: Any = None) -> None:
        self.config = config
        self.stop_grace = stop_grace
        self.on_force = on_force
        self._finished = threading.Event()  # run() closed everything
        self._close_lock = threading.Lock()
        self._closed = False
        self._stopping = False
        self._watch: StopWatch | None = None
        self.live = live
        self.broker: Any = None  # the CCXTBroker of a live run
        self._run_over = threading.Event()
        self._kill_lock = threading.Lock()
        self.killed: str | None = None
        self.sim_url = sim_url
        self.events = events or config.events.file
        self.max_bars = max_bars
        self.duration = duration
        self.on_line = on_line
        self.config_dir = config_dir
        self.clock = clock
        self.reason = "every feed ended"
        self._stop_lock = threading.RLock()  # stop() may run in a signal handler over itself
        self.cerebro: Any = None
        self.store: Any = None
        self.feeds: list[Any] = []
        self.monitor: RunMonitor | None = None
        self.strategy_path: Path | None = None
        self._timer: threading.Timer | None = None
        self.trades = 0
        self.metrics_port = metrics_port if metrics_port is not None else config.metrics.port
        self.metrics: Any = None
        self.notifier: Any = None  # runtime/notify.py, when notify.urls are configured
        self._ran = False
        self._stop_told = False  # a record already said how the run ended (sys.exit, error)

    # ------------------------------------------------------------------ build
    def build(self) -> None:
        from btccxt_cli.bt.store import CCXTStore
        from btccxt_cli.runtime.assembly import add_feeds, new_cerebro, paper_broker

        cfg = self.config
        ex = cfg.exchange
        ccxt_cfg: dict[str, Any] = {"enableRateLimit": ex.rate_limit}
        for key, attr in (("apiKey", "api_key"), ("secret", "secret"), ("password", "password")):
            val = getattr(ex, attr)
            if val is not None:
                ccxt_cfg[key] = val.get_secret_value()
        if ex.options:
            ccxt_cfg["options"] = dict(ex.options)
        strat_cls, self.strategy_path = check_strategy(cfg, self.config_dir)
        cache: Any = None
        if cfg.feed.cache:
            from btccxt_cli.cache.sqlite import default_cache_path

            cache = default_cache_path() if cfg.feed.cache is True else Path(cfg.feed.cache)
            if self.config_dir is not None and not cache.is_absolute():
                cache = self.config_dir / cache
            cache = check_output_file(cache, what="OHLCV cache", option="feed.cache" if cfg.feed.cache
                                      is not True else "feed.cache ($BTCCXT_CACHE)")
        hub = cfg.feed.mode == "hub"  # bars from `btccxt hub` over Redis; no exchange socket
        if hub and not cfg.hub.url:
            raise cfg.source.error(("feed", "mode"), "mode: hub needs hub.url",
                                   hint="add hub: {url: redis://HOST:6379/0} (the Redis that "
                                   "`btccxt hub` publishes to)")
        try:
            self.store = CCXTStore(ex.id, config=ccxt_cfg, sandbox=ex.sandbox, sim_url=self.sim_url,
                                   cache=cache, hub_url=cfg.hub.url if hub else None,
                                   hub_namespace=cfg.hub.namespace,
                                   rate_budget=cfg.rate_limit.shared)
        except TemporaryError as exc:
            raise self._unreachable(exc) from exc
        if not hub:  # the hub subscribed (and checked) the symbols
            self._check_symbols()
        # bounded memory for runs that last days: every line keeps its minimum period, and
        # each data keeps ``lookback`` bars (CCXTFeed.qbuffer)
        # (runtime/assembly.py: the same cerebro, feeds and paper broker as `btccxt backtest`)
        cerebro = new_cerebro()
        if self.live:
            self.broker = cerebro.broker = self._live_broker()
        else:
            paper_broker(cerebro.broker, cfg.broker, symbols=[s.symbol for s in cfg.symbol_feeds()])
        f = cfg.feed
        self.feeds.extend(add_feeds(cerebro, self.store, cfg))
        cerebro.addstrategy(_observed(strat_cls, self), **cfg.strategy.params)
        self.cerebro = cerebro
        self.monitor = RunMonitor(
            f"btccxt {ex.id} {f.mode} {', '.join(s.symbol for s in cfg.symbol_feeds())}",
            statuses=self.store.status, connection=self._connection, events_path=self.events,
            on_line=self.on_line, clock=self.clock)
        self.monitor.decimals = {} if hub else self._decimals()
        if not self.live:  # the paper account as it starts, not zeros, before the first bar
            self.monitor.set_broker(BrokerStatus(cash=cfg.broker.cash, value=cfg.broker.cash))
        if cfg.notify.urls:  # notifications: a worker fed by the events file's records
            from btccxt_cli.runtime.unattended import run_notifier

            self.notifier = run_notifier(self)
        if self.metrics_port is not None:
            from btccxt_cli.runtime.metrics import RunMetrics

            self.metrics = RunMetrics(self.store.status, lambda: self.store.rest_calls, ex.id)
            from btccxt_cli.runtime.unattended import run_health

            health = run_health(self)
            health.exchange_clock = self._exchange_clock
            self.metrics.exchange_clock = self._exchange_clock
            if self.live and self.broker is not None:
                self.metrics.orders = self.broker.order_metrics
            port = self.metrics.serve(self.metrics_port, cfg.metrics.host, health=health)
            self.monitor.event(f"metrics on http://{cfg.metrics.host}:{port}/metrics "
                               "(health: /healthz, /readyz)")

    def _exchange_clock(self) -> tuple[float, float, float | None] | None:
        """The store's last reading of the exchange clock: (offset ms, age s, max age s:
        three reading periods), None if never read (any thread)."""
        st = self.store
        offset, at = getattr(st, "_offset_ms", None), getattr(st, "_offset_at", None)
        if offset is None or at is None:
            return None
        every = float(getattr(st, "clock_refresh", 0.0) or 0.0)
        return float(offset), max(0.0, st.clock.monotonic() - at), 3 * every if every > 0 else None

    def _path(self, p: Path | None) -> Path | None:
        if p is None or p.is_absolute() or self.config_dir is None:
            return p
        return self.config_dir / p

    def _live_broker(self) -> Any:
        from btccxt_cli.bt.broker import CCXTBroker, OrderLimits

        b = self.config.broker
        kill_file = self._path(b.kill_switch_file)
        if kill_file is not None and kill_file.exists():
            raise ConfigError(f"the kill switch file {kill_file} exists",
                              hint="delete it to start a live run")
        limits = OrderLimits(max_position=dict(b.limits.max_position),
                             max_notional=dict(b.limits.max_notional),
                             max_orders_per_minute=b.limits.max_orders_per_minute,
                             max_leverage=dict(b.limits.max_leverage),
                             min_liquidation_distance=b.limits.min_liquidation_distance)
        from btccxt_cli.cache.orders import default_orders_path

        db = self._path(b.orders_db)  # a configured path was checked with the config
        if db is None:
            db = check_output_file(default_orders_path(), what="orders database",
                                   option="$BTCCXT_ORDERS_DB (default orders database)")
        return CCXTBroker(store=self.store, db_path=db, limits=limits,
                          poll_interval=b.poll_interval, updates=b.updates,
                          reconcile_interval=b.reconcile_interval,
                          adopt_holdings=b.adopt_holdings, run_scope=self._run_scope(),
                          leverage=b.leverage if isinstance(b.leverage, dict) else float(b.leverage),
                          margin_mode=b.margin_mode, clock=self.clock)

    def _run_scope(self) -> str:
        """``broker.run_scope``, else the config file and the strategy (``bt/runlock.py``)."""
        from btccxt_cli.bt.runlock import default_scope

        cfg = self.config
        return cfg.broker.run_scope or default_scope(cfg.source.file or self.config_dir,
                                                     str(cfg.strategy.name or cfg.strategy.path))

    def preflight(self) -> list[str]:
        """What a live run will trade with: exchange, account balances, symbols, limits.

        Reads the balances over REST (the store's blocking client); credentials the exchange
        refuses raise ``CredentialsError``. Secrets are never part of the lines.
        """
        from btccxt_cli.bt.ordersync import WS_ORDER_EXCHANGES
        from btccxt_cli.cache.orders import (
            account_id,
            default_orders_path,
            may_trade,
            read_holdings,
        )
        from btccxt_cli.exchange.errors import map_ccxt_error

        cfg = self.config
        ex = self.store.sync_exchange()
        try:
            bal = ex.fetch_balance()
        except Exception as exc:
            err = map_ccxt_error(exc, exchange=ex, what="read the account balances")
            raise (self._unreachable(err) if isinstance(err, TemporaryError) else err) from exc
        where = (f"simulator {self.sim_url}" if self.sim_url else
                 "sandbox (testnet)" if cfg.exchange.sandbox else "the real exchange")
        held = {a: v for a, v in sorted((bal.get("total") or {}).items()) if v}
        lines = [f"LIVE TRADING on {cfg.exchange.id} ({where})",
                 f"  account   {account_id(cfg.exchange.id, ex.apiKey)}",
                 "  balances  " + (", ".join(f"{a} {v:g}" for a, v in held.items()) or "none"),
                 f"  symbols   {', '.join(s.symbol for s in cfg.symbol_feeds())}"]
        account = account_id(cfg.exchange.id, ex.apiKey)  # the bot's own positions: docs/orders.md
        own = read_holdings(self._path(cfg.broker.orders_db) or default_orders_path(), account)
        from btccxt_cli.bt.runlock import RunLock

        # another live run on this database, account and scope: refused before the prompt
        probe = RunLock(self._path(cfg.broker.orders_db) or default_orders_path(), account,
                        self._run_scope(), started_ms=self.clock.time_ms())
        probe.acquire()
        probe.release()
        lines.append("  may sell  " + may_trade([s.symbol for s in cfg.symbol_feeds()], held, own,
                                                cfg.broker.adopt_holdings))
        lim = cfg.broker.limits
        parts = [f"max_position {k} {v:g}" for k, v in lim.max_position.items()]
        parts += [f"max_notional {k} {v:g}" for k, v in lim.max_notional.items()]
        if lim.max_orders_per_minute:
            parts.append(f"max_orders_per_minute {lim.max_orders_per_minute}")
        parts += [f"max_leverage {k} {v:g}" for k, v in lim.max_leverage.items()]
        if lim.min_liquidation_distance:
            parts.append(f"min_liquidation_distance {lim.min_liquidation_distance:g}")
        lines.append("  limits    " + (", ".join(parts) or "none"))
        # swaps (ccxt symbols with a :settle part): what the run sets on the exchange at start
        swaps: dict[str, list[str]] = {}
        for s in (f.symbol for f in cfg.symbol_feeds() if ":" in f.symbol):
            swaps.setdefault(f"{cfg.broker.leverage_of(s):g}x {cfg.broker.margin_mode_of(s)}", []).append(s)
        if swaps:
            lines.append("  swaps     " + "; ".join(f"{k}: {', '.join(v)}" for k, v in swaps.items())
                         + " (leverage and margin mode, set on the exchange at start)")
        kill = self._path(cfg.broker.kill_switch_file)
        lines.append(f"  kill      SIGUSR1{f' or the file {kill}' if kill else ''}")
        lines.append(f"  orders db {self._path(cfg.broker.orders_db) or default_orders_path()}")
        b = cfg.broker
        stream = b.updates == "websocket" or (b.updates == "auto" and cfg.exchange.id in WS_ORDER_EXCHANGES)
        lines.append("  updates   " + (
            f"pushed by WebSocket; REST every {b.reconcile_interval:g} s, every "
            f"{b.poll_interval:g} s while the stream is down" if stream
            else f"REST polling every {b.poll_interval:g} s"))
        return lines

    def kill(self, reason: str) -> None:
        """The kill switch (any thread, signal handlers too): cancel open orders, then stop."""
        with self._kill_lock:
            if self.killed is not None:
                return
            self.killed = reason

        def work() -> None:
            if self.monitor is not None:
                self.monitor.event(f"KILL SWITCH ({reason}): cancelling open orders and stopping",
                                   record={"type": "kill", "reason": reason})
            ok = True
            try:
                if self.broker is not None:
                    ok = self.broker.kill(reason)
                elif self.cerebro is not None:  # paper: cancel backtrader's open orders
                    br = self.cerebro.broker
                    for o in [o for o in getattr(br, "orders", []) if o.alive()]:
                        br.cancel(o)
            except Exception:
                ok = False
                logger.exception("kill switch: cancelling open orders failed")
            if not ok:
                logger.error("kill switch: some orders may still be open; check the exchange")
            if self.broker is not None:
                # stop once the cancellations reached the strategy (next cerebro cycle)
                drained = threading.Event()
                self.broker.after_drain(drained.set)
                drained.wait(5.0)
            self.stop(f"kill switch: {reason}")

        threading.Thread(target=work, name="btccxt-kill", daemon=True).start()

    def _watch_kill_file(self, path: Path) -> None:
        while not self._run_over.wait(0.5):
            if path.exists():
                self.kill(f"file {path}")
                return

    def _check_symbols(self) -> None:
        from btccxt_cli.exchange.describe import check_symbols
        from btccxt_cli.exchange.errors import is_temporary

        try:
            markets = self.store.sync_exchange().markets
        except BtccxtError as exc:
            cause = exc.__cause__
            if isinstance(exc, TemporaryError) or (cause is not None and is_temporary(cause)):
                raise self._unreachable(exc) from exc
            raise
        check_symbols(self.config, markets)

    def _unreachable(self, exc: BtccxtError) -> ConfigError:
        """No network at start-up: exit 2 like a bad config, naming the config file and key."""
        cfg = self.config
        key = ("exchange", "sim") if self.sim_url and cfg.exchange.sim is not True else ("exchange", "id")
        hint = "check the network, or run against the simulator with sim: true"
        return cfg.source.error(key, f"{cfg.exchange.id} is unreachable: {exc.message}",
                                hint=(exc.hint or hint) if key[1] == "sim" else hint)

    def _decimals(self) -> dict[str, tuple[int | None, int | None]]:
        """Price and amount decimals per symbol, from the markets ``_check_symbols`` loaded."""
        from btccxt_cli.runtime.state import market_decimals

        ex = self.store.sync_exchange()
        mode = getattr(ex, "precisionMode", None)
        return {s.symbol: market_decimals(ex.markets.get(s.symbol) or {}, mode)
                for s in self.config.symbol_feeds()}

    def _connection(self) -> ConnectionStatus:
        return connection_status(self.config.exchange.id, self.config.feed.mode, self.store.status(),
                                 rest_calls=self.store.rest_calls,
                                 rate_limited=self.store.gate.rate_limited)

    # ------------------------------------------------------------------ observe (strategy thread)
    def observe_next(self, strat: Any) -> None:
        mon = self.monitor
        assert mon is not None
        if self._stopping:  # a stop asked for just before cerebro.run() reset its flag
            self.cerebro.runstop()
        for d in self.feeds:  # the price feeds (not a swap's funding-rate feed)
            n = len(d)
            seen = strat._btccxt_lens.get(d, 0)
            if n <= seen:
                continue
            strat._btccxt_lens[d] = n
            ev = d.current_event()
            if ev is None:
                continue
            c = ev.candle
            lat = None
            if ev.source.value == "live":
                s = d.series
                lat = float(s.exchange_now_ms() - s.grid.next_open(c.ts))
                if self.metrics is not None:
                    self.metrics.observe_latency(d._name, lat)
            mon.on_bar(d._name, d.ccxt_timeframe, c.ts, (c.open, c.high, c.low, c.close, c.volume),
                       ev.source.value, lat)
        self._broker_status(strat)
        if self.max_bars is not None and all(mon.live_bars.get(d._name, 0) >= self.max_bars
                                             for d in self.feeds):
            self.stop(f"--max-bars {self.max_bars} reached")

    def observe_position_closed(self, kw: dict[str, Any]) -> None:
        """A swap position closed by the exchange (a liquidation) or outside the bot (the live
        broker's ``position_closed`` notice; a paper liquidation's too): a line in the events,
        a ``{"type": "position"}`` record, and a notification (live runs)."""
        if self.monitor is None:
            return
        symbol, reason = str(kw.get("symbol", "")), str(kw.get("reason", ""))
        before, after = float(kw.get("before") or 0.0), float(kw.get("after") or 0.0)
        price = float(kw.get("price") or 0.0)
        self.monitor.event(f"position {symbol} {before:+g} -> {after:+g} at {price:.8g}: {reason}",
                           record={"type": "position", "event": reason, "symbol": symbol,
                                   "before": before, "after": after, "price": price})

    def observe_status(self, data: Any, status: int, message: str) -> None:
        if self.monitor is not None and any(data is f for f in self.feeds):
            self.monitor.on_state(data._name, data._getstatusname(status), message)

    def _broker_status(self, strat: Any) -> None:
        br = strat.broker
        if self.broker is not None and br is self.broker:  # live: the exchange's own numbers
            self.monitor.set_broker(br.status(trades=self.trades))
            for via, reason in br.updates_changes():  # the order stream went up or down
                self.monitor.event(f"order updates {via}: {reason}",
                                   record={"type": "orders", "event": via, "message": reason})
            return
        # read, never create: backtrader values every position it holds with data.close[0]
        held = getattr(br, "positions", {})
        positions = {d._name: held[d].size for d in strat.datas if d in held}
        value = br.getvalue()
        self.monitor.set_broker(BrokerStatus(
            mode="paper", cash=br.getcash(), value=value, positions=positions,
            open_orders=len([o for o in br.orders if o.alive()]) if hasattr(br, "orders") else 0,
            trades=self.trades, pnl=value - self.config.broker.cash,
            derivs=paper_derivs(br, strat.datas)))

    # ------------------------------------------------------------------ run / stop
    def stop(self, reason: str) -> None:
        """Ask the run to end (any thread; signal handlers too)."""
        with self._stop_lock:
            if self.reason == "every feed ended":
                self.reason = reason
            first, self._stopping = not self._stopping, True
        if self.cerebro is not None:
            self.cerebro.runstop()
            ring()  # cerebro may be waiting for a bar: let it see the stop now
        if first and self._watch is not None:  # stop means stop: forced after the grace
            self._watch.request(reason)

    def _forced(self, line: str) -> None:
        """(stop watch thread) The run did not return in time; everything is closed."""
        self.reason = f"{self.reason}, then by force (exit {EXIT_FORCED}): {line}"
        if self.on_force is not None:
            self.on_force(self._summary(EXIT_FORCED))

    def run(self) -> RunSummary:
        """Run until a stop condition; always stops feeds and the store."""
        if self.cerebro is None:
            self.build()
        self._ran = True
        if self.duration:
            self._timer = threading.Timer(self.duration, self.stop, args=(f"--duration {self.duration:g}s",))
            self._timer.daemon = True
            self._timer.start()
        code = 0
        self._watch = StopWatch(  # armed now: a signal handler only sets its event
            grace=self.stop_grace, returned=self._run_over, finished=self._finished,
            thread_id=threading.get_ident(), strategy_path=self.strategy_path,
            close=lambda: self._close(broker=True), on_force=self._forced,
            event=self.monitor.event if self.monitor else None).arm()
        if self._stopping:  # asked before the watch was armed
            self._watch.request(self.reason)
        kill_file = self._path(self.config.broker.kill_switch_file)
        if kill_file is not None:
            threading.Thread(target=self._watch_kill_file, args=(kill_file,), name="btccxt-killfile",
                             daemon=True).start()
        try:
            self.cerebro.run()
        except SystemExit as exc:  # sys.exit() in the strategy: its code, said in one line
            code = exit_code_of(exc)
            self.reason = (f"the strategy ended the run with sys.exit({exc.code!r}) at "
                           f"{raised_at(exc, self.strategy_path)} (exit code {code})")
            if self.monitor is not None:
                self._stop_told = True
                self.monitor.event(self.reason, record={"type": "stop", "event": "sys.exit",
                                                        "code": code})
        except BtccxtError:
            raise
        except Exception as exc:
            message = f"the strategy raised {type(exc).__name__}: {exc}"
            self.reason = message
            if self.monitor is not None:
                self._stop_told = True
                self.monitor.event(message, record={"type": "error", "event": "strategy",
                                                    "message": message})
            raise StrategyFailed(message, user_traceback(exc, self.strategy_path)) from exc
        finally:
            self._run_over.set()
            if self._timer is not None:
                self._timer.cancel()
            self._close(broker=False)
            self._watch.disarm()  # finished: the watch ends without forcing
            self._watch.join(1.0)
        return self._summary(code)

    def _close(self, *, broker: bool) -> None:
        """Close the run once (the run thread, or the stop watch after a forced stop).

        ``broker``: stop the live broker too (cerebro stops it when it returns by itself); its
        open orders follow ``cancel_on_stop``, as on a normal stop."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            if broker and self.broker is not None:
                try:
                    self.broker.stop()
                except Exception:
                    logger.exception("stopping the live broker")
            self._shutdown()

    def _shutdown(self) -> None:
        for d in self.feeds:
            try:
                if d.series is not None and not d.series.pipe.closed:
                    d.stop()
            except Exception:
                logger.debug("stopping %s", d._name, exc_info=True)
        if self.store is not None:
            self.store.stop()
        if self.monitor is not None:
            told = self._stop_told or (self._watch is not None and self._watch.forced.is_set())
            if self._ran and not told:  # the events file and the notifier learn how it ended
                self.monitor.event(f"stopped: {self.reason}",
                                   record={"type": "stop", "event": "stopped", "reason": self.reason})
            self.monitor.close()
        if self.notifier is not None:
            self.notifier.close()
        if self.metrics is not None:
            self.metrics.close()

    def _summary(self, code: int) -> RunSummary:
        mon = self.monitor
        snap = mon.snapshot() if mon is not None else None
        # the bars the strategy saw (as printed and in the events file), not those still queued
        seen = mon.seen if mon is not None else {}
        bars: dict[str, dict[str, int]] = {}
        reconnects = 0
        notes: list[str] = []
        for d in self.feeds:
            st = d.status()
            if st is None:
                continue
            bars[d._name] = dict(seen.get(d._name, {"backfill": 0, "live": 0, "gapfill": 0}))
            reconnects += st.reconnects
            if st.history_short:
                notes.append(f"{d._name} {st.timeframe}: {st.history_short}")
            if st.skipped or st.revised:
                notes.append(f"{d._name} {st.timeframe}: {st.skipped} bars skipped (REST answers "
                             f"had no rows for them), {st.revised} revised by REST")
        gaps = sum(c.get("gapfill", 0) for c in bars.values())
        broker = snap.broker if snap is not None else BrokerStatus()
        return RunSummary(reason=self.reason, bars=bars, reconnects=reconnects, gaps_filled=gaps,
                          rest_calls=self.store.rest_calls if self.store else 0, trades=self.trades,
                          pnl=broker.pnl, value=broker.value, exit_code=code, data_notes=notes)


def connection_status(exchange: str, mode: str, feeds: list[FeedStatus], *, rest_calls: int,
                      rate_limited: int) -> ConnectionStatus:
    """The connection as the dashboard shows it, from its feeds: reconnects counts what each
    feed counts (one socket back once is 1, not one per feed), backoff the longest wait."""
    states = {f.state for f in feeds}
    state = "LIVE" if states == {"LIVE"} else ("DISCONNECTED" if "DISCONNECTED" in states
                                               else (sorted(states)[0] if states else "UNKNOWN"))
    waits = [f.backoff_s for f in feeds if f.backoff_s is not None]
    return ConnectionStatus(exchange=exchange, mode=mode, state=state,
                            reconnects=max((f.reconnects for f in feeds), default=0),
                            rest_calls=rest_calls, rate_limited=rate_limited,
                            backoff_s=max(waits) if waits else None)


def _observed(cls: type, runner: Runner) -> type:
    """A subclass of the user's strategy that reports bars, states and trades to the runner."""

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        self._btccxt_lens = {}
        cls.__init__(self, *args, **kwargs)

    def prenext(self: Any) -> None:
        runner.observe_next(self)
        cls.prenext(self)

    def nextstart(self: Any) -> None:
        runner.observe_next(self)
        cls.nextstart(self)

    def next(self: Any) -> None:
        runner.observe_next(self)
        cls.next(self)

    def notify_data(self: Any, data: Any, status: int, *args: Any, **kwargs: Any) -> None:
        runner.observe_status(data, status, str(args[0]) if args else "")
        cls.notify_data(self, data, status, *args, **kwargs)

    def notify_trade(self: Any, trade: Any) -> None:
        if trade.isclosed:
            runner.trades += 1
            if runner.monitor is not None:
                runner.monitor.event(f"trade closed {trade.data._name} P&L {trade.pnlcomm:+.4f}")
        cls.notify_trade(self, trade)

    def notify_store(self: Any, msg: Any, *args: Any, **kwargs: Any) -> None:
        if msg == "position_closed" and runner.monitor is not None:
            runner.observe_position_closed(kwargs)
        cls.notify_store(self, msg, *args, **kwargs)

    def notify_order(self: Any, order: Any) -> None:
        if runner.monitor is not None and order.status in (
                order.Completed, order.Rejected, order.Margin, order.Canceled, order.Expired,
                order.Partial):
            side = "buy" if order.isbuy() else "sell"
            reason = order.info.get("reason")
            record = {"type": "order", "event": order.getstatusname(), "symbol": order.data._name,
                      "side": side, "size": clean(order.executed.size),
                      "price": clean(order.executed.price)}  # as `btccxt backtest` writes them
            bar = order_bar_ms(order)  # the bar it filled in, as `btccxt backtest` reports it
            if bar is not None:
                record["bar"] = bar
                record["fee"] = clean(order.executed.comm)
            if order.info.get("client_id"):
                record["client_id"] = order.info["client_id"]
            if reason:
                record["reason"] = reason
            runner.monitor.event(f"order {order.getstatusname()} {side} {order.data._name} "
                                 f"{order.executed.size:g} @ {order.executed.price:.8g}"
                                 + (f": {reason}" if reason else ""), record=record)
        cls.notify_order(self, order)

    ns = {"__init__": __init__, "prenext": prenext, "nextstart": nextstart, "next": next,
          "notify_data": notify_data, "notify_trade": notify_trade, "notify_order": notify_order,
          "notify_store": notify_store,
          "__module__": cls.__module__}
    return type(cls)(cls.__name__, (cls,), ns)
