"""CCXTBroker: a backtrader broker that places real orders through ccxt (``docs/orders.md``).

The strategy thread never waits on HTTP: ``buy``/``sell``/``cancel`` write the order to SQLite
and queue it for :class:`~btccxt_cli.bt.ordersync.OrderSync`, which runs on the store's
event-loop thread and sends back event batches. ``next()`` (called by cerebro on every loop)
applies them and queues backtrader notifications: ``Submitted`` at once, then ``Accepted``,
``Partial`` (one per batch of new fills), ``Completed``, ``Canceled``, ``Expired`` or
``Rejected`` (with ``order.info.reason``) as the exchange reports them.

* Every order carries a client order id ``bx<run id><sequence>`` (letters and digits, which
  both binance and okx accept), stored before it is sent; a failed create is looked up by
  that id, never resent.
* On start, orders left live by an earlier run (same database, account and run scope; a
  second live run on one scope is refused, ``bt/runlock.py``) are adopted:
  the strategy gets ``Accepted`` for each (``Submitted`` for one the exchange had not
  confirmed, then ``Accepted`` or ``Rejected`` once it is looked up), then the fills that
  happened while it was down; so are final orders with fills the strategy was never told of
  (a crash or a stop in between).
* An order given up on "not found" stays watched; found again, it is told as a late adopted
  order (``order.info.late``) with its fills (``bt/sweep.py``). Fees are kept per currency in
  ``order.info["fees"]``, ``comm`` in the quote currency (``bt/fees.py``).
* A normal stop lets the worker finish what was sent and tells the strategy what is pending;
  a fill is marked delivered only once its notification went out.
* Cash is the free balance of the quote currency. A data's position is the bot's own
  (``docs/orders.md``): zero at first, moved only by the fills of this bot's orders (the ledger
  in the orders database, updated with each fill), unless ``adopt_holdings`` lets the bot start
  with what the account holds. Value is the account's: quote plus base balances at the last close.
* Local limits (:class:`OrderLimits`) and the bot's position reject an order before it leaves,
  with a reason: a sell of more than the bot holds, a position or notional beyond its cap
  counting every open order.
* Spot markets, with stop and stop-limit orders on binance (plain orders) and okx (algo
  orders, followed to the order they place when they trigger); and linear swaps on binance
  and okx (``bt/derivs.py``, ``bt/swapbook.py``, ``docs/swaps.md``): long and short, leverage
  and margin mode set at start, sizes in base units (contracts converted both ways),
  reduce-only closes, funding and liquidations told through ``notify_store``.

The broker is one class in parts: this file (parameters, start and stop, the backtrader API),
``brokerorders.py`` (an order's checks on its way out), ``brokerevents.py`` (the worker's
events turned into executions and notifications) and ``brokerview.py`` (status and figures).

Only ``bt/`` imports backtrader; ccxt is reached through the store.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import queue
import secrets
import threading
from pathlib import Path
from typing import Any

import backtrader as bt
from backtrader.order import BuyOrder, Order, SellOrder
from backtrader.position import Position

from btccxt_cli.bt.brokerevents import BrokerEvents, _Live
from btccxt_cli.bt.brokerorders import STOP_ORDER_EXCHANGES, BrokerOrders
from btccxt_cli.bt.brokerview import BrokerView
from btccxt_cli.bt.derivs import SwapSettings, is_contract
from btccxt_cli.bt.fees import FeeBook
from btccxt_cli.bt.ordersync import Event, OrderSync
from btccxt_cli.bt.positions import OrderLimits, Positions
from btccxt_cli.bt.runlock import RunLock
from btccxt_cli.bt.swapbook import SwapBook
from btccxt_cli.cache.orders import OrderRecord, OrderStore, account_id, default_orders_path
from btccxt_cli.clock import SYSTEM_CLOCK, Clock
from btccxt_cli.errors import BtccxtError
from btccxt_cli.sources.pipe import ring

__all__ = ["CCXTBroker", "OrderLimits", "STOP_ORDER_EXCHANGES"]

logger = logging.getLogger(__name__)

#: seconds a normal stop waits for the worker to finish what the strategy sent (well inside
#: the run's stop grace)
FLUSH_TIMEOUT = 2.0


class CCXTBroker(BrokerEvents, BrokerOrders, BrokerView, bt.BrokerBase):
    """Live orders on the store's exchange account.

    Params:
        store: the ``CCXTStore`` (required); its client carries the API keys.
        currency: quote currency of cash and value (default: the store's, else the first
            data's quote currency).
        db_path: SQLite file of orders and fills (default ``cache.orders.default_orders_path``).
        run_id: id of this run in client order ids (default: 8 random hex digits).
        poll_interval: seconds between polls of live orders (default 1.0).
        balance_interval: seconds between balance reads when nothing traded (default 5.0).
        ambiguous_timeout: seconds to keep looking up an order whose create failed ambiguously
            before rejecting it (default 35, longer than the exchanges' receive windows).
        start_timeout: seconds ``start()`` waits for markets, balances and reconciliation.
        limits: an :class:`OrderLimits`.
        cancel_on_stop: cancel open orders when the run stops (default False: they stay open
            and are adopted by the next run).
        adopt_holdings: the bot's position in each data's symbol starts as everything the
            account holds of its base currency (default False: it starts at what this bot's
            own fills left, zero on a new account, and coins held before are never sold).
        updates: how order changes are learnt: ``"auto"`` (default: pushed by WebSocket on
            exchanges whose order stream is tested, binance and okx; REST polling elsewhere),
            ``"websocket"`` (wherever ccxt.pro has ``watchOrders``) or ``"poll"``.
        reconcile_interval: seconds between REST polls of live orders while the WebSocket
            order stream is up (default 10; while it is down, ``poll_interval`` applies).
        run_scope: the run's identity in the orders database (default ``""``; ``btccxt run``
            passes the config file and strategy): a run adopts, sweeps and cancels only the
            orders of its scope, and a second live run on the same database, account and
            scope is refused (``bt/runlock.py``).
        watch_for: seconds an order given up on "not found" stays watched (``bt/sweep.py``).
        sweep_interval: seconds between sweeps of the exchange's open orders for ours.
        leverage: swaps, set on the exchange at start: one number, or ``{symbol: number}``
            (others 1).
        margin_mode: swaps, ``"isolated"`` or ``"cross"``, or ``{symbol: mode}`` (others
            isolated).
        funding_interval: swaps, seconds between reads of funding payments.
        clock: time source.
    """

    params = (
        ("store", None),
        ("currency", None),
        ("db_path", None),
        ("run_id", None),
        ("poll_interval", 1.0),
        ("balance_interval", 5.0),
        ("ambiguous_timeout", 35.0),
        ("start_timeout", 30.0),
        ("limits", None),
        ("cancel_on_stop", False),
        ("adopt_holdings", False),
        ("updates", "auto"),
        ("reconcile_interval", 10.0),
        ("run_scope", ""),
        ("watch_for", 600.0),
        ("sweep_interval", 60.0),
        ("leverage", 1.0),
        ("margin_mode", "isolated"),
        ("funding_interval", 30.0),
        ("clock", SYSTEM_CLOCK),
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        if self.p.store is None:
            raise TypeError("CCXTBroker needs store=CCXTStore(...)")
        self.store = self.p.store
        self.clock: Clock = self.p.clock
        self.limits: OrderLimits = self.p.limits or OrderLimits()
        self.run_id = self.p.run_id or secrets.token_hex(4)
        if not self.run_id.isalnum():
            raise ValueError("run_id must be letters and digits (client order ids allow no more)")
        self.account = account_id(self.store.exchange_id, self.store.config.get("apiKey"))
        #: (order, trade ids it tells, client id if it tells the order's final status)
        self.notifs: collections.deque[tuple[Order, list[str], str | None]] = collections.deque()
        self._events: queue.SimpleQueue[list[Event]] = queue.SimpleQueue()
        self._held: list[list[Event]] = []
        self._after_drain: list[Any] = []
        self._live: dict[str, _Live] = {}
        self._by_ref: dict[int, str] = {}
        self._adopt: list[OrderRecord] = []
        self._balances: dict[str, tuple[float, float, float]] = {}
        self._markets: dict[str, Any] = {}
        self._shadow: dict[Any, Position] = {}  # trade bookkeeping of each data's fills
        self.positions = Positions()  # the bot's own (bt/positions.py)
        self.fees = FeeBook()  # fees per currency, valued in the quote (bt/fees.py)
        self.swaps = SwapBook({}, {})  # swaps: the exchange's positions, funding (bt/swapbook.py)
        self._deferred: dict[str, list[Event]] = {}  # symbol -> events waiting for its first bar
        #: what cerebro took last: (its new trade ids, its client id if final, its client id)
        self._unconfirmed: tuple[list[str], str | None, str | None] = ([], None, None)
        self._sent: collections.deque[float] = collections.deque()
        self._open_count = 0
        self.db: OrderStore | None = None
        self.sync: OrderSync | None = None
        self.run_lock: RunLock | None = None
        self._late: set[str] = set()  # orders given up, then found at the exchange
        self.started = False
        self.killed = False
        self._stop_lock = threading.Lock()
        self._stopping = False
        self._run_thread: int | None = None  # the thread that runs cerebro (and the strategy)
        self.startingcash = 0.0
        self.startingvalue = 0.0
        self._value0: float | None = None
        #: how order changes arrive: "websocket", "reconnecting" (stream down, polling) or "polling"
        self.updates_via = "polling"
        self.updates_reason = ""
        self._updates_changes: list[tuple[str, str]] = []  # not yet taken by updates_changes()

    def __repr__(self) -> str:
        return f"CCXTBroker(exchange={self.store.exchange_id!r}, run_id={self.run_id!r})"

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Open the order database, load markets and balances, adopt live orders (blocking)."""
        super().start()
        if self.started:
            return
        self._run_thread = threading.get_ident()
        path = self.p.db_path or default_orders_path()
        self.run_lock = RunLock(path, self.account, self.p.run_scope, started_ms=self.clock.time_ms())
        self.run_lock.acquire()  # one live run per database, account and scope
        self.db = OrderStore(path if str(path) == ":memory:" else Path(path))
        self.db.start_run(self.run_id, self.account, self.clock.time_ms())
        symbols = tuple(dict.fromkeys(self._symbol(d) for d in self._datas()))
        adopt = symbols if self.p.adopt_holdings else ()
        swap = self._swap_settings(symbols)
        self.sync = OrderSync(self.store, self.db, self.account, on_events=self._on_sync_events,
                              poll_interval=self.p.poll_interval,
                              balance_interval=self.p.balance_interval,
                              ambiguous_timeout=self.p.ambiguous_timeout,
                              updates=self.p.updates, reconcile_interval=self.p.reconcile_interval,
                              adopt=adopt, clock=self.clock, scope=self.p.run_scope,
                              symbols=symbols, watch_for=self.p.watch_for,
                              sweep_interval=self.p.sweep_interval, swap=swap,
                              funding_interval=self.p.funding_interval)
        fut = self.store.run_async(self.sync.start())
        try:
            events = fut.result(self.p.start_timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            self.db.close()
            self.run_lock.release()
            raise BtccxtError(f"{self.store.exchange_id}: the live broker did not start within "
                              f"{self.p.start_timeout:g} s (markets, balances, reconciliation)",
                              hint="check the network and the exchange status") from None
        except BaseException:
            self.db.close()
            self.run_lock.release()
            raise
        ready = [ev for ev in events if ev.kind == "ready"]
        self._apply(ready)  # markets, balances and the bot's positions now
        self.positions.at_start = dict(self.positions.held)
        self._events.put([ev for ev in events if ev.kind != "ready"])
        self._apply_pending()
        self.started, self._stopping = True, False
        self.store.on_stop(self._stop_with_store)
        # backtrader's writers and analyzers read these
        self.startingcash = self.getcash()
        self.startingvalue = self.getvalue()
        adopted = sum(1 for ev in events if ev.kind == "adopt")
        logger.info("live broker on %s started: run %s, %d live order(s) of earlier runs adopted",
                    self.store.exchange_id, self.run_id, adopted)

    def _swap_settings(self, symbols: tuple[str, ...]) -> SwapSettings:
        """Leverage and margin mode per symbol (``leverage``/``margin_mode`` params), checked
        against ``limits.max_leverage``."""
        lev, mode = self.p.leverage, self.p.margin_mode
        levs = {s: float(lev.get(s, 1.0) if isinstance(lev, dict) else lev) for s in symbols}
        modes = {s: str(mode.get(s, "isolated") if isinstance(mode, dict) else mode) for s in symbols}
        for s in symbols:
            cap = self.limits.max_leverage.get(s)
            if cap is not None and levs[s] > cap:
                raise BtccxtError(f"{s}: leverage {levs[s]:g} is above limits.max_leverage {cap:g}",
                                  hint="lower the leverage or raise the limit")
            if modes[s] not in ("isolated", "cross"):
                raise ValueError(f"margin_mode must be isolated or cross, not {modes[s]!r}")
        self.swaps = SwapBook(levs, modes)
        return SwapSettings(levs, modes)

    def _on_sync_events(self, events: list[Event]) -> None:
        """(loop thread) Hand a batch to the strategy thread and wake cerebro for it."""
        self._events.put(events)
        ring()

    def stop(self, deliver: bool = True) -> None:
        """Stop once (open orders stay open unless ``cancel_on_stop``): let the worker finish
        what was sent, tell the strategy what is pending (``deliver``; only on the thread that
        runs the strategy: a forced stop from another thread tells nothing, and the next start
        does), close the database."""
        with self._stop_lock:
            if not self.started or self._stopping:
                return
            self._stopping = True
        on_run_thread = threading.get_ident() == self._run_thread
        if self.p.cancel_on_stop and not self.killed:
            self.cancel_all(timeout=15.0)
        if self.sync is not None:
            try:  # creates already queued are answered and their fills read
                self.store.run_async(self.sync.flush()).result(FLUSH_TIMEOUT)
            except Exception:
                logger.info("the order worker did not finish in %g s; the next start reconciles",
                            FLUSH_TIMEOUT)
            try:
                self.store.run_async(self.sync.stop()).result(5.0)
            except Exception:
                logger.debug("stopping the order worker", exc_info=True)
        if on_run_thread:
            self._apply_pending()
            if deliver:
                self._deliver_at_stop()
        if self.db is not None:
            self.db.close()
        if self.run_lock is not None:
            self.run_lock.release()
        self.started = False

    def _stop_with_store(self) -> None:
        """The store stops and this broker was not stopped (the strategy raised, so cerebro
        never called ``stop()``): ``cancel_on_stop`` still applies; what was not told stays
        undelivered for the next start."""
        if self.started:
            logger.warning("the run ended without stopping the live broker (the strategy "
                           "raised?); stopping it now")
            self.stop(deliver=False)

    def _deliver_at_stop(self) -> None:
        """Hand the notifications cerebro will no longer ask for to their strategy (after its
        ``stop()``); fills not told stay undelivered for the next start."""
        self._confirm()
        strats = list(getattr(getattr(self, "cerebro", None), "runningstrats", None) or [])
        while self.notifs:
            order, trades, final = self.notifs[0]
            owner = order.owner if order.owner is not None else (strats[0] if strats else None)
            if owner is None:
                break
            self.notifs.popleft()
            try:
                owner._addnotification(order, quicknotify=True)
            except Exception:
                logger.exception("telling the strategy of order %s at stop failed",
                                 order.info.get("client_id"))
                continue
            self._unconfirmed = (trades, final, order.info.get("client_id"))
            self._confirm()

    # ------------------------------------------------------------------ backtrader API
    def getcash(self) -> float:
        return self._balances.get(self._currency(), (0.0, 0.0, 0.0))[0]

    @property
    def cash(self) -> float:
        """The free quote balance (``BackBroker`` has ``cash`` too)."""
        return self.getcash()

    def getvalue(self, datas: Any = None) -> float:
        value = 0.0
        if datas is None:
            value = self._balances.get(self._currency(), (0.0, 0.0, 0.0))[2]
        seen: set[str] = set()
        for d in (datas if datas is not None else self._datas()):
            symbol = self._symbol(d)
            if is_contract(self._markets.get(symbol)):  # a swap: its P&L, not coins
                if symbol not in seen:
                    seen.add(symbol)
                    value += self.swaps.upnl(symbol, float(d.close[0]) if len(d) else None)
                continue
            base = self._base(d)
            if base is None or base in seen or len(d) == 0:
                continue
            seen.add(base)
            value += self._balances.get(base, (0.0, 0.0, 0.0))[2] * float(d.close[0])
        return value

    def getposition(self, data: Any, clone: bool = True) -> Position:
        """The bot's own position (the ledger), never coins the account held before unless
        ``adopt_holdings``."""
        size, price = self.positions.get(self._symbol(data))
        return Position(size=size, price=price if size else 0.0)

    def orderstatus(self, order: Order) -> int:
        cid = self._by_ref.get(order.ref)
        lv = self._live.get(cid) if cid else None
        return lv.order.status if lv is not None and lv.order is not None else order.status

    def buy(self, owner: Any, data: Any, size: float, price: float | None = None,
            plimit: float | None = None, exectype: int | None = None, valid: Any = None,
            tradeid: int = 0, oco: Any = None, trailamount: float | None = None,
            trailpercent: float | None = None, parent: Any = None, transmit: bool = True,
            **kwargs: Any) -> Order:
        order = BuyOrder(owner=owner, data=data, size=size, price=price, pricelimit=plimit,
                         exectype=exectype, valid=valid, tradeid=tradeid, trailamount=trailamount,
                         trailpercent=trailpercent, parent=parent, transmit=transmit)
        return self._submit(order, oco, kwargs)

    def sell(self, owner: Any, data: Any, size: float, price: float | None = None,
             plimit: float | None = None, exectype: int | None = None, valid: Any = None,
             tradeid: int = 0, oco: Any = None, trailamount: float | None = None,
             trailpercent: float | None = None, parent: Any = None, transmit: bool = True,
             **kwargs: Any) -> Order:
        order = SellOrder(owner=owner, data=data, size=size, price=price, pricelimit=plimit,
                          exectype=exectype, valid=valid, tradeid=tradeid, trailamount=trailamount,
                          trailpercent=trailpercent, parent=parent, transmit=transmit)
        return self._submit(order, oco, kwargs)

    def cancel(self, order: Order) -> bool:
        """Ask the exchange to cancel; ``Canceled`` is notified once it confirms."""
        cid = self._by_ref.get(order.ref)
        lv = self._live.get(cid) if cid else None
        if lv is None or lv.final or self.sync is None:
            return False
        self.sync.send("cancel", cid)
        return True

    def next(self) -> None:
        """Apply what the exchange said since the last call (strategy thread)."""
        self._confirm()
        self._apply_pending()
        if self.swaps.notices:
            self._tell_notices()
        if self._after_drain and not self._held:
            calls, self._after_drain = self._after_drain, []
            for fn in calls:
                fn()


    def after_drain(self, fn: Any) -> None:
        """Call ``fn`` on the strategy thread once every event received so far is applied
        (their notifications go out in the same cerebro cycle). Used to stop after a kill."""
        self._after_drain.append(fn)

    def get_notification(self) -> Order | None:
        """The next notification. Its fills are marked delivered at the next call (cerebro has
        handed it to the strategy by then), so a crash inside ``notify_order`` tells it again."""
        self._confirm()
        try:
            order, trades, final = self.notifs.popleft()
        except IndexError:
            return None
        self._unconfirmed = (trades, final, order.info.get("client_id"))
        return order

    def _confirm(self) -> None:
        (trades, final, cid), self._unconfirmed = self._unconfirmed, ([], None, None)
        if self.db is None:
            return
        if trades:  # trade ids are the exchange's, unique only within an order
            self.db.mark_delivered(self.account, trades, cid)
        if final is not None:
            self.db.mark_notified(final)

    # ------------------------------------------------------------------ extras
    def cancel_all(self, timeout: float = 15.0) -> bool:
        """Cancel every live order this broker tracks and wait for the answers (any thread).

        Returns False if the exchange did not answer in time, or some order could not be
        cancelled (an order whose create outcome is unknown and that is not found yet: it is
        cancelled as soon as it is found, in this run or, adopted, in the next).
        """
        if self.sync is None or not self.started:
            return True
        done: concurrent.futures.Future = concurrent.futures.Future()
        self.sync.send("cancel_all", done)
        try:
            left = done.result(timeout)
        except concurrent.futures.TimeoutError:
            logger.error("cancelling open orders did not finish within %.0f s", timeout)
            return False
        if left:
            logger.error("%d order(s) could not be cancelled yet (%s): not found at the exchange "
                         "yet, or the cancel failed; they are cancelled once found",
                         len(left), ", ".join(left))
            return False
        return True

    def kill(self, reason: str, timeout: float = 15.0) -> bool:
        """The kill switch: cancel every open order; no new order is accepted afterwards."""
        logger.warning("kill switch (%s): cancelling all open orders", reason)
        self.killed = True
        return self.cancel_all(timeout)


    # ------------------------------------------------------------------ helpers
    def _datas(self) -> list[Any]:
        cerebro = getattr(self, "cerebro", None)  # set by cerebro.setbroker / cerebro.broker =
        return list(cerebro.datas) if cerebro is not None else []

    @staticmethod
    def _symbol(data: Any) -> str:
        return str(getattr(data, "symbol", None) or data.p.dataname)

    def _base(self, data: Any) -> str | None:
        m = self._markets.get(self._symbol(data))
        return m.get("base") if m else None

    def _currency(self) -> str:
        if self.p.currency:
            return str(self.p.currency)
        if self.store.currency:
            return str(self.store.currency)
        for d in self._datas():
            m = self._markets.get(self._symbol(d))
            if m:
                return str(m.get("quote"))
        return "USDT"
