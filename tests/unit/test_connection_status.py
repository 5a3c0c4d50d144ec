"""The connection panel agrees with the log and the feeds (manual clock, no sockets)."""

from __future__ import annotations

from btccxt_cli.clock import ManualClock
from btccxt_cli.model import FeedStatus
from btccxt_cli.sources.base import RestGate
from btccxt_cli.sources.rest import RestSchedule
from tests.unit.test_sources_base import TF, _rows, _series


def test_a_rest_read_during_a_pending_reconnect_keeps_the_countdown():
    """WebSocket mode reads closed bars over REST while the socket is down; a good REST answer
    must not hide the socket's reconnect countdown (the panel showed '-' while the log said
    "reconnect in 10.67 s")."""
    clock = ManualClock(start_ms=1_700_000_000_000 - 1_700_000_000_000 % TF + 1_000)
    s = _series(clock, backfill_start=False)
    s.begin()
    sched = RestSchedule(s, RestGate(clock), clock, grace_s=0.25, polling=False)
    s.note_backoff(10.67)  # the socket's reconnect is due in 10.67 s
    clock.advance(2.0)
    since, _ = sched.begin_call()
    sched.on_rows(_rows(since, 2), since)
    assert s.status().backoff_s is not None and abs(s.status().backoff_s - 8.67) < 1e-6


def test_polling_success_ends_its_own_retry_wait():
    clock = ManualClock(start_ms=1_700_000_000_000 - 1_700_000_000_000 % TF + 1_000)
    s = _series(clock, backfill_start=False)
    s.begin()
    sched = RestSchedule(s, RestGate(clock), clock, grace_s=0.25, polling=True)
    sched.on_error(TimeoutError("read timed out"), exchange=None)
    assert s.status().backoff_s is not None
    since, _ = sched.begin_call()
    sched.on_rows(_rows(since, 2), since)
    assert s.status().backoff_s is None


def test_connection_reconnects_count_what_each_feed_counts():
    """One socket came back once: each feed says 1, so the connection says 1 (not their sum)."""
    from btccxt_cli.runtime.runner import connection_status

    feeds = [FeedStatus("BTC/USDT", "1m", "websocket", state="LIVE", reconnects=1),
             FeedStatus("ETH/USDT", "1m", "websocket", state="DISCONNECTED", reconnects=1,
                        backoff_s=3.5)]
    c = connection_status("binance", "websocket", feeds, rest_calls=4, rate_limited=0)
    assert (c.reconnects, c.state, c.backoff_s) == (1, "DISCONNECTED", 3.5)


def test_the_last_frame_keeps_the_last_real_state_after_the_feeds_stop():
    """At the end of a run the feeds detach from the store; the dashboard's last frame must
    still show them as they last were (it showed an empty table and state UNKNOWN)."""
    from btccxt_cli.model import ConnectionStatus
    from btccxt_cli.runtime.runner import connection_status
    from btccxt_cli.runtime.state import RunMonitor

    live = [FeedStatus("BTC/USDT", "1s", "websocket", state="LIVE"),
            FeedStatus("ETH/USDT", "1s", "websocket", state="LIVE")]
    current: list[list[FeedStatus]] = [live]

    def conn() -> ConnectionStatus:
        return connection_status("binance", "websocket", current[0], rest_calls=3, rate_limited=0)

    mon = RunMonitor("t", statuses=lambda: list(current[0]), connection=conn, clock=ManualClock())
    mon.decimals = {"BTC/USDT": (2, 5)}
    first = mon.snapshot()
    assert [f.price_decimals for f in first.feeds] == [2, None]
    current[0] = live[1:]  # BTC/USDT detached first
    assert [f.symbol for f in mon.snapshot().feeds] == ["BTC/USDT", "ETH/USDT"]
    current[0] = []  # then the store stopped
    last = mon.snapshot()
    assert [(f.symbol, f.state) for f in last.feeds] == [("BTC/USDT", "LIVE"), ("ETH/USDT", "LIVE")]
    assert last.connection is not None and last.connection.state == "LIVE"


def test_the_paper_broker_panel_starts_with_the_configured_cash(sim):
    """Before the first bar the broker panel showed cash 0.00 and value 0.00."""
    from btccxt_cli.config.load import loads_config
    from btccxt_cli.runtime.runner import Runner

    cfg = loads_config(f"""
exchange: {{id: binance, sim: "{sim.url('binance')}"}}
symbols: [BTC/USDT]
feed: {{mode: websocket, timeframe: 1s, backfill: 3}}
strategy: {{name: print_bars}}
broker: {{cash: 2500}}
""", file="inline.yaml")
    runner = Runner(cfg, sim_url=sim.url("binance"))
    runner.build()
    try:
        broker = runner.monitor.snapshot().broker
        assert broker is not None and (broker.cash, broker.value, broker.pnl) == (2500.0, 2500.0, 0.0)
    finally:
        runner._shutdown()
