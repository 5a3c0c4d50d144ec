"""Live-order notification latency and REST load: WebSocket order updates vs REST polling.

    python bench/orders.py [--rounds 10] [--exchanges binance okx]

One simulator; for each exchange, one cerebro run per update mode (``poll``: the broker polls
live orders every ``poll_interval`` = 1 s; ``websocket``: ccxt.pro ``watch_orders`` pushes,
REST reconciliation every 10 s). Each round places a limit order the seeded price path is
about to cross, waits for ``Accepted``, then moves the exchange's clock past the crossing and
times how long the strategy waits for ``Completed`` (the fill's trade read included). It also
counts the private REST requests the simulator answered per minute of the run.

The exchange side is the simulator on this machine: its matching engine looks at resting
orders every 100 ms when a private stream is open (on REST requests otherwise), which is part
of every WebSocket figure.
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
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
from btccxt_cli.sim.plans import cross_plan  # noqa: E402

SYMBOL = "BTC/USDT"
T0 = time.perf_counter()
KEYS = {"apiKey": DEFAULT_KEY.key, "secret": DEFAULT_KEY.secret, "password": DEFAULT_KEY.passphrase}


class Rounds(bt.Strategy):
    """``rounds`` crossing limit orders, then one far limit order resting for ``idle_s``."""

    params = (("sim", None), ("exchange", ""), ("rounds", 10), ("idle_s", 30.0), ("result", None))

    def __init__(self) -> None:
        self.order: Any = None
        self.plan: Any = None
        self.jumped_at: float | None = None
        self.scheduled = False
        self.accepted = False
        self.idle_from: float | None = None
        self.rng = random.Random(7)

    def notify_order(self, order: Any) -> None:
        if self.order is None or order.ref != self.order.ref:
            return
        r = self.p.result
        if order.status == order.Accepted:
            self.accepted = True
        elif order.status == order.Completed and self.jumped_at is not None:
            r["latency_ms"].append((time.perf_counter() - self.jumped_at) * 1000)
            logging.getLogger("bench").info("round %d done at %.1f s", len(r["latency_ms"]), time.perf_counter() - T0)
            self._reset()
        elif order.status == order.Completed:  # filled before the clock moved: not timed
            r["early"] = r.get("early", 0) + 1
            self._reset()
        elif order.status in (order.Rejected, order.Canceled, order.Expired):
            r["errors"].append(f"{order.getstatusname()}: {order.info.get('reason')}")
            self._reset()

    def _reset(self) -> None:
        self.order, self.jumped_at, self.scheduled, self.accepted = None, None, False, False

    def _jump(self) -> None:
        """(timer thread) The exchange's clock moves past the crossing: the order fills."""
        sim = self.p.sim
        gap = self.plan.when_ms + 1000 - sim.now_ms()
        self.jumped_at = time.perf_counter()
        if gap > 0:
            sim.sim.clock_offset_ms += gap

    def next(self) -> None:
        r, sim = self.p.result, self.p.sim
        if self.idle_from is not None:
            if time.perf_counter() - self.idle_from >= self.p.idle_s:
                r["idle_per_min"] = (private_requests(sim, self.p.exchange) - r["idle_start"]) \
                    / (time.perf_counter() - self.idle_from) * 60
                self.env.runstop()
            return
        if self.data._laststatus != self.data.LIVE and not len(r["latency_ms"]):
            return
        if len(r["latency_ms"]) >= self.p.rounds and self.order is None:
            r["per_order"] = (private_requests(sim, self.p.exchange) - r["start"]) / self.p.rounds
            self.order = self.buy(size=0.01, price=round(self.data.close[0] * 0.5, 1),
                                  exectype=bt.Order.Limit)  # rests: the idle phase
            self.idle_from = time.perf_counter()
            r["idle_start"] = private_requests(sim, self.p.exchange)
            return
        if self.order is None:
            if "start" not in r:
                r["start"] = private_requests(sim, self.p.exchange)
            self.plan = cross_plan(sim.model, SYMBOL, sim.now_ms())
            fn = self.buy if self.plan.side == "buy" else self.sell
            self.order = fn(size=0.01, price=self.plan.price, exectype=bt.Order.Limit)
        elif self.accepted and not self.scheduled and (
                r["mode"] == "poll" or self.broker.updates_via == "websocket"):
            # at a random phase of the poll cycle, not right after a poll woke next()
            self.scheduled = True
            t = threading.Timer(self.rng.uniform(0.0, 1.0), self._jump)
            t.daemon = True
            t.start()


def private_requests(sim: Any, exchange: str) -> int:
    rest = sim.stats(exchange)["rest"]
    keys = ("/api/v3/order", "/api/v3/myTrades", "/api/v3/account", "/api/v3/openOrders",
            "/api/v5/trade/", "/api/v5/account/")
    return sum(n for path, n in rest.items() if any(path.startswith(k) for k in keys))


def run_mode(sim: Any, exchange: str, mode: str, rounds: int, idle_s: float, db: Path) -> dict[str, Any]:
    result: dict[str, Any] = {"mode": mode, "latency_ms": [], "errors": []}
    store = CCXTStore(exchange, sim_url=sim.url(exchange), config=dict(KEYS))
    cerebro = bt.Cerebro(stdstats=False, quicknotify=True)
    cerebro.adddata(store.getdata(dataname=SYMBOL, name=SYMBOL, timeframe=bt.TimeFrame.Seconds,
                                  compression=1, backfill_bars=1, use_websocket=True))
    # the account's BTC is the bot's to sell: half the crossings are sells
    broker = store.getbroker(live=True, db_path=db, updates=mode, poll_interval=1.0,
                             reconcile_interval=10.0, adopt_holdings=True)
    cerebro.setbroker(broker)
    cerebro.addstrategy(Rounds, sim=sim, exchange=exchange, rounds=rounds, idle_s=idle_s,
                        result=result)
    timer = threading.Timer(60.0 + rounds * 15.0 + idle_s, cerebro.runstop)
    timer.daemon = True
    timer.start()
    try:
        cerebro.run()
    finally:
        timer.cancel()
        store.stop()
    result["pushes"] = broker.sync.ws_pushes if broker.sync else 0
    return result


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--idle", type=float, default=30.0, help="seconds one order rests idle")
    ap.add_argument("--exchanges", nargs="+", default=["binance", "okx"])
    args = ap.parse_args()
    print("| exchange | updates | rounds | crossing -> Completed p50 ms | p90 ms | max ms | "
          "private REST requests per filled order | per minute, one order resting | pushes |")
    print("|---|---|---|---|---|---|---|---|---|")
    with SimThread(exchanges=tuple(args.exchanges), balances={"USDT": 100_000.0, "BTC": 1.0},
                   check_timestamps=False) as sim, tempfile.TemporaryDirectory() as tmp:
        for exchange in args.exchanges:
            for mode in ("poll", "websocket"):
                r = run_mode(sim, exchange, mode, args.rounds, args.idle,
                             Path(tmp) / f"{exchange}-{mode}.sqlite")
                lat = r["latency_ms"]
                figs = (f"{statistics.median(lat):.0f} | {pct(lat, 0.9):.0f} | {max(lat):.0f}"
                        if lat else "- | - | -")
                print(f"| {exchange} | {mode} | {len(lat)} | {figs} | "
                      f"{r.get('per_order', float('nan')):.1f} | {r.get('idle_per_min', float('nan')):.0f} "
                      f"| {r['pushes']} |" + (f" errors: {r['errors']}" if r["errors"] else ""),
                      flush=True)


if __name__ == "__main__":
    main()
