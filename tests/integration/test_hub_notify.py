"""The hub's notification stream: a runner blocks on one key per hub, then reads only the
streams of its own that a batch moved; a notification it misses costs it a read of all its
streams, never a bar (real valkey-server, a real store in hub mode).

The hub's writes are played with its own batch code (``BatchPacker`` in one MULTI/EXEC, as
both of its publishers send them), so each batch moves exactly the series a test names.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from btccxt_cli.bt.store import CCXTStore
from tests.hubtools import namespace

pytestmark = pytest.mark.live

EX = "binance"
TF = "1s"


class _Played:
    """A hub's writes to Redis (its heartbeat, states and batches), with its batch code."""

    def __init__(self, url: str, symbols: list[str]) -> None:
        import redis

        from btccxt_cli.hub.keys import HubKeys, series_field

        self.keys = HubKeys(namespace())
        self.r = redis.Redis.from_url(url)
        self.r.set(self.keys.alive, "test-hub", px=120_000)
        self.r.hset(self.keys.states, mapping={series_field(s, TF): "LIVE" for s in symbols})

    def batch(self, bars: list[tuple[str, int]], *, then: Any = None,
              complete: bool = False) -> None:
        """One batch of bars (``(symbol, open_ms)``) in one MULTI/EXEC; ``then()`` returns
        more commands (tuples of arguments) for the same transaction; ``complete``: its
        notification says it completes a close."""
        from btccxt_cli.hub.publish import _EXEC, BatchPacker, _resp, send_batch
        from btccxt_cli.model import BarSource, Candle, FeedEvent

        payload, n = BatchPacker(self.keys, maxlen=1000, hub_id="test-hub").pack([
            (sym, TF, FeedEvent("bar", Candle(ts, 1.0, 2.0, 0.5, 1.5, ts / 1000), BarSource.LIVE))
            for sym, ts in bars], complete)
        if then is not None:
            extra = [_resp(*(str(x).encode() for x in cmd)) for cmd in then()]
            assert payload.endswith(_EXEC)  # the last command: the extra ones go before it
            payload = payload[:-len(_EXEC)] + b"".join(extra) + _EXEC
            n += len(extra)
        send_batch(self.r, (payload, n))

    def close(self) -> None:
        self.r.close()


def _attach(store: CCXTStore, symbols: list[str]) -> dict[str, Any]:
    from btccxt_cli.sources.base import SeriesParams

    return {s: store.attach(SeriesParams(symbol=s, timeframe=TF, mode="hub", backfill_start=False),
                            name=s).series.pipe for s in symbols}


def _bars(pipe: Any, n: int, timeout: float = 10.0) -> list[int]:
    """The open times of the next ``n`` bars out of a feed's pipe (waits on its doorbell)."""
    out: list[int] = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        ev = pipe.get(0.2)
        if ev is not None and ev.kind == "bar":
            out.append(ev.candle.ts)
    return out


class _Monitor:
    """Every command Redis runs, as MONITOR reports it, until ``stop``."""

    def __init__(self, url: str) -> None:
        import redis

        self.url = url
        self.commands: list[str] = []
        self._cond = threading.Condition()
        self._ready = threading.Event()
        self._conn = redis.Redis.from_url(url)
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        assert self._ready.wait(10)

    def _watch(self) -> None:
        with self._conn.monitor() as m:
            self._ready.set()
            for c in m.listen():
                if c["command"] == "ECHO monitor-stop":
                    return
                with self._cond:
                    self.commands.append(c["command"])
                    self._cond.notify_all()

    def wait_for(self, pred: Any, timeout: float = 10.0) -> None:
        """Until ``pred(commands)`` holds (checked at each command Redis runs)."""
        with self._cond:
            assert self._cond.wait_for(lambda: pred(self.commands), timeout), self.commands[-20:]

    def stop(self) -> list[str]:
        import redis

        with redis.Redis.from_url(self.url) as r:
            r.echo("monitor-stop")
        self._thread.join(10)
        self._conn.close()
        return self.commands


def _bar_reads(commands: list[str], notify_key: str) -> list[list[str]]:
    """The stream keys each XREAD of bars named (the notification wait excluded)."""
    out = []
    for cmd in commands:
        parts = cmd.split(" ")
        if parts[0].upper() != "XREAD" or "STREAMS" not in parts:
            continue
        rest = parts[parts.index("STREAMS") + 1:]
        keys = rest[:len(rest) // 2]
        if keys != [notify_key]:
            out.append(keys)
    return out


def _on_notifications(url: str, hub: _Played, reader: Any, pipes: dict[str, Any], ts: int,
                      batch: list[str], *, check_s: float) -> None:
    """Switch a runner in step on its own streams (``pipes``) to waiting on the hub's
    notifications (whatever its number of streams; quiet periods of ``check_s``), with a batch
    of ``batch``'s bars opening at ``ts``, its series' bars taken. Returns once the reader waits
    on the notification stream after its newest entry: from then on it reads every batch
    through its notification (or the gap a lost one leaves), none through a read of every
    stream."""
    mon = _Monitor(url)
    reader.notify_from = 1
    reader.check_s = check_s
    hub.batch([(s, ts) for s in batch])
    for s in pipes:
        assert _bars(pipes[s], 1) == [ts], s
    last = hub.r.xrevrange(hub.keys.notify, count=1)[0][0].decode()
    mon.wait_for(lambda cmds: any(c.startswith("XREAD") and hub.keys.notify in c
                                  and c.endswith(last) for c in cmds))
    mon.stop()


def test_a_runner_blocks_on_the_notifications_and_reads_only_its_streams_that_moved(
        redis_server):
    """A runner on 4 of a hub's 12 series waits on the hub's one notification key; after a
    batch it XREADs only its streams that batch moved (one here), not its four; a batch of
    other series costs it no read of bars at all."""
    mine = [f"M{i}/USDT" for i in range(4)]
    others = [f"O{i}/USDT" for i in range(8)]
    hub = _Played(redis_server.url, mine + others)
    store = CCXTStore(EX, hub_url=redis_server.url, hub_namespace=hub.keys.namespace)
    try:
        pipes = _attach(store, mine)
        t0 = int(time.time()) * 1000  # the series start at the bar forming now
        hub.batch([(s, t0) for s in mine + others])  # the runner gets in step
        for s in mine:
            assert _bars(pipes[s], 1) == [t0], s
        reader = store._hub_reader
        t0 += 1000

        # no quiet period within this test: no read of every stream
        _on_notifications(redis_server.url, hub, reader, pipes, t0, mine + others, check_s=30.0)
        full_reads, gaps = reader.full_reads, reader.gaps
        mon = _Monitor(redis_server.url)
        moved = []
        for i in range(8):
            ts = t0 + (i + 1) * 1000
            hub.batch([(o, ts) for o in others])  # none of the runner's
            sym = mine[i % 4]
            hub.batch([(sym, ts), *((o, ts + 500) for o in others[:3])])
            moved.append(hub.keys.bars(sym, TF))
            assert _bars(pipes[sym], 1) == [ts], (i, sym)
        commands = mon.stop()
        assert _bar_reads(commands, hub.keys.notify) == [[k] for k in moved], commands
        assert (reader.full_reads, reader.gaps) == (full_reads, gaps)
        assert any(c.startswith("XREAD") and hub.keys.notify in c and "BLOCK" in c
                   for c in commands), commands
    finally:
        store.stop()
        hub.close()


def test_a_close_published_in_parts_costs_a_runner_one_read_when_its_series_are_all_in(
        redis_server):
    """A hub publishes a close of hundreds of symbols in parts. A runner on notifications
    reads its streams once for the close: when every one of its series moved, when the hub
    says the close is complete, when one of its series moves again (the next close), or
    ``defer_s`` after the first of them moved. Until then a part only wakes it for a look
    at the notification."""
    mine = [f"P{i}/USDT" for i in range(4)]
    others = [f"R{i}/USDT" for i in range(4)]
    hub = _Played(redis_server.url, mine + others)
    store = CCXTStore(EX, hub_url=redis_server.url, hub_namespace=hub.keys.namespace)
    keys = {s: hub.keys.bars(s, TF) for s in mine}
    try:
        pipes = _attach(store, mine)
        t0 = int(time.time()) * 1000
        hub.batch([(s, t0) for s in mine + others])
        for s in mine:
            assert _bars(pipes[s], 1) == [t0], s
        reader = store._hub_reader
        reader.defer_s = 30.0  # no step below may pass by waiting out the deferral
        t0 += 1000

        # quiet periods cost no read of bars (test_quiet_periods_cost_no_read_of_every_stream)
        _on_notifications(redis_server.url, hub, reader, pipes, t0, mine + others, check_s=1.0)

        def seen(mon: _Monitor) -> None:
            """Until the runner waits on the notification stream after the newest entry."""
            last = hub.r.xrevrange(hub.keys.notify, count=1)[0][0].decode()
            mon.wait_for(lambda cmds: any(c.startswith("XREAD") and hub.keys.notify in c
                                          and c.endswith(last) for c in cmds))

        def bar_reads(mon: _Monitor) -> list[set[str]]:
            return [set(ks) for ks in _bar_reads(mon.stop(), hub.keys.notify)]

        # 1. every one of its series in: two parts, one read
        ts = t0 + 1000
        mon = _Monitor(redis_server.url)
        hub.batch([(mine[0], ts), (mine[1], ts), (others[0], ts)])
        seen(mon)
        assert _bar_reads(list(mon.commands), hub.keys.notify) == []  # a look, no read
        hub.batch([(mine[2], ts), (others[1], ts), (mine[3], ts)])
        for s in mine:
            assert _bars(pipes[s], 1) == [ts], s
        assert bar_reads(mon) == [set(keys.values())]

        # 2. the hub says the close is complete (two of its series have no bar in it)
        ts += 1000
        mon = _Monitor(redis_server.url)
        hub.batch([(mine[0], ts), (others[0], ts)])
        seen(mon)
        hub.batch([(mine[1], ts), (others[1], ts)], complete=True)
        for s in mine[:2]:
            assert _bars(pipes[s], 1) == [ts], s
        assert bar_reads(mon) == [{keys[mine[0]], keys[mine[1]]}]

        # 3. one of its series moves again: the close it was in is as complete as it gets
        mon = _Monitor(redis_server.url)
        hub.batch([(mine[2], ts)])
        seen(mon)
        hub.batch([(mine[2], ts + 1000), (mine[3], ts + 1000)])
        assert _bars(pipes[mine[2]], 2) == [ts, ts + 1000]
        assert _bars(pipes[mine[3]], 1) == [ts + 1000]
        assert bar_reads(mon) == [{keys[mine[2]], keys[mine[3]]}]

        # 4. nothing more comes: what moved is read defer_s after it moved
        reader.defer_s = 0.05
        ts += 2000
        mon = _Monitor(redis_server.url)
        hub.batch([(mine[1], ts), (others[2], ts)])
        assert _bars(pipes[mine[1]], 1) == [ts]
        assert bar_reads(mon) == [{keys[mine[1]]}]
        for s in mine:
            assert _bars(pipes[s], 1, timeout=0.0) == [], s  # nothing twice
    finally:
        store.stop()
        hub.close()


def test_quiet_periods_cost_no_read_of_every_stream(redis_server):
    """Between bar closes no notification comes for longer than the wait's block (1m bars,
    or the second between 1s closes): each quiet period costs the runner one look at the
    notification stream's newest entry, not a read of all its streams."""
    mine = [f"Q{i}/USDT" for i in range(3)]
    hub = _Played(redis_server.url, mine)
    store = CCXTStore(EX, hub_url=redis_server.url, hub_namespace=hub.keys.namespace)
    try:
        pipes = _attach(store, mine)
        t0 = int(time.time()) * 1000
        hub.batch([(s, t0) for s in mine])
        for s in mine:
            assert _bars(pipes[s], 1) == [t0]
        reader = store._hub_reader
        t0 += 1000
        _on_notifications(redis_server.url, hub, reader, pipes, t0, mine, check_s=0.1)
        full_reads = reader.full_reads
        mon = _Monitor(redis_server.url)

        def quiet_waits(cmds: list[str]) -> int:
            return sum(c.startswith("XREVRANGE") and hub.keys.notify in c for c in cmds)

        mon.wait_for(lambda cmds: quiet_waits(cmds) >= 5)  # five quiet periods
        hub.batch([(mine[1], t0 + 1000)])
        assert _bars(pipes[mine[1]], 1) == [t0 + 1000]
        commands = mon.stop()
        assert _bar_reads(commands, hub.keys.notify) == [[hub.keys.bars(mine[1], TF)]], commands
        assert reader.full_reads == full_reads
    finally:
        store.stop()
        hub.close()


def test_a_hub_that_sends_no_notifications_still_delivers_every_bar(redis_server):
    """Bars written without notifications (a hub of an older version) reach the runner
    after each quiet period, when it finds the notification stream empty: in order, once."""
    import redis

    from btccxt_cli.hub.keys import encode_bar
    from btccxt_cli.model import BarSource, Candle

    sym = "N/USDT"
    hub = _Played(redis_server.url, [sym])
    store = CCXTStore(EX, hub_url=redis_server.url, hub_namespace=hub.keys.namespace)
    w = redis.Redis.from_url(redis_server.url)
    try:
        pipe = _attach(store, [sym])[sym]
        t0 = int(time.time()) * 1000
        want = [t0 + k * 1000 for k in range(5)]
        for ts in want:
            w.xadd(hub.keys.bars(sym, TF), encode_bar(Candle(ts, 1.0, 1.0, 1.0, 1.0, 1.0),
                                                      BarSource.LIVE), id=f"{ts}-0")
        assert _bars(pipe, len(want)) == want
        assert _bars(pipe, 1, timeout=0.0) == []
        assert not w.exists(hub.keys.notify)
    finally:
        store.stop()
        hub.close()
        w.close()


def test_a_runner_on_few_streams_waits_on_them_not_on_the_notifications(redis_server):
    """Below ``NOTIFY_FROM`` streams a runner waits in one XREAD BLOCK over its own streams:
    one round trip brings its bars, and batches of the hub's other series do not wake it."""
    from btccxt_cli.hub.reader import NOTIFY_FROM

    mine = [f"F{i}/USDT" for i in range(4)]
    others = [f"G{i}/USDT" for i in range(4)]
    assert len(mine) < NOTIFY_FROM
    hub = _Played(redis_server.url, mine + others)
    store = CCXTStore(EX, hub_url=redis_server.url, hub_namespace=hub.keys.namespace)
    try:
        pipes = _attach(store, mine)
        t0 = int(time.time()) * 1000
        mon = _Monitor(redis_server.url)
        for k in range(3):
            hub.batch([(o, t0 + k * 1000) for o in others])
            hub.batch([(mine[k], t0 + k * 1000)])
            assert _bars(pipes[mine[k]], 1) == [t0 + k * 1000]
        commands = mon.stop()
        assert not [c for c in commands if c.startswith(("XREAD", "XREVRANGE"))
                    and hub.keys.notify in c], commands
        assert store._hub_reader.waits == 0
    finally:
        store.stop()
        hub.close()


@pytest.mark.parametrize("miss", ["deleted", "deleted-with-its-counter", "trimmed"])
def test_a_missed_notification_still_delivers_every_bar_in_order(redis_server, miss):
    """Bars whose notification the runner never sees (the notification stream deleted, its
    sequence counter too as after a Redis restart, or trimmed to nothing by its cap) reach
    the runner with the next notification's gap in the sequence: every bar, once, in
    order."""
    mine = ["A/USDT", "B/USDT"]
    hub = _Played(redis_server.url, mine)
    store = CCXTStore(EX, hub_url=redis_server.url, hub_namespace=hub.keys.namespace)

    def lose() -> list[tuple[str, ...]]:
        if miss == "trimmed":
            return [("XTRIM", hub.keys.notify, "MAXLEN", "0")]
        if miss == "deleted-with-its-counter":
            return [("DEL", hub.keys.notify), ("DEL", hub.keys.notify_seq)]
        return [("DEL", hub.keys.notify)]

    try:
        pipes = _attach(store, mine)
        t0 = int(time.time()) * 1000
        hub.batch([(s, t0) for s in mine])
        for s in mine:
            assert _bars(pipes[s], 1) == [t0]
        reader = store._hub_reader
        t0 += 1000

        # the gap, not a quiet period, must bring the bars
        _on_notifications(redis_server.url, hub, reader, pipes, t0, mine, check_s=30.0)
        gaps = reader.gaps
        want = {s: [t0] for s in mine}
        for k in range(1, 4):  # three batches whose notifications are lost
            ts = t0 + k * 1000
            hub.batch([(mine[k % 2], ts)], then=lose)
            want[mine[k % 2]].append(ts)
        hub.batch([(s, t0 + 5000) for s in mine])  # notified: the runner sees the gap
        for s in mine:
            want[s].append(t0 + 5000)
            assert [t0, *_bars(pipes[s], len(want[s]) - 1)] == want[s], (miss, s)
            assert _bars(pipes[s], 1, timeout=0.0) == []  # nothing twice
        assert reader.gaps > gaps
    finally:
        store.stop()
        hub.close()


def test_redis_restarted_empty_then_every_bar_in_order_on_notifications_again(
        sim_factory, valkey_factory, tmp_path):
    """Redis restarts without its data (no persistence): the notification stream and its
    counter start again from nothing, under a runner that had read up to sequence n. The
    runner is told DISCONNECTED, reads every bar it missed in order when the hub is back
    (the hub publishes the bars it kept meanwhile), then waits on notifications again."""
    from tests.hubtools import HubProc, hub_config
    from tests.integration.harness import assert_matches_truth, run_feeds
    from tests.integration.simtools import after_live, states

    sim = sim_factory(exchanges=(EX,))
    server = valkey_factory()
    ns = namespace()
    sym = sim.symbols(EX)[3]
    hub = HubProc(hub_config(tmp_path, "hub.yaml", sim_url=sim.url(EX), redis_url=server.url,
                             ns=ns, symbols=[sym]))
    store = CCXTStore(EX, hub_url=server.url, hub_namespace=ns)
    readers: list[Any] = []
    back: dict[str, int] = {}
    restarted = threading.Event()

    def restart() -> None:
        readers.append(store._hub_reader)
        server.stop()  # its streams, notification stream and counter are gone
        t = threading.Timer(2.0, lambda: (server.start(), restarted.set()))
        t.daemon = True
        t.start()

    def after_restart(strat: Any) -> None:
        if not readers:  # waits on notifications whatever its number of streams
            store._hub_reader.notify_from = 1
        st = [state for d, state, _ in strat.p.result.notes if d == sym]
        if "back" not in back and restarted.is_set() and "DISCONNECTED" in st and st[-1] == "LIVE":
            back["back"] = readers[0].waits  # live again: the waits from here on

    hook = after_live(2, restart)
    try:
        hub.wait_for(": LIVE")
        res = run_feeds(store, [sym], live_bars=7, timeout=60, backfill_bars=2,
                        on_next=lambda strat: (hook(strat), after_restart(strat)))
        assert restarted.is_set()
        assert not res.timed_out, res.notes
        assert_matches_truth(sim, EX, sym, TF, res.bars[sym], tf_ms=1000)
        st = states(res, sym)
        i = st.index("DISCONNECTED")
        assert st[i:i + 3] == ["DISCONNECTED", "CONNECTED", "LIVE"], res.notes
        assert sum(s.source == "gapfill" for s in res.bars[sym]) >= 1, res.bars[sym]
        # back on notifications: bars came after waits on the new notification stream
        assert readers[0].waits > back["back"], (readers[0].waits, back)
    finally:
        hub.stop()
        store.stop()


def test_a_wait_longer_than_the_socket_timeout_is_no_disconnect(redis_server):
    """The reader's socket timeout runs from the end of its longest wait: checking every
    2.5 s, longer than its 2 s timeout, it waits out a quiet period LIVE (no DISCONNECTED,
    no reconnect) and still gets the next bar."""
    from btccxt_cli.model import FeedState

    sym = "W/USDT"
    hub = _Played(redis_server.url, [sym])
    store = CCXTStore(EX, hub_url=redis_server.url, hub_namespace=hub.keys.namespace)
    try:
        pipe = _attach(store, [sym])[sym]
        t0 = int(time.time()) * 1000
        hub.batch([(sym, t0)])
        assert _bars(pipe, 1) == [t0]
        reader = store._hub_reader
        mon = _Monitor(redis_server.url)
        assert reader.timeout_s == 2.0
        reader.check_s = 2.5
        # a wait of 2.5 s runs out (the next begins)
        mon.wait_for(lambda cmds: sum("BLOCK 2500" in c for c in cmds) >= 2, timeout=20)
        mon.stop()
        hub.batch([(sym, t0 + 1000)])
        events = []
        while not events or events[-1].kind != "bar":
            ev = pipe.get(10.0)
            assert ev is not None, events
            events.append(ev)
        assert events[-1].candle.ts == t0 + 1000
        assert [e.state for e in events if e.kind == "state"
                and e.state != FeedState.LIVE] == [], events
    finally:
        store.stop()
        hub.close()
