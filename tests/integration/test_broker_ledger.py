"""The live broker's own position (the ledger) and what it protects: CCXTBroker through cerebro
against the simulator with pre-funded accounts, real ccxt signing, real sockets.

* A live run never sells coins the bot did not buy (issue 12 §2); ``adopt_holdings`` opts in.
* The position a strategy and the caps see moves in the batch of the fill, so a strategy that
  buys again on ``Completed`` cannot breach ``max_position`` (issue 19 item 2).
* Fills are never lost across a crash or a stop (issue 19 item 1).
* Fill sums are compared within the market's amount step (issue 19 item 5).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import backtrader as bt
import pytest

from btccxt_cli.bt.broker import OrderLimits
from btccxt_cli.bt.store import CCXTStore
from btccxt_cli.cache.orders import FillRecord, OrderRecord, OrderStore, account_id
from btccxt_cli.sim.plans import cross_plan
from tests.integration.test_broker import ADOPT, KEYS, SYMBOL, Outcome, Scripted, has, run

pytestmark = pytest.mark.live

FUNDED = {"USDT": 10_000.0, "BTC": 1.0}  # the user's savings: 1 BTC the bot never bought


def _dump(db: Path) -> dict[str, Any]:
    store = OrderStore(db)
    try:
        return store.dump()
    finally:
        store.close()


def _btc(sim: Any, exchange: str) -> float:
    b = sim.balances(exchange)["BTC"]
    return float(b["free"] + b["locked"])


# --------------------------------------------------------------------------- issue 12 §2
@pytest.mark.parametrize("exchange", ["binance", "okx"])
def test_a_live_run_never_sells_coins_the_bot_did_not_buy(sim_factory: Any, tmp_path: Path,
                                                          exchange: str) -> None:
    sim = sim_factory(exchanges=(exchange,), balances=FUNDED)
    db = tmp_path / "o.sqlite"
    seen: dict[str, Any] = {}
    out1 = Outcome()

    def act1(s: Any, n: int) -> None:
        if n == 1:
            seen["start"] = s.position.size  # the account holds 1 BTC; the bot none of it
            seen["close"] = s.close()  # what sma_cross does on a cross down: sells nothing
            s.orders["sell"] = s.sell(size=0.5)
            s.orders["buy"] = s.buy(size=0.01)
        o = s.orders.get("buy")
        if o is not None and "Completed" in out1.statuses(o.ref) and "after" not in seen:
            seen["after"] = s.position.size  # at Completed, not one balance read later

    def done1(s: Any) -> bool:
        return has(out1, lambda st: st.orders.get("buy"), "Completed") and "after" in seen

    run(sim, exchange, act1, done1, db=db, out=out1)
    assert not out1.timed_out, out1.notes
    s = out1.strategy
    assert seen["start"] == 0.0 and seen["close"] is None
    assert out1.statuses(s.orders["sell"].ref) == ["Submitted", "Rejected"]
    reason = out1.last(s.orders["sell"].ref).reason
    assert "more than this bot holds" in reason and "broker.adopt_holdings" in reason, reason
    ex = {o["client_id"]: o for o in sim.orders(exchange)}
    assert len(ex) == 1  # the refused sell never left
    bought = ex[out1.last(s.orders["buy"].ref).client_id]
    own = 0.01 - bought["fee"]  # the fee is charged in BTC on a buy
    assert seen["after"] == pytest.approx(own, abs=1e-12)
    assert _btc(sim, exchange) == pytest.approx(1.0 + own, abs=1e-8)
    # the dashboard shows both: the account's holdings and the bot's position
    st = out1.broker.status()
    assert st.positions == {SYMBOL: pytest.approx(own, abs=1e-12)}
    assert st.balances["BTC"] == pytest.approx(1.0 + own, abs=1e-8)
    assert _dump(db)["positions"][0]["size"] == pytest.approx(own, abs=1e-12)

    # a restart: the position is the bot's own, from the orders database
    out2 = Outcome()

    def act2(s: Any, n: int) -> None:
        if n == 1:
            seen["restart"] = s.position.size
            s.orders["too_much"] = s.sell(size=own * 2)
            s.orders["close"] = s.close()  # sells exactly what the bot bought

    def done2(s: Any) -> bool:
        return has(out2, lambda st: st.orders.get("close"), "Completed") and \
            has(out2, lambda st: st.orders.get("too_much"), "Rejected")

    run(sim, exchange, act2, done2, db=db, out=out2)
    assert not out2.timed_out, out2.notes
    s = out2.strategy
    assert seen["restart"] == pytest.approx(own, abs=1e-12)
    assert out2.statuses(s.orders["close"].ref) == ["Submitted", "Accepted", "Completed"]
    assert out2.last(s.orders["close"].ref).size == pytest.approx(-own, abs=1e-12)
    assert s.position.size == pytest.approx(0.0, abs=1e-12)
    assert _btc(sim, exchange) == pytest.approx(1.0, abs=1e-8)  # the savings are untouched


@pytest.mark.parametrize("exchange", ["binance", "okx"])
def test_adopt_holdings_lets_the_bot_trade_what_the_account_holds(sim_factory: Any, tmp_path: Path,
                                                                 exchange: str) -> None:
    sim = sim_factory(exchanges=(exchange,), balances=FUNDED)
    out = Outcome()
    seen: dict[str, float] = {}

    def act(s: Any, n: int) -> None:
        if n == 1:
            seen["start"] = s.position.size
            s.orders["sell"] = s.sell(size=0.5)

    def done(s: Any) -> bool:
        return has(out, lambda st: st.orders.get("sell"), "Completed")

    run(sim, exchange, act, done, db=tmp_path / "o.sqlite", out=out, broker_kw=ADOPT)
    assert not out.timed_out, out.notes
    assert seen["start"] == 1.0
    assert out.strategy.position.size == pytest.approx(0.5, abs=1e-12)
    assert _btc(sim, exchange) == pytest.approx(0.5, abs=1e-8)
    row = _dump(tmp_path / "o.sqlite")["positions"][0]
    assert row["adopted"] == 1.0 and row["size"] == pytest.approx(0.5, abs=1e-12)
    assert row["price"] > 0  # adopted at the last price


def test_adopted_holdings_are_adopted_once_and_fills_made_while_down_count_once(
        sim_factory: Any, tmp_path: Path) -> None:
    """A resting order fills while the bot is down: the next start reads that fill into the
    position once, and does not adopt the account's balance (which holds it already) again."""
    sim = sim_factory(exchanges=("binance",), balances=FUNDED, check_timestamps=False,
                      liquidity=float("inf"))
    db = tmp_path / "o.sqlite"
    plan: dict[str, Any] = {}
    out1 = Outcome()

    def act1(s: Any, n: int) -> None:
        if n == 1:
            p = cross_plan(sim.model, SYMBOL, sim.now_ms())
            plan.update(price=p.price, when=p.when_ms)
            fn = s.buy if p.side == "buy" else s.sell
            s.orders["cross"] = fn(size=0.1, price=p.price, exectype=bt.Order.Limit)

    run(sim, "binance", act1, lambda s: has(out1, lambda st: st.orders.get("cross"), "Accepted"),
        db=db, out=out1, broker_kw=ADOPT)
    assert not out1.timed_out, out1.notes
    gap = plan["when"] + 2000 - sim.now_ms()  # the bot is down: the order fills
    if gap > 0:
        sim.sim.clock_offset_ms += gap
    # in full at the cross (unlimited liquidity): the account is read after the whole fill,
    # not between two parts of it (with the default liquidity, about one plan in a hundred
    # fills in parts over seconds, or minutes)
    assert [o["status"] for o in sim.orders("binance")] == ["filled"], sim.orders("binance")
    held = _btc(sim, "binance")
    assert abs(held - 1.0) > 0.09
    out2 = Outcome()
    seen: dict[str, float] = {}

    def act2(s: Any, n: int) -> None:
        seen.setdefault("start", s.position.size)

    def done2(s: Any) -> bool:
        return any(n.status == "Completed" for n in out2.notes) and "start" in seen

    run(sim, "binance", act2, done2, db=db, out=out2, broker_kw=ADOPT)
    assert not out2.timed_out, out2.notes
    assert out2.strategy.position.size == pytest.approx(held, abs=1e-8)  # = the account's
    row = _dump(db)["positions"][0]
    assert row["adopted"] == 1.0 and row["size"] == pytest.approx(held, abs=1e-8)


def test_an_order_filling_between_the_start_and_the_adoption_counts_once(
        sim_factory: Any, tmp_path: Path, monkeypatch: Any) -> None:
    """A buy of an earlier run is still open when the next start reads it, and fills before
    ``broker.adopt_holdings`` reads the balance (forced: the exchange's clock jumps past the
    crossing right before the adoption). The balance holds the fill: the position must count
    it once (the savings adopted, plus the fill), not adopt it and add it again."""
    from btccxt_cli.bt import ordersync

    sim = sim_factory(exchanges=("binance",), balances=FUNDED, check_timestamps=False,
                      liquidity=float("inf"))
    db = tmp_path / "o.sqlite"
    plan = cross_plan(sim.model, SYMBOL, sim.now_ms(), quiet_s=60)  # rests a minute at least
    while plan.side != "buy":  # a buy: the first run does not adopt, so it may not sell
        sim.sim.clock_offset_ms += 60_000
        plan = cross_plan(sim.model, SYMBOL, sim.now_ms(), quiet_s=60)
    out1 = Outcome()

    def act1(s: Any, n: int) -> None:
        if n == 1:
            s.orders["buy"] = s.buy(size=0.1, price=plan.price, exectype=bt.Order.Limit)

    run(sim, "binance", act1, lambda s: has(out1, lambda st: st.orders.get("buy"), "Accepted"),
        db=db, out=out1)
    assert not out1.timed_out, out1.notes

    real = ordersync.adopt_holdings
    seen: dict[str, Any] = {}

    async def fill_first(sync: Any) -> Any:  # after the start read the order, before the balance
        seen["before"] = [o["status"] for o in sim.orders("binance")]
        sim.sim.clock_offset_ms += max(0, plan.when_ms + 2000 - sim.now_ms())
        seen["after"] = [o["status"] for o in sim.orders("binance")]
        return await real(sync)

    monkeypatch.setattr(ordersync, "adopt_holdings", fill_first)
    out2 = Outcome()
    run(sim, "binance", lambda s, n: None, lambda s: any(n.status == "Completed" for n in out2.notes),
        db=db, out=out2, broker_kw=ADOPT)
    assert not out2.timed_out, out2.notes
    assert seen == {"before": ["new"], "after": ["filled"]}  # the fill fell in between
    held = _btc(sim, "binance")
    assert held == pytest.approx(1.0 + 0.1 * 0.999, abs=1e-8)  # the fee is charged in BTC
    assert out2.strategy.position.size == pytest.approx(held, abs=1e-8)  # not 1.0 + 2 fills
    row = _dump(db)["positions"][0]
    assert row["size"] == pytest.approx(held, abs=1e-8)
    assert row["adopted"] == pytest.approx(1.0, abs=1e-8)  # the savings, not the fill


# --------------------------------------------------------------------------- issue 19 item 2
@pytest.mark.parametrize("exchange", ["binance", "okx"])
def test_buying_again_on_completed_cannot_breach_max_position(sim_factory: Any, tmp_path: Path,
                                                              exchange: str) -> None:
    """Every REST answer 150 ms late: the balance read after a fill lands well after the
    doorbell woke cerebro with ``Completed``. The cap must see the fill at once."""
    sim = sim_factory(exchanges=(exchange,), balances={"USDT": 10_000.0})
    sim.rest_delay(exchange, 150)
    out = Outcome()
    seen: dict[str, Any] = {"buys": []}

    def act(s: Any, n: int) -> None:
        if n == 1:
            seen["buys"].append(s.buy(size=0.01))

    def on_order(s: Any, order: Any) -> None:
        if order.getstatusname() == "Completed" and len(seen["buys"]) == 1:
            seen["at_completed"] = s.position.size
            seen["buys"].append(s.buy(size=0.01))  # 0.02 in all: above the cap

    def done(s: Any) -> bool:
        return len(seen["buys"]) == 2 and any(
            n.ref == seen["buys"][1].ref and n.status in ("Rejected", "Completed") for n in out.notes)

    run(sim, exchange, act, done, db=tmp_path / "o.sqlite", out=out, on_order=on_order,
        broker_kw={"limits": OrderLimits(max_position={SYMBOL: 0.015})})
    assert not out.timed_out, out.notes
    first, second = seen["buys"]
    assert out.statuses(first.ref) == ["Submitted", "Accepted", "Completed"]
    assert seen["at_completed"] > 0.009  # the fill is in the position when Completed arrives
    assert out.statuses(second.ref) == ["Submitted", "Rejected"]
    assert "max_position[BTC/USDT] = 0.015" in out.last(second.ref).reason
    assert len(sim.orders(exchange)) == 1
    assert _btc(sim, exchange) <= 0.015


def test_two_quick_buys_count_each_other_against_the_cap(sim_factory: Any, tmp_path: Path) -> None:
    sim = sim_factory(exchanges=("binance",), balances={"USDT": 10_000.0})
    out = Outcome()

    def act(s: Any, n: int) -> None:
        if n == 1:  # both before either is answered
            s.orders["a"] = s.buy(size=0.01)
            s.orders["b"] = s.buy(size=0.01)

    def done(s: Any) -> bool:
        return has(out, lambda st: st.orders.get("a"), "Completed") and \
            has(out, lambda st: st.orders.get("b"), "Rejected")

    run(sim, "binance", act, done, db=tmp_path / "o.sqlite", out=out,
        broker_kw={"limits": OrderLimits(max_position={SYMBOL: 0.015})})
    assert not out.timed_out, out.notes
    assert "open buys 0.01" in out.last(out.strategy.orders["b"].ref).reason
    assert len(sim.orders("binance")) == 1


# --------------------------------------------------------------------------- issue 19 item 1
class _Crash(Exception):
    pass


@pytest.mark.parametrize("exchange", ["binance", "okx"])
def test_a_fill_of_a_closed_order_is_told_after_a_crash(sim_factory: Any, tmp_path: Path,
                                                        exchange: str) -> None:
    """The strategy dies while it is told of the fill of a market order (closed in the refresh
    that stored the fill): the next start tells it again, once."""
    sim = sim_factory(exchanges=(exchange,), balances={"USDT": 10_000.0})
    db = tmp_path / "o.sqlite"
    out1 = Outcome()

    def act(s: Any, n: int) -> None:
        if n == 1:
            s.orders["m"] = s.buy(size=0.01)

    def crash(s: Any, order: Any) -> None:
        if order.getstatusname() == "Completed":
            raise _Crash("the process dies here")

    with pytest.raises(_Crash):
        run(sim, exchange, act, lambda s: False, db=db, out=out1, on_order=crash)
    cid = out1.last(out1.strategy.orders["m"].ref).client_id
    dump = _dump(db)
    assert [(o["client_id"], o["status"]) for o in dump["orders"]] == [(cid, "closed")]
    assert [f["delivered"] for f in dump["fills"]] == [0]  # it never reached the strategy

    out2 = Outcome()

    def done2(s: Any) -> bool:
        return any(n.client_id == cid and n.status == "Completed" for n in out2.notes)

    run(sim, exchange, lambda s, n: None, done2, db=db, out=out2)
    assert not out2.timed_out, out2.notes
    mine = [n for n in out2.notes if n.client_id == cid]
    assert [n.status for n in mine] == ["Accepted", "Completed"]
    ex = sim.orders(exchange)
    assert len(ex) == 1 and mine[-1].size == pytest.approx(ex[0]["filled"])
    assert [f["delivered"] for f in _dump(db)["fills"]] == [1]
    assert out2.broker.open_orders() == []


def test_a_cancel_without_fills_is_told_after_a_crash(sim_factory: Any, tmp_path: Path) -> None:
    """The final status of an order with no fill is tracked too: ``Canceled`` told on the
    next start if the strategy died on it."""
    sim = sim_factory(exchanges=("binance",), balances={"USDT": 10_000.0})
    db = tmp_path / "o.sqlite"
    out1 = Outcome()

    def act(s: Any, n: int) -> None:
        if n == 1:
            s.orders["far"] = s.buy(size=0.01, price=round(s.data.close[0] * 0.5, 1),
                                    exectype=bt.Order.Limit)

    def on_order(s: Any, order: Any) -> None:
        if order.getstatusname() == "Accepted":
            s.cancel(order)
        elif order.getstatusname() == "Canceled":
            raise _Crash("the process dies here")

    with pytest.raises(_Crash):
        run(sim, "binance", act, lambda s: False, db=db, out=out1, on_order=on_order)
    cid = out1.last(out1.strategy.orders["far"].ref).client_id
    out2 = Outcome()

    def done2(s: Any) -> bool:
        return any(n.client_id == cid and n.status == "Canceled" for n in out2.notes)

    run(sim, "binance", lambda s, n: None, done2, db=db, out=out2)
    assert not out2.timed_out, out2.notes
    assert [n.status for n in out2.notes if n.client_id == cid] == ["Accepted", "Canceled"]
    assert [o["notified"] for o in _dump(db)["orders"]] == [1]
    out3 = Outcome()  # told: never again
    run(sim, "binance", lambda s, n: None, lambda s: s.n >= 2, db=db, out=out3)
    assert out3.notes == []


@pytest.mark.parametrize("exchange", ["binance", "okx"])
def test_a_stop_right_after_an_order_still_tells_its_fill(sim_factory: Any, tmp_path: Path,
                                                          exchange: str) -> None:
    """Ctrl-C right after a market order: the stop lets the worker finish the create and read
    the fill, and the strategy gets ``Completed`` before the run ends."""
    sim = sim_factory(exchanges=(exchange,), balances={"USDT": 10_000.0})
    db = tmp_path / "o.sqlite"
    out = Outcome()

    def act(s: Any, n: int) -> None:
        if n == 1:
            s.orders["m"] = s.buy(size=0.01)
            s.env.runstop()  # as Ctrl-C does

    run(sim, exchange, act, lambda s: False, db=db, out=out)
    assert not out.timed_out
    o = out.strategy.orders["m"]
    assert out.statuses(o.ref) == ["Submitted", "Accepted", "Completed"]
    assert out.last(o.ref).size == pytest.approx(0.01)
    dump = _dump(db)
    assert [o["status"] for o in dump["orders"]] == ["closed"]
    assert [f["delivered"] for f in dump["fills"]] == [1]


# --------------------------------------------------------------------------- issue 19 item 5
#: three part fills of a large order in 0.1 lots whose float sum is below the exchange's total
#: by more than any fixed epsilon (the exchange sums in whole lots)
PARTS = (21_805_051.9, 22_343_313.4, 9_388_264.3)
TOTAL = 53_536_629.6


def test_large_fill_sums_in_coarse_lots_still_end_the_order(sim_factory: Any, tmp_path: Path) -> None:
    assert sum(PARTS) + 1e-9 < TOTAL  # what an absolute epsilon would never accept
    symbol = "DOT/USDT"  # 0.1 lots in the simulator
    sim = sim_factory(exchanges=("binance",), balances={"USDT": 10_000.0})
    db = tmp_path / "o.sqlite"
    account = account_id("binance", KEYS["apiKey"])
    store = OrderStore(db)
    # an order of an earlier run that filled in three parts, then the exchange forgot it
    rec = OrderRecord(client_id="bxdead000100001", account=account, run_id="dead0001", seq=1,
                      symbol=symbol, side="buy", type="limit", amount=TOTAL, price=7.0,
                      stop_price=None, status="open", created_ms=1, updated_ms=1,
                      exchange_id="987654321", filled=TOTAL)
    store.start_run("dead0001", account, 1)
    store.insert_order(rec)
    for i, part in enumerate(PARTS):
        store.add_fill(FillRecord(account, f"t{i}", rec.client_id, symbol, "buy", 7.0, part, 0.0,
                                  "DOT", 1_000 + i))
    store.close()
    out = Outcome()

    def done(s: Any) -> bool:
        return any(n.client_id == rec.client_id and n.status == "Canceled" for n in out.notes)

    # given up after lookups that find nothing for ambiguous_timeout (issue 19 item 4)
    run(sim, "binance", lambda s, n: None, done, db=db, out=out, symbol=symbol,
        broker_kw={"ambiguous_timeout": 1.0})
    assert not out.timed_out, out.notes
    mine = [n for n in out.notes if n.client_id == rec.client_id]
    # the stored fills are told at start, the verdict once the lookups gave up
    assert [n.status for n in mine] == ["Accepted", "Partial", "Canceled"]
    assert mine[-1].size == pytest.approx(TOTAL)
    assert out.broker.open_orders() == []


def test_the_worker_ends_an_order_whose_fills_sum_a_little_short(sim_factory: Any,
                                                                 tmp_path: Path) -> None:
    """The order worker's side of the same comparison: a closed order whose stored fills sum
    just below its filled amount is final, not read again and again."""
    from btccxt_cli.bt.ordersync import OrderSync, _Tracked

    symbol = "DOT/USDT"
    sim = sim_factory(exchanges=("binance",), balances={"USDT": 10_000.0})
    store = CCXTStore("binance", sim_url=sim.url("binance"), config=dict(KEYS))
    db = OrderStore(tmp_path / "o.sqlite")
    account = account_id("binance", KEYS["apiKey"])
    events: list[Any] = []
    sync = OrderSync(store, db, account, on_events=events.extend, updates="poll",
                     poll_interval=60.0)
    try:
        store.run_async(sync.start()).result(20)
        rec = OrderRecord(client_id="bxdead000200001", account=account, run_id="dead0002", seq=1,
                          symbol=symbol, side="buy", type="limit", amount=TOTAL, price=7.0,
                          stop_price=None, status="open", created_ms=1, updated_ms=1,
                          exchange_id="987654321", filled=0.0)
        db.insert_order(rec)
        t = _Tracked(rec)
        for i, part in enumerate(PARTS):
            t.add(FillRecord(account, f"t{i}", rec.client_id, symbol, "buy", 7.0, part, 0.0,
                             "DOT", 1_000 + i))
        sync.tracked[rec.client_id] = t
        pushed = {"id": "987654321", "status": "closed", "filled": TOTAL, "cost": TOTAL * 7.0,
                  "fee": None}
        store.run_async(sync._refresh(t, pushed)).result(10)
        store.run_async(sync._db(lambda: None)).result(10)  # the queued writes are stored
        assert rec.client_id not in sync.tracked  # final: not looked up again
        assert db.get_order(rec.client_id).status == "closed"
        assert sim.stats("binance")["rest"].get("/api/v3/myTrades", 0) == 0  # no fill re-read
        from btccxt_cli.bt.ordersync import amount_tolerance

        ex = store.run_async(store.async_exchange()).result(10)
        assert amount_tolerance(ex.markets[symbol], ex.precisionMode) == pytest.approx(0.05)
    finally:
        store.run_async(sync.stop()).result(5)
        store.stop()
        db.close()


# --------------------------------------------------------------------------- minor
class _EveryCycle(Scripted):
    """Acts before every data has a bar too (backtrader calls ``prenext`` then)."""

    def prenext(self) -> None:
        self.next()


def test_a_fill_waiting_for_its_datas_first_bar_holds_back_only_its_symbol(
        sim_factory: Any, tmp_path: Path) -> None:
    """An earlier run's ETH/USDT order has a fill never told, and the ETH data gets no bar
    (daily bars, none before the day closes): BTC/USDT's notifications still go through."""
    sim = sim_factory(exchanges=("binance",), balances={"USDT": 10_000.0})
    db = tmp_path / "o.sqlite"
    account = account_id("binance", KEYS["apiKey"])
    store = OrderStore(db)
    eth = OrderRecord(client_id="bxdead000300001", account=account, run_id="dead0003", seq=1,
                      symbol="ETH/USDT", side="buy", type="limit", amount=0.5, price=3000.0,
                      stop_price=None, status="open", created_ms=1, updated_ms=1,
                      exchange_id="987654323", filled=0.5)
    store.start_run("dead0003", account, 1)
    store.insert_order(eth)
    store.add_fill(FillRecord(account, "e1", eth.client_id, "ETH/USDT", "buy", 3000.0, 0.5, 0.0,
                              "ETH", 1_000))
    store.close()
    out = Outcome()

    def act(s: Any, n: int) -> None:
        if n == 1:
            s.orders["btc"] = s.buy(size=0.01)

    def done(s: Any) -> bool:
        return has(out, lambda st: st.orders.get("btc"), "Completed")

    daily = {"timeframe": bt.TimeFrame.Days, "compression": 1, "backfill_start": False}
    run(sim, "binance", act, done, db=db, out=out, more_data=(("ETH/USDT", daily),),
        strategy=_EveryCycle)
    assert not out.timed_out, out.notes
    assert out.statuses(out.strategy.orders["btc"].ref) == ["Submitted", "Accepted", "Completed"]
    assert [n.status for n in out.notes if n.client_id == eth.client_id] == ["Accepted"]
    fills = {f["trade_id"]: f["delivered"] for f in _dump(db)["fills"]}
    assert fills.pop("e1") == 0  # still waits for its bar: told on a later start
    assert list(fills.values()) == [1]


def test_a_closed_order_whose_fills_were_never_read_is_read_on_start(sim_factory: Any,
                                                                     tmp_path: Path) -> None:
    """The run ended after the order was stored ``closed`` but before its fills could be read
    (the read failed): the next start reads them, into the position and to the strategy."""
    sim = sim_factory(exchanges=("binance",), balances={"USDT": 10_000.0})
    db = tmp_path / "o.sqlite"
    account = account_id("binance", KEYS["apiKey"])
    cid = "bxdead000400001"
    store = CCXTStore("binance", sim_url=sim.url("binance"), config=dict(KEYS))
    try:
        placed = store.sync_exchange().create_order(SYMBOL, "market", "buy", 0.01, None,
                                                    {"clientOrderId": cid})
    finally:
        store.stop()
    orders = OrderStore(db)
    orders.start_run("dead0004", account, 1)
    orders.insert_order(OrderRecord(client_id=cid, account=account, run_id="dead0004", seq=1,
                                    symbol=SYMBOL, side="buy", type="market", amount=0.01,
                                    price=None, stop_price=None, status="closed", created_ms=1,
                                    updated_ms=1, exchange_id=str(placed["id"]), filled=0.01))
    orders.close()
    out = Outcome()

    def done(s: Any) -> bool:
        return any(n.client_id == cid and n.status == "Completed" for n in out.notes)

    run(sim, "binance", lambda s, n: None, done, db=db, out=out)
    assert not out.timed_out, out.notes
    assert [n.status for n in out.notes if n.client_id == cid] == ["Accepted", "Completed"]
    fee = sim.orders("binance")[0]["fee"]
    assert out.strategy.position.size == pytest.approx(0.01 - fee, abs=1e-12)
    assert [f["delivered"] for f in _dump(db)["fills"]] == [1]
