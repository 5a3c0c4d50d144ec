"""What becomes a notification, and when: ``NotifyRules`` on explicit times, the notifier's
bounded queue and daily summary on an injected clock (the delivery is ours to replace here:
the real apprise path is tested against a receiver in tests/integration/test_notify.py)."""

from __future__ import annotations

import threading

from btccxt_cli.clock import ManualClock
from btccxt_cli.runtime.notify import Notifier, NotifyRules


def state(symbol: str, ev: str, message: str = "") -> dict:
    return {"type": "state", "symbol": symbol, "event": ev, "message": message}


def test_a_drop_is_told_once_after_the_threshold_and_once_back_live():
    r = NotifyRules(disconnected_after=60)
    assert r.feed(state("BTC/USDT", "DISCONNECTED", "socket closed"), 100.0) == []
    assert r.wake_at() == 160.0
    assert r.due(159.9) == []
    assert r.feed(state("BTC/USDT", "DISCONNECTED"), 150.0) == []  # still the same drop
    assert r.due(160.0) == ["BTC/USDT DISCONNECTED for 60 s: socket closed"]
    assert r.due(500.0) == [] and r.wake_at() is None  # once
    assert r.feed(state("BTC/USDT", "CONNECTED"), 600.0) == []  # not LIVE yet
    assert r.feed(state("BTC/USDT", "LIVE"), 700.0) == ["BTC/USDT back LIVE after 10 min down"]
    assert r.feed(state("BTC/USDT", "LIVE"), 701.0) == []


def test_a_short_drop_says_nothing_at_all():
    r = NotifyRules(disconnected_after=60)
    r.feed(state("ETH/USDT", "DISCONNECTED"), 0.0)
    assert r.feed(state("ETH/USDT", "LIVE"), 59.0) == []
    assert r.due(1000.0) == []


def test_events_are_chosen_and_orders_are_told_for_live_runs_only():
    order = {"type": "order", "event": "Rejected", "side": "buy", "symbol": "BTC/USDT"}
    fill = {"type": "order", "event": "Completed", "side": "buy", "symbol": "BTC/USDT",
            "size": 0.01, "price": 50000.0}
    assert NotifyRules(live=False).feed(order, 0) == []
    assert NotifyRules(live=True).feed(order, 0) == ["order Rejected buy BTC/USDT"]
    assert NotifyRules(live=True).feed(fill, 0) == ["order filled buy BTC/USDT 0.01 @ 50000"]
    sold = {**fill, "side": "sell", "size": -0.01}  # backtrader's executed size of a sell
    assert NotifyRules(live=True).feed(sold, 0) == ["order filled sell BTC/USDT 0.01 @ 50000"]
    only = NotifyRules(events=frozenset({"stopped"}), live=True, disconnected_after=0)
    assert only.feed(order, 0) == [] and only.feed({"type": "kill", "reason": "x"}, 0) == []
    only.feed(state("BTC/USDT", "DISCONNECTED"), 0)
    assert only.due(1) == []
    assert only.feed({"type": "error", "message": "the strategy raised KeyError: 'x'"}, 0) == [
        "run stopped: the strategy raised KeyError: 'x'"]
    assert NotifyRules().feed({"type": "stop", "event": "forced", "message": "stuck"}, 0) == [
        "stopped by force: stuck"]
    assert NotifyRules().feed({"type": "bar"}, 0) == []


def test_a_swap_position_closed_by_the_exchange_is_told_for_live_runs_only():
    liq = {"type": "position", "event": "liquidation", "symbol": "BTC/USDT:USDT", "before": 0.1,
           "after": 0.0, "price": 59_312.5}
    assert NotifyRules(live=True).feed(liq, 0) == ["LIQUIDATED BTC/USDT:USDT: +0.1 -> +0 at 59312.5"]
    outside = {**liq, "event": "closed outside", "before": -0.2, "after": -0.05}
    assert NotifyRules(live=True).feed(outside, 0) == [
        "position closed (closed outside) BTC/USDT:USDT: -0.2 -> -0.05 at 59312.5"]
    assert NotifyRules(live=False).feed(liq, 0) == []  # a paper liquidation: events file only
    assert NotifyRules(events=frozenset({"stopped"}), live=True).feed(liq, 0) == []


class Sent:
    """A stand-in for delivery (ours): records messages; ``gate`` holds each one back."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str]] = []
        self.cond = threading.Condition()
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, title: str, body: str) -> None:
        self.entered.set()
        self.gate.wait(30)
        with self.cond:
            self.messages.append((title, body))
            self.cond.notify_all()
        return None

    def wait(self, n: int) -> list[tuple[str, str]]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.messages) >= n, 30), self.messages
            return list(self.messages)


def test_a_full_queue_drops_and_says_how_many():
    sent = Sent()
    sent.gate.clear()  # the first delivery hangs
    n = Notifier(["x"], NotifyRules(), batch_seconds=0, queue_size=3, send=sent).start()
    try:
        n({"type": "kill", "reason": "first"})
        assert sent.entered.wait(30)  # the worker is delivering it, and hangs there
        for i in range(10):  # 3 fit, 7 are dropped without blocking the caller
            n({"type": "kill", "reason": f"r{i}"})
        sent.gate.set()
    finally:
        n.close()
    text = "\n".join(body for _t, body in sent.messages[1:])
    assert text.count("KILL SWITCH") == 3  # r0, r1, r2
    assert text.count("(7 more events were dropped: too many at once)") == 1


def test_the_daily_summary_comes_once_a_day_at_the_configured_time():
    clock = ManualClock(start_ms=1_700_006_399_000)  # 23:59:59 UTC (day 19675)
    sent = Sent()
    n = Notifier(["x"], NotifyRules(), batch_seconds=0, clock=clock, send=sent,
                 summary=lambda: ["BTC/USDT 1m LIVE", "value 10000.00"], summary_at=0).start()
    try:
        n({"type": "bar"})  # wakes the worker: not midnight yet
        clock.advance(2.0)  # 00:00:01
        n({"type": "bar"})
        msgs = sent.wait(1)
        clock.advance(3600)
        n({"type": "bar"})
        n({"type": "kill", "reason": "k"})
        msgs = sent.wait(2)
    finally:
        n.close()
    assert msgs[0][1].splitlines() == ["daily summary:", "BTC/USDT 1m LIVE", "value 10000.00"]
    assert "daily summary" not in msgs[1][1]  # not again until the next midnight


def test_notify_config_errors_name_the_key_never_the_url(tmp_path, monkeypatch):
    import pytest

    from btccxt_cli.config.load import load_config
    from btccxt_cli.errors import ConfigError
    from btccxt_cli.log import redact

    base = "exchange: {id: binance}\nsymbols: [BTC/USDT]\nstrategy: {name: print_bars}\n"
    cfg = tmp_path / "c.yaml"
    token = "nr-T0ken-5a6b7c8d9e"
    monkeypatch.setenv("BTCCXT_TEST_NOTIFY", f"tgram://{token}/12345")
    cfg.write_text(base + 'notify:\n  urls: ["${BTCCXT_TEST_NOTIFY}"]\n  daily_summary_at: "08:30"\n')
    c = load_config(cfg)
    assert c.notify.urls == (f"tgram://{token}/12345",) and c.notify.daily_summary_at == "08:30"
    assert token not in redact(f"posting to tgram://{token}/12345 failed; token {token}")
    for bad, key in (("  urls: [12345678901]\n", "notify.urls[0]"),
                     ("  daily_summary_at: '25:00'\n", "notify.daily_summary_at"),
                     ("  events: [disconected]\n", "notify.events[0]")):
        cfg.write_text(base + "notify:\n" + bad)
        with pytest.raises(ConfigError) as e:
            load_config(cfg)
        assert key in str(e.value) and "12345678901" not in str(e.value)


def test_every_token_of_a_notification_url_is_masked():
    from btccxt_cli.log import redact, register_notify_url

    # (tokens unlike any other test's text: the secrets registry is the process's)
    for url, secrets in (("tgram://731904268:AAEbotTokenXyz/-1009731904", [
                              "731904268", "AAEbotTokenXyz", "-1009731904"]),
                         ("discord://4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js", [
                             "4174216298", "JHMHI8qBe7bk2ZwO5U711o3dV_js"]),
                         ("mailtos://me:hunter22x@smtp.example.com", ["hunter22x"]),
                         ("json://127.0.0.1:8080/path/nt-S3cr3t-abc", ["nt-S3cr3t-abc"])):
        register_notify_url(url)
        text = redact(f"sending to {url}: " + " ".join(secrets))
        assert all(s not in text for s in secrets), text
    assert redact("smtp.example.com 127.0.0.1 webhooks") == "smtp.example.com 127.0.0.1 webhooks"


def test_the_daily_summary_lines(tmp_path):
    from btccxt_cli.model import BrokerStatus, FeedStatus
    from btccxt_cli.runtime.state import RunMonitor
    from btccxt_cli.runtime.unattended import daily_lines

    st = FeedStatus(symbol="BTC/USDT", timeframe="1m", mode="websocket", state="LIVE", reconnects=2,
                    bars={"backfill": 100, "live": 1440, "gapfill": 3})
    mon = RunMonitor("t", statuses=lambda: [st])
    mon.set_broker(BrokerStatus(value=10250.5, pnl=250.5, trades=7, open_orders=1))
    assert daily_lines(mon) == [
        "BTC/USDT 1m LIVE, bars backfill 100, live 1440, gapfill 3, reconnects 2",
        "value 10250.50, P&L +250.50, trades 7, open orders 1"]


def test_an_odd_record_is_logged_and_the_worker_goes_on(caplog):
    sent = Sent()
    n = Notifier(["x"], NotifyRules(live=True), batch_seconds=0, send=sent).start()
    try:
        n({"type": "order", "event": "Completed", "side": "buy", "symbol": "X", "size": None})
        n({"type": "kill", "reason": "after"})
        msgs = sent.wait(1)
    finally:
        n.close()
    assert "KILL SWITCH (after)" in msgs[0][1]
    assert "could not describe the event" in caplog.text
