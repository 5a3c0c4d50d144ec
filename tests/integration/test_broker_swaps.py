"""CCXTBroker on linear swaps (okx SWAP, binance USD-M) against the simulator, through cerebro,
real ccxt signing and real sockets: long, short, reduce-only closes, a flip, leverage and margin
mode set at start, funding told and counted, a liquidation, a restart with an open position,
and the bot never trading against a position it did not open."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import backtrader as bt
import pytest

from btccxt_cli.exchange.factory import make_exchange
from tests.integration.test_broker import KEYS, Outcome, Scripted, ended, final_ref, run
from tests.integration.test_broker_stops import _rows

pytestmark = pytest.mark.live

SWAP = "BTC/USDT:USDT"


class Noticed(Scripted):
    """``Scripted`` that also keeps every ``notify_store`` notice."""

    def __init__(self) -> None:
        super().__init__()
        self.notices: list[tuple[str, dict[str, Any]]] = []

    def notify_store(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self.notices.append((msg, kwargs))


def swap_sim(sim_factory: Any, exchange: str, funding_s: float = 8 * 3600, **kw: Any) -> Any:
    return sim_factory(exchanges=(exchange,), balances={"USDT": 10_000.0},
                       funding_interval_s=funding_s, **kw)


def data_kw(exchange: str) -> dict[str, Any]:
    # binance futures klines are served by REST only (the simulator has no futures kline stream)
    return {"use_websocket": exchange == "okx"}


def client(sim: Any, exchange: str) -> Any:
    """A signed ccxt client on the simulator's clock (a test may have moved it ahead)."""
    ex = make_exchange(exchange, sim_url=sim.url(exchange), config=KEYS)
    ex.load_markets()
    # signed on the simulator's clock: a test that moved it a minute ahead is past okx's 30 s
    # and binance's recvWindow (okx's CI failures when the path crossed the stop late)
    ex.load_time_difference()
    return ex


def exchange_size(ex: Any) -> float:
    """The account's position in SWAP in base units (signed)."""
    total = 0.0
    for p in ex.fetch_positions([SWAP]):
        size = float(p["contracts"]) * float(p["contractSize"])
        total += -size if p["side"] == "short" else size
    return round(total, 10)


def done_ref(out: Outcome, key: str) -> bool:
    s = out.strategy
    o = s.orders.get(key) if s is not None else None
    return o is not None and "Completed" in out.statuses(o.ref)


@pytest.mark.parametrize("exchange", ["okx", "binance"])
def test_long_reduce_only_close_short_and_flip(sim_factory: Any, tmp_path: Path, exchange: str) -> None:
    sim = swap_sim(sim_factory, exchange)
    out = Outcome()
    seen: dict[str, float] = {}

    def act(s: Any, n: int) -> None:
        o = s.orders
        if "long" not in o:
            o["long"] = s.buy(size=0.03)
        elif done_ref(out, "long") and "close" not in o:
            seen["after_long"] = s.getposition().size
            o["close"] = s.sell(size=0.03)
        elif done_ref(out, "close") and "short" not in o:
            seen["after_close"] = s.getposition().size
            o["short"] = s.sell(size=0.02)
        elif done_ref(out, "short") and "flip" not in o:
            seen["after_short"] = s.getposition().size
            o["flip"] = s.buy(size=0.05)

    def done(s: Any) -> bool:
        return done_ref(out, "flip")

    run(sim, exchange, act, done, db=tmp_path / "o.sqlite", out=out, symbol=SWAP,
        data_kw=data_kw(exchange), broker_kw={"leverage": 3, "margin_mode": "isolated"}, timeout=40)
    assert not out.timed_out, out.notes
    s, br = out.strategy, out.broker
    assert seen == {"after_long": pytest.approx(0.03), "after_close": pytest.approx(0.0),
                    "after_short": pytest.approx(-0.02)}
    assert br.getposition(s.data).size == pytest.approx(0.03)
    # every fill the strategy was told, in base units
    for key, size in (("long", 0.03), ("close", -0.03), ("short", -0.02), ("flip", 0.05)):
        assert out.last(s.orders[key].ref).size == pytest.approx(size), key
    ex = client(sim, exchange)
    assert exchange_size(ex) == pytest.approx(0.03)
    pos = ex.fetch_positions([SWAP])[0]
    assert pos["marginMode"] == "isolated"
    if exchange == "okx":
        assert pos["leverage"] == 3
    by_cid = {o["client_id"]: o for o in sim.orders(exchange)}
    flags = {key: by_cid[out.last(s.orders[key].ref).client_id].get("reduce_only")
             for key in ("long", "close", "short", "flip")}
    assert flags == {"long": False, "close": True, "short": False, "flip": False}
    # the broker panel's row is the bot's position
    (row,) = br.status().derivs
    assert (row.symbol, row.side, row.leverage, row.margin_mode) == (SWAP, "long", 3.0, "isolated")
    assert row.size == pytest.approx(0.03) and row.liquidation is not None


def once(key: str, side: str, size: float) -> Any:
    """An ``act`` that places one order (on the first live bar) and nothing after it."""
    def act(s: Any, n: int) -> None:
        if key not in s.orders:
            s.orders[key] = (s.buy if side == "buy" else s.sell)(size=size)
    return act


def engine_price(sim: Any, exchange: str, t_ms: int) -> float:
    return float(sim.sim.server(exchange).engine.price(SWAP, t_ms))


@pytest.mark.long
@pytest.mark.parametrize("exchange", ["okx", "binance"])
def test_restart_keeps_the_position_and_a_liquidation_while_down_is_told(
        sim_factory: Any, tmp_path: Path, exchange: str) -> None:
    sim = swap_sim(sim_factory, exchange, check_timestamps=False)  # the test jumps its clock
    db = tmp_path / "o.sqlite"
    kw = {"leverage": 100, "margin_mode": "isolated"}
    first = run(sim, exchange, once("long", "buy", 0.1),
                lambda s: done_ref(first_out, "long"), db=db, symbol=SWAP, out=(first_out := Outcome()),
                data_kw=data_kw(exchange), broker_kw=kw, timeout=30)
    assert not first.timed_out, first.notes
    # a restart: the bot's position is its own fills' (kept in the orders database)
    seen: dict[str, float] = {}

    def act(s: Any, n: int) -> None:
        seen.setdefault("at_restart", s.getposition().size)

    second = run(sim, exchange, act, lambda s: "at_restart" in seen, db=db, symbol=SWAP,
                 data_kw=data_kw(exchange), broker_kw=kw, timeout=30)
    assert not second.timed_out
    assert seen["at_restart"] == pytest.approx(0.1)
    # while no bot runs, the price falls to the liquidation price: the exchange closes it
    ex = client(sim, exchange)
    (pos,) = ex.fetch_positions([SWAP])
    liq = float(pos["liquidationPrice"])
    t = sim.now_ms() - sim.now_ms() % 1000
    start = t
    # (the path from now may stay above it for a day: look up to ten days on, in 10 s steps)
    while engine_price(sim, exchange, t) > liq:
        t += 10_000
        assert t - start < 10 * 86_400_000, "the price path never reached the liquidation price"
    sim.sim.clock_offset_ms += t + 2000 - sim.now_ms()
    assert ex.fetch_positions([SWAP]) == []
    def closed(s: Any) -> list[tuple[str, dict[str, Any]]]:  # (funding paid before it is told too)
        return [(m, i) for m, i in s.notices if m == "position_closed"]

    third = run(sim, exchange, lambda s, n: None, lambda s: bool(closed(s)), db=db, symbol=SWAP,
                data_kw=data_kw(exchange), broker_kw=kw, timeout=30, strategy=Noticed)
    assert not third.timed_out
    (msg, info), = closed(third.strategy)
    assert msg == "position_closed" and info["reason"] == "liquidation"
    assert (info["before"], info["after"], info["symbol"]) == (pytest.approx(0.1), 0.0, SWAP)
    assert info["data"] is third.strategy.data
    assert third.broker.getposition(third.strategy.data).size == 0.0
    # flat; a row stays only if funding was paid while down (the jump may pass a settlement)
    assert [r.size for r in third.broker.status().derivs] in ([], [0.0])


@pytest.mark.long
@pytest.mark.parametrize("exchange", ["okx", "binance"])
def test_funding_payments_are_told_once_and_shown(sim_factory: Any, tmp_path: Path,
                                                  exchange: str) -> None:
    sim = swap_sim(sim_factory, exchange, funding_s=2)  # a settlement every 2 s
    db = tmp_path / "o.sqlite"

    def done(s: Any) -> bool:
        return sum(1 for m, _ in s.notices if m == "funding") >= 2

    out = run(sim, exchange, once("long", "buy", 0.05), done, db=db, symbol=SWAP, data_kw=data_kw(exchange),
              broker_kw={"funding_interval": 0.2, "balance_interval": 0.2}, timeout=30,
              strategy=Noticed)
    assert not out.timed_out
    told = [info for m, info in out.strategy.notices if m == "funding"]
    paid = {str(r["id"]): r for r in client(sim, exchange).fetch_funding_history(SWAP)}
    # each payment the exchange made while the bot held the position, told once, as paid
    assert len({i["time_ms"] for i in told}) == len(told)
    for info in told:
        row = paid[info["id"]]
        assert info["amount"] == pytest.approx(row["amount"]) and info["currency"] == "USDT"
        assert info["data"] is out.strategy.data
    (row,) = out.broker.status().derivs
    # (payments read as the run stopped are counted, and their notices not yet handed over)
    late = [kw["amount"] for msg, _sym, kw in out.broker.swaps.notices if msg == "funding"]
    assert row.funding == pytest.approx(-sum(i["amount"] for i in told) - sum(late))
    # each read starts at the newest payment told, not at the run's start (an exchange pages
    # from there: binance's income read gives the first 100, so new ones would stop coming)
    assert out.broker.sync._funding_since >= max(i["time_ms"] for i in told)
    # the orders database holds each payment once: every one told, none the exchange did not pay
    import sqlite3

    with sqlite3.connect(db) as con:
        stored = [r[0] for r in con.execute("SELECT id FROM funding")]
    assert len(stored) == len(set(stored)) and set(stored) <= set(paid)
    assert {i["id"] for i in told} <= set(stored)


def test_the_bot_never_closes_a_position_it_did_not_open(sim_factory: Any, tmp_path: Path) -> None:
    sim = swap_sim(sim_factory, "okx")
    manual = client(sim, "okx")
    manual.set_leverage(1, SWAP, {"marginMode": "isolated"})
    # someone's long of 0.05 BTC, before the bot (isolated 1x: the settings the bot asks for)
    manual.create_order(SWAP, "market", "buy", 5, params={"marginMode": "isolated"})
    out = Outcome()

    def act(s: Any, n: int) -> None:
        o = s.orders
        if "short" not in o:
            o["short"] = s.sell(size=0.02)  # would close 0.02 of that long: refused
            o["long"] = s.buy(size=0.02)
        elif done_ref(out, "long") and "close" not in o:
            o["close"] = s.sell(size=0.02)  # the bot's own long: allowed, reduce-only

    out = run(sim, "okx", act, lambda s: done_ref(out, "close"), db=tmp_path / "o.sqlite",
              out=out, symbol=SWAP, data_kw=data_kw("okx"), timeout=30)
    assert not out.timed_out, out.notes
    s = out.strategy
    assert out.statuses(s.orders["short"].ref) == ["Submitted", "Rejected"]
    reason = out.last(s.orders["short"].ref).reason
    assert "long of 0.05 BTC this bot did not open" in reason and "adopt_holdings" in reason
    assert out.broker.getposition(s.data).size == pytest.approx(0.0)
    assert exchange_size(manual) == pytest.approx(0.05)  # untouched


def test_a_hedged_account_or_settings_blocked_by_a_position_refuse_the_start(sim_factory: Any,
                                                                            tmp_path: Path) -> None:
    from btccxt_cli.errors import BtccxtError

    sim = swap_sim(sim_factory, "okx")
    manual = client(sim, "okx")
    manual.set_position_mode(True)
    with pytest.raises(BtccxtError, match="hedge .*position mode.*switch the account to one-way"):
        run(sim, "okx", lambda s, n: None, lambda s: True, db=tmp_path / "a.sqlite", symbol=SWAP,
            data_kw=data_kw("okx"))
    manual.set_position_mode(False)
    manual.create_order(SWAP, "market", "buy", 1)  # a cross position: isolated cannot be set
    with pytest.raises(BtccxtError, match=r"setting BTC/USDT:USDT to 2x isolated failed.*59000"):
        run(sim, "okx", lambda s, n: None, lambda s: True, db=tmp_path / "b.sqlite", symbol=SWAP,
            data_kw=data_kw("okx"), broker_kw={"leverage": 2})


def test_an_order_right_after_a_fill_is_not_refused_for_a_position_the_exchange_read_missed(
        sim_factory: Any, tmp_path: Path) -> None:
    """The exchange's positions are read now and then (here: at start only); between two reads
    the bot's own fills move its ledger away from the last read. That difference is the bot's,
    not someone else's: growing a long right after a fill, or a short right after a flip, is
    sent (the order chaos soak on swaps found such orders refused as "against a position this
    bot did not open")."""
    sim = swap_sim(sim_factory, "okx")
    out = Outcome()

    def act(s: Any, n: int) -> None:
        o = s.orders
        if "long" not in o:
            o["long"] = s.buy(size=0.03)
        elif done_ref(out, "long") and "more" not in o:
            o["more"] = s.buy(size=0.02)  # the last read saw no position: not a foreign short
        elif done_ref(out, "more") and "flip" not in o:
            o["flip"] = s.sell(size=0.08)
        elif done_ref(out, "flip") and "deeper" not in o:
            o["deeper"] = s.sell(size=0.01)  # the bot's short of 0.03: not against a foreign long

    run(sim, "okx", act, lambda s: final_ref(out, "deeper") or any(
        final_ref(out, k) and not done_ref(out, k) for k in s.orders), db=tmp_path / "o.sqlite",
        out=out, symbol=SWAP, data_kw=data_kw("okx"),
        broker_kw={"balance_interval": 600, "reconcile_interval": 600}, timeout=40)
    assert not out.timed_out, out.notes
    s = out.strategy
    for key in ("long", "more", "flip", "deeper"):
        assert out.statuses(s.orders[key].ref)[-1] == "Completed", (key, out.last(s.orders[key].ref))
    assert out.broker.getposition(s.data).size == pytest.approx(-0.04)
    assert exchange_size(client(sim, "okx")) == pytest.approx(-0.04)


def test_after_a_restart_with_a_live_order_an_order_right_after_a_fill_is_not_refused(
        sim_factory: Any, tmp_path: Path) -> None:
    """The read at start knows the foreign part though an adopted order is live (it was read
    just before); later reads while it is live keep that part, whatever the bot's fills do."""
    sim = swap_sim(sim_factory, "okx")
    db = tmp_path / "o.sqlite"
    kw = {"balance_interval": 600, "reconcile_interval": 600}
    first = Outcome()

    def place(s: Any, n: int) -> None:
        if "rest" not in s.orders:  # far below the price: rests, and the next run adopts it
            s.orders["rest"] = s.buy(size=0.01, price=round(float(s.data.close[0]) * 0.8, 1),
                                     exectype=bt.Order.Limit)
            s.orders["long"] = s.buy(size=0.03)

    run(sim, "okx", place, lambda s: done_ref(first, "long"), db=db, out=first, symbol=SWAP,
        data_kw=data_kw("okx"), broker_kw=kw, timeout=30)
    assert not first.timed_out, first.notes
    out = Outcome()

    def act(s: Any, n: int) -> None:
        o = s.orders
        if "more" not in o:
            o["more"] = s.buy(size=0.02)
        elif done_ref(out, "more") and "again" not in o:
            o["again"] = s.buy(size=0.01)  # the bot's 0.05 now, the start read saw 0.03: its own

    run(sim, "okx", act, lambda s: final_ref(out, "again") or (
        final_ref(out, "more") and not done_ref(out, "more")), db=db, out=out, symbol=SWAP,
        data_kw=data_kw("okx"), broker_kw=kw, timeout=30)
    assert not out.timed_out, out.notes
    s = out.strategy
    for key in ("more", "again"):
        assert out.statuses(s.orders[key].ref)[-1] == "Completed", (key, out.last(s.orders[key].ref))
    assert out.broker.getposition(s.data).size == pytest.approx(0.06)
    assert exchange_size(client(sim, "okx")) == pytest.approx(0.06)
    assert [o["status"] for o in sim.orders("okx") if o["price"]] == ["new"]  # adopted, live


def test_orders_go_out_while_every_poll_takes_longer_than_its_interval(sim_factory: Any,
                                                                       tmp_path: Path) -> None:
    """Polls always due (each reads balances, positions and funding: slower than 0.05 s) must
    not starve the strategy's orders: the worker takes queued commands first."""
    sim = swap_sim(sim_factory, "binance")
    out = Outcome()
    result = run(sim, "binance", once("long", "buy", 0.01), lambda s: done_ref(out, "long"),
                 db=tmp_path / "o.sqlite", out=out, symbol=SWAP, data_kw=data_kw("binance"),
                 broker_kw={"poll_interval": 0.05, "balance_interval": 0.05,
                            "funding_interval": 0.05}, timeout=20)
    assert not result.timed_out, result.notes
    assert result.broker.sync.polls >= 1  # (before the fix: Submitted, then nothing)


@pytest.mark.long
def test_funding_is_read_while_the_strategy_trades_every_bar(sim_factory: Any, tmp_path: Path) -> None:
    """Each fill reads balances at once, which put the next periodic read (and funding with it)
    off for ever while a strategy traded every few seconds: funding has its own timer."""
    sim = swap_sim(sim_factory, "okx", funding_s=1)

    def act(s: Any, n: int) -> None:
        if n == 1:
            s.buy(size=0.05)
        else:
            (s.buy if n % 2 else s.sell)(size=0.01)

    out = run(sim, "okx", act, lambda s: sum(1 for m, _ in s.notices if m == "funding") >= 2 or s.n > 25,
              db=tmp_path / "o.sqlite", symbol=SWAP, data_kw=data_kw("okx"),
              broker_kw={"funding_interval": 0.5, "balance_interval": 5.0}, timeout=40,
              strategy=Noticed)
    assert not out.timed_out
    assert sum(1 for m, _ in out.strategy.notices if m == "funding") >= 2, out.strategy.n


def _guarded(s: Any, sim: Any, plan: dict[str, Any], size: float) -> None:
    """Open the position a stop-loss will guard: a long when the price path falls next, a
    short when it rises (``plan``: the stop's side, price and the time the path reaches it)."""
    from btccxt_cli.sim.plans import cross_plan

    cp = cross_plan(sim.model, SWAP, sim.now_ms(), quiet_s=8.0)  # room for a slow CI
    plan.update(side="sell" if cp.side == "buy" else "buy", stop=cp.price, when=cp.when_ms)
    s.orders["open"] = (s.buy if plan["side"] == "sell" else s.sell)(size=size)


def _jump(sim: Any, plan: dict[str, Any]) -> None:
    """Move the simulator's clock past the second its path reaches the stop."""
    plan["jumped"] = True
    gap = plan["when"] + 2000 - sim.now_ms()
    if gap > 0:
        sim.sim.clock_offset_ms += gap


def _guard(s: Any, plan: dict[str, Any], size: float, kind: str = "stop") -> None:
    """The stop-loss of the position ``_guarded`` opened (a stop-limit's limit 1 % beyond)."""
    fn = s.sell if plan["side"] == "sell" else s.buy
    if kind == "stop":
        s.orders["stop"] = fn(size=size, price=plan["stop"], exectype=bt.Order.Stop)
    else:
        plan["limit"] = round(plan["stop"] * (0.99 if plan["side"] == "sell" else 1.01), 1)
        s.orders["stop"] = fn(size=size, price=plan["stop"], plimit=plan["limit"],
                              exectype=bt.Order.StopLimit)


def _run_3x(sim: Any, exchange: str, act: Any, done: Any, db: Path, out: Outcome) -> None:
    """A run on the swap at 3x isolated."""
    run(sim, exchange, act, done, db=db, out=out, symbol=SWAP, data_kw=data_kw(exchange),
        broker_kw={"leverage": 3, "margin_mode": "isolated"}, timeout=40)


@pytest.mark.parametrize("exchange", ["okx", "binance"])
@pytest.mark.parametrize("kind", ["stop", "stop_limit"])
def test_a_swap_stop_loss_rests_then_closes_the_position_it_guards(
        sim_factory: Any, tmp_path: Path, kind: str, exchange: str) -> None:
    """A position, then a stop that closes it (reduce-only): an algo order on the swap (okx:
    in contracts; binance: the USD-M Algo Service), resting until the clock moves the price
    path through the stop; then the order the exchange placed for it fills, the strategy is
    told ``Completed`` once in base units, and the exchange and the bot are flat."""
    sim = swap_sim(sim_factory, exchange)
    out = Outcome()
    plan: dict[str, Any] = {}

    def act(s: Any, n: int) -> None:
        o = s.orders
        if "open" not in o:
            _guarded(s, sim, plan, 0.03)
        elif done_ref(out, "open") and "stop" not in o:
            _guard(s, plan, 0.03, kind)
        st = o.get("stop")
        if st is not None and "jumped" not in plan and "Accepted" in out.statuses(st.ref):
            plan["resting"] = [(r["type"], r["status"]) for r in sim.orders(exchange)]
            plan["position"] = s.getposition().size
            _jump(sim, plan)

    db = tmp_path / "o.sqlite"
    _run_3x(sim, exchange, act, ended(out, "stop"), db, out)
    assert not out.timed_out, out.notes
    s, br = out.strategy, out.broker
    st = s.orders["stop"]
    assert out.statuses(st.ref) == ["Submitted", "Accepted", "Completed"], out.last(st.ref).reason
    last = out.last(st.ref)
    sign = -1.0 if plan["side"] == "sell" else 1.0
    assert last.size == pytest.approx(sign * 0.03)
    if plan["side"] == "sell":
        assert last.price <= plan["stop"] + 1e-9
    else:
        assert last.price >= plan["stop"] - 1e-9
    assert plan["position"] == pytest.approx(-sign * 0.03)
    assert plan["resting"][-1] == (kind if kind == "stop_limit" else "stop_market", "new")
    assert br.getposition(s.data).size == pytest.approx(0.0)
    assert exchange_size(client(sim, exchange)) == 0.0
    by_cid = {o["client_id"]: o for o in sim.orders(exchange)}
    guard = by_cid[last.client_id]
    assert guard["status"] == "filled" and guard["reduce_only"] is True
    assert guard["amount"] == pytest.approx(0.03)  # okx: 3 contracts of 0.01 BTC
    rows = {r["client_id"]: r for r in _rows(db)["orders"]}
    assert rows[last.client_id]["status"] == "closed"
    assert not str(rows[last.client_id]["exchange_id"]).startswith("algo:")


@pytest.mark.parametrize(("exchange", "why"), [("okx", "okx code 51169"),
                                               ("binance", "binance algoStatus REJECTED")])
def test_a_swap_stop_loss_left_behind_after_its_position_closed_opens_nothing(
        sim_factory: Any, tmp_path: Path, exchange: str, why: str) -> None:
    """The bot closes its position itself while its reduce-only stop-loss still rests: at the
    trigger the order the exchange places has nothing to reduce and fails, the strategy is
    told ``Canceled`` with the exchange's words, and the account stays flat (nothing opened
    the other way)."""
    sim = swap_sim(sim_factory, exchange)
    out = Outcome()
    plan: dict[str, Any] = {}

    def act(s: Any, n: int) -> None:
        o = s.orders
        if "open" not in o:
            _guarded(s, sim, plan, 0.02)
        elif done_ref(out, "open") and "stop" not in o:
            _guard(s, plan, 0.02)
        elif "stop" in o and "Accepted" in out.statuses(o["stop"].ref) and "close" not in o:
            o["close"] = s.close()
        elif done_ref(out, "close") and "jumped" not in plan:
            _jump(sim, plan)

    _run_3x(sim, exchange, act, ended(out, "stop"), tmp_path / "o.sqlite", out)
    assert not out.timed_out, out.notes
    s = out.strategy
    st = s.orders["stop"]
    assert out.statuses(st.ref) == ["Submitted", "Accepted", "Canceled"]
    assert why in (out.last(st.ref).reason or "")
    assert out.broker.getposition(s.data).size == pytest.approx(0.0)
    assert exchange_size(client(sim, exchange)) == 0.0
    by_cid = {o["client_id"]: o for o in sim.orders(exchange)}
    assert by_cid[out.last(st.ref).client_id]["filled"] == 0.0


@pytest.mark.parametrize("exchange", ["okx", "binance"])
def test_the_kill_switch_cancels_resting_swap_stops_at_the_exchange(
        sim_factory: Any, tmp_path: Path, exchange: str) -> None:
    """A long and its stop-loss resting as an algo order, plus a far buy stop: the kill switch
    cancels both stops at the exchange (through the algo endpoints), the strategy is told
    ``Canceled`` for each, and nothing is left resting."""
    sim = swap_sim(sim_factory, exchange)
    out = Outcome()
    state: dict[str, Any] = {}

    def act(s: Any, n: int) -> None:
        o = s.orders
        if "open" not in o:
            o["open"] = s.buy(size=0.02)
        elif done_ref(out, "open") and "loss" not in o:
            px = s.data.close[0]
            o["loss"] = s.sell(size=0.02, price=round(px * 0.7, 1), exectype=bt.Order.Stop)
            o["breakout"] = s.buy(size=0.01, price=round(px * 1.3, 1), exectype=bt.Order.Stop)
        accepted = [k for k in ("loss", "breakout")
                    if k in o and "Accepted" in out.statuses(o[k].ref)]
        if len(accepted) == 2 and "thread" not in state:
            state["resting"] = [(r["type"], r["status"]) for r in sim.orders(exchange)]
            t = threading.Thread(target=lambda: state.update(killed=s.broker.kill("test")))
            t.start()  # from another thread, as SIGUSR1 and the kill file do
            state["thread"] = t

    def done(s: Any) -> bool:
        return state.get("killed") is not None and all(
            k in s.orders and "Canceled" in out.statuses(s.orders[k].ref)
            for k in ("loss", "breakout"))

    _run_3x(sim, exchange, act, done, tmp_path / "o.sqlite", out)
    assert not out.timed_out, out.notes
    state["thread"].join(10)
    assert state["killed"] is True
    assert sorted(state["resting"]) == [("market", "filled"), ("stop_market", "new"),
                                        ("stop_market", "new")]
    assert sorted(r["status"] for r in sim.orders(exchange)) == ["canceled", "canceled", "filled"]
    assert exchange_size(client(sim, exchange)) == pytest.approx(0.02)  # the long stays
