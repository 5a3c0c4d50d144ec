"""The simulator's private WebSocket streams through unmodified ccxt.pro: binance's user data
stream on the WebSocket API (``/ws-api/v3``) and okx's ``/ws/v5/private`` (login, ``orders``,
``account``). Orders are placed over REST (the same ccxt.pro object's REST methods) and must
show up in ``watch_orders`` / ``watch_my_trades`` / ``watch_balance`` exactly as REST reports
them; resting orders fill and are pushed without any REST request."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import ccxt
import pytest

from btccxt_cli.clock import SYSTEM_CLOCK, ManualClock
from btccxt_cli.exchange.factory import make_exchange
from btccxt_cli.sim.accounts import DEFAULT_KEY, Engine, OrderEvent, SimKey
from btccxt_cli.sim.market import MarketModel

pytestmark = pytest.mark.live

EXCHANGES = ["binance", "okx"]
GOOD = {"apiKey": DEFAULT_KEY.key, "secret": DEFAULT_KEY.secret, "password": DEFAULT_KEY.passphrase}
OTHER = SimKey("second-key", "second-secret", "second-pass")
SYMBOL = "BTC/USDT"
PRIVATE_PATHS = ("/api/v3/", "/api/v5/account", "/api/v5/trade")


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


def pro(sim: Any, exchange: str, key: SimKey | None = None, **cfg: Any) -> Any:
    """A ccxt.pro client of ``exchange`` on the simulator, with a key (default: DEFAULT_KEY)."""
    conf = dict(GOOD) if key is None else {"apiKey": key.key, "secret": key.secret,
                                           "password": key.passphrase}
    conf.update(cfg)
    return make_exchange(exchange, kind="pro", sim_url=sim.url(exchange), market_types=["spot"],
                         config=conf)


@pytest.fixture
def sims(sim_factory: Any) -> Any:
    return sim_factory(exchanges=("binance", "okx"), api_keys=[DEFAULT_KEY, OTHER])


async def ready(ex: Any) -> None:
    """Return once the exchange streams this account's orders to ``ex`` (no update lost after).

    binance: the user data subscription is acknowledged. A ``watch_orders`` runs first, because
    ccxt.pro's binance only files balance pushes once a watch set its balance cache (without
    one its receive loop dies on the first ``outboundAccountPosition``). okx: ``watch_balance``
    subscribes the ``account`` channel after the ``orders`` one that ``watch_orders`` sent on
    the same socket, and its snapshot comes after both acknowledgements.
    """
    await ex.load_markets()
    watch = asyncio.ensure_future(ex.watch_orders())
    try:
        if ex.id == "binance":
            # inline, not in a task: the watch's first step (at our first await) finds the
            # subscription under way and sets the balance cache before anything is pushed
            await ex.authenticate()
        else:
            await asyncio.wait_for(ex.watch_balance(), 5)
    finally:
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)


async def until(watch: Callable[[], Awaitable[list[dict]]], cache: Callable[[], list[dict]],
                pred: Callable[[dict], bool], timeout: float = 5.0) -> dict:
    """Call ``watch()`` until a returned entry satisfies ``pred``; a copy of it.

    ccxt.pro resolves a watch only for updates arriving while it waits; one that came between
    two calls is in ccxt's cache only, which is looked at when a call has waited 0.5 s.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        left = deadline - loop.time()
        if left <= 0:
            raise AssertionError(f"nothing matching arrived within {timeout} s; cached: {cache()}")
        try:
            got = list(await asyncio.wait_for(watch(), min(left, 0.5)))
        except asyncio.TimeoutError:
            got = cache()
        for entry in got:
            if pred(entry):
                return dict(entry)


async def until_order(ex: Any, pred: Callable[[dict], bool], timeout: float = 5.0) -> dict:
    return await until(ex.watch_orders, lambda: list(ex.orders or []), pred, timeout)


def cid(value: str, status: str | None = None) -> Callable[[dict], bool]:
    return lambda o: o["clientOrderId"] == value and (status is None or o["status"] == status)


def rest_total(sim: Any, exchange: str) -> int:
    return sim.stats(exchange)["rest_total"]


# --------------------------------------------------------------------------- order lifecycles
@pytest.mark.parametrize("exchange", EXCHANGES)
def test_limit_order_by_rest_is_pushed_open_with_its_client_id(sims: Any, exchange: str) -> None:
    async def main() -> None:
        ex = pro(sims, exchange)
        try:
            await ready(ex)
            placed = await ex.create_order(SYMBOL, "limit", "buy", 0.001, 30_000.0,
                                           params={"clientOrderId": "wsOpen1"})
            got = await until_order(ex, cid("wsOpen1"))
            assert got["id"] == placed["id"] and got["status"] == "open"
            assert (got["symbol"], got["side"], got["type"]) == (SYMBOL, "buy", "limit")
            assert got["price"] == 30_000.0 and got["amount"] == 0.001 and got["filled"] == 0
            assert sims.stats(exchange)["private_logins"] == 1
        finally:
            await ex.close()

    run(main())


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_market_order_is_pushed_filled_as_rest_reports_it(sims: Any, exchange: str) -> None:
    async def main() -> None:
        ex = pro(sims, exchange)
        try:
            await ready(ex)
            params: dict[str, Any] = {"clientOrderId": "wsMkt1"}
            if exchange == "okx":
                params["tgtCcy"] = "base_ccy"  # the amount in BTC, as on binance
            placed = await ex.create_order(SYMBOL, "market", "buy", 0.01, params=params)
            got = await until_order(ex, cid("wsMkt1", "closed"))
            rest = await ex.fetch_order(placed["id"], SYMBOL)
            trades = await ex.fetch_my_trades(SYMBOL)
            assert got["id"] == rest["id"] and rest["status"] == "closed"
            for field in ("filled", "average", "cost", "amount", "side"):
                assert got[field] == rest[field], field
            assert got["filled"] == 0.01
            fee = {"currency": "BTC", "cost": pytest.approx(1e-5)}
            assert got["fee"] == fee
            assert [t["fee"] for t in trades] == [fee]
            assert got["average"] == trades[0]["price"]
            if exchange == "okx":  # binance's REST order carries no fee (its trades do)
                assert rest["fee"] == fee
        finally:
            await ex.close()

    run(main())


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_cancel_is_pushed_as_canceled(sims: Any, exchange: str) -> None:
    async def main() -> None:
        ex = pro(sims, exchange)
        try:
            await ready(ex)
            placed = await ex.create_order(SYMBOL, "limit", "buy", 0.001, 30_000.0,
                                           params={"clientOrderId": "wsCxl1"})
            await until_order(ex, cid("wsCxl1", "open"))
            await ex.cancel_order(placed["id"], SYMBOL)
            got = await until_order(ex, cid("wsCxl1", "canceled"))
            assert got["id"] == placed["id"] and got["filled"] == 0
            assert (await ex.fetch_order(placed["id"], SYMBOL))["status"] == "canceled"
        finally:
            await ex.close()

    run(main())


def _crossing(sim: Any, exchange: str, start_ms: int) -> tuple[int, float, str]:
    """The first second after ``start_ms`` at which the traded price differs from its price
    now, that price, and the side of a limit order there that rests until then: a buy below,
    a sell above. (Only a fall was looked for before: a path that did not fall within 600 s,
    a few per cent of start times, failed CI.)"""
    engine = sim.sim.server(exchange).engine  # read-only: the engine's price on the tick grid
    p0 = engine.price(SYMBOL, start_ms)
    for s in range(1, 600):
        t = start_ms - start_ms % 1000 + s * 1000
        p = engine.price(SYMBOL, t)
        if p != p0:
            return t, p, "buy" if p < p0 else "sell"
    raise AssertionError("the price path stood still for 600 s")


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_resting_limit_is_pushed_filled_without_any_rest_request(sim_factory: Any,
                                                                 exchange: str) -> None:
    clock = ManualClock(start_ms=SYSTEM_CLOCK.time_ms())
    # the clock stands still while ccxt signs with real time: timestamps are not checked
    sim = sim_factory(exchanges=(exchange,), clock=clock, check_timestamps=False)

    async def main() -> None:
        ex = pro(sim, exchange)
        try:
            await ready(ex)
            t_cross, p_cross, side = _crossing(sim, exchange, sim.now_ms())
            placed = await ex.create_order(SYMBOL, "limit", side, 0.001, p_cross,
                                           params={"clientOrderId": "wsRest1"})
            await until_order(ex, cid("wsRest1", "open"))
            before = rest_total(sim, exchange)
            clock.set_ms(t_cross + 500)  # the engine replays the path second by second
            got = await until_order(ex, cid("wsRest1", "closed"))
            assert rest_total(sim, exchange) == before  # the matcher did it, not a request
            assert got["id"] == placed["id"] and got["filled"] == 0.001
            assert got["average"] == p_cross  # a resting order fills at its limit (maker)
            rest = await ex.fetch_order(placed["id"], SYMBOL)
            assert (rest["status"], rest["filled"], rest["average"]) == ("closed", 0.001, p_cross)
        finally:
            await ex.close()

    run(main())


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_watch_my_trades_ids_equal_rest_trade_ids(sims: Any, exchange: str) -> None:
    async def main() -> None:
        ex = pro(sims, exchange)
        try:
            await ready(ex)
            ids = []
            for n in range(2):
                params: dict[str, Any] = {"clientOrderId": f"wsTrd{n}"}
                if exchange == "okx":
                    params["tgtCcy"] = "base_ccy"
                ids.append((await ex.create_order(SYMBOL, "market", "sell", 0.01, params=params))["id"])
            seen: dict[str, dict] = {}

            def done(t: dict) -> bool:
                seen[t["id"]] = t
                return {x["order"] for x in seen.values()} == set(ids)

            await until(ex.watch_my_trades, lambda: list(ex.myTrades or []), done)
            rest = {t["id"]: t for t in await ex.fetch_my_trades(SYMBOL)}
            assert set(seen) == set(rest) and len(rest) == 2
            for tid, t in seen.items():
                r = rest[tid]
                assert (t["order"], t["side"], t["price"], t["amount"]) == (
                    r["order"], r["side"], r["price"], r["amount"])
                assert t["fee"]["currency"] == r["fee"]["currency"] == "USDT"
                # ccxt.pro's okx reads okx's signed fillFee (negative = charged) as the fee cost
                assert abs(t["fee"]["cost"]) == pytest.approx(r["fee"]["cost"])
        finally:
            await ex.close()

    run(main())


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_watch_balance_follows_orders(sims: Any, exchange: str) -> None:
    async def main() -> None:
        ex = pro(sims, exchange)
        try:
            await ready(ex)
            free0 = (await ex.fetch_balance())["USDT"]["free"]

            async def balances() -> list[dict]:
                return [await ex.watch_balance()]

            def locked(b: dict) -> bool:
                return b.get("USDT", {}).get("used") == pytest.approx(30.0)

            # the watch task starts (and waits) while the order's request is on its way
            watch = asyncio.ensure_future(until(balances, lambda: [], locked))
            await ex.create_order(SYMBOL, "limit", "buy", 0.001, 30_000.0)
            got = await watch
            assert got["USDT"]["free"] == pytest.approx(free0 - 30.0)
            rest = await ex.fetch_balance()
            assert (rest["USDT"]["free"], rest["USDT"]["used"]) == (
                pytest.approx(got["USDT"]["free"]), pytest.approx(got["USDT"]["used"]))
        finally:
            await ex.close()

    run(main())


# --------------------------------------------------------------------------- accounts and auth
@pytest.mark.parametrize("exchange", EXCHANGES)
def test_one_key_never_sees_another_keys_orders(sims: Any, exchange: str) -> None:
    async def main() -> None:
        a, b = pro(sims, exchange), pro(sims, exchange, OTHER)
        try:
            await asyncio.gather(ready(a), ready(b))
            await a.create_order(SYMBOL, "limit", "buy", 0.001, 30_000.0, params={"clientOrderId": "keyA1"})
            await b.create_order(SYMBOL, "limit", "buy", 0.001, 30_000.0, params={"clientOrderId": "keyB1"})
            await a.create_order(SYMBOL, "limit", "buy", 0.001, 30_000.0, params={"clientOrderId": "keyA2"})
            # pushes of one key are in order: a misrouted order would arrive before these
            await until_order(b, cid("keyB1"))
            await until_order(a, cid("keyA2"))
            assert {o["clientOrderId"] for o in b.orders} == {"keyB1"}
            assert {o["clientOrderId"] for o in a.orders} == {"keyA1", "keyA2"}
        finally:
            await asyncio.gather(a.close(), b.close())

    run(main())


@pytest.mark.parametrize(("exchange", "cfg", "code"), [
    ("binance", {"secret": "wrong-secret"}, "-1022"),
    ("binance", {"apiKey": "no-such-key"}, "-2015"),
    ("okx", {"secret": "wrong-secret"}, "60007"),
    ("okx", {"apiKey": "no-such-key"}, "60005"),
    ("okx", {"password": "wrong-passphrase"}, "60024"),
])
def test_wrong_credentials_are_refused(sims: Any, exchange: str, cfg: dict[str, str],
                                       code: str) -> None:
    async def main() -> BaseException:
        ex = pro(sims, exchange, **cfg)
        try:
            await ex.load_markets()
            with pytest.raises(Exception) as info:
                await asyncio.wait_for(ex.watch_orders(), 5)
            return info.value
        finally:
            await ex.close()

    err = run(main())
    if exchange == "binance" and isinstance(err, KeyError):
        # ccxt 4.5.90 turns binance's refusal into KeyError('spot'): handle_ws_error already
        # deleted the subscription that ensure_user_data_stream_ws_subscribe_signature deletes
        # again; the AuthenticationError is the KeyError's context
        assert err.args == ("spot",)
        err = err.__context__
    assert isinstance(err, ccxt.AuthenticationError), repr(err)
    assert code in str(err)
    for secret in (DEFAULT_KEY.secret, DEFAULT_KEY.passphrase, "wrong-secret", "wrong-passphrase"):
        assert secret not in str(err)
    stats = sims.stats(exchange)
    assert stats["private_refused"] == 1 and stats["private_sessions"] == {}


# --------------------------------------------------------------------------- faults
@pytest.mark.parametrize("exchange", EXCHANGES)
def test_drop_then_the_next_watch_reconnects_and_updates_arrive(sims: Any, exchange: str) -> None:
    async def main() -> None:
        ex = pro(sims, exchange)
        try:
            await ready(ex)
            placed = await ex.create_order(SYMBOL, "limit", "buy", 0.001, 30_000.0,
                                           params={"clientOrderId": "wsDrop1"})
            await until_order(ex, cid("wsDrop1", "open"))
            pending = asyncio.ensure_future(ex.watch_orders())
            # from a thread, so the pending watch is waiting before the socket closes
            assert await asyncio.to_thread(sims.drop, exchange) >= 1
            with pytest.raises(ccxt.NetworkError):
                await asyncio.wait_for(pending, 5)
            assert sims.stats(exchange)["private_sessions"] == {}
            await ready(ex)  # reconnects and authenticates again
            await ex.cancel_order(placed["id"], SYMBOL)
            got = await until_order(ex, cid("wsDrop1", "canceled"))
            assert got["id"] == placed["id"]
            stats = sims.stats(exchange)
            assert stats["private_logins"] == 2 and len(stats["private_sessions"]) == 1
        finally:
            await ex.close()

    run(main())


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_ws_outage_refuses_private_sockets(sims: Any, exchange: str) -> None:
    async def main() -> None:
        ex = pro(sims, exchange)
        try:
            await ex.load_markets()
            sims.outage(exchange, 30, ws=True, rest=False)
            with pytest.raises(ccxt.NetworkError):
                await asyncio.wait_for(ex.watch_orders(), 5)
            assert sims.stats(exchange)["ws_rejected"] >= 1
        finally:
            sims.clear_faults(exchange)
            await ex.close()

    run(main())


def test_stall_holds_private_pushes_until_it_ends(sim_factory: Any) -> None:
    clock = ManualClock(start_ms=SYSTEM_CLOCK.time_ms())
    sim = sim_factory(exchanges=("okx",), clock=clock, check_timestamps=False)

    async def main() -> None:
        ex = pro(sim, "okx")
        try:
            await ready(ex)
            sim.stall("okx", 5)  # on the manual clock: it cannot end before the clock moves
            await ex.create_order(SYMBOL, "limit", "buy", 0.001, 30_000.0,
                                  params={"clientOrderId": "wsStall1"})
            with pytest.raises(AssertionError, match="nothing matching"):
                await until_order(ex, cid("wsStall1"), timeout=0.6)
            clock.advance(6)
            got = await until_order(ex, cid("wsStall1", "open"))
            assert got["price"] == 30_000.0
        finally:
            await ex.close()

    run(main())


# --------------------------------------------------------------------------- the engine's hook
def test_engine_reports_every_order_change_in_order_with_snapshots() -> None:
    model = MarketModel(1)
    eng = Engine(model, {SYMBOL: model.spec(SYMBOL)}, [DEFAULT_KEY],
                 balances={"USDT": 100_000.0, "BTC": 1.0})
    events: list[OrderEvent] = []
    eng.add_listener(events.append)
    eng.add_listener(events.append)  # idempotent
    t0 = 1_700_000_000_000
    m = eng.place(DEFAULT_KEY.key, SYMBOL, "buy", "market", amount=0.01, now_ms=t0)
    assert [(e.kind, e.order.status, e.order.filled) for e in events] == [
        ("new", "new", 0.0), ("trade", "filled", 0.01)]
    assert events[1].fill is m.fills[0] and events[1].time_ms == t0
    assert events[1].balances["BTC"] == (pytest.approx(1.0 + 0.01 - 1e-5), 0.0)
    events.clear()
    p0 = eng.price(SYMBOL, t0)
    t_cross = next(t for t in range(t0 + 1000, t0 + 600_000, 1000) if eng.price(SYMBOL, t) < p0)
    p_cross = eng.price(SYMBOL, t_cross)
    lim = eng.place(DEFAULT_KEY.key, SYMBOL, "buy", "limit", amount=0.01, price=p_cross, now_ms=t0)
    far = eng.place(DEFAULT_KEY.key, SYMBOL, "buy", "limit", amount=0.01, price=1_000.0, now_ms=t0)
    eng.advance(t_cross + 3000)
    eng.cancel(DEFAULT_KEY.key, order_id=far.id, now_ms=t_cross + 3000)
    assert [(e.kind, e.order.id) for e in events] == [
        ("new", lim.id), ("new", far.id), ("trade", lim.id), ("canceled", far.id)]
    assert events[2].time_ms <= t_cross and events[2].fill is not None and events[2].fill.maker
    assert events[3].balances["USDT"][1] == 0.0  # the cancel's unlock is in the snapshot
    events.clear()
    stop = eng.place(DEFAULT_KEY.key, SYMBOL, "sell", "stop_market", amount=0.01,
                     stop_price=p_cross, now_ms=t_cross + 3000)
    t_low = next(t for t in range(t_cross + 4000, t_cross + 600_000, 1000)
                 if eng.price(SYMBOL, t) <= p_cross)
    eng.advance(t_low)
    assert [e.kind for e in events] == ["new", "triggered", "trade"]
    assert all(e.order.id == stop.id for e in events)
    eng.remove_listener(events.append)
    eng.place(DEFAULT_KEY.key, SYMBOL, "buy", "market", amount=0.01, now_ms=t_low)
    assert len(events) == 3
