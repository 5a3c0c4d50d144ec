"""Subscribing many symbols on exchanges whose ccxt.pro sends one subscribe per series (kucoin,
bitget, kraken) or batches (bybit), against the simulator enforcing each exchange's real
(default) WebSocket limits: how long until every series is subscribed, over how many sockets,
and how many requests the exchange refused or sockets it closed.

    python bench/ws_limits.py [--exchange kucoin] [--symbols 1000] [--runs 1] [--ccxt-alone]

One websocket series of 1m bars per symbol (no backfill: REST start-up work is not counted),
attached to a store at once. "subscribed s": from the first attach until the simulator holds
every series' subscription (polled every 0.05 s). The floor: the messages on the busiest
socket at the exchange's documented message rate (kucoin 100 per 10 s, one message a symbol;
bitget 10 a second; kraken documents none: ccxt's 1 a second; bybit: ccxt's 50 a second),
where one request carries many symbols (bybit, bitget, kraken) the requests spread evenly
over the sockets. ``--ccxt-alone``: without btccxt's pacing, spreading of sockets and merged
subscribes (ccxt.pro's own pacing, every topic on one socket, one message a symbol), as before
issue 18.
"""

from __future__ import annotations

import argparse
import platform
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ccxt  # noqa: E402

from btccxt_cli.bt.store import CCXTStore  # noqa: E402
from btccxt_cli.sim.app import SimThread  # noqa: E402
from btccxt_cli.sources.base import SeriesParams  # noqa: E402

# messages a second a socket may send (kraken documents none: ccxt's pace, its rateLimit)
RATE = {"kucoin": 10.0, "bitget": 10.0, "bybit": 50.0, "kraken": 1.0}


def run_once(sim: SimThread, exchange: str, symbols: list[str], timeout: float,
             alone: bool = False) -> dict:
    sim.reset_stats(exchange)
    config = {"options": {"ws": {"cost": 1}, "btccxtWsShard": 10**9,
                          "btccxtWsCoalesce": False}} if alone else None
    store = CCXTStore(exchange, sim_url=sim.url(exchange), config=config)
    tick = threading.Event()
    out: dict = {"subscribed_s": float("nan")}
    try:
        t0 = time.perf_counter()
        for s in symbols:
            store.attach(SeriesParams(symbol=s, timeframe="1m", mode="websocket",
                                      backfill_start=False, exchange_id=exchange))
        while time.perf_counter() - t0 < timeout:
            stats = sim.stats(exchange)
            if sum(len(v) for v in stats["subscriptions"].values()) >= len(symbols):
                out["subscribed_s"] = time.perf_counter() - t0
                break
            tick.wait(0.05)  # polling the simulator's count with a deadline
        out.update(sim.stats(exchange))
    finally:
        store.stop()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exchange", default="kucoin", choices=sorted(RATE))
    ap.add_argument("--symbols", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--ccxt-alone", action="store_true", help="no pacing or spreading by btccxt")
    ap.add_argument("--swaps", action="store_true", help="linear perpetuals (bybit, bitget)")
    args = ap.parse_args()
    ex, n = args.exchange, args.symbols
    names = [f"W{i:04d}/USDT" + (":USDT" if args.swaps else "") for i in range(n)]
    print(f"# subscribing {n} {'swaps' if args.swaps else 'symbols'} of 1m bars on {ex} "
          "(the simulator's default limits)")
    print(f"# {platform.node()} {platform.machine()} python {platform.python_version()} "
          f"ccxt {ccxt.__version__} {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC")
    print(f"{'run':>3} {'subscribed s':>12} {'sockets':>7} {'max topics/socket':>17} "
          f"{'subscribes':>10} {'refused':>7} {'closed':>6} {'floor s':>7}")
    with SimThread(exchanges=(ex,), symbols={ex: names}) as sim:
        for r in range(args.runs):
            st = run_once(sim, ex, names, args.timeout, args.ccxt_alone)
            loads = [len(v) for v in st.get("subscriptions", {}).values() if v]
            subs = st.get("subscribe_requests", 0)
            # messages on the busiest socket: kucoin one per symbol; where requests carry
            # many symbols (bybit, bitget, kraken) the requests, spread evenly over the sockets
            busiest = max(loads, default=0) if ex == "kucoin" else -(-subs // max(1, len(loads)))
            floor = busiest / RATE[ex]
            print(f"{r + 1:>3} {st['subscribed_s']:>12.2f} {len(loads):>7} {max(loads, default=0):>17} "
                  f"{subs:>10} {st.get('ws_limit_refusals', 0):>7} {st.get('ws_limit_closes', 0):>6} "
                  f"{floor:>7.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
