"""How long the live broker's kill switch takes to cancel many resting orders.

    python bench/kill_switch.py [--orders 10 40] [--latency-ms 50] [--exchanges binance okx]

For each exchange and order count, a cerebro run through ``CCXTBroker`` against the simulator
places that many far limit orders, waits until every one is ``Accepted``, then calls
``broker.kill()`` (what SIGUSR1 and the kill file do) and times it until it returns, every
order cancelled at the exchange. ``--latency-ms`` delays every REST answer of the simulator
(``rest_delay``) like a network round trip; ccxt's rate limiter stays on, as in a live run.
Prints one line per run: the time, per order, and whether every order was cancelled.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import backtrader as bt  # noqa: E402

from btccxt_cli.bt.store import CCXTStore  # noqa: E402
from btccxt_cli.sim.accounts import DEFAULT_KEY  # noqa: E402
from btccxt_cli.sim.app import SimThread  # noqa: E402

SYMBOL = "BTC/USDT"
KEYS = {"apiKey": DEFAULT_KEY.key, "secret": DEFAULT_KEY.secret, "password": DEFAULT_KEY.passphrase}


class Place(bt.Strategy):
    """Places ``n`` far limit buys on the first live bar; kills once all are accepted."""

    params = (("n", 10), ("result", None))

    def __init__(self) -> None:
        self.orders: list[Any] = []
        self.accepted: set[int] = set()
        self.killing = False

    def notify_order(self, order: Any) -> None:
        if order.status == order.Accepted:
            self.accepted.add(order.ref)

    def next(self) -> None:
        if self.data._laststatus != self.data.LIVE:
            return
        if not self.orders:
            px = round(self.data.close[0] * 0.5, 1)
            self.orders = [self.buy(size=0.001, price=px, exectype=bt.Order.Limit)
                           for _ in range(self.p.n)]
        elif len(self.accepted) == self.p.n and not self.killing:
            self.killing = True
            t0 = time.perf_counter()
            ok = self.broker.kill("bench", timeout=120.0)
            self.p.result.update(seconds=time.perf_counter() - t0, ok=ok)
            self.env.runstop()


def run(sim: Any, exchange: str, n: int, db: Path) -> dict[str, Any]:
    result: dict[str, Any] = {}
    store = CCXTStore(exchange, sim_url=sim.url(exchange), config=dict(KEYS))
    cerebro = bt.Cerebro(stdstats=False, quicknotify=True)
    cerebro.adddata(store.getdata(dataname=SYMBOL, name=SYMBOL, timeframe=bt.TimeFrame.Seconds,
                                  compression=1, backfill_bars=1, use_websocket=True))
    cerebro.setbroker(store.getbroker(live=True, db_path=db, poll_interval=1.0))
    cerebro.addstrategy(Place, n=n, result=result)
    timer = threading.Timer(300.0, cerebro.runstop)
    timer.daemon = True
    timer.start()
    try:
        cerebro.run()
    finally:
        timer.cancel()
        store.stop()
    left = [o for o in sim.orders(exchange) if o["status"] == "new"]
    result["left_open"] = len(left)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--orders", nargs="+", type=int, default=[10, 40])
    ap.add_argument("--latency-ms", type=float, default=50.0)
    ap.add_argument("--exchanges", nargs="+", default=["binance", "okx"])
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    print(f"# kill switch: far limit orders cancelled by broker.kill(), simulator REST answers "
          f"{args.latency_ms:g} ms late, ccxt rate limiter on")
    for exchange in args.exchanges:
        for n in args.orders:
            with tempfile.TemporaryDirectory() as tmp:
                sim = SimThread(exchanges=(exchange,), balances={"USDT": 1_000_000.0}).start()
                try:
                    sim.rest_delay(exchange, args.latency_ms)
                    r = run(sim, exchange, n, Path(tmp) / "orders.sqlite")
                finally:
                    sim.stop()
            secs = r.get("seconds")
            if secs is None:
                print(f"{exchange:8s} {n:3d} orders: did not finish")
                continue
            print(f"{exchange:8s} {n:3d} orders: {secs * 1000:7.0f} ms ({secs * 1000 / n:5.1f} ms per "
                  f"order), kill returned {r['ok']}, {r['left_open']} left open")


if __name__ == "__main__":
    main()
