"""The market-data hub end to end: simulator -> `btccxt hub` (a real process) -> real Redis
(valkey-server) -> runners (processes and in-process stores) with feed.mode hub.

Every runner's bars must equal the simulator's truth: each bar once, in order, no hole after
the first, with the exchange's values; and the right notifications when the hub goes away.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from btccxt_cli.bt.store import CCXTStore
from tests.hubtools import HubProc, hub_config, namespace
from tests.integration.harness import (
    Seen,
    assert_matches_truth,
    check_live_after_the_gap,
    run_feeds,
)
from tests.integration.simtools import after_live, states

pytestmark = pytest.mark.live

EX = "binance"


def _events_bars(path: Path) -> dict[str, list[Seen]]:
    out: dict[str, list[Seen]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if rec.get("type") == "bar":
            ohlcv = (rec["open"], rec["high"], rec["low"], rec["close"], rec["volume"])
            out.setdefault(rec["symbol"], []).append(
                Seen(rec["ts"], rec["ts"], tuple(float(x) for x in ohlcv), rec["source"], 0, 0))
    return out


def _runner(cfg: Path, events: Path, max_bars: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "btccxt_cli", "run", str(cfg), "--plain", "--max-bars", str(max_bars),
         "--events", str(events)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _start_hub(sim, redis_url: str, tmp_path: Path, ns: str, symbols: list[str],
               name: str = "hub.yaml", **kw) -> HubProc:
    cfg = hub_config(tmp_path, name, sim_url=sim.url(EX), redis_url=redis_url, ns=ns,
                     symbols=symbols, **kw)
    return HubProc(cfg)


def test_hub_and_three_runners_equal_truth_on_one_exchange_connection(sim_factory, redis_server,
                                                                      tmp_path):
    sim = sim_factory(exchanges=(EX,))
    ns = namespace()
    a, b, c, d = sim.symbols(EX)[:4]
    hub = _start_hub(sim, redis_server.url, tmp_path, ns, [a, b, c])
    try:
        hub.wait_for(": LIVE", count=3)
        procs = []
        for i, syms in enumerate(([a, b], [b, c])):
            cfg = hub_config(tmp_path, f"run{i}.yaml", sim_url="", redis_url=redis_server.url,
                             ns=ns, symbols=syms, mode="hub", strategy="print_bars")
            procs.append((_runner(cfg, tmp_path / f"ev{i}.jsonl", 4), tmp_path / f"ev{i}.jsonl", syms))
        # the third runner, in this process, also asks the hub for a symbol it does not serve (d)
        store = CCXTStore(EX, hub_url=redis_server.url, hub_namespace=ns)
        res = run_feeds(store, [c, d], live_bars=4, timeout=45, backfill_bars=3)
        assert not res.timed_out, res.notes
        for p, events, syms in procs:
            out, _ = p.communicate(timeout=45)
            assert p.returncode == 0, out
            bars = _events_bars(events)
            for sym in syms:
                assert sum(s.source == "live" for s in bars[sym]) >= 4, out
                assert_matches_truth(sim, EX, sym, "1s", bars[sym], tf_ms=1000)
        for sym in (c, d):
            assert_matches_truth(sim, EX, sym, "1s", res.bars[sym], tf_ms=1000)
        assert states(res, c)[:2] == ["DELAYED", "LIVE"], res.notes
        assert "DISCONNECTED" not in states(res, c)
        hub.wait_for(f"subscribing {d} 1s (asked by a runner)")
        stats = sim.stats(EX)
        # one exchange connection whatever the number of runners: the hub's
        assert stats["ws_connections_total"] == 1, stats
    finally:
        hub.stop()


def test_kill9_hub_and_restart_delivers_every_missed_bar_in_order(sim_factory, redis_server, tmp_path):
    sim = sim_factory(exchanges=(EX,))
    ns = namespace()
    sym = sim.symbols(EX)[0]
    hubs = [_start_hub(sim, redis_server.url, tmp_path, ns, [sym])]
    hubs[0].wait_for(": LIVE")

    def kill_and_restart() -> None:
        hubs[0].kill()  # its lease and heartbeat stay until they expire
        hubs.append(HubProc(hubs[0].config))

    try:
        store = CCXTStore(EX, hub_url=redis_server.url, hub_namespace=ns)
        res = run_feeds(store, [sym], live_bars=6, timeout=45, backfill_bars=2,
                        on_next=after_live(3, kill_and_restart))
        assert not res.timed_out, res.notes
        seen = res.bars[sym]
        assert_matches_truth(sim, EX, sym, "1s", seen, tf_ms=1000)
        st = states(res, sym)
        i = st.index("DISCONNECTED")
        assert st[i:i + 3] == ["DISCONNECTED", "CONNECTED", "LIVE"], res.notes
        assert any(s.source == "gapfill" for s in seen), [s.source for s in seen]
        check_live_after_the_gap(res, sym)  # the missed bars come before LIVE
        hubs[1].wait_for("leading as")
    finally:
        for h in hubs:
            h.stop()


def test_standby_hub_takes_over_when_the_leader_dies(sim_factory, redis_server, tmp_path):
    sim = sim_factory(exchanges=(EX,))
    ns = namespace()
    sym = sim.symbols(EX)[1]
    leader = _start_hub(sim, redis_server.url, tmp_path, ns, [sym])
    leader.wait_for(": LIVE")
    standby = HubProc(leader.config)
    try:
        standby.wait_for("standing by")
        store = CCXTStore(EX, hub_url=redis_server.url, hub_namespace=ns)
        res = run_feeds(store, [sym], live_bars=6, timeout=45, backfill_bars=2,
                        on_next=after_live(3, leader.kill))
        assert not res.timed_out, res.notes
        seen = res.bars[sym]
        assert_matches_truth(sim, EX, sym, "1s", seen, tf_ms=1000)
        st = states(res, sym)
        assert "DISCONNECTED" in st and st[-1] == "LIVE", res.notes
        check_live_after_the_gap(res, sym)  # the missed bars come before LIVE
        standby.wait_for("leading as")
        # the standby never connected to the exchange before it led: two connections in all
        assert sim.stats(EX)["ws_connections_total"] == 2
    finally:
        leader.stop()
        standby.stop()


@pytest.mark.long
def test_redis_frozen_for_10s_then_every_bar_in_order(sim_factory, valkey_factory, tmp_path):
    sim = sim_factory(exchanges=(EX,))
    server = valkey_factory()
    ns = namespace()
    sym = sim.symbols(EX)[2]
    hub = _start_hub(sim, server.url, tmp_path, ns, [sym])
    hub.wait_for(": LIVE")
    resumed = threading.Event()

    def freeze() -> None:
        server.pause()  # SIGSTOP: every client's reads time out; the data stays
        t = threading.Timer(10.0, lambda: (server.resume(), resumed.set()))
        t.daemon = True
        t.start()

    try:
        store = CCXTStore(EX, hub_url=server.url, hub_namespace=ns)
        res = run_feeds(store, [sym], live_bars=4, timeout=60, backfill_bars=2,
                        on_next=after_live(2, freeze))
        assert resumed.is_set()
        assert not res.timed_out, res.notes
        seen = res.bars[sym]
        assert_matches_truth(sim, EX, sym, "1s", seen, tf_ms=1000)
        st = states(res, sym)
        i = st.index("DISCONNECTED")
        assert st[i:i + 3] == ["DISCONNECTED", "CONNECTED", "LIVE"], res.notes
        sources = [s.source for s in seen]
        check_live_after_the_gap(res, sym)  # the missed bars come before LIVE
        assert sum(s == "gapfill" for s in sources) >= 5, sources
        # the bars that closed while Redis was frozen come as gap fills, whether the runner
        # read them back or the hub published them late: none of them poses as live (from
        # the first gap fill after a live bar: the warm-up may end in one before the freeze)
        after = sources[sources.index("gapfill", sources.index("live")):]
        assert after == sorted(after, key=lambda s: s != "gapfill"), sources
    finally:
        server.resume()
        hub.stop()


def test_a_symbol_the_exchange_refuses_ends_the_runners_feed(sim_factory, redis_server, tmp_path):
    sim = sim_factory(exchanges=(EX,))
    ns = namespace()
    hub = _start_hub(sim, redis_server.url, tmp_path, ns, [sim.symbols(EX)[0]])
    try:
        hub.wait_for(": LIVE")
        store = CCXTStore(EX, hub_url=redis_server.url, hub_namespace=ns)
        res = run_feeds(store, ["NOPE/USDT"], live_bars=1, timeout=30, backfill_bars=2)
        assert not res.timed_out, res.notes  # the feed ended, so the run did
        assert "NOTSUBSCRIBED" in states(res, "NOPE/USDT"), res.notes
        assert res.bars["NOPE/USDT"] == []
        hub.wait_for("NOPE/USDT 1s: NOTSUBSCRIBED")
    finally:
        hub.stop()


@pytest.mark.parametrize("cache_ends_s", [0, 30], ids=["joins-the-stream", "hole-before-stream"])
def test_warm_up_older_than_the_stream_comes_from_the_local_cache(sim_factory, redis_server,
                                                                   tmp_path, cache_ends_s):
    from btccxt_cli.cache.backfill import Backfiller
    from btccxt_cli.cache.source import cache_source
    from btccxt_cli.cache.sqlite import OhlcvCache
    from btccxt_cli.exchange.factory import make_exchange

    sim = sim_factory(exchanges=(EX,))
    ns = namespace()
    sym = sim.symbols(EX)[4]
    cache_path = tmp_path / "ohlcv.sqlite"

    def fill_cache() -> None:
        now = sim.now_ms() // 1000 * 1000
        cache = OhlcvCache(cache_path)
        Backfiller(make_exchange(EX, kind="sync", sim_url=sim.url(EX)), cache, exchange_id=EX,
                   source=cache_source(EX, sim.url(EX)), symbol=sym, timeframe="1s",
                   since_ms=now - 90_000,
                   until_ms=(now - cache_ends_s * 1000) if cache_ends_s else None).run()
        cache.close()

    if cache_ends_s:  # ends 30 s before the hub starts; its stream starts 10 bars before
        fill_cache()
    # a short stream (10 bars of history); the cache that joins it is filled once it runs,
    # so that it overlaps the stream however long the hub takes to start
    hub = _start_hub(sim, redis_server.url, tmp_path, ns, [sym], backfill=10)
    try:
        hub.wait_for(": LIVE")
        if not cache_ends_s:
            fill_cache()
        store = CCXTStore(EX, hub_url=redis_server.url, hub_namespace=ns, cache=cache_path)
        res = run_feeds(store, [sym], live_bars=2, timeout=30, backfill_bars=60)
        assert not res.timed_out, res.notes
        seen = res.bars[sym]
        assert_matches_truth(sim, EX, sym, "1s", seen, tf_ms=1000)
        backfill = sum(s.source == "backfill" for s in seen)
        # the whole warm-up: with a hole between the cache and the stream, the hub read it
        assert backfill >= 55, [s.source for s in seen]
        if cache_ends_s:
            hub.wait_for("history " + sym + " 1s:")
        assert states(res, sym)[:2] == ["DELAYED", "LIVE"], res.notes
        # read only: the runner wrote nothing under its own name (the real exchange's)
        check = OhlcvCache(cache_path)
        assert check.read(EX, sym, "1s") == []
        check.close()
    finally:
        hub.stop()


def test_warm_up_older_than_the_stream_with_no_cache_is_read_by_the_hub(sim_factory,
                                                                         redis_server, tmp_path):
    """The runner has no cache and its stream holds 10 bars; it wants 60. The hub reads the
    older bars by REST and hands them over (``hub/history.py``): the runner's store has no
    exchange to call (no ``sim_url``), so every bar came through the hub."""
    sim = sim_factory(exchanges=(EX,))
    ns = namespace()
    syms = sim.symbols(EX)[6:9]  # three series ask at once
    hub = _start_hub(sim, redis_server.url, tmp_path, ns, syms, backfill=10)
    try:
        hub.wait_for(": LIVE", count=3)
        store = CCXTStore(EX, hub_url=redis_server.url, hub_namespace=ns)
        res = run_feeds(store, syms, live_bars=2, timeout=40, backfill_bars=60)
        assert not res.timed_out, res.notes
        for sym in syms:
            seen = res.bars[sym]
            assert_matches_truth(sim, EX, sym, "1s", seen, tf_ms=1000)
            assert sum(s.source == "backfill" for s in seen) >= 55, [s.source for s in seen]
            assert states(res, sym)[:2] == ["DELAYED", "LIVE"], res.notes
            hub.wait_for(f"history {sym} 1s:")
        answers = [ln for ln in hub.lines if ln.startswith("history ")]  # --plain lines
        assert len(answers) == 3 and all("read for a runner" in ln for ln in answers), answers
    finally:
        hub.stop()


def test_a_leader_cut_off_from_redis_is_replaced_then_steps_down(sim_factory, redis_server,
                                                                  tmp_path):
    from tests.hubtools import TcpRelay

    sim = sim_factory(exchanges=(EX,))
    ns = namespace()
    sym = sim.symbols(EX)[5]
    relay = TcpRelay(redis_server.port)
    # the leader reaches Redis through the relay; the standby and the runner directly
    leader = _start_hub(sim, relay.url, tmp_path, ns, [sym], name="leader.yaml")
    leader.wait_for(": LIVE")
    standby = _start_hub(sim, redis_server.url, tmp_path, ns, [sym], name="standby.yaml")
    cut = threading.Event()

    def partition() -> None:
        relay.cut()
        cut.set()

    def heal_when_taken_over() -> None:
        standby.wait_for("leading as", timeout=30)
        relay.restore()

    healer = threading.Thread(target=lambda: (cut.wait(30), heal_when_taken_over()), daemon=True)
    healer.start()
    try:
        standby.wait_for("standing by")
        store = CCXTStore(EX, hub_url=redis_server.url, hub_namespace=ns)
        res = run_feeds(store, [sym], live_bars=7, timeout=50, backfill_bars=2,
                        on_next=after_live(3, partition))
        assert not res.timed_out, res.notes
        assert_matches_truth(sim, EX, sym, "1s", res.bars[sym], tf_ms=1000)
        assert states(res, sym)[-1] == "LIVE", res.notes
        leader.wait_for("lease lost to", timeout=30)  # back on Redis, it stands by
    finally:
        healer.join(5)
        leader.stop()
        standby.stop()
        relay.close()


def test_a_queue_that_overflows_while_redis_is_away_restarts_the_feeds_from_rest(
        sim_factory, valkey_factory):
    from btccxt_cli.runtime.hubd import HubPublisher

    sim = sim_factory(exchanges=(EX,))
    server = valkey_factory()
    ns = namespace()
    sym = sim.symbols(EX)[6]
    lines: list[str] = []
    live = threading.Event()
    back = threading.Event()

    def on_line(line: str) -> None:
        lines.append(line)
        if line.endswith(": LIVE"):
            live.set()
        if line.startswith("Redis is back"):
            back.set()

    hub = HubPublisher(EX, [(sym, "1s")], server.url, namespace=ns, backfill=2, lease_s=2.5,
                       heartbeat_s=1.5, store_kwargs={"sim_url": sim.url(EX)}, on_line=on_line,
                       pending_cap=3)  # three queued events at most: overflows in ~3 s
    stop = threading.Event()
    thread = threading.Thread(target=hub.run, args=(stop,), daemon=True)
    thread.start()

    def freeze() -> None:
        server.pause()
        t = threading.Timer(7.0, server.resume)
        t.daemon = True
        t.start()

    try:
        assert live.wait(30), lines
        store = CCXTStore(EX, hub_url=server.url, hub_namespace=ns)
        res = run_feeds(store, [sym], live_bars=6, timeout=60, backfill_bars=2,
                        on_next=after_live(2, freeze))
        assert not res.timed_out, res.notes
        assert back.is_set(), lines
        assert any("stopping the feeds until it answers" in ln for ln in lines), lines
        assert_matches_truth(sim, EX, sym, "1s", res.bars[sym], tf_ms=1000)
        st = states(res, sym)
        i = st.index("DISCONNECTED")
        assert st[i:i + 3] == ["DISCONNECTED", "CONNECTED", "LIVE"], res.notes
    finally:
        server.resume()
        stop.set()
        thread.join(15)


def test_a_series_the_hub_reports_down_is_told_while_other_bars_keep_coming(redis_server):
    """The runner's heartbeat/state check waits for a quiet moment (a notification wait that
    timed out) so it does not hold up a burst of bars; when bars never stop (here one every
    0.1 s, shorter than the wait's block), it still runs at most a period late. The hub's own
    writes are played with its batch code (no hub could keep a 1s stream this busy)."""
    import time

    import redis

    from btccxt_cli.hub.keys import HubKeys, series_field
    from btccxt_cli.hub.publish import BatchPacker, send_batch
    from btccxt_cli.model import BarSource, Candle, FeedEvent, FeedState
    from btccxt_cli.sources.base import SeriesParams

    ns = namespace()
    keys = HubKeys(ns)
    busy, quiet = "AAA/USDT", "BBB/USDT"
    r = redis.Redis.from_url(redis_server.url)
    r.set(keys.alive, "test-hub", px=60_000)
    r.hset(keys.states, mapping={series_field(busy, "1s"): "LIVE", series_field(quiet, "1s"): "LIVE"})
    stop = threading.Event()
    t0 = int(time.time()) * 1000  # the runner starts at the bar forming now

    packer = BatchPacker(keys, maxlen=100, hub_id="test-hub")

    def publish() -> None:  # with the hub's batch code: the bar and its notification
        w = redis.Redis.from_url(redis_server.url)
        i = 0
        while not stop.wait(0.1):  # the hub's pace here, not a synchronisation
            i += 1
            c = Candle(t0 + i * 1000, 1.0, 1.0, 1.0, 1.0, 1.0)
            send_batch(w, packer.pack([(busy, "1s", FeedEvent("bar", c, BarSource.LIVE))]))
        w.close()

    store = CCXTStore(EX, hub_url=redis_server.url, hub_namespace=ns)
    handles = [store.attach(SeriesParams(symbol=s, timeframe="1s", mode="hub", backfill_start=False),
                            name=s) for s in (busy, quiet)]
    writer = threading.Thread(target=publish, daemon=True)
    writer.start()
    try:
        busy_pipe, quiet_pipe = (h.series.pipe for h in handles)

        def next_event(pipe, kind: str, timeout: float):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                ev = pipe.get(0.2)  # wakes on the pipe's doorbell
                if ev is not None and ev.kind == kind and (kind != "state" or
                                                           ev.state is FeedState.DISCONNECTED):
                    return ev
            return None

        assert next_event(busy_pipe, "bar", 10) is not None  # bars flow
        r.hset(keys.states, series_field(quiet, "1s"), FeedState.DISCONNECTED.value)
        down = next_event(quiet_pipe, "state", 3.0)  # the check runs every 0.5 s, <= 1 s late
        assert down is not None and "exchange feed is down" in down.message
        while busy_pipe.get(0) is not None:  # what came meanwhile ...
            pass
        assert next_event(busy_pipe, "bar", 2) is not None  # ... and bars still come
    finally:
        stop.set()
        writer.join(5)
        store.stop()
        r.close()


def test_a_bar_redis_refuses_in_a_publish_batch_does_not_hold_back_the_others(redis_server):
    """The hub publishes a batch in one MULTI/EXEC (a runner's XREAD wakes once, with all of
    it); a bar already in its stream is refused alone, the rest of the batch lands."""
    import redis

    from btccxt_cli.hub.keys import HubKeys, series_field
    from btccxt_cli.model import BarSource, Candle, FeedEvent, FeedState
    from btccxt_cli.runtime.hubd import HubPublisher

    ns, sym = namespace(), "AAA/USDT"
    keys = HubKeys(ns)

    def bar(ts: int) -> FeedEvent:
        return FeedEvent("bar", Candle(ts, 1.0, 2.0, 0.5, 1.5, 3.0), BarSource.LIVE)

    pub = HubPublisher(EX, [], redis_server.url, namespace=ns)
    pub._redis = r = redis.Redis.from_url(redis_server.url)
    try:
        pub._pending.append((sym, "1s", bar(2000)))
        pub._flush()
        pub._pending.extend([(sym, "1s", bar(1000)), (sym, "1s", bar(2000)),
                             (sym, "1s", FeedEvent("state", state=FeedState.LIVE)),
                             (sym, "1s", bar(3000))])
        pub._flush()
        assert (pub.stats.published, pub.stats.refused) == (2, 2)
        assert [eid for eid, _ in r.xrange(keys.bars(sym, "1s"))] == [b"2000-0", b"3000-0"]
        assert r.hget(keys.states, series_field(sym, "1s")) == b"LIVE"
        assert not pub._pending
    finally:
        r.close()
