"""Derivatives of one simulated exchange: positions, leverage, margin modes, funding payments and
liquidation of linear perpetual swaps (USDT-settled), on the market model's price path.

Pure like the engine it belongs to (``accounts.Engine.derivs``): no sockets, no wire formats.
Rules (``docs/simulator.md`` states them for users):

* **Amounts** are in base currency (the venues convert okx contracts with ``ctVal``).
* **Mark price** = the traded price on the tick grid (``Engine.price``); there is no separate
  index. Unrealised P&L = ``qty * (mark - entry)`` (qty signed: long > 0, short < 0).
* **Position modes**: ``net`` (one position per symbol, a buy reduces a short and may flip it)
  or hedged (okx ``long_short_mode``: a ``long`` and a ``short`` position per symbol; an order
  names its side, ``sell`` on ``long`` closes).
* **Margin**: an order locks the initial margin of the part that opens exposure
  (``qty * price / leverage``, settle currency); a fill moves it into the position's margin;
  closing releases it pro rata and books the realised P&L. Fees are paid in the settle
  currency. ``cross`` and ``isolated`` differ only in what liquidates (below).
* **Reduce-only** orders never open exposure: refused when there is nothing to reduce in their
  direction, and filled at most up to the position (the rest is cancelled).
* **Funding** every ``funding_interval_ms`` (8 h by default) at multiples of it since 1970 (00:00,
  08:00, 16:00 UTC): rate = ``clamp(0.0001 + r / 100, -0.003, 0.003)`` where ``r`` is the price
  change over the interval before; a position pays ``qty * mark * rate`` (longs pay when the rate
  is positive, shorts receive), from or to the free balance.
* **Liquidation**, checked at every second boundary: an isolated position when its margin plus
  unrealised P&L falls to its maintenance margin (``|qty| * mark * maint_rate``); the cross
  positions of an account when free balance plus their margins and unrealised P&L falls to the
  sum of theirs. The position is closed at the mark by an ``autoclose-`` order (no fee); an
  isolated one loses at most its margin, an account's free balance never goes below zero.

Must not import ccxt, aiohttp or anything from the client side of btccxt.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from btccxt_cli.sim.ledger import Account, Reject, SimOrder, tidy

if TYPE_CHECKING:
    from btccxt_cli.sim.market import MarketSpec

logger = logging.getLogger(__name__)

__all__ = ["Derivatives", "Position", "FundingPayment", "FUNDING_INTERVAL_MS", "MAINT_RATE",
           "MARGIN_MODES", "POS_SIDES"]

FUNDING_INTERVAL_MS = 8 * 3_600_000
MAINT_RATE = 0.004  # maintenance margin rate (okx and binance tier 1 for the majors: 0.4 %)
MARGIN_MODES = ("cross", "isolated")
POS_SIDES = ("net", "long", "short")
BASE_RATE = 0.0001  # 0.01 % per interval: the usual interest part of a funding rate
MAX_RATE = 0.003
MAX_CHECK_S = 86_400  # at most a day of seconds is checked for liquidation after a long silence


class Book(Protocol):
    """What :class:`Derivatives` uses of its engine (``accounts.Engine``)."""

    accounts: dict[str, Account]
    specs: dict[str, MarketSpec]
    orders: dict[int, SimOrder]

    def price(self, symbol: str, t_ms: int) -> float: ...

    def book_forced(self, key: str, symbol: str, side: str, qty: float, px: float, t_ms: int, *,
                    client_id: str, pos_side: str, margin_mode: str, pnl: float) -> None: ...


@dataclass
class Position:
    """One open (or just closed) position; ``qty`` is signed (long > 0, short < 0)."""

    id: int
    key: str
    symbol: str
    side: str  # net | long | short
    qty: float = 0.0
    entry: float = 0.0
    margin: float = 0.0  # initial margin held for it (settle currency)
    leverage: float = 10.0
    mode: str = "cross"
    realised: float = 0.0  # closed P&L, fees excluded
    fees: float = 0.0
    funding: float = 0.0  # funding received (+) or paid (-) while open
    created_ms: int = 0
    updated_ms: int = 0

    def upnl(self, mark: float) -> float:
        return tidy(self.qty * (mark - self.entry))

    def maint(self, mark: float, rate: float = MAINT_RATE) -> float:
        return abs(self.qty) * mark * rate

    def liq_price(self, extra: float = 0.0, rate: float = MAINT_RATE) -> float | None:
        """The mark at which margin (plus ``extra``: a cross account's free balance) runs out."""
        q = abs(self.qty)
        if q <= 0:
            return None
        m = self.margin + extra
        px = (self.entry * q - m) / (q * (1 - rate)) if self.qty > 0 else \
            (self.entry * q + m) / (q * (1 + rate))
        return max(0.0, px)


@dataclass(frozen=True)
class FundingPayment:
    """One funding settlement of one position: ``amount`` > 0 received, < 0 paid."""

    key: str
    symbol: str
    side: str
    time_ms: int
    rate: float
    mark: float
    qty: float
    amount: float


class Derivatives:
    """Positions and their settings for every account of one engine (``accounts.Engine``).

    Called by the engine with its lock held; not thread-safe on its own.
    """

    def __init__(self, engine: Book, *, funding_interval_ms: int = FUNDING_INTERVAL_MS,
                 default_leverage: float = 10.0, max_leverage: float = 125.0,
                 maint_rate: float = MAINT_RATE) -> None:
        if funding_interval_ms <= 0:
            raise ValueError(f"funding_interval_ms must be > 0, not {funding_interval_ms}")
        self.engine = engine
        self.funding_interval_ms = int(funding_interval_ms)
        self.default_leverage = float(default_leverage)
        self.max_leverage = float(max_leverage)
        self.maint_rate = float(maint_rate)
        self.positions: dict[tuple[str, str, str], Position] = {}
        self.leverage: dict[tuple[str, str, str], float] = {}  # (key, symbol, side) -> leverage
        self.margin_mode: dict[tuple[str, str], str] = {}  # (key, symbol) -> cross | isolated
        self.hedged: dict[str, bool] = {}  # key -> long/short mode
        self.payments: list[FundingPayment] = []
        self._ids = itertools.count(1)
        self._liq_ids = itertools.count(1)
        self._funded_ms: int | None = None  # the last funding time settled
        self._checked_ms: int | None = None  # the last second checked for liquidation

    # ------------------------------------------------------------------ settings
    def leverage_of(self, key: str, symbol: str, side: str = "net") -> float:
        return self.leverage.get((key, symbol, side), self.leverage.get((key, symbol, "net"),
                                                                        self.default_leverage))

    def mode_of(self, key: str, symbol: str) -> str:
        return self.margin_mode.get((key, symbol), "cross")

    def is_hedged(self, key: str) -> bool:
        return self.hedged.get(key, False)

    def set_leverage(self, key: str, symbol: str, leverage: float, *, side: str | None = None,
                     mode: str | None = None) -> float:
        """Set the leverage of ``symbol`` (one side in hedged isolated mode, else all); an open
        position's margin follows (:class:`Reject` ``insufficient_funds`` when it cannot)."""
        if not 1 <= leverage <= self.max_leverage:
            raise Reject("bad_leverage", f"leverage must be between 1 and {self.max_leverage:g}")
        if mode is not None:
            self.set_margin_mode(key, symbol, mode)
        sides = [side] if side in ("long", "short") else list(POS_SIDES)
        acct = self.engine.accounts[key]
        spec = self.engine.specs[symbol]
        for s in sides:
            pos = self.positions.get((key, symbol, s))
            if pos is not None and pos.qty:
                need = tidy(abs(pos.qty) * pos.entry / leverage)
                if need - pos.margin > acct.free(spec.quote) + 1e-9:
                    raise Reject("insufficient_funds", "not enough margin for that leverage")
                acct.lock(spec.quote, need - pos.margin)
                pos.margin, pos.leverage = need, float(leverage)
            self.leverage[(key, symbol, s)] = float(leverage)
        return float(leverage)

    def set_margin_mode(self, key: str, symbol: str, mode: str) -> None:
        if mode not in MARGIN_MODES:
            raise Reject("unsupported", f"margin mode must be cross or isolated, not {mode!r}")
        if mode != self.mode_of(key, symbol) and self._busy(key, symbol):
            raise Reject("position_open", "the margin mode cannot change with open positions or orders")
        self.margin_mode[(key, symbol)] = mode

    def set_hedged(self, key: str, hedged: bool) -> None:
        if hedged != self.is_hedged(key) and self._busy(key, None):
            raise Reject("position_open", "the position mode cannot change with open positions or orders")
        self.hedged[key] = bool(hedged)

    def _busy(self, key: str, symbol: str | None) -> bool:
        if any(p.qty for (k, s, _), p in self.positions.items()
               if k == key and (symbol is None or s == symbol)):
            return True
        return any(o.is_open for o in self.engine.orders.values() if o.key == key
                   and self.engine.specs[o.symbol].is_swap and (symbol is None or o.symbol == symbol))

    # ------------------------------------------------------------------ positions
    def open_positions(self, key: str, symbol: str | None = None) -> list[Position]:
        return [p for (k, s, _), p in self.positions.items()
                if k == key and p.qty and (symbol is None or s == symbol)]

    def position(self, key: str, symbol: str, side: str) -> Position:
        pos = self.positions.get((key, symbol, side))
        if pos is None or not pos.qty:  # a closed position's next life is a new one
            pos = Position(next(self._ids), key, symbol, side,
                           leverage=self.leverage_of(key, symbol, side),
                           mode=self.mode_of(key, symbol))
            self.positions[(key, symbol, side)] = pos
        return pos

    def resolve_side(self, key: str, side: str, pos_side: str | None) -> str:
        """The position an order trades: ``net`` in net mode, ``long``/``short`` when hedged."""
        if not self.is_hedged(key):
            if pos_side not in (None, "", "net"):
                raise Reject("bad_position_side", "posSide must be net (or empty) in net mode")
            return "net"
        if pos_side not in ("long", "short"):
            raise Reject("bad_position_side", "posSide must be long or short in long/short mode")
        return str(pos_side)

    def _closable(self, o: SimOrder) -> float:
        """How much of ``o`` reduces its position (the rest opens exposure)."""
        pos = self.positions.get((o.key, o.symbol, o.pos_side))
        q = pos.qty if pos is not None else 0.0
        if o.pos_side == "net":
            opposite = (q > 0 and o.side == "sell") or (q < 0 and o.side == "buy")
            return abs(q) if opposite else 0.0
        closing = (o.pos_side == "long" and o.side == "sell") or (o.pos_side == "short" and o.side == "buy")
        return abs(q) if closing else -1.0  # -1: this order opens

    def reserve(self, acct: Account, spec: MarketSpec, o: SimOrder, ref_px: float) -> None:
        """Check a new order and lock the initial margin of the part that opens exposure."""
        closable = self._closable(o)
        hedge_close = o.pos_side != "net" and closable >= 0
        if o.reduce_only or hedge_close:
            if closable <= 0:
                raise Reject("reduce_only", "there is no position in this direction to reduce")
            o.reduce_only = True
            return
        opening = o.amount - max(0.0, closable)
        if opening <= 0:
            return
        need = tidy(opening * ref_px / self.leverage_of(o.key, o.symbol, o.pos_side))
        if acct.free(spec.quote) + 1e-9 < need:
            raise Reject("insufficient_funds", f"insufficient {spec.quote} margin")
        acct.lock(spec.quote, need)
        o.locked = need

    def fill(self, acct: Account, spec: MarketSpec, o: SimOrder, qty: float, px: float,
             rate: float, t_ms: int) -> tuple[float, float, float]:
        """Apply one fill of ``qty`` at ``px``; returns ``(qty filled, fee, realised P&L)``.

        A reduce-only fill is cut to the position (0: nothing left to reduce)."""
        pos = self.position(o.key, o.symbol, o.pos_side)
        if o.reduce_only:
            qty = min(qty, round(abs(pos.qty), spec.lot_decimals))
            if qty <= 0:
                return 0.0, 0.0, 0.0
        if o.locked > 0:  # this fill's share of the order's margin goes back to free
            share = tidy(o.locked * min(1.0, qty / o.remaining)) if o.remaining > 0 else o.locked
            acct.unlock(spec.quote, share)
            o.locked = tidy(o.locked - share)
        sign = 1.0 if o.side == "buy" else -1.0
        reduces = pos.qty * sign < 0
        closing = min(qty, abs(pos.qty)) if reduces else 0.0
        pnl = 0.0
        if closing > 0:
            pnl = tidy(closing * (px - pos.entry) * (1.0 if pos.qty > 0 else -1.0))
            released = tidy(pos.margin * closing / abs(pos.qty))
            acct.unlock(spec.quote, released)
            acct.add_free(spec.quote, pnl)
            pos.margin = tidy(pos.margin - released)
            pos.qty = round(pos.qty + sign * closing, spec.lot_decimals)
            pos.realised = tidy(pos.realised + pnl)
        opening = round(qty - closing, spec.lot_decimals)
        if opening > 0:
            if not pos.qty:
                if pos.created_ms:  # closed (or flipped) just now: the rest opens a new one
                    pos = self.position(o.key, o.symbol, o.pos_side)
                pos.created_ms = t_ms
            margin = tidy(opening * px / pos.leverage)
            acct.lock(spec.quote, margin)
            new_qty = round(pos.qty + sign * opening, spec.lot_decimals)
            pos.entry = px if not pos.qty else (abs(pos.qty) * pos.entry + opening * px) / abs(new_qty)
            pos.qty = new_qty
            pos.margin = tidy(pos.margin + margin)
        fee = tidy(qty * px * rate)
        acct.add_free(spec.quote, -fee)
        pos.fees = tidy(pos.fees + fee)
        pos.updated_ms = t_ms
        return qty, fee, pnl

    # ------------------------------------------------------------------ funding
    def funding_rate(self, symbol: str, funding_ms: int) -> float:
        """The rate settled at ``funding_ms`` (known from the interval before it)."""
        price = self.engine.price
        before = price(symbol, funding_ms - self.funding_interval_ms)
        change = (price(symbol, funding_ms) - before) / before
        return round(max(-MAX_RATE, min(MAX_RATE, BASE_RATE + change / 100)), 8)

    def next_funding_ms(self, now_ms: int) -> int:
        iv = self.funding_interval_ms
        return now_ms - now_ms % iv + iv

    def predicted_rate(self, symbol: str, now_ms: int) -> float:
        """The next settlement's rate as it stands now (the interval so far, scaled)."""
        iv = self.funding_interval_ms
        start = self.next_funding_ms(now_ms) - iv
        price = self.engine.price
        before = price(symbol, start - iv)
        change = (price(symbol, now_ms) - before) / before
        return round(max(-MAX_RATE, min(MAX_RATE, BASE_RATE + change / 100)), 8)

    def funding_times(self, now_ms: int) -> Iterator[int]:
        """Funding times not settled yet up to ``now_ms`` (the first call settles none before it)."""
        iv = self.funding_interval_ms
        if self._funded_ms is None:
            self._funded_ms = now_ms - now_ms % iv
            return
        t = self._funded_ms + iv
        while t <= now_ms:
            yield t
            t += iv

    def settle_funding(self, t_ms: int) -> None:
        self._funded_ms = t_ms
        for pos in list(self.positions.values()):
            if not pos.qty or pos.created_ms >= t_ms:
                continue
            mark = self.engine.price(pos.symbol, t_ms)
            rate = self.funding_rate(pos.symbol, t_ms)
            amount = tidy(-pos.qty * mark * rate)
            spec = self.engine.specs[pos.symbol]
            self.engine.accounts[pos.key].add_free(spec.quote, amount)
            pos.funding = tidy(pos.funding + amount)
            self.payments.append(FundingPayment(pos.key, pos.symbol, pos.side, t_ms, rate, mark,
                                                pos.qty, amount))

    # ------------------------------------------------------------------ liquidation
    def check(self, now_ms: int) -> None:
        """Liquidate what ran out of margin at any second boundary up to ``now_ms``."""
        last = self._checked_ms
        self._checked_ms = now_ms
        if last is None or not any(p.qty for p in self.positions.values()):
            return
        t = max(last, now_ms - MAX_CHECK_S * 1000)
        t = t - t % 1000 + 1000
        while t <= now_ms:
            self._check_at(t)
            t += 1000
        if now_ms % 1000:
            self._check_at(now_ms)

    def _check_at(self, t_ms: int) -> None:
        marks: dict[str, float] = {}

        def mark(symbol: str) -> float:
            if symbol not in marks:
                marks[symbol] = self.engine.price(symbol, t_ms)
            return marks[symbol]

        cross: dict[str, list[Position]] = {}
        for pos in list(self.positions.values()):
            if not pos.qty:
                continue
            if pos.mode == "isolated":
                m = mark(pos.symbol)
                if pos.margin + pos.upnl(m) <= pos.maint(m, self.maint_rate):
                    self._liquidate(pos, m, t_ms)
            else:
                cross.setdefault(pos.key, []).append(pos)
        for key, group in cross.items():
            acct = self.engine.accounts[key]
            settle = self.engine.specs[group[0].symbol].quote
            equity = acct.free(settle) + sum(p.margin + p.upnl(mark(p.symbol)) for p in group)
            if equity <= sum(p.maint(mark(p.symbol), self.maint_rate) for p in group):
                for p in group:
                    self._liquidate(p, mark(p.symbol), t_ms)

    def _liquidate(self, pos: Position, px: float, t_ms: int) -> None:
        eng = self.engine
        spec = eng.specs[pos.symbol]
        acct = eng.accounts[pos.key]
        qty = abs(pos.qty)
        side = "sell" if pos.qty > 0 else "buy"
        logger.info("simulated liquidation: %s %s %s %g at %g", pos.key[:4], pos.symbol, pos.side,
                    pos.qty, px)
        pnl = pos.upnl(px)
        if pos.mode == "isolated":
            pnl = max(pnl, -pos.margin)
        acct.unlock(spec.quote, pos.margin)
        acct.add_free(spec.quote, pnl)
        if acct.free(spec.quote) < 0:  # the insurance fund takes the rest
            acct.add_free(spec.quote, -acct.free(spec.quote))
        pos.realised = tidy(pos.realised + pnl)
        pos.margin, pos.qty, pos.updated_ms = 0.0, 0.0, t_ms
        eng.book_forced(pos.key, pos.symbol, side, qty, px, t_ms,
                        client_id=f"autoclose-{t_ms}-{next(self._liq_ids)}", pos_side=pos.side,
                        margin_mode=pos.mode, pnl=pnl)

    # ------------------------------------------------------------------ views
    def position_dict(self, pos: Position, now_ms: int) -> dict[str, Any]:
        """A JSON-ready view of one position at ``now_ms`` (what the venues format)."""
        mark = self.engine.price(pos.symbol, now_ms)
        extra = 0.0
        if pos.mode == "cross":
            extra = self.engine.accounts[pos.key].free(self.engine.specs[pos.symbol].quote)
        return {"id": pos.id, "key": pos.key, "symbol": pos.symbol, "side": pos.side,
                "qty": pos.qty, "entry": pos.entry, "mark": mark, "upnl": pos.upnl(mark),
                "margin": pos.margin, "maint": tidy(pos.maint(mark, self.maint_rate)),
                "leverage": pos.leverage, "mode": pos.mode, "realised": pos.realised,
                "fees": pos.fees, "funding": pos.funding,
                "liq_price": pos.liq_price(extra, self.maint_rate),
                "created_ms": pos.created_ms, "updated_ms": pos.updated_ms}
