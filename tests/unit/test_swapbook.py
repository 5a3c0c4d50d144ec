"""The live broker's swap checks on the strategy thread (``bt/swapbook.py``): the bot never
trades against a position it did not open, reduce-only closes, the liquidation-distance limit,
and the broker panel's rows."""

from __future__ import annotations

import pytest

from btccxt_cli.bt.derivs import ExPosition, in_base, liquidation_estimate
from btccxt_cli.bt.positions import OrderLimits, Positions
from btccxt_cli.bt.swapbook import SwapBook

SWAP = "BTC/USDT:USDT"
MARKET = {"symbol": SWAP, "base": "BTC", "quote": "USDT", "contract": True, "swap": True,
          "contractSize": 0.01, "precision": {"amount": 1.0}}


def book(held: float = 0.0, entry: float = 0.0, exchange: float | None = None,
         lev: float = 5.0) -> tuple[SwapBook, Positions]:
    pos = Positions()
    pos.markets = {SWAP: MARKET}
    pos.precision_mode = 4  # TICK_SIZE
    if held:
        pos.held[SWAP] = (held, entry)
    sb = SwapBook({SWAP: lev}, {SWAP: "isolated"})
    have = held if exchange is None else exchange
    if have:  # a read with no order of the bot in flight: the foreign part is taken
        sb.on_positions({"positions": {SWAP: ExPosition(SWAP, have, entry or 100.0, 100.0, 0.0,
                                                        None, lev, "isolated")},
                         "foreign": {SWAP: have - held}})
    return sb, pos


def test_contract_amounts_become_base_units_and_tolerance_is_one_contract() -> None:
    order = {"symbol": SWAP, "amount": 3.0, "filled": 2.0, "remaining": 1.0}
    assert in_base(order, {SWAP: MARKET}) == {"symbol": SWAP, "amount": 0.03, "filled": 0.02,
                                              "remaining": 0.01}
    assert in_base({"symbol": "BTC/USDT", "amount": 3.0}, {SWAP: MARKET})["amount"] == 3.0
    _sb, pos = book()
    assert pos.tol(SWAP) == pytest.approx(0.005)  # half a contract of 0.01 BTC


def test_a_short_is_allowed_but_never_against_a_position_the_bot_did_not_open() -> None:
    sb, pos = book()
    assert sb.refuse(SWAP, "sell", 0.02, 100.0, pos, OrderLimits(), []) is None
    sb, pos = book(exchange=0.05)  # someone's long of 0.05 BTC
    reason = sb.refuse(SWAP, "sell", 0.02, 100.0, pos, OrderLimits(), [])
    assert reason and "long of 0.05 BTC this bot did not open" in reason
    assert sb.refuse(SWAP, "buy", 0.02, 100.0, pos, OrderLimits(), []) is None  # beside it: fine
    sb, pos = book(held=0.02, entry=100.0, exchange=0.07)  # the bot's 0.02 in an account long 0.07
    assert sb.refuse(SWAP, "sell", 0.02, 100.0, pos, OrderLimits(), []) is None  # its own
    assert sb.refuse(SWAP, "sell", 0.03, 100.0, pos, OrderLimits(), []) is not None  # past zero
    # counting open sells: a second close of the same 0.02 would go short against the long
    assert sb.refuse(SWAP, "sell", 0.02, 100.0, pos, OrderLimits(), [(SWAP, "sell", 0.02)]) is not None


def test_the_foreign_part_is_the_workers_while_nothing_was_in_flight_not_a_stale_read() -> None:
    sb, pos = book()
    sb.on_positions({"positions": {}, "foreign": {SWAP: 0.0}})  # flat, nothing in flight
    pos.held[SWAP] = (0.03, 100.0)  # then the bot's own long fills: the read is stale
    assert sb.foreign(SWAP) == 0.0
    assert sb.refuse(SWAP, "buy", 0.02, 100.0, pos, OrderLimits(), []) is None
    # a read while an order was in flight says nothing about the foreign part: the last stays
    ex = ExPosition(SWAP, 0.08, 100.0, 100.0, 0.0, None, 5.0, "isolated")
    sb.on_positions({"positions": {SWAP: ex}, "foreign": {SWAP: None}})
    assert sb.foreign(SWAP) == 0.0
    sb.on_positions({"positions": {SWAP: ex}, "foreign": {SWAP: 0.05}})  # someone's long
    reason = sb.refuse(SWAP, "sell", 0.05, 100.0, pos, OrderLimits(), [])
    assert reason and "long of 0.05 BTC this bot did not open" in reason


def test_reduce_only_is_for_orders_that_only_take_the_bot_towards_zero() -> None:
    sb, pos = book(held=0.03, entry=100.0)
    assert sb.reduce_only(SWAP, "sell", 0.03, pos, [])
    assert not sb.reduce_only(SWAP, "sell", 0.05, pos, [])  # a flip opens a short
    assert not sb.reduce_only(SWAP, "sell", 0.02, pos, [(SWAP, "sell", 0.02)])  # 0.01 left to close
    assert not sb.reduce_only(SWAP, "buy", 0.01, pos, [])
    sb, pos = book(held=-0.02, entry=100.0)
    assert sb.reduce_only(SWAP, "buy", 0.02, pos, []) and not sb.reduce_only(SWAP, "sell", 0.01, pos, [])


def test_an_order_bringing_the_liquidation_price_too_close_is_rejected_with_numbers() -> None:
    limits = OrderLimits(min_liquidation_distance=0.1)
    sb, pos = book(lev=20.0)  # 1/20 - 0.4 % = 4.6 % away: too close
    reason = sb.refuse(SWAP, "buy", 0.01, 100.0, pos, limits, [])
    assert reason and "estimated liquidation price of 95.4" in reason and "4.6%" in reason
    assert "min_liquidation_distance = 0.1" in reason
    sb, pos = book(lev=5.0)  # 19.6 % away
    assert sb.refuse(SWAP, "sell", 0.01, 100.0, pos, limits, []) is None
    assert liquidation_estimate(-0.01, 100.0, 5.0) == pytest.approx(119.6)
    # closing is never stopped by it
    sb, pos = book(held=0.05, entry=100.0, lev=20.0)
    assert sb.refuse(SWAP, "sell", 0.05, 100.0, pos, limits, []) is None


def test_panel_rows_show_the_bots_position_with_the_exchanges_liquidation_and_funding() -> None:
    sb, pos = book(held=-0.02, entry=100.0, lev=5.0)
    sb.on_funding({"symbol": SWAP, "amount": 0.3, "time_ms": 1, "id": "1", "currency": "USDT"})
    (row,) = sb.rows(pos, {SWAP: 90.0})
    assert (row.side, row.size, row.mark, row.leverage, row.margin_mode) == ("short", -0.02, 90.0, 5.0, "isolated")
    assert row.upnl == pytest.approx(0.2) and row.funding == pytest.approx(-0.3)
    assert row.liquidation == pytest.approx(119.6)
    assert [n[0] for n in sb.take_notices()] == ["funding"] and sb.take_notices() == []


def test_an_order_given_up_but_still_watched_keeps_its_symbol_unmeasured() -> None:
    """An order given up on "not found" stays watched (a lookup that lagged may yet show it
    placed and filled). Its fill is then in the exchange's position and not in the ledger:
    measured at that read, it was taken for a foreign long, and a later order of the bot's
    was refused for a position that did not exist (the okx swap order soak, 1 run in many).
    ``foreign_sizes`` runs on the broker's worker; a stand-in for its state here (ours)."""
    import asyncio
    from types import SimpleNamespace

    from btccxt_cli.bt.derivs import foreign_sizes
    from btccxt_cli.bt.orderkit import _Tracked
    from btccxt_cli.cache.orders import Holding

    # a buy of 0.0094 given up on "not found", its fill not in the ledger
    watched = _Tracked(SimpleNamespace(symbol=SWAP, client_id="c1", side="buy", amount=0.0094,
                                       status="canceled"))  # type: ignore[arg-type]

    async def db(fn, *args):
        return fn(*args)

    def sync(watching: bool, pending: set[str]) -> SimpleNamespace:
        return SimpleNamespace(
            _ex=SimpleNamespace(markets={SWAP: MARKET}), tracked={}, account="a", _db=db,
            watch=SimpleNamespace(watched={"c1": watched} if watching else {}),
            db=SimpleNamespace(holdings=lambda account: {SWAP: Holding(account, SWAP, 0.02, 100.0)}),
            foreign_pending=pending)

    ex = {SWAP: ExPosition(SWAP, 0.0294, 100.0, 100.0, 0.0, None, 5.0, "isolated")}  # + its fill
    for pending in (set(), {SWAP}):  # at start too
        # untaken; the read's estimate: the watched buy's fill explains the difference
        assert asyncio.run(foreign_sizes(sync(True, set(pending)), ex, (SWAP,))) == (
            {SWAP: None}, {SWAP: pytest.approx(0.0)})
        assert asyncio.run(foreign_sizes(sync(False, set(pending)), ex, (SWAP,))) == (
            {SWAP: pytest.approx(0.0094)}, {})


def test_at_start_an_order_of_unsure_outcome_leaves_the_foreign_part_untaken_until_it_is_sure() -> None:
    """After a restart, an order whose create's answer was lost (or a lookup lagged) may be
    placed and filled: its fill is in the exchange's position and not yet in the ledger.
    Taken at start, that fill was kept as a foreign position while the bot's orders rested,
    and an order of the bot's was refused for a position that did not exist (the okx swap
    order soak under load, 3 runs in 13). The first read with no order of unsure outcome
    takes it, a resting order of the bot's notwithstanding, unless one more read of that
    order shows it filled since its fills were read (``bt/derivs.py``)."""
    import asyncio
    from types import SimpleNamespace

    from btccxt_cli.bt.derivs import foreign_sizes
    from btccxt_cli.bt.orderkit import _Tracked
    from btccxt_cli.cache.orders import Holding

    async def db(fn, *args):
        return fn(*args)

    def order(status: str, cid: str) -> _Tracked:
        return _Tracked(SimpleNamespace(symbol=SWAP, status=status, client_id=cid, side="buy",
                                        amount=0.03))  # type: ignore[arg-type]

    ledger = {SWAP: Holding("a", SWAP, 0.02, 100.0)}
    exchange_filled = {"rest": 0.0}  # what the exchange says the resting order filled

    async def lookup(rec):
        return {"filled": exchange_filled["rest"]}

    sync = SimpleNamespace(
        _ex=SimpleNamespace(markets={SWAP: MARKET}), account="a", _db=db,
        watch=SimpleNamespace(watched={}), db=SimpleNamespace(holdings=lambda account: ledger),
        foreign_pending={SWAP}, tracked={"lost": order("unknown", "c1"), "rest": order("open", "c2")},
        lookup=lookup, _tol=lambda rec: 0.005)
    with_fill = {SWAP: ExPosition(SWAP, 0.05, 100.0, 100.0, 0.0, None, 5.0, "isolated")}
    assert asyncio.run(foreign_sizes(sync, with_fill, (SWAP,)))[0] == {SWAP: None}
    assert sync.foreign_pending == {SWAP}
    lagged = order("open", "c3")
    lagged.missing_since = 1.0  # a lookup that did not find it lately: unsure too
    sync.tracked["lost"] = lagged
    assert asyncio.run(foreign_sizes(sync, with_fill, (SWAP,)))[0] == {SWAP: None}
    del sync.tracked["lost"]  # found filled: its 0.03 is the bot's now
    ledger[SWAP] = Holding("a", SWAP, 0.05, 100.0)
    # the resting order filled 0.01 since its fills were read: the read may hold it
    exchange_filled["rest"] = 0.01
    assert asyncio.run(foreign_sizes(sync, with_fill, (SWAP,)))[0] == {SWAP: None}
    exchange_filled["rest"] = 0.0  # (or it had not: the read holds only what the ledger has)
    assert asyncio.run(foreign_sizes(sync, with_fill, (SWAP,)))[0] == {SWAP: pytest.approx(0.0)}
    assert sync.foreign_pending == set()
    # taken: from now on any order in flight leaves the last value in place
    assert asyncio.run(foreign_sizes(sync, with_fill, (SWAP,)))[0] == {SWAP: None}


def test_before_the_foreign_part_is_taken_the_bots_orders_may_explain_the_difference() -> None:
    """With no read taken yet (an order of unsure outcome at start), the exchange's position
    less the ledger, at the same read, may hold fills of the bot's orders the ledger has not
    taken: the read's estimate is the value nearest zero they explain (``foreign_sizes``), and
    an order is refused only for what they cannot explain."""
    import asyncio
    from types import SimpleNamespace

    from btccxt_cli.bt.derivs import foreign_sizes
    from btccxt_cli.bt.orderkit import _Tracked
    from btccxt_cli.cache.orders import Holding

    async def db(fn, *args):
        return fn(*args)

    def order(cid: str, side: str, amount: float, status: str = "unknown") -> _Tracked:
        return _Tracked(SimpleNamespace(symbol=SWAP, status=status, client_id=cid, side=side,
                                        amount=amount))  # type: ignore[arg-type]

    def estimate(exchange: float, *orders: _Tracked) -> float:
        sync = SimpleNamespace(
            _ex=SimpleNamespace(markets={SWAP: MARKET}), account="a", _db=db,
            watch=SimpleNamespace(watched={}), foreign_pending={SWAP},
            db=SimpleNamespace(holdings=lambda account: {SWAP: Holding("a", SWAP, 0.0, 100.0)}),
            tracked={t.rec.client_id: t for t in orders})
        ex = {SWAP: ExPosition(SWAP, exchange, 100.0, 100.0, 0.0, None, 5.0, "isolated")}
        taken, est = asyncio.run(foreign_sizes(sync, ex, (SWAP,)))
        assert taken == {SWAP: None}
        return est[SWAP]

    # the exchange long 0.03, the ledger flat, and a buy of 0.03 whose create's answer was lost
    assert estimate(0.03, order("c1", "buy", 0.03)) == 0.0
    assert estimate(0.03, order("c1", "buy", 0.01)) == pytest.approx(0.02)
    assert estimate(-0.03, order("c1", "sell", 0.05)) == 0.0  # a short: sells explain it
    assert estimate(-0.03, order("c1", "buy", 0.05)) == pytest.approx(-0.03)

    sb, pos = book()
    sb.on_positions({"positions": {}, "foreign": {SWAP: None}, "estimate": {SWAP: 0.02}})
    reason = sb.refuse(SWAP, "sell", 0.05, 100.0, pos, OrderLimits(), [])
    assert reason and "long of 0.02 BTC this bot did not open" in reason
    # the estimate is of its read's time: the bot's own fills since move its ledger, not it
    # (measured: an exchange's read from before a fill, less the ledger after it, was taken
    # for a foreign short, and an order of the bot's was refused after a restart)
    sb.on_positions({"positions": {}, "foreign": {SWAP: None}, "estimate": {SWAP: 0.0}})
    pos.held[SWAP] = (0.0136, 100.0)
    assert sb.foreign(SWAP) == 0.0
    assert sb.refuse(SWAP, "sell", 0.0076, 100.0, pos, OrderLimits(), []) is None
    sb.on_positions({"positions": {}, "foreign": {SWAP: -0.03}})  # taken: as it was read
    assert sb.foreign(SWAP) == pytest.approx(-0.03)
