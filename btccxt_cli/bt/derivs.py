"""Swaps and futures in the live broker's worker (``docs/swaps.md``): settings at start,
contract sizes, the exchange's positions, funding payments and positions closed outside the
bot's orders.

Runs on the store's event-loop thread with :class:`~btccxt_cli.bt.ordersync.OrderSync`
(``sync``); every amount that leaves this module is in base units (``contracts x
contractSize``), the unit of the orders database, the ledger and the strategy.

* **Start** (:func:`setup`): the account must be in one-way (net) position mode, else the run
  is refused (a hedged account would need ``posSide`` on every order and can hold two
  positions per symbol); then each swap symbol's margin mode and leverage are set through the
  exchange's own endpoint (okx ``set-leverage`` with ``mgnMode``; binance ``marginType`` then
  ``leverage``).
* **Positions** (:func:`read_positions`): ``fetch_positions`` of the broker's swap symbols, as
  :class:`ExPosition` (signed base size, entry, mark, unrealised P&L, liquidation price).
* **Funding** (:func:`read_funding`): ``fetch_funding_history`` since the last payment stored;
  each payment is stored once (``OrderStore.add_funding``) and told once.
* **Foreign part** (:func:`foreign_sizes`): what the exchange holds beyond the bot's ledger,
  taken with the read at start (the orders adopted then were read just before it) and with each
  later read where no order of the bot in that symbol is in flight (then no fill of ours is
  unread in the read); the strategy thread keeps it between reads, which its own fills do not
  change.
* **Closed outside** (:func:`outside_closes`): the bot's position must be contained in the
  exchange's (same sign, not larger). When it is not, and no order of the bot in that symbol
  is in flight (so no fill of ours is unread), the exchange closed it outside the bot's orders
  (a liquidation: an ``autoclose-`` order; or a manual close): the ledger is lowered to the
  exchange's position and the strategy told.

No backtrader here; ccxt is reached through ``sync._ex``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from btccxt_cli.bt.orderkit import Event, exchange_message
from btccxt_cli.errors import BtccxtError
from btccxt_cli.model import DerivPosition

if TYPE_CHECKING:
    from btccxt_cli.bt.ordersync import OrderSync

__all__ = ["ExPosition", "SwapSettings", "is_contract", "contract_size", "in_base", "setup",
           "read_positions", "read_funding", "outside_closes", "foreign_sizes", "SWAP_EXCHANGES"]

logger = logging.getLogger(__name__)

#: exchanges whose swaps the live broker trades (tested against the simulator)
SWAP_EXCHANGES = ("binance", "okx")
#: maintenance margin rate used by the liquidation-distance estimate (okx/binance tier 1)
MAINT_RATE = 0.004


@dataclass(frozen=True)
class SwapSettings:
    """What the run sets on the exchange at start, per swap symbol."""

    leverage: dict[str, float]
    margin_mode: dict[str, str]


#: the exchange's position in one symbol, in base units (``size`` signed: long > 0): the
#: broker panel's row type, read from ``fetch_positions`` (no funding: the broker counts it)
ExPosition = DerivPosition


def is_contract(market: dict[str, Any] | None) -> bool:
    """A swap or future (sized in contracts; positions, leverage, funding)."""
    return bool(market and market.get("contract"))


def contract_size(market: dict[str, Any] | None) -> float:
    """Base units per contract (1 for spot)."""
    if not is_contract(market):
        return 1.0
    return float((market or {}).get("contractSize") or 1.0)


def in_base(item: dict[str, Any], markets: dict[str, Any]) -> dict[str, Any]:
    """A ccxt order or trade with ``amount``/``filled``/``remaining`` in base units."""
    cs = contract_size(markets.get(str(item.get("symbol"))))
    if cs == 1.0:
        return item
    out = dict(item)
    for key in ("amount", "filled", "remaining"):
        if out.get(key) is not None:
            out[key] = float(out[key]) * cs
    return out


def liquidation_estimate(size: float, entry: float, leverage: float,
                         maint: float = MAINT_RATE) -> float | None:
    """Where an isolated position of ``size`` at ``entry`` would be liquidated (cross margin is
    backed by the wallet too: its real liquidation price is further away, so this errs on the
    cautious side)."""
    if not size or entry <= 0 or leverage <= 0:
        return None
    if size > 0:
        return entry * (1 - 1 / leverage + maint)
    return entry * (1 + 1 / leverage - maint)


async def setup(sync: OrderSync, symbols: tuple[str, ...], settings: SwapSettings) -> None:
    """Refuse a hedged account; set margin mode and leverage of every swap symbol."""
    ex = sync._ex
    swaps = [s for s in symbols if is_contract((ex.markets or {}).get(s))]
    if not swaps:
        return
    exid = sync.store.exchange_id
    if exid not in SWAP_EXCHANGES:
        raise BtccxtError(f"{exid}: the live broker trades swaps on {', '.join(SWAP_EXCHANGES)} "
                          f"only ({', '.join(swaps)})",
                          hint="trade spot symbols on this exchange, or paper-trade the swaps")
    try:
        mode = await ex.fetch_position_mode(swaps[0])
    except Exception as exc:
        raise BtccxtError(f"{exid}: reading the account's position mode failed: "
                          f"{exchange_message(exc)}", hint="check the API key's permissions") from exc
    if mode.get("hedged"):
        raise BtccxtError(f"{exid}: the account is in hedge (long/short) position mode; the live "
                          "broker trades one net position per symbol",
                          hint="switch the account to one-way (net) position mode on the exchange")
    for symbol in swaps:
        lev = settings.leverage.get(symbol, 1.0)
        mgn = settings.margin_mode.get(symbol, "isolated")
        try:
            if exid == "okx":  # one endpoint sets both (and mgnMode goes on each order)
                if await _okx_leverage(ex, symbol, mgn) != lev:  # a change needs a flat symbol
                    await ex.set_leverage(int(lev), symbol, {"marginMode": mgn})
            else:
                import ccxt

                try:
                    await ex.set_margin_mode(mgn, symbol)
                except ccxt.MarginModeAlreadySet:  # -4046: already so (a restart, say)
                    pass
                await ex.set_leverage(int(lev), symbol)
        except Exception as exc:
            raise BtccxtError(
                f"{exid}: setting {symbol} to {lev:g}x {mgn} failed: {exchange_message(exc)}",
                hint="an open position or open orders in another margin mode block the change: "
                     "close them, or set broker.margin_mode to the account's") from exc
        logger.info("%s: %s set to %gx %s margin", exid, symbol, lev, mgn)


async def _okx_leverage(ex: Any, symbol: str, mgn: str) -> float | None:
    """okx: the symbol's leverage in margin mode ``mgn`` now (None if unknown)."""
    try:
        got = await ex.fetch_leverage(symbol, {"marginMode": mgn})
    except Exception:
        return None
    lev = got.get("longLeverage") or got.get("shortLeverage")
    return float(lev) if lev else None


async def read_positions(sync: OrderSync, symbols: tuple[str, ...],
                         settings: SwapSettings) -> dict[str, ExPosition] | None:
    """The exchange's positions in the broker's swap symbols (missing: flat); None if the
    read failed."""
    ex = sync._ex
    swaps = [s for s in symbols if is_contract((ex.markets or {}).get(s))]
    if not swaps:
        return {}
    try:
        raw = await ex.fetch_positions(swaps)
    except Exception as exc:
        logger.warning("%s: reading positions failed (%s)", sync.store.exchange_id,
                       exchange_message(exc))
        return None
    out: dict[str, ExPosition] = {}
    for p in raw:
        symbol = str(p.get("symbol"))
        if symbol not in swaps:
            continue
        cs = float(p.get("contractSize") or contract_size((ex.markets or {}).get(symbol)))
        size = float(p.get("contracts") or 0.0) * cs
        if p.get("side") == "short":
            size = -abs(size)
        if not size:
            continue
        liq = p.get("liquidationPrice")
        lev = p.get("leverage")
        out[symbol] = ExPosition(
            symbol=symbol, size=size + out[symbol].size if symbol in out else size,
            entry=float(p.get("entryPrice") or 0.0), mark=float(p.get("markPrice") or 0.0),
            upnl=float(p.get("unrealizedPnl") or 0.0),
            liquidation=float(liq) if liq else None,
            leverage=float(lev) if lev else settings.leverage.get(symbol, 1.0),
            margin_mode=str(p.get("marginMode") or settings.margin_mode.get(symbol, "")))
    return out


async def read_funding(sync: OrderSync, symbols: tuple[str, ...], since_ms: int) -> list[Event]:
    """New funding payments of the broker's swap symbols since ``since_ms``, stored once."""
    ex = sync._ex
    swaps = {s for s in symbols if is_contract((ex.markets or {}).get(s))}
    if not swaps:
        return []
    try:
        rows = await ex.fetch_funding_history(None, since_ms)
    except Exception as exc:
        logger.info("%s: reading funding payments failed (%s); the next poll retries",
                    sync.store.exchange_id, exchange_message(exc))
        return []
    events: list[Event] = []
    for row in sorted(rows, key=lambda r: (r.get("timestamp") or 0, str(r.get("id")))):
        symbol = str(row.get("symbol"))
        if symbol not in swaps or row.get("id") is None:
            continue
        amount = float(row.get("amount") or 0.0)
        t = int(row.get("timestamp") or 0)
        if await sync._db(sync.db.add_funding, sync.account, str(row["id"]), symbol, amount, t):
            logger.info("funding %s: %+.8g %s", symbol, amount, row.get("code") or "")
            events.append(Event("funding", data={"symbol": symbol, "amount": amount, "time_ms": t,
                                                 "id": str(row["id"]),
                                                 "currency": row.get("code")}))
    return events


async def outside_closes(sync: OrderSync, positions: dict[str, ExPosition],
                         symbols: tuple[str, ...]) -> list[Event]:
    """Lower the bot's ledger where the exchange holds less than it (same sign) or nothing;
    never while an order of the bot in that symbol may have an unread fill."""
    ex = sync._ex
    # an order in flight, or given up and still watched, may have a fill not yet read
    busy = {t.rec.symbol for t in sync.tracked.values()} | {
        w.rec.symbol for w in sync.watch.watched.values()}
    events: list[Event] = []
    held = await sync._db(sync.db.holdings, sync.account)
    for symbol in symbols:
        market = (ex.markets or {}).get(symbol)
        h = held.get(symbol)
        if not is_contract(market) or h is None or not h.size or symbol in busy:
            continue
        pos = positions.get(symbol)
        have = pos.size if pos is not None else 0.0
        tol = sync._tol_symbol(symbol, h.size)
        if (have > 0) == (h.size > 0) and abs(have) + tol >= abs(h.size):
            continue  # contained: the bot's position is (part of) the exchange's
        after = have if (have > 0) == (h.size > 0) else 0.0
        price = await _close_price(sync, symbol, pos)
        reason = "liquidation" if await _liquidated(sync, symbol, h.updated_ms) else "closed outside"
        new = await sync._db(sync.db.set_outside, sync.account, symbol, after, price, reason,
                             sync.clock.time_ms())
        logger.warning("%s: the bot's position of %g was %s at the exchange (now %g; the "
                       "exchange holds %g)", symbol, h.size, reason, new.size, have)
        events.append(Event("outside", data={"symbol": symbol, "before": h.size, "after": new.size,
                                             "price": price, "reason": reason,
                                             "holding": (new.size, new.price)}))
    return events


async def foreign_sizes(sync: OrderSync, positions: dict[str, ExPosition], symbols: tuple[str, ...],
                        ) -> tuple[dict[str, float | None], dict[str, float]]:
    """Per swap symbol, what the exchange holds beyond the bot's ledger (signed, base units) as
    of ``positions``, and for the symbols where it is not taken (None) the estimate of that
    read: the value nearest zero that fills of the bot's orders the ledger may not have taken
    yet (what each tracked or watched order could still fill, as of the same read) can
    explain. Both sides of it are of the same moment; before, the strategy thread took the
    last read less its ledger of the moment it checked an order, a read from before a fill
    less the ledger after it (measured: after a restart, with an order of unsure outcome, an
    order of the bot's was refused for a foreign position that did not exist).

    None where an order of the bot in that symbol is in flight (the read may
    hold a fill of it the ledger has not taken yet), or is watched after a "not found"
    (``bt/sweep.py``: a lookup that lagged may yet show it placed and filled, and its fill is
    then in the exchange's position but not in the ledger: measured, it was taken for a
    foreign position and an order of the bot's was refused for it).

    The first time in a run (``sync.foreign_pending``: at start, or later where it could not
    be taken then) only orders of unsure outcome (``_Tracked.unsure``) count as in flight:
    the others were just read and are read once more after ``positions`` (one that filled
    meanwhile counts as in flight): a resting order would otherwise leave the part unknown
    for as long as it rests. An order of unsure outcome
    there (a create whose answer was lost before a restart, a lookup that lagged) may be
    placed and filled: measured, its fill was taken for a foreign position at start, kept
    while the bot's orders rested, and an order of the bot's was refused for it. Call right
    after the read, on the worker (no fill is taken in between)."""
    markets = sync._ex.markets or {}
    pending = sync.foreign_pending
    busy = {t.rec.symbol for t in sync.tracked.values()
            if t.rec.symbol not in pending or t.unsure}
    busy |= {t.rec.symbol for t in sync.watch.watched.values()}
    for t in list(sync.tracked.values()):
        if t.rec.symbol in pending and t.rec.symbol not in busy \
                and is_contract(markets.get(t.rec.symbol)):
            # a resting order read before ``positions``: one more read of it tells whether it
            # filled since (fills only grow); if so, or if the read fails, the read above may
            # hold that fill and the ledger not (measured: taken for a foreign position)
            try:
                order = await sync.lookup(t.rec)
                moved = float(order.get("filled") or 0.0) > t.traded + sync._tol(t.rec)
            except Exception:
                moved = True
            if moved:
                busy.add(t.rec.symbol)
    held = await sync._db(sync.db.holdings, sync.account)
    out: dict[str, float | None] = {}
    estimate: dict[str, float] = {}
    for symbol in symbols:
        if not is_contract(markets.get(symbol)):
            continue
        pos, h = positions.get(symbol), held.get(symbol)
        beyond = (pos.size if pos is not None else 0.0) - (h.size if h is not None else 0.0)
        out[symbol] = None if symbol in busy else beyond
        if out[symbol] is None:
            buys, sells = _unseen(sync, symbol)
            estimate[symbol] = min(max(0.0, beyond - buys), beyond + sells)
        logger.debug("%s: the exchange holds %g beyond the ledger: foreign part %s%s", symbol,
                     beyond, f"{out[symbol]:g}" if out[symbol] is not None else
                     f"untaken (an order in flight; estimate {estimate[symbol]:g})",
                     " (the first this run)" if symbol in pending else "")
        if out[symbol] is not None:
            pending.discard(symbol)
    return out, estimate


def _unseen(sync: OrderSync, symbol: str) -> tuple[float, float]:
    """What the bot's tracked and watched orders in ``symbol`` could still fill (buys, sells),
    beyond the fills in the ledger: the most a read may hold that the ledger does not."""
    buys = sells = 0.0
    seen: set[str] = set()
    for t in [*sync.tracked.values(), *sync.watch.watched.values()]:
        rec = t.rec
        if rec.symbol != symbol or rec.client_id in seen:
            continue
        seen.add(rec.client_id)
        left = max(0.0, float(rec.amount) - t.traded)
        if rec.side == "buy":
            buys += left
        else:
            sells += left
    return buys, sells


async def _liquidated(sync: OrderSync, symbol: str, since_ms: int) -> bool:
    """Did the exchange close ``symbol`` by a liquidation order (``autoclose-`` client id, as
    binance names them and the simulator does on both) since ``since_ms``? okx trades carry
    the client id; binance trades only the order id, so the orders not of this bot are read."""
    try:
        trades = await sync._ex.fetch_my_trades(symbol, max(0, since_ms - 60_000))
    except Exception:
        return False
    ours = {r.exchange_id for r in await sync._db(sync.db.orders, sync.account) if r.exchange_id}
    looked = 0
    for tr in reversed(trades):  # the newest first: a liquidation is the last trade
        info = tr.get("info") or {}
        cid = str(info.get("clOrdId") or info.get("clientOrderId") or tr.get("clientOrderId") or "")
        oid = str(tr.get("order") or "")
        if not cid and oid and oid not in ours and looked < 3:
            looked += 1
            try:
                cid = str((await sync._ex.fetch_order(oid, symbol)).get("clientOrderId") or "")
            except Exception:
                cid = ""
        if cid.startswith("autoclose-"):
            return True
    return False


async def _close_price(sync: OrderSync, symbol: str, pos: ExPosition | None) -> float:
    if pos is not None and pos.mark:
        return pos.mark
    from btccxt_cli.bt.adoption import last_price

    try:
        return float(await last_price(sync._ex, symbol) or 0.0)
    except Exception:
        return 0.0
