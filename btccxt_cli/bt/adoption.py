"""What a starting order worker tells and takes over besides live orders (``docs/orders.md``,
"Restarts" and "Cash, value, positions"): final orders the strategy was never told of, and
``broker.adopt_holdings``. Functions of an :class:`~btccxt_cli.bt.ordersync.OrderSync`, run on
its loop during ``start()``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from btccxt_cli.bt.orderkit import Event, exchange_message
from btccxt_cli.cache.orders import FillRecord, OrderRecord

if TYPE_CHECKING:
    from btccxt_cli.bt.ordersync import OrderSync

__all__ = ["replay_final", "adopt_holdings", "last_price", "ADOPT_READS"]

logger = logging.getLogger(__name__)


def copy(rec: OrderRecord) -> OrderRecord:
    """A copy of an order record (events carry copies; the worker keeps its own)."""
    return OrderRecord(**{k: getattr(rec, k) for k in rec.__dataclass_fields__})


async def replay_final(sync: OrderSync, live: set[str]) -> list[Event]:
    """Final orders the strategy was never told of, or not of every fill: a market order is
    ``closed`` in the refresh that stores its fill, so a crash or a stop before cerebro took
    the notification leaves them untold. Each such order is adopted again, its untold fills
    follow, then its final state (``Completed``, ``Canceled``, ``Rejected`` ...)."""
    events: list[Event] = []
    by_order: dict[str, list[FillRecord]] = {}
    for rec in await sync._db(sync.db.untold_final_orders, sync.account, sync.scope):
        if rec.client_id not in live:  # adopted live just now: told as it goes
            by_order[rec.client_id] = []
    for f in await sync._db(sync.db.undelivered_fills, sync.account, sync.scope):
        if f.client_id not in live:
            by_order.setdefault(f.client_id, []).append(f)
    for cid, fills in by_order.items():
        rec = await sync._db(sync.db.get_order, cid)
        if rec is None:
            continue
        logger.info("order %s (%s, %d fill(s) untold): the strategy was never told; told now",
                    cid, rec.status, len(fills))
        events.append(Event("adopt", rec=copy(rec)))
        events += [Event("fill", fill=f) for f in fills]
        events.append(Event("order", rec=copy(rec)))
    return events


#: balance reads ``adopt_holdings`` tries for one with no fill of a live order around it
ADOPT_READS = 3


async def adopt_holdings(sync: OrderSync) -> tuple[list[Event], dict[str, tuple[float, float]]]:
    """``broker.adopt_holdings``, once per account and symbol: the first adopted symbol of
    each base currency is raised to the account's whole holding of it (less what other
    symbols of that base hold). Later starts adopt nothing more (the coins are the bot's
    and move with its fills; a restart after fills made while down must not count them
    twice).

    An order still live may fill between the start's read of its fills and the balance read
    here: the balance holds that fill, the ledger not yet, and the fill read later would
    move the position a second time. So the live orders are read again after the balance:
    a new fill goes into the ledger and the balance is read again, until a balance has no
    new fill after it (``ADOPT_READS`` tries; else nothing is adopted on this start).
    Returns the events of those reads and the positions it changed."""
    markets = sync._ex.markets or {}
    ledger = await sync._db(sync.db.holdings, sync.account)
    todo = [s for s in sync.adopt if (markets.get(s) or {}).get("spot")
            and not (s in ledger and ledger[s].adopted)]
    if not todo:
        return [], {}
    events: list[Event] = []
    for _ in range(ADOPT_READS):
        balances = await sync._fetch_balance(strict=True)  # read after the fills made while down
        new: list[Event] = []
        for t in list(sync.tracked.values()):  # fills made up to that read: into the ledger
            new += await sync._refresh(t)
        events += new
        if not any(e.kind == "fill" for e in new):
            break
    else:
        logger.warning("orders kept filling while the account's holdings were read; "
                       "broker.adopt_holdings adopts nothing on this start (the next start does)")
        return events, {}
    ledger = await sync._db(sync.db.holdings, sync.account)
    out: dict[str, tuple[float, float]] = {}
    seen: set[str] = set()
    for symbol in todo:
        base = markets[symbol]["base"]
        if base in seen:
            continue
        seen.add(base)
        others = sum(h.size for s, h in ledger.items()
                     if s != symbol and (markets.get(s) or {}).get("base") == base
                     and (markets.get(s) or {}).get("spot"))  # a swap's position holds no coins
        total = (balances or {}).get(base, (0.0, 0.0, 0.0))[2] - others
        if total <= (ledger[symbol].size if symbol in ledger else 0.0):
            continue
        price = await last_price(sync._ex, symbol)
        held = await sync._db(sync.db.adopt, sync.account, symbol, total, price, sync.clock.time_ms())
        out[symbol] = (held.size, held.price)
        logger.warning("%s: the bot may trade the account's %g %s, %g of them held before "
                       "(broker.adopt_holdings)", symbol, held.size, base, held.adopted)
    return events, out


async def last_price(ex: Any, symbol: str) -> float:
    """The last trade price (the ticker, else the last 1m close; 0 if neither answers):
    the entry price of adopted coins."""
    try:
        return float((await ex.fetch_ticker(symbol)).get("last") or 0.0)
    except Exception as exc:
        logger.debug("%s: no ticker (%s)", symbol, exchange_message(exc))
    try:
        rows = await ex.fetch_ohlcv(symbol, "1m", limit=2)
        return float(rows[-1][4]) if rows else 0.0
    except Exception as exc:
        logger.info("%s: no price for the adopted coins (%s)", symbol, exchange_message(exc))
        return 0.0
