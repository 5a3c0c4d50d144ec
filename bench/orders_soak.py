"""Order chaos soak: the live broker (CCXTBroker) against the simulator while faults hit it.

    python bench/orders_soak.py [--duration 300] [--seed N] [--exchanges binance okx]
                                [--every 5 15] [--ambiguous-timeout 35] [--crashes 2] [--log FILE]
                                [--swap]

For each exchange, a backtrader strategy on 1 s bars (WebSocket feed) trades through
``CCXTBroker`` (``updates="auto"``: the order stream by WebSocket, REST polls while it is down)
for ``--duration`` seconds, through real ccxt / ccxt.pro. On live bars it keeps placing orders
drawn from a seeded RNG: market buys and sells, limit orders the seeded price path is about to
cross (some large enough to fill in parts), marketable limits, far limits it cancels later,
stop and stop-limit orders (some the path triggers, some far ones it cancels), limits with a
``valid=`` of 1-10 s (cancelled then: ``Expired``, unless filled first), trailing stops the
exchange trails (binance spot, okx; cancelled some bars later unless they triggered), cancels
racing fills, and jumps of the exchange's clock past a resting order's crossing.

Meanwhile a fault thread injects, every EVERY seconds (drawn at random, every kind once in a
seeded order before any repeats): socket drops (close frame, TCP reset), a WebSocket outage, a
REST + WebSocket outage, a stall, bursts of REST 5xx or 429, lagging lookups (``lookup_lag``:
a new order is "not found" for 1-4 s, binance -2013 / okx 51603; the broker must not give it
up), and lost create answers (``order_ack_fault`` delay / reset / 500: the order executes, its
answer is lost; the broker must look it up by client order id and never send it again).

Crash points (``--crashes N``, spread over the trading time): the strategy places a market
order and dies while it is told of its fill (the order is ``closed`` in the refresh that stored
the fill, which was never delivered). A new run starts on the same order database (faults
paused until it is live): it must tell that fill once, adopt what is live, and go on.

Then it stops placing, clears the faults, cancels what is still open and waits for every order
to be final and the broker's balances to equal the exchange's. Checks: every client order id at
most once on the exchange and no exchange order the broker does not know; per order a valid
notification sequence (Submitted, Accepted at most once per run, Partial*, one final); fills told to the
strategy and stored in the order database equal the exchange's, once each, all delivered; the
final cash and position equal the exchange's balances. Exit code 1 when any check fails.

Swap mode (``--swap``; okx by default): the same on the linear swap ``BTC/USDT:USDT``
(contracts of 0.01 BTC; the strategy's sizes are in BTC), 5x isolated, starting flat with
``adopt_holdings=False``: sells open shorts, an order that crosses zero flips the position, one
that only takes it towards zero goes reduce-only, and market, taker and crash orders turn towards
zero once the position is beyond +-0.3 BTC; market orders close the whole position or flip it
a little past zero now and then, and on every 4th bar (from flat: a short). Stop and stop-limit
orders are algo orders on the swap (okx, binance USD-M). The final check adds: the broker's position (``getposition``) equals the exchange's
(ccxt ``fetch_positions``, contracts x contractSize, signed) and the simulator's
``positions()``; its cash is the exchange's free USDT; and no order was refused as trading
against a position the bot did not open (there is none). binance swap runs read bars by REST
and poll orders (the simulator has no futures kline stream).

``tests/integration/test_orders_soak.py`` runs a short version of the same soak.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import backtrader as bt  # noqa: E402

from btccxt_cli.bt.store import CCXTStore  # noqa: E402
from btccxt_cli.cache.orders import OrderStore  # noqa: E402
from btccxt_cli.exchange.factory import make_exchange  # noqa: E402
from btccxt_cli.sim.accounts import DEFAULT_KEY  # noqa: E402
from btccxt_cli.sim.app import SimThread  # noqa: E402
from btccxt_cli.sim.plans import cross_plan  # noqa: E402

SYMBOL = "BTC/USDT"
BASE, QUOTE = "BTC", "USDT"
KEYS = {"apiKey": DEFAULT_KEY.key, "secret": DEFAULT_KEY.secret, "password": DEFAULT_KEY.passphrase}
#: starting balances of the simulated account
BALANCES = {QUOTE: 1_000_000.0, BASE: 10.0}
#: the simulator's arguments: large balances, no timestamp check (the exchange's clock jumps
#: ahead of the one ccxt signs with), resting orders fill at most 0.3 x each second's volume
#: (a 1 s candle trades ~0.3 BTC, so large limit orders fill in parts)
SIM_KW: dict[str, Any] = {"balances": BALANCES, "check_timestamps": False, "liquidity": 0.3}
#: every fault kind the chaos thread injects
FAULT_KINDS = ("drop_close", "drop_reset", "ws_outage", "outage", "stall", "rest_5xx", "rest_429",
               "ack_delay", "ack_reset", "ack_500", "lookup_lag")
#: lagging lookups (``lookup_lag``): orders created while it is on are not found for this many
#: ms after their create (binance -2013, okx 51603); on until the next fault. Below the test's
#: ambiguous_timeout, so a lost create is still found before it is given up
LOOKUP_LAG_MS = (1000, 4000)
#: what the strategy does on each current bar, with weights
ACTIONS = (("market", 3), ("cross_limit", 4), ("taker_limit", 1), ("far_limit", 2), ("stop", 2),
           ("expiring", 1), ("trail", 1), ("cancel", 1), ("jump", 1), ("idle", 1))
#: trails of the trailing stops (whole basis points, as binance takes them)
TRAILS = (0.001, 0.002, 0.003, 0.005)
#: swap mode: the linear swap traded, its actions (stops: algo orders on both exchanges; a
#: market order of the whole position, and one past zero by a little), leverage and margin mode, and the position beyond which market, taker and
#: crash orders turn towards zero
SWAP_SYMBOL = "BTC/USDT:USDT"
SWAP_ACTIONS = ACTIONS + (("close", 1), ("flip", 1))
SWAP_STOP_EXCHANGES = ("binance", "okx")
SWAP_LEVERAGE, SWAP_MARGIN = 5, "isolated"
SWAP_BOUND = 0.3
SWAP_FLIP_EVERY = 4  # every 4th bar acted on flips the position (from flat: opens a short)
#: swap positions are sums of contracts x 0.01 (no fee in base units): equal up to float error
SWAP_POSITION_TOL = 1e-9
FINAL = ("Completed", "Canceled", "Rejected", "Expired")
#: the exchange's status of an order each final notification stands for (None: not there)
EXCHANGE_STATUS = {"Completed": "filled", "Canceled": "canceled", "Expired": "expired",
                   "Rejected": None}
CCXT_TIMEOUT_MS = 2000  # a delayed create answer (ack_delay) is a timeout to ccxt
ACK_DELAY_MS = 3500
MAX_OPEN = 12  # orders not yet final, at most
MAX_JUMP_MS = 20_000
_EPS = 1e-9
#: balances on the wire have 8 decimals (the engine keeps more): equal within half a unit
CASH_TOL, POSITION_TOL = 1e-6, 5.1e-9


def position_tol(fills: int) -> float:
    """The bot's position is the sum of its fills less their base-currency fees as the wire
    shows them (8 decimals; okx's 0.08 % maker fee has more): half a unit per fill at most."""
    return POSITION_TOL * (1 + fills)


def now_s() -> float:
    return time.monotonic()


# --------------------------------------------------------------------------- records
@dataclass
class Note:
    """One notification the strategy received."""

    ref: int
    status: str
    client_id: str | None
    reason: str | None
    fills: list[float]  # sizes of the fills this notification brought (pending execution bits)
    at: float  # monotonic time
    run: int = 0  # 0, then 1, 2 ... after each crash point


@dataclass
class Placed:
    """One order the strategy placed."""

    ref: int
    kind: str
    side: str
    size: float
    order: Any  # the backtrader order (None once the run is over)
    client_id: str | None = None
    when_ms: int | None = None  # the exchange time the path crosses its price (if planned)
    cancel_at: int | None = None  # the bar (counted by ``Control.bars``) to cancel it on
    run: int = 0  # the run that placed it (a crash point starts the next)


class LogTap(logging.Handler):
    """Keeps the WARNING-and-above records of btccxt (the broker's account of what happened)
    and of asyncio."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # never let logging break the run
            self.handleError(record)

    def count(self, text: str) -> int:
        return sum(1 for line in self.lines if text in line)


@dataclass
class SoakResult:
    """Everything one soak run saw, and the exchange's truth after it."""

    exchange: str
    seed: int
    symbol: str = SYMBOL
    swap: bool = False
    trading_s: float = 0.0
    settling_s: float = 0.0
    timed_out: bool = False
    settled: bool = False
    faults: list[tuple[float, str]] = field(default_factory=list)  # (seconds into the run, kind)
    placed: dict[int, Placed] = field(default_factory=dict)
    notes: list[Note] = field(default_factory=list)
    actions: Counter[str] = field(default_factory=Counter)
    bars: int = 0  # bars the strategy acted on
    jumps_ms: list[int] = field(default_factory=list)
    broker_cash: float | None = None
    broker_position: float | None = None
    exchange_orders: list[dict[str, Any]] = field(default_factory=list)
    exchange_balances: dict[str, dict[str, float]] = field(default_factory=dict)
    #: swaps: the exchange's signed position in base units, as ccxt's ``fetch_positions`` and
    #: the simulator's ``positions()`` show it (None: not read)
    ccxt_position: float | None = None
    sim_position: float | None = None
    db_orders: list[dict[str, Any]] = field(default_factory=list)
    db_fills: list[dict[str, Any]] = field(default_factory=list)
    ws_pushes: int = 0
    polls: int = 0
    via_log: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    chaos_error: str | None = None
    crashes: list[str] = field(default_factory=list)  # client ids of the orders crashed on


class SoakCrash(Exception):
    """A crash point: the strategy dies while it is told of a market order's fill."""


# --------------------------------------------------------------------------- faults
class Chaos(threading.Thread):
    """Injects one fault every [lo, hi] seconds (every kind once per round, in a seeded order)
    until stopped."""

    def __init__(self, sim: Any, exchange: str, rng: random.Random, every: tuple[float, float],
                 t0: float, say: Callable[[str], None]) -> None:
        super().__init__(daemon=True, name="orders-soak-chaos")
        self.sim, self.exchange, self.rng, self.every = sim, exchange, rng, every
        self.t0, self.say = t0, say
        self.log: list[tuple[float, str]] = []
        self.stop = threading.Event()
        self.paused = threading.Event()  # no faults while a crashed run restarts
        self.lagging = False  # lookup_lag is on
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # reported by the run
            self.error = exc

    def _loop(self) -> None:
        cycle: list[str] = []
        while not self.stop.wait(self.rng.uniform(*self.every)):
            if self.paused.is_set():
                continue
            if not cycle:
                cycle = self.rng.sample(FAULT_KINDS, len(FAULT_KINDS))
            kind = cycle.pop()
            if self.lagging:  # lagging lookups last until the next fault
                self.sim.lookup_lag(self.exchange, ms=0)
                self.lagging = False
            label = self.inject(kind)
            at = now_s() - self.t0
            self.log.append((at, kind))
            self.say(f"  {self.exchange} fault at +{at:6.1f}s: {label}")

    def inject(self, kind: str) -> str:
        sim, ex, rng = self.sim, self.exchange, self.rng
        if kind == "drop_close":
            sim.drop(ex, mode="close")
        elif kind == "drop_reset":
            sim.drop(ex, mode="reset")
        elif kind == "ws_outage":  # sockets drop and may not reconnect; REST answers
            secs = round(rng.uniform(1.0, 4.0), 1)
            sim.outage(ex, secs, ws=True, rest=False)
            return f"{kind} {secs}s"
        elif kind == "outage":  # nothing answers: creates in it never reach the exchange
            secs = round(rng.uniform(0.5, 2.5), 1)
            sim.outage(ex, secs, ws=True, rest=True)
            return f"{kind} {secs}s"
        elif kind == "stall":
            secs = round(rng.uniform(1.0, 4.0), 1)
            sim.stall(ex, secs)
            return f"{kind} {secs}s"
        elif kind in ("rest_5xx", "rest_429"):
            status = 429 if kind == "rest_429" else rng.choice([500, 502, 503])
            count = rng.randint(1, 4)
            sim.rest_errors(ex, status=status, count=count, retry_after=1.0)
            return f"{kind} {status} x{count}"
        elif kind.startswith("ack_"):
            mode = kind[len("ack_"):]
            count = rng.randint(1, 2)
            sim.order_ack_fault(ex, mode=mode, count=count, ms=ACK_DELAY_MS)
            return f"{kind} x{count}"
        elif kind == "lookup_lag":
            ms = rng.randint(*LOOKUP_LAG_MS)
            sim.lookup_lag(ex, ms=ms)
            self.lagging = True
            return f"{kind} {ms} ms"
        else:
            raise ValueError(f"unknown fault kind {kind!r}")
        return kind


# --------------------------------------------------------------------------- the strategy
class Control:
    """State shared by the strategy, the chaos thread and the run."""

    def __init__(self, sim: Any, exchange: str, seed: int, duration: float,
                 every: tuple[float, float], settle_timeout: float, say: Callable[[str], None],
                 result: SoakResult) -> None:
        self.sim, self.exchange, self.seed = sim, exchange, seed
        self.symbol, self.swap = result.symbol, result.swap
        self.duration, self.every, self.settle_timeout = duration, every, settle_timeout
        self.say = say
        self.result = result
        self.rng = random.Random(seed)
        self.chaos: Chaos | None = None
        self.t0: float | None = None  # first live bar
        self.wind_down_at: float | None = None
        self.last_cancel_round = 0.0
        self.bars = 0
        self.t_start = now_s()
        self.crash_at: list[float] = []  # seconds into trading of each crash point
        self.crash_ref: int | None = None  # the market order the next crash waits for
        self.run = 0

    def crash_due(self) -> bool:
        done = len(self.result.crashes)
        return self.t0 is not None and self.crash_ref is None and done < len(self.crash_at) \
            and now_s() - self.t0 >= self.crash_at[done]


class Soaker(bt.Strategy):
    """From the first live bar on, places seeded random orders on every current bar, then
    winds down (see the module docstring)."""

    params = (("ctl", None),)

    def __init__(self) -> None:
        self.ctl: Control = self.p.ctl
        self.open: dict[int, Placed] = {}

    # ------------------------------------------------------------------ notifications
    def notify_order(self, order: Any) -> None:
        ctl = self.ctl
        r = ctl.result
        bits = [abs(float(b.size)) for b in order.executed.iterpending()]
        status = order.getstatusname()
        if order.ref == ctl.crash_ref and status in FINAL:
            ctl.crash_ref = None
            if status == "Completed":  # dies before it took the fill in
                r.crashes.append(str(order.info.get("client_id")))
                if ctl.chaos is not None:
                    ctl.chaos.paused.set()
                raise SoakCrash(f"crash point {len(r.crashes)}")
        r.notes.append(Note(order.ref, status, order.info.get("client_id"),
                            order.info.get("reason"), bits, now_s(), ctl.run))
        if order.info.get("adopted") and order.ref not in self.open and status not in FINAL:
            self._adopted(order)
        if status in FINAL:
            self.open.pop(order.ref, None)

    def _adopted(self, order: Any) -> None:
        """An order of the run before the crash, live again under a new ref: cancelled and
        jumped to as it was."""
        cid = order.info.get("client_id")
        was = next((p for p in self.ctl.result.placed.values() if p.client_id == cid), None)
        self.open[order.ref] = Placed(order.ref, was.kind if was else "adopted",
                                      "buy" if order.isbuy() else "sell", abs(order.size), order,
                                      cid, was.when_ms if was else None, None)

    # ------------------------------------------------------------------ bars
    def next(self) -> None:
        ctl = self.ctl
        live = self.data._laststatus == self.data.LIVE
        if ctl.t0 is None:
            if not live:
                return
            self._begin()
        assert ctl.t0 is not None
        if live and ctl.chaos is not None and ctl.chaos.paused.is_set():
            ctl.chaos.paused.clear()  # restarted after a crash point: faults go on
        if ctl.wind_down_at is None and now_s() - ctl.t0 >= ctl.duration:
            self._wind_down()
        if ctl.wind_down_at is not None:
            self._settle()
            return
        if not self._current():
            return
        ctl.bars += 1
        ctl.result.bars = ctl.bars
        for p in list(self.open.values()):
            if p.cancel_at is not None and ctl.bars >= p.cancel_at:
                p.cancel_at = None
                self.cancel(p.order)
        actions = ACTIONS
        if ctl.swap:
            actions = tuple(a for a in SWAP_ACTIONS
                            if (a[0] != "stop" or ctl.exchange in SWAP_STOP_EXCHANGES)
                            and (a[0] != "trail" or ctl.exchange == "okx"))  # okx trails swaps
        names, weights = zip(*actions, strict=True)
        action = ctl.rng.choices(names, weights)[0]
        if len(self.open) >= MAX_OPEN and action not in ("market", "cancel", "jump", "idle"):
            action = "cancel"
        if ctl.swap and ctl.bars % SWAP_FLIP_EVERY == 0:  # shorts and flips in every run
            action = "flip"
        if ctl.crash_due():
            ctl.say(f"  {ctl.exchange}: crash point {len(ctl.result.crashes) + 1}: a market "
                    "order whose fill the strategy dies on")
            self._place("market", self._side("buy"), ctl.rng.uniform(0.001, 0.02))
            ctl.crash_ref = self._last_ref
            return
        getattr(self, f"_do_{action}")()
        ctl.result.actions[action] += 1

    def _current(self) -> bool:
        """The bar is one of the last seconds (live, or read by REST while the socket is down;
        not one of a burst that catches up after a gap or a jump of the exchange's clock)."""
        stamp = self.data.datetime.datetime(0).replace(tzinfo=timezone.utc).timestamp() * 1000
        return self.ctl.sim.now_ms() - stamp <= 4000

    def _begin(self) -> None:
        ctl = self.ctl
        ctl.t0 = now_s()
        ctl.say(f"  {ctl.exchange}: first live bar {ctl.t0 - ctl.t_start:.1f} s after start; "
                "trading and faults begin")
        ctl.chaos = Chaos(ctl.sim, ctl.exchange, random.Random(ctl.seed * 7919 + 1), ctl.every,
                          ctl.t0, ctl.say)
        ctl.chaos.start()

    def _wind_down(self) -> None:
        ctl = self.ctl
        assert ctl.t0 is not None
        ctl.wind_down_at = now_s()
        ctl.result.trading_s = ctl.wind_down_at - ctl.t0
        if ctl.chaos is not None:
            ctl.chaos.stop.set()
            ctl.chaos.join(10.0)
        ctl.sim.clear_faults(ctl.exchange)
        ctl.say(f"  {ctl.exchange}: stopped placing after {ctl.result.trading_s:.0f} s; faults "
                f"cleared; cancelling {len(self.open)} open order(s) and waiting for the rest")

    def _settle(self) -> None:
        """Cancel what is open (again every 5 s); stop once every order is final and the
        broker's balances are the exchange's."""
        ctl = self.ctl
        now = now_s()
        if self.open and now - ctl.last_cancel_round >= 5.0:
            ctl.last_cancel_round = now
            for p in self.open.values():
                self.cancel(p.order)
        if self.open:
            return
        bal = ctl.sim.balances(ctl.exchange)
        cash, pos = self.broker.getcash(), self.broker.getposition(self.data).size
        quote = bal.get(QUOTE, {"free": 0.0, "locked": 0.0})
        base = bal.get(BASE, {"free": 0.0, "locked": 0.0})
        if ctl.swap:
            held, tol = sim_position(ctl.sim, ctl.exchange, ctl.symbol), SWAP_POSITION_TOL
        else:
            held = base["free"] + base["locked"]
            tol = position_tol(sum(len(n.fills) for n in ctl.result.notes))
        if abs(cash - quote["free"]) <= CASH_TOL and abs(pos - held) <= tol:
            assert ctl.wind_down_at is not None
            ctl.result.settled = True
            ctl.result.settling_s = now - ctl.wind_down_at
            self.env.runstop()

    # ------------------------------------------------------------------ actions
    def _side(self, side: str) -> str:
        """``side``, except on a swap whose position is beyond :data:`SWAP_BOUND`: the side
        towards zero (the position stays bounded, flipping around zero)."""
        if not self.ctl.swap:
            return side
        pos = self.broker.getposition(self.data).size
        if abs(pos) <= SWAP_BOUND:
            return side
        return "sell" if pos > 0 else "buy"

    def _place(self, kind: str, side: str, size: float, *, price: float | None = None,
               plimit: float | None = None, exectype: int = bt.Order.Market,
               when_ms: int | None = None, cancel_after: int | None = None,
               **more: Any) -> None:
        size = round(size, 4 if self.ctl.swap else 5)  # swap lot: 0.01 contract = 0.0001 BTC
        fn = self.buy if side == "buy" else self.sell
        kw: dict[str, Any] = {"size": size, "exectype": exectype, **more}
        if price is not None:
            kw["price"] = round(price, 1)
        if plimit is not None:
            kw["plimit"] = round(plimit, 1)
        order = fn(**kw)
        self._last_ref = order.ref
        p = Placed(order.ref, kind, side, size, order, order.info.get("client_id"), when_ms,
                   self.ctl.bars + cancel_after if cancel_after is not None else None,
                   run=self.ctl.run)
        self.ctl.result.placed[order.ref] = p
        if order.status not in (order.Rejected,):
            self.open[order.ref] = p

    def _do_market(self) -> None:
        rng = self.ctl.rng
        self._place("market", self._side(rng.choice(["buy", "sell"])), rng.uniform(0.001, 0.02))

    def _do_taker_limit(self) -> None:
        rng, px = self.ctl.rng, float(self.data.close[0])
        side = self._side(rng.choice(["buy", "sell"]))
        price = px * (1.003 if side == "buy" else 0.997)
        self._place("taker_limit", side, rng.uniform(0.001, 0.02), price=price,
                    exectype=bt.Order.Limit)

    def _do_cross_limit(self) -> None:
        ctl = self.ctl
        rng = ctl.rng
        plan = cross_plan(ctl.sim.model, ctl.symbol, ctl.sim.now_ms(), quiet_s=rng.uniform(1.0, 8.0),
                          horizon_s=600)
        # one in three large enough to fill in parts (SIM_KW's liquidity)
        size = rng.uniform(0.1, 0.4) if rng.random() < 0.33 else rng.uniform(0.001, 0.02)
        cancel_after = rng.randint(1, 8) if rng.random() < 0.3 else None  # a cancel racing the fill
        self._place("cross_limit", plan.side, size, price=plan.price, exectype=bt.Order.Limit,
                    when_ms=plan.when_ms, cancel_after=cancel_after)

    def _do_far_limit(self) -> None:
        rng, px = self.ctl.rng, float(self.data.close[0])
        side = rng.choice(["buy", "sell"])
        price = px * (0.9 if side == "buy" else 1.1)
        self._place("far_limit", side, rng.uniform(0.001, 0.02), price=price,
                    exectype=bt.Order.Limit, cancel_after=rng.randint(2, 12))

    def _do_stop(self) -> None:
        ctl = self.ctl
        rng, px = ctl.rng, float(self.data.close[0])
        stop_limit = rng.random() < 0.35
        if rng.random() < 0.5:  # one the path reaches: a sell stop it falls to, a buy it rises to
            plan = cross_plan(ctl.sim.model, ctl.symbol, ctl.sim.now_ms(),
                              quiet_s=rng.uniform(1.5, 8.0), horizon_s=600)
            side = "sell" if plan.side == "buy" else "buy"
            stop, when, cancel_after, kind = plan.price, plan.when_ms, None, "stop"
        else:  # far from the price: it rests until cancelled
            side = rng.choice(["buy", "sell"])
            stop = px * (1.1 if side == "buy" else 0.9)
            when, cancel_after, kind = None, rng.randint(2, 12), "far_stop"
        if stop_limit:  # a limit beyond the stop, so the triggered order is marketable
            limit = stop * (1.01 if side == "buy" else 0.99)
            self._place(kind + "_limit", side, rng.uniform(0.001, 0.02), price=stop, plimit=limit,
                        exectype=bt.Order.StopLimit, when_ms=when, cancel_after=cancel_after)
        else:
            self._place(kind, side, rng.uniform(0.001, 0.02), price=stop,
                        exectype=bt.Order.Stop, when_ms=when, cancel_after=cancel_after)

    def _do_expiring(self) -> None:
        """A limit the path may or may not cross within its ``valid=`` of 1 to 10 s: the
        broker cancels it at that time (``Expired``) unless it filled first."""
        ctl = self.ctl
        rng = ctl.rng
        plan = cross_plan(ctl.sim.model, ctl.symbol, ctl.sim.now_ms(), quiet_s=rng.uniform(1.0, 8.0),
                          horizon_s=600)
        valid = datetime.fromtimestamp((ctl.sim.now_ms() + rng.randint(1_000, 10_000)) / 1000,
                                       timezone.utc).replace(tzinfo=None)
        self._place("expiring", plan.side, rng.uniform(0.001, 0.02), price=plan.price,
                    exectype=bt.Order.Limit, when_ms=plan.when_ms, valid=valid)

    def _do_trail(self) -> None:
        """A trailing stop the exchange trails (binance spot, okx): it triggers when the path
        comes back its trail from its best, or is cancelled some bars later."""
        rng = self.ctl.rng
        side = self._side(rng.choice(["buy", "sell"]))
        self._place("trail", side, rng.uniform(0.001, 0.02), exectype=bt.Order.StopTrail,
                    trailpercent=rng.choice(TRAILS), cancel_after=rng.randint(2, 12))

    def _do_close(self) -> None:
        """Swaps: a market order of the bot's whole position (reduce-only unless open orders
        reduce it too)."""
        pos = round(self.broker.getposition(self.data).size, 4)
        if pos:
            self._place("close", "sell" if pos > 0 else "buy", abs(pos))

    def _do_flip(self) -> None:
        """Swaps: a market order that takes the position a little past zero."""
        pos = self.broker.getposition(self.data).size
        side = "sell" if pos >= 0 else "buy"
        self._place("flip", side, abs(pos) + self.ctl.rng.uniform(0.001, 0.02))

    def _do_cancel(self) -> None:
        if self.open:
            p = self.ctl.rng.choice(sorted(self.open.values(), key=lambda x: x.ref))
            self.cancel(p.order)

    def _do_jump(self) -> None:
        """Move the exchange's clock past the earliest crossing of a resting order (if near)."""
        sim = self.ctl.sim
        now = sim.now_ms()
        ahead = [p.when_ms for p in self.open.values() if p.when_ms is not None and p.when_ms > now]
        if not ahead:
            return
        gap = min(ahead) + 1000 - now
        if gap <= MAX_JUMP_MS:
            sim.sim.clock_offset_ms += gap
            self.ctl.result.jumps_ms.append(gap)

    def _do_idle(self) -> None:
        pass


# --------------------------------------------------------------------------- one run
def _cerebro(sim: Any, exchange: str, ctl: Control, db: Path,
             ambiguous_timeout: float) -> tuple[Any, Any, Any, Any]:
    """One run's store, cerebro, data and broker (on the soak's order database)."""
    store = CCXTStore(exchange, sim_url=sim.url(exchange),
                      config={**KEYS, "timeout": CCXT_TIMEOUT_MS})
    cerebro = bt.Cerebro(stdstats=False, quicknotify=True)
    # binance's futures klines are served by REST only (the simulator has no futures kline stream)
    data = store.getdata(dataname=ctl.symbol, name=ctl.symbol, timeframe=bt.TimeFrame.Seconds,
                         compression=1, backfill_bars=1,
                         use_websocket=not (ctl.swap and exchange == "binance"),
                         ws_reconnect_delay=0.2, ws_max_reconnect_delay=1.0)
    cerebro.adddata(data)
    # spot: the account's 10 BTC are the bot's to trade (it sells as often as it buys); swaps:
    # the bot starts flat and its sells open shorts
    swap_kw: dict[str, Any] = {"adopt_holdings": not ctl.swap}
    if ctl.swap:
        swap_kw.update(leverage=SWAP_LEVERAGE, margin_mode=SWAP_MARGIN)
    broker = store.getbroker(live=True, db_path=db, updates="auto", poll_interval=0.5,
                             ambiguous_timeout=ambiguous_timeout, **swap_kw)
    cerebro.setbroker(broker)
    cerebro.addstrategy(Soaker, ctl=ctl)
    return store, cerebro, data, broker


def soak(sim: Any, exchange: str, *, duration: float, seed: int, every: tuple[float, float],
         db: Path, ambiguous_timeout: float = 35.0, settle_timeout: float | None = None,
         crashes: int = 0, swap: bool = False, say: Callable[[str], None] = print) -> SoakResult:
    """One soak on ``exchange`` of ``sim`` (a started ``SimThread`` with ``check_timestamps``
    off and large balances, e.g. :data:`BALANCES`); returns what happened and the exchange's
    state afterwards. ``settle_timeout``: seconds the wind-down may take (default: the
    ambiguous timeout + 45 s). ``crashes``: crash points, spread over the trading time (each
    restarts the run on the same order database). ``swap``: trade :data:`SWAP_SYMBOL`."""
    result = SoakResult(exchange=exchange, seed=seed, symbol=SWAP_SYMBOL if swap else SYMBOL,
                        swap=swap)
    settle_timeout = settle_timeout if settle_timeout is not None else ambiguous_timeout + 45.0
    ctl = Control(sim, exchange, seed, duration, every, settle_timeout, say, result)
    ctl.crash_at = [duration * (i + 1) / (crashes + 1) for i in range(crashes)]
    tap = LogTap()
    taps = [logging.getLogger(name) for name in ("btccxt_cli", "asyncio")]
    for lg in taps:
        lg.addHandler(tap)
    store, cerebro, data, broker = _cerebro(sim, exchange, ctl, db, ambiguous_timeout)
    current = {"cerebro": cerebro}
    stop = threading.Event()

    def watchdog() -> None:
        """Stops the run if it never goes live, never winds down or never settles."""
        while not stop.wait(0.5):
            now, t0, wound = now_s(), ctl.t0, ctl.wind_down_at
            if (t0 is None and now - ctl.t_start > 60.0) or (
                    t0 is not None and wound is None and now - t0 > duration + 60.0) or (
                    wound is not None and now - wound > settle_timeout):
                result.timed_out = True
                current["cerebro"].runstop()
                return

    guard = threading.Thread(target=watchdog, daemon=True, name="orders-soak-watchdog")
    guard.start()
    try:
        while True:
            try:
                cerebro.run()
                break
            except SoakCrash:
                _collect(result, broker)
                store.stop()  # the broker stops with it, telling nothing
                sim.clear_faults(exchange)
                ctl.run += 1
                say(f"  {exchange}: crashed on {result.crashes[-1]}; restarting on the same "
                    "order database")
                store, cerebro, data, broker = _cerebro(sim, exchange, ctl, db, ambiguous_timeout)
                current["cerebro"] = cerebro
    finally:
        stop.set()
        if ctl.chaos is not None:
            ctl.chaos.stop.set()
            ctl.chaos.join(10.0)
        sim.clear_faults(exchange)
        try:
            result.broker_cash = broker.getcash()
            result.broker_position = broker.getposition(data).size
            _collect(result, broker)
        finally:
            store.stop()
            for lg in taps:
                lg.removeHandler(tap)
    if ctl.chaos is not None:
        result.faults = list(ctl.chaos.log)
        if ctl.chaos.error is not None:
            result.chaos_error = repr(ctl.chaos.error)
    if ctl.wind_down_at is not None and not result.settled:
        result.settling_s = now_s() - ctl.wind_down_at
    result.exchange_orders = sim.orders(exchange)
    result.exchange_balances = sim.balances(exchange)
    if swap:
        result.sim_position = sim_position(sim, exchange, result.symbol)
        result.ccxt_position = ccxt_position(sim, exchange, result.symbol)
    store_db = OrderStore(db)
    try:
        dump = store_db.dump()
    finally:
        store_db.close()
    result.db_orders, result.db_fills = dump["orders"], dump["fills"]
    result.log = tap.lines
    for placed in result.placed.values():
        placed.order = None  # let cerebro, the broker and the store go
    return result


def sim_position(sim: Any, exchange: str, symbol: str) -> float:
    """The simulated account's signed position in ``symbol`` (base units), from the engine."""
    return sum(float(p["qty"]) for p in sim.positions(exchange, DEFAULT_KEY.key)
               if p["symbol"] == symbol)


def ccxt_position(sim: Any, exchange: str, symbol: str) -> float:
    """The account's signed position in ``symbol`` (base units) as the exchange's API shows it:
    ccxt ``fetch_positions``, contracts x contractSize."""
    ex = make_exchange(exchange, sim_url=sim.url(exchange), config=KEYS)
    ex.load_markets()
    total = 0.0
    for p in ex.fetch_positions([symbol]):
        size = float(p["contracts"] or 0.0) * float(p["contractSize"] or 1.0)
        total += -size if p["side"] == "short" else size
    return total


def _collect(result: SoakResult, broker: Any) -> None:
    """Add one run's order-update figures to the result."""
    if broker.sync is not None:
        result.ws_pushes += broker.sync.ws_pushes
        result.polls += broker.sync.polls
        result.via_log += list(broker.sync.via_log)


# --------------------------------------------------------------------------- checks
@dataclass
class Checks:
    """What the checks found; ``problems`` says which order and what (empty: all held)."""

    final: Counter[str] = field(default_factory=Counter)  # final notification -> orders
    fills_exchange: int = 0
    fills_told: int = 0
    fills_db: int = 0
    ambiguous: int = 0  # creates whose answer was lost ("create outcome unknown")
    found: int = 0  # of those, found at the exchange by client order id
    never_reached: int = 0  # of those, not found: Rejected, never sent again
    unsent: int = 0  # left unsent (pending, sending) by a crashed run, not found: Rejected
    stops_failed: int = 0  # Canceled: an algo stop triggered but its order could not be placed
    refused: int = 0  # Rejected by the exchange's own answer
    duplicates: int = 0  # a client id twice on the exchange, a fill told or stored twice
    lost_fills: int = 0  # exchange fills the strategy or the order db never got
    lost_orders: int = 0  # orders never final, or on the exchange unknown to the broker
    sequence_errors: int = 0
    mismatches: int = 0  # final status, filled amount or balances differ from the exchange
    worker_errors: int = 0  # "order worker cycle failed" in the log
    #: swaps: the bot's position along its fills (the order db's, in time order): lowest and
    #: highest, fills that took it across zero, orders the exchange holds as reduce-only
    low: float = 0.0
    high: float = 0.0
    flips: int = 0
    reduce_only: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def valid_sequence(statuses: list[str], runs: list[int] | None = None) -> bool:
    """Submitted, then Accepted at most once, Partial*, then exactly one final status. With
    ``runs`` (the run of each notification), an order a crash point interrupted may be
    Accepted again, once per run: a new run adopts it. One the exchange had not confirmed
    then is told Submitted again, first in the run that adopts it."""
    if len(statuses) < 2 or statuses[0] != "Submitted" or statuses[-1] not in FINAL:
        return False
    runs = runs if runs is not None else [0] * len(statuses)
    middle = list(zip(statuses[1:-1], runs[1:-1], strict=True))
    for i, (s, run) in enumerate(middle, start=1):
        if s == "Submitted" and run != runs[i - 1]:
            continue  # the first notification of a later run: adopted before it was confirmed
        if s not in ("Accepted", "Partial"):
            return False
    accepted = Counter(run for s, run in middle if s == "Accepted")
    return all(n == 1 for n in accepted.values())


def check(r: SoakResult) -> Checks:
    c = Checks()

    def bad(counter: str, text: str) -> None:
        setattr(c, counter, getattr(c, counter) + 1)
        c.problems.append(text)

    ex_by_cid: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for o in r.exchange_orders:
        ex_by_cid[str(o["client_id"])].append(o)
    db_by_cid = {str(o["client_id"]): o for o in r.db_orders}
    db_fills: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for f in r.db_fills:
        db_fills[str(f["client_id"])].append(f)
    c.fills_exchange = sum(int(o["fills"]) for o in r.exchange_orders)
    c.fills_db = len(r.db_fills)

    # the exchange: each client id once, each known to the broker
    for cid, rows in ex_by_cid.items():
        if len(rows) > 1:
            bad("duplicates", f"{cid}: {len(rows)} orders on the exchange with this client id")
        if cid not in db_by_cid:
            bad("lost_orders", f"{cid}: on the exchange ({rows[0]['status']}) but unknown to the broker")

    # the order db: final, filled and fills as the exchange says, each trade id once
    for tid, n in Counter(str(f["trade_id"]) for f in r.db_fills).items():
        if n > 1:
            bad("duplicates", f"trade {tid} stored {n} times")
    for cid, row in db_by_cid.items():
        ex = ex_by_cid.get(cid, [])
        status = row["status"]
        if status not in ("closed", "canceled", "expired", "rejected"):
            bad("lost_orders", f"{cid}: still {status} in the order db")
        if status == "rejected":
            if ex:
                bad("lost_orders", f"{cid}: rejected by the broker ({row['reason']}) but on the "
                                   f"exchange ({ex[0]['status']}, filled {ex[0]['filled']})")
            continue
        if not ex:
            if status != "rejected":
                bad("mismatches", f"{cid}: {status} in the order db, not on the exchange")
            continue
        e = ex[0]
        mine = db_fills.get(cid, [])
        if len(mine) < int(e["fills"]):
            bad("lost_fills", f"{cid}: {len(mine)} fill(s) in the order db, {e['fills']} on the exchange")
        elif len(mine) > int(e["fills"]):
            bad("duplicates", f"{cid}: {len(mine)} fill(s) in the order db, {e['fills']} on the exchange")
        if abs(sum(float(f["amount"]) for f in mine) - float(e["filled"])) > _EPS:
            bad("mismatches", f"{cid}: db fills sum to {sum(float(f['amount']) for f in mine):g}, "
                              f"the exchange filled {e['filled']:g}")
        if abs(float(row["filled"]) - float(e["filled"])) > _EPS:
            bad("mismatches", f"{cid}: filled {row['filled']:g} in the order db, {e['filled']:g} "
                              "on the exchange")
        undelivered = [f["trade_id"] for f in mine if not f["delivered"]]
        if undelivered:
            bad("lost_fills", f"{cid}: fill(s) {undelivered} stored but never delivered")

    # the strategy: one valid notification sequence per order, every fill told once
    by_ref: dict[int, list[Note]] = defaultdict(list)
    adopted: dict[str, list[Note]] = defaultdict(list)  # a later run's notes of an order
    for n in r.notes:
        if n.ref in r.placed and n.run == r.placed[n.ref].run:
            by_ref[n.ref].append(n)
        elif n.client_id:
            adopted[n.client_id].append(n)
    for ref, p in r.placed.items():
        notes = sorted(by_ref.get(ref, []) + adopted.get(str(p.client_id), []), key=lambda n: n.at)
        statuses = [n.status for n in notes]
        cid = p.client_id or next((n.client_id for n in notes if n.client_id), None)
        label = f"{cid or ref} ({p.kind} {p.side} {p.size:g})"
        finals = [s for s in statuses if s in FINAL]
        if finals:
            c.final[finals[-1]] += 1
        if not finals:
            bad("lost_orders", f"{label}: no final notification, got {statuses}")
            continue
        if not valid_sequence(statuses, [n.run for n in notes]):
            bad("sequence_errors", f"{label}: notifications {statuses}")
        told = [x for n in notes for x in n.fills]
        c.fills_told += len(told)
        final = finals[-1]
        ex = ex_by_cid.get(str(cid), []) if cid else []
        want = EXCHANGE_STATUS[final]
        if final == "Rejected":
            reason = notes[-1].reason or ""
            if "not found at the exchange" in reason and "an earlier run" in reason:
                c.unsent += 1
            elif "not found at the exchange" in reason:
                c.never_reached += 1
            else:
                c.refused += 1
            if ex:
                bad("lost_orders", f"{label}: Rejected ({reason}) but on the exchange "
                                   f"({ex[0]['status']}, filled {ex[0]['filled']})")
            if told:
                bad("duplicates", f"{label}: Rejected after {len(told)} fill(s) were told")
            continue
        if not ex:
            bad("mismatches", f"{label}: {final} but not on the exchange")
            continue
        e = ex[0]
        if final == "Expired" and p.kind == "expiring":
            want = "canceled"  # the broker cancelled it at its valid= time
        if final == "Canceled" and e["status"] == "expired" and \
                (notes[-1].reason or "").startswith("the stop triggered but its order failed"):
            c.stops_failed += 1  # an algo stop whose order could not be placed (e.g. reduce-only
            want = "expired"     # with the position gone): the engine's order expired unfilled
        if e["status"] != want:
            bad("mismatches", f"{label}: {final} but {e['status']} on the exchange")
        if len(told) < int(e["fills"]):
            bad("lost_fills", f"{label}: {len(told)} fill(s) told, {e['fills']} on the exchange")
        elif len(told) > int(e["fills"]):
            bad("duplicates", f"{label}: {len(told)} fill(s) told, {e['fills']} on the exchange")
        if abs(sum(told) - float(e["filled"])) > _EPS:
            bad("mismatches", f"{label}: told fills sum to {sum(told):g}, the exchange filled "
                              f"{e['filled']:g}")

    # the broker's final balances are the exchange's
    bal = r.exchange_balances
    quote = bal.get(QUOTE, {"free": 0.0, "locked": 0.0})
    base = bal.get(BASE, {"free": 0.0, "locked": 0.0})
    if r.broker_cash is None or abs(r.broker_cash - quote["free"]) > CASH_TOL:
        bad("mismatches", f"cash {r.broker_cash} in the broker, {quote['free']} free {QUOTE} on "
                          "the exchange")
    if r.swap:
        path = 0.0
        for f in sorted(r.db_fills, key=lambda f: (int(f["time_ms"]), str(f["trade_id"]))):
            before = path
            path += float(f["amount"]) * (1 if f["side"] == "buy" else -1)
            c.flips += (before > _EPS and path < -_EPS) or (before < -_EPS and path > _EPS)
            c.low, c.high = min(c.low, path), max(c.high, path)
        c.reduce_only = sum(bool(o.get("reduce_only")) for o in r.exchange_orders)
        for name, held in (("fetch_positions", r.ccxt_position), ("the simulator", r.sim_position)):
            if r.broker_position is None or held is None or \
                    abs(r.broker_position - held) > SWAP_POSITION_TOL:
                bad("mismatches", f"position {r.broker_position} {BASE} in the broker, {held} in "
                                  f"{r.symbol} by {name}")
        # nobody else trades the account: a refusal for a position the bot did not open is wrong
        for n in r.notes:
            if n.status == "Rejected" and "did not open" in (n.reason or ""):
                bad("mismatches", f"{n.client_id or n.ref}: refused for a foreign position "
                                  f"that does not exist: {n.reason}")
    else:
        total = base["free"] + base["locked"]
        if r.broker_position is None or abs(r.broker_position - total) > position_tol(c.fills_exchange):
            bad("mismatches", f"position {r.broker_position} in the broker, {total} {BASE} on the "
                              "exchange")

    c.ambiguous = sum(1 for line in r.log if "create outcome unknown" in line)
    c.found = sum(1 for line in r.log if "found at the exchange by client order id" in line
                  and "an earlier run" not in line)  # not an order a crash left unsent
    c.worker_errors = sum(1 for line in r.log if "order worker cycle failed" in line)
    if c.worker_errors:
        c.problems.append(f"{c.worker_errors} failed cycle(s) of the order worker (see the log)")
    if c.ambiguous != c.found + c.never_reached:
        c.problems.append(f"{c.ambiguous} ambiguous create(s), but {c.found} found and "
                          f"{c.never_reached} rejected as never reached")
    if r.chaos_error is not None:
        c.problems.append(f"the fault thread failed: {r.chaos_error}")
    if r.timed_out:
        c.problems.append("the run timed out (never live, or never settled)")
    return c


# --------------------------------------------------------------------------- report
def report(r: SoakResult, c: Checks) -> list[str]:
    faults = Counter(kind for _, kind in r.faults)
    kinds = Counter(p.kind for p in r.placed.values())
    lost_stream = r.via_log.count("reconnecting")
    out = [
        f"# order soak report: {r.exchange} {r.symbol} (seed {r.seed})",
        f"duration               {r.trading_s:.0f} s trading, {r.settling_s:.1f} s settling",
        f"faults injected        {len(r.faults)}: "
        + ", ".join(f"{k} {faults[k]}" for k in FAULT_KINDS if faults[k]),
        f"orders placed          {len(r.placed)} on {r.bars} bars: "
        + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items(), key=lambda x: -x[1])),
        "orders by final status " + ", ".join(f"{s} {c.final[s]}" for s in FINAL)
        + (f" ({c.stops_failed} Canceled: a stop triggered whose order could not be placed)"
           if c.stops_failed else ""),
        f"  rejected             {c.never_reached} never reached the exchange, {c.refused} refused by it"
        + (f", {c.unsent} left unsent by a crash" if c.unsent else ""),
        f"fills                  {c.fills_exchange} on the exchange, {c.fills_told} told to the "
        f"strategy, {c.fills_db} in the order db",
        f"notifications          {len(r.notes)}, Partial {sum(n.status == 'Partial' for n in r.notes)}",
        f"clock jumps            {len(r.jumps_ms)} (+{sum(r.jumps_ms) / 1000:.1f} s)",
        f"crash points           {len(r.crashes)}: the strategy died on the fill of "
        + (", ".join(r.crashes) or "none") + "; restarted on the same order database",
        f"ambiguous creates      {c.ambiguous}: {c.found} found by client order id (lookups), "
        f"{c.never_reached} not found (Rejected, not resent)",
        f"order updates          {r.ws_pushes} pushes, {r.polls} REST polls, stream lost "
        f"{lost_stream} time(s)",
        f"duplicates             {c.duplicates}",
        f"lost fills             {c.lost_fills}",
        f"lost orders            {c.lost_orders}",
        f"sequence errors        {c.sequence_errors}",
        f"mismatches             {c.mismatches}",
        f"worker errors          {c.worker_errors}",
        f"asyncio complaints     {sum('Future exception was never retrieved' in x for x in r.log)} "
        "future exception(s) never retrieved (ccxt.pro, logged by asyncio)",
        f"final balances         cash {r.broker_cash}, position {r.broker_position} "
        f"({'= the exchange' if not c.mismatches else 'see problems'})",
    ]
    if r.swap:
        out.append(f"swap position          {SWAP_LEVERAGE}x {SWAP_MARGIN}, from {c.low:+.4f} to "
                   f"{c.high:+.4f} {BASE}, {c.flips} flip(s) across zero, {c.reduce_only} "
                   "reduce-only order(s)")
        sizes = [("none" if x is None else f"{x:+.6f}")
                 for x in (r.broker_position, r.ccxt_position, r.sim_position)]
        out.append("  final                broker {}, fetch_positions {}, simulator {}".format(*sizes))
    if c.problems:
        out.append("problems:")
        out += [f"  {p}" for p in c.problems[:40]]
        if len(c.problems) > 40:
            out.append(f"  ... {len(c.problems) - 40} more")
    out.append(f"RESULT {r.exchange}: " + ("PASS" if c.ok else "FAIL"))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=300, help="seconds of trading per exchange")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--exchanges", nargs="+", default=None, choices=["binance", "okx"],
                    help="default: binance okx (spot), okx (--swap)")
    ap.add_argument("--every", type=float, nargs=2, default=(5.0, 15.0), metavar=("MIN", "MAX"),
                    help="seconds between faults (drawn at random)")
    ap.add_argument("--ambiguous-timeout", type=float, default=35.0,
                    help="the broker's ambiguous_timeout (seconds a lost create is looked up)")
    ap.add_argument("--crashes", type=int, default=0,
                    help="crash points: the strategy dies on a market order's fill and the run "
                         "restarts on the same order database")
    ap.add_argument("--swap", action="store_true",
                    help=f"trade the linear swap {SWAP_SYMBOL} ({SWAP_LEVERAGE}x {SWAP_MARGIN}, "
                         "starting flat, shorts allowed; default exchange okx)")
    ap.add_argument("--log", type=Path, default=None,
                    help="write the broker's warnings here (default: printed on failure only)")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    exchanges = args.exchanges or (["okx"] if args.swap else ["binance", "okx"])
    symbol = SWAP_SYMBOL if args.swap else SYMBOL
    for name in ("btccxt_cli", "asyncio"):  # warnings go to the report (LogTap), not stderr
        quiet = logging.getLogger(name)
        quiet.propagate = False
        quiet.addHandler(logging.NullHandler())
    print(f"# order soak: {' '.join(exchanges)}, {symbol} 1s bars, updates auto, "
          f"{args.duration:.0f} s each, a fault every {args.every[0]:g}-{args.every[1]:g} s, "
          f"ccxt timeout {CCXT_TIMEOUT_MS} ms, ambiguous_timeout {args.ambiguous_timeout:g} s, "
          f"seed {seed}", flush=True)
    failed = 0
    t0 = now_s()
    for exchange in exchanges:  # the same seed on each: one can be rerun alone
        with SimThread(exchanges=(exchange,), **SIM_KW) as sim, \
                tempfile.TemporaryDirectory() as tmp:
            r = soak(sim, exchange, duration=args.duration, seed=seed, every=(args.every[0], args.every[1]),
                     db=Path(tmp) / "orders.sqlite", ambiguous_timeout=args.ambiguous_timeout,
                     crashes=args.crashes, swap=args.swap, say=lambda s: print(s, flush=True))
        c = check(r)
        print()
        print("\n".join(report(r, c)), flush=True)
        if args.log is not None:
            with args.log.open("a") as fh:
                fh.write(f"# {exchange} (seed {seed})\n" + "\n".join(r.log) + "\n")
        if not c.ok:
            failed += 1
            print(f"rerun: python bench/orders_soak.py --exchanges {exchange} --seed {seed} "
                  f"--duration {args.duration:g} --every {args.every[0]:g} {args.every[1]:g} "
                  f"--ambiguous-timeout {args.ambiguous_timeout:g} --crashes {args.crashes}"
                  + (" --swap" if args.swap else ""))
            print("last warnings:")
            print("\n".join(r.log[-40:]), flush=True)
        print()
    print(f"# total {now_s() - t0:.0f} s; RESULT: " + ("PASS" if not failed else "FAIL"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
