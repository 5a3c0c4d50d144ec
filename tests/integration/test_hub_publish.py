"""How the hub publishes: from the event loop that read the bars, and from its thread while
Redis is away, handing over both ways with every bar once and in order (real simulator, real
valkey-server, the hub's real ccxt.pro feeds)."""

from __future__ import annotations

import threading

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
