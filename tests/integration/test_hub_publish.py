"""How the hub publishes: from the event loop that read the bars, and from its thread while
Redis is away, handing over both ways with every bar once and in order (real simulator, real
valkey-server, the hub's real ccxt.pro feeds)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tests.hubtools import namespace
from tests.integration.harness import Seen, assert_matches_truth

pytestmark = pytest.mark.live

EX = "binance"
LOOP = f"btccxt-{EX}"  # the store's event loop thread (sources/loop.py)
THREAD = "hub publisher"


def test_bars_go_out_from_the_hubs_loop_and_its_thread_takes_over_while_redis_is_frozen(
        sim_factory, valkey_factory):
    """A bar close is published from the store's event loop that read it, not handed to the
    publisher thread (a thread wake-up of 2 ms p50, 7 ms p99 on a busy machine). When Redis
    stops answering, the batch on its way is kept, the thread queues and publishes it after
    reading the lease, then hands back to the loop: each stream holds every bar once, in
    order, with the exchange's values."""
    import redis

    from btccxt_cli.hub.keys import HubKeys, decode_bar
    from btccxt_cli.runtime.hubd import HubPublisher

    sim = sim_factory(exchanges=(EX,))
    server = valkey_factory()
    ns = namespace()
    syms = sim.symbols(EX)[7:9]
    lines: list[tuple[str, str]] = []  # (thread, line)
    cond = threading.Condition()

    def on_line(line: str) -> None:
        with cond:
            lines.append((threading.current_thread().name, line))
            cond.notify_all()

    def wait_for(pred, timeout: float) -> None:
        with cond:
            assert cond.wait_for(pred, timeout), lines[-20:]

    def live_bars(since: int = 0) -> list[tuple[str, str]]:
        return [(t, ln) for t, ln in lines[since:] if ln.endswith("(live)")]

    def index_of(prefix: str, suffix: str = "", start: int = 0) -> int:
        return next((i for i, (_, ln) in enumerate(lines) if i >= start
                     and ln.startswith(prefix) and ln.endswith(suffix)), -1)

    hub = HubPublisher(EX, [(s, "1s") for s in syms], server.url, namespace=ns, backfill=2,
                       lease_s=2.5, heartbeat_s=1.5, store_kwargs={"sim_url": sim.url(EX)},
                       on_line=on_line)
    stop = threading.Event()
    thread = threading.Thread(target=hub.run, args=(stop,), name=THREAD, daemon=True)
    thread.start()
    resume = threading.Timer(4.0, server.resume)
    resume.daemon = True
    try:
        wait_for(lambda: len(live_bars()) >= 2 * len(syms), 30)
        assert {t for t, _ in live_bars()} == {LOOP}, live_bars()
        server.pause()  # SIGSTOP: the loop's next batch times out
        resume.start()
        wait_for(lambda: index_of("redis: down") >= 0, 15)
        down = index_of("redis: down")
        wait_for(lambda: index_of("redis ", ": up", down) > 0, 20)
        back = index_of("redis ", ": up", down)
        wait_for(lambda: len(live_bars(back)) >= 3 * len(syms), 20)
        kept = [t for t, ln in lines[down:] if ln.endswith(")") and " o=" in ln]
        assert THREAD in kept, lines[down:]  # the kept bars went out from the thread ...
        # ... as gap fills: they closed while Redis was away and reach the runners late
        late = [ln for t, ln in lines[down:] if t == THREAD and " o=" in ln]
        assert late and all(ln.endswith("(gapfill)") for ln in late), late
        assert live_bars(back)[-1][0] == LOOP, lines[back:]  # ... then the loop again
    finally:
        resume.cancel()
        server.resume()
        stop.set()
        thread.join(15)
    assert not thread.is_alive()
    r = redis.Redis.from_url(server.url)
    keys = HubKeys(ns)
    for sym in syms:
        seen = []
        for eid, fields in r.xrange(keys.bars(sym, "1s")):
            c, src = decode_bar(eid, fields)
            seen.append(Seen(c.ts, c.ts, (c.open, c.high, c.low, c.close, c.volume), src.value,
                             0, 0))
        assert len(seen) >= 10, seen
        assert_matches_truth(sim, EX, sym, "1s", seen, tf_ms=1000)
    r.close()


class _Burst:
    """A loop publisher on the pipes of six series of 1s bars, with the test's clock, and
    the batches it published (symbols, in order)."""

    def __init__(self, url: str, **kw: Any) -> None:
        from btccxt_cli.clock import ManualClock
        from btccxt_cli.hub.keys import HubKeys
        from btccxt_cli.hub.publish import BatchPacker, LoopPublisher
        from btccxt_cli.sources.pipe import Pipe

        self.keys = HubKeys(namespace())
        self.syms = ["AAA/USDT", "BBB/USDT", "CCC/USDT", "DDD/USDT", "EEE/USDT", "FFF/USDT"]
        self.pipes = {s: Pipe() for s in self.syms}
        self.clock = ManualClock()
        self.published: list[list[str]] = []
        self.cond = threading.Condition()
        self.pub = LoopPublisher(url, threading.Lock(), take=self._take, done=self._done,
                                 failed=self._failed, clock=self.clock,
                                 build=BatchPacker(self.keys, maxlen=100, hub_id="t").pack, **kw)
        for pipe in self.pipes.values():
            pipe.on_put = self.pub.putter("1s")

    def _take(self) -> list:
        batch = []
        for s, pipe in self.pipes.items():
            while (ev := pipe.get(0)) is not None:
                batch.append((s, "1s", ev))
        return batch

    def _done(self, batch: list, results: list) -> None:
        with self.cond:
            self.published.append([s for s, _, _ in batch])
            self.cond.notify_all()

    @staticmethod
    def _failed(batch: list, exc: BaseException) -> None:
        raise AssertionError(f"publishing failed: {exc}")

    def parts(self, n: int) -> list[list[str]]:
        """Every batch published, once there are ``n`` at least."""
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.published) >= n, 10), self.published
            return list(self.published)


def test_a_burst_goes_when_its_close_is_complete_a_long_one_in_parts_the_rest_on_a_timer(
        redis_server):
    """Bars that close together go in one MULTI/EXEC as the last of them is read: a close is
    complete when as many series of its timeframe have their live bar as at the close before
    (one XREAD wake a runner, no guess that the burst is over). Until a close is known (the
    first) or when one does not complete (a series dropped), what is read goes ``hold_s``
    after the first bar of it; a long burst parsed back to back goes out in parts meanwhile,
    each part waiting twice as long as the one before."""
    import redis

    from btccxt_cli.model import BarSource, Candle, FeedEvent
    from btccxt_cli.sources.loop import LoopThread

    b = _Burst(redis_server.url, hold_s=0.003)
    pub, pipes, clock, keys, syms = b.pub, b.pipes, b.clock, b.keys, b.syms
    wait_parts = b.parts
    check = redis.Redis.from_url(redis_server.url)
    loop = LoopThread(name="burst")
    loop.start()

    def put(sym: str, ts: int, after_s: float = 0.0, src: BarSource = BarSource.LIVE) -> None:
        clock.advance(after_s)  # parsing the messages before this one took this long
        pipes[sym].put(FeedEvent("bar", Candle(ts, 1.0, 2.0, 0.5, 1.5, 3.0), src))

    def held() -> list[int]:
        return [check.xlen(keys.bars(s, "1s")) for s in syms]

    async def first_close() -> list[list[int]]:
        """(loop) One callback, as ccxt's reader parsing a burst: what Redis holds meanwhile."""
        await pub.bind()
        pub.enabled = True
        seen = []
        put("AAA/USDT", 1000)
        seen.append(held())  # the first close: its size is not known, held for the rest
        put("BBB/USDT", 1000, 0.0025)
        seen.append(held())  # 2.5 ms < 3: held
        put("CCC/USDT", 1000, 0.0025)
        seen.append(held())  # 5 ms > 3: sent, with CCC's
        put("DDD/USDT", 1000, 0.0025)
        put("EEE/USDT", 1000, 0.0025)
        put("FFF/USDT", 1000, 0.0025)
        seen.append(held())  # 5 ms < 6 (the next part waits twice as long): held, for the timer
        return seen

    async def close(ts: int, names: list[str]) -> list[list[int]]:
        clock.advance(1.0)  # a new burst: the hold is back to hold_s
        seen = []
        for sym in names:
            seen.append(held())
            put(sym, ts)
        seen.append(held())
        return seen

    try:
        assert loop.call(first_close(), timeout=10) == [
            [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0], [1, 1, 1, 0, 0, 0]]
        assert wait_parts(2) == [syms[:3], syms[3:]]
        assert held() == [1] * 6

        # the next close has as many live bars as this one: it goes as its sixth bar is read
        seen = loop.call(close(2000, syms), timeout=10)
        assert seen == [[1] * 6] * 6 + [[2] * 6]
        assert wait_parts(3)[2] == syms and pub.complete == 1

        # a close one series short goes on the timer
        seen = loop.call(close(3000, syms[:5]), timeout=10)
        assert seen[-1] == [2] * 6  # 5 of 6: held
        assert wait_parts(4)[3] == syms[:5] and pub.complete == 1
        assert held() == [3, 3, 3, 3, 3, 2]

        # ... and the close after it is complete with those five
        seen = loop.call(close(4000, syms[:5]), timeout=10)
        assert seen[-1] == [4, 4, 4, 4, 4, 2]
        assert pub.complete == 2

        # bars that are not live closes (gap fill) go on the timer, never counted
        loop.call(_call(lambda: put("FFF/USDT", 3000, src=BarSource.GAPFILL)), timeout=10)
        assert wait_parts(6)[5] == ["FFF/USDT"] and pub.complete == 2
        # the notifications of the two complete closes say so; parts and timers do not
        assert [f[b"c"] for _, f in check.xrange(keys.notify)] == [
            b"0", b"0", b"1", b"0", b"1", b"0"]
    finally:
        loop.stop(cleanup=pub.aclose())
        check.close()


async def _call(fn):
    return fn()


def test_a_short_close_waits_for_its_rest_a_long_one_goes_in_parts_from_hold_s(redis_server):
    """A close of few series (the close before tells its size) is parsed within a few ms: its
    first part waits up to ``gap_s`` for the rest, so a lone first update does not go alone
    (each part costs every runner a wake-up and a read). A long close goes in parts from
    ``hold_s``."""
    from btccxt_cli.model import BarSource, Candle, FeedEvent
    from btccxt_cli.sources.loop import LoopThread

    b = _Burst(redis_server.url, hold_s=0.001, gap_s=0.003, long_close=4)
    pub, pipes, clock, syms, parts = b.pub, b.pipes, b.clock, b.syms, b.parts
    loop = LoopThread(name="closes")
    loop.start()

    async def start() -> None:
        await pub.bind()
        pub.enabled = True

    async def read(ts: int, names: list[str], gaps: list[float]) -> None:
        """(loop) Closing updates of ``names``, ``gaps`` seconds before each."""
        for sym, gap in zip(names, gaps, strict=True):
            clock.advance(gap)
            pipes[sym].put(FeedEvent("bar", Candle(ts, 1.0, 2.0, 0.5, 1.5, 3.0), BarSource.LIVE))

    try:
        loop.call(start(), timeout=10)
        loop.call(read(1000, syms[:3], [0, 0, 0]), timeout=10)  # the first: goes on the timer
        assert parts(1) == [syms[:3]]
        # a close of three (short): the second update 2 ms after the first, held for it
        loop.call(read(2000, syms[:3], [1.0, 0.002, 0.0]), timeout=10)
        assert parts(2)[1] == syms[:3] and pub.complete == 1
        # a close of six: complete at three (the close before), the rest on the timer
        loop.call(read(3000, syms, [1.0, 0, 0, 0, 0, 0]), timeout=10)
        assert parts(4)[2:] == [syms[:3], syms[3:]]
        # the next close of six (long): its first update goes 2 ms later with the second's
        loop.call(read(4000, syms, [1.0, 0.002, 0, 0, 0, 0]), timeout=10)
        assert parts(6)[4:] == [syms[:2], syms[2:]]
    finally:
        loop.stop(cleanup=pub.aclose())


def test_an_entry_read_back_from_redis_is_the_bar_and_source_published(redis_server):
    """The entry format both ends share: what the hub writes, read back as a runner reads it
    (bytes from hiredis) or as text, is the same candle (exact floats) and source."""
    import redis

    from btccxt_cli.hub.keys import HubKeys, decode_bar, encode_bar
    from btccxt_cli.model import BarSource, Candle

    key = HubKeys(namespace()).bars("AAA/USDT", "1s")
    bars = [(Candle(1_700_000_000_000 + i * 1000, 0.1 + i, 1e-9 * 3, 12345.678901234567, 2 / 3,
                    1e22 / 7), src) for i, src in enumerate(BarSource)]
    raw, text = redis.Redis.from_url(redis_server.url), redis.Redis.from_url(
        redis_server.url, decode_responses=True)
    try:
        for c, src in bars:
            raw.xadd(key, encode_bar(c, src), id=f"{c.ts}-0")
        for client in (raw, text):
            assert [decode_bar(eid, f) for eid, f in client.xrange(key)] == bars
        raw.xadd(key, {"o": "1", "h": "1", "l": "1", "c": "1", "v": "1", "s": "weird"},
                 id="1800000000000-0")
        for client in (raw, text):
            assert decode_bar(*client.xrange(key)[-1])[1] is BarSource.LIVE
    finally:
        raw.close()
        text.close()


def test_a_packed_batch_writes_what_redis_pys_own_commands_write(redis_server):
    """The hub sends a batch as bytes it packs itself (``BatchPacker``): Redis must hold
    exactly what redis-py's own commands for the same batch write (bars, states, the events
    stream, the notification), non-ASCII text included, and a bar already there must come
    back refused while the rest of the batch still lands."""
    import redis

    from btccxt_cli.hub.keys import NOTIFY_MAXLEN, NOTIFY_SCRIPT, HubKeys, encode_bar, encode_moved
    from btccxt_cli.hub.publish import BatchPacker, is_refusal, send_batch
    from btccxt_cli.model import BarSource, Candle, FeedEvent, FeedState

    batch = [
        ("AAA/USDT", "1s", FeedEvent("bar", Candle(1_000, 0.1, 1e-9 * 3, 12345.678901234567,
                                                   2 / 3, 1e22 / 7), BarSource.LIVE)),
        ("ÄÖÜ/USDT", "1m", FeedEvent("bar", Candle(60_000, 1.0, 2.0, 0.5, 1.5, 0.0),
                                     BarSource.GAPFILL)),
        ("AAA/USDT", "1s", FeedEvent("state", state=FeedState.DISCONNECTED,
                                     message="socket closed: «1006»\nretrying")),
        ("AAA/USDT", "1s", FeedEvent("bar", Candle(2_000, 3.0, 4.0, 2.0, 3.5, 7.25),
                                     BarSource.BACKFILL)),
    ]
    ours, theirs = HubKeys(namespace()), HubKeys(namespace())
    r = redis.Redis.from_url(redis_server.url)
    try:
        # redis-py's own commands for the same batch, as the hub sent them before
        p = r.pipeline(transaction=True)
        moved = []
        for sym, tf, ev in batch:
            if ev.kind == "bar":
                p.xadd(theirs.bars(sym, tf), encode_bar(ev.candle, ev.source),
                       id=f"{ev.candle.ts}-0", maxlen=100, approximate=True)
                moved.append(f"{sym}|{tf}")
            else:
                p.hset(theirs.states, f"{sym}|{tf}", ev.state.value)
                p.xadd(theirs.events, {"series": f"{sym}|{tf}", "state": ev.state.value,
                                       "message": ev.message, "hub": "hub-ä"},
                       maxlen=10_000, approximate=True)
        p.eval(NOTIFY_SCRIPT, 2, theirs.notify, theirs.notify_seq, NOTIFY_MAXLEN,
               encode_moved(moved), 0)
        expected = p.execute()

        packer = BatchPacker(ours, maxlen=100, hub_id="hub-ä")
        got = send_batch(r, packer.pack(batch))
        assert len(got) == len(expected) == 6
        assert [type(x) for x in got] == [type(x) for x in expected]

        def held(k: HubKeys) -> tuple:
            return ({tf: r.xrange(k.bars(sym, tf)) for sym, tf, _ in batch},
                    r.hgetall(k.states),
                    [f for _, f in r.xrange(k.events)],
                    [f for _, f in r.xrange(k.notify)])

        assert held(ours) == held(theirs)
        assert held(ours)[0]["1s"][0][1][b"c"] == repr(2 / 3).encode()

        # again, with one new bar: the two already there are refused, the new one lands
        again = [*batch, ("AAA/USDT", "1s", FeedEvent("bar", Candle(3_000, 1, 1, 1, 1, 1),
                                                      BarSource.LIVE))]
        res = send_batch(r, packer.pack(again))
        assert [is_refusal(x) for x in res] == [True, True, False, False, True, False, False]
        assert isinstance(res[0], redis.ResponseError)
        assert [eid for eid, _ in r.xrange(ours.bars("AAA/USDT", "1s"))] == [
            b"1000-0", b"2000-0", b"3000-0"]
        assert r.get(ours.notify_seq) == b"2"
    finally:
        r.close()
