"""The simulator's matching engine on the market model's price path (pure, no sockets)."""

from __future__ import annotations

import math

import pytest

from btccxt_cli.sim.accounts import (
    DEFAULT_KEY,
    Engine,
    Reject,
    SimKey,
    hmac_sha256_b64,
    hmac_sha256_hex,
    parse_balance_spec,
    parse_key_spec,
)
from btccxt_cli.sim.market import MarketModel

T0 = 1_700_000_000_000
KEY = DEFAULT_KEY.key
SYMBOLS = ("BTC/USDT", "ETH/USDT")


def make(**kw) -> Engine:
    model = MarketModel(1)
    specs = {s: model.spec(s) for s in SYMBOLS + ("BTC/USDT:USDT",)}
    kw.setdefault("balances", {"USDT": 100_000.0, "BTC": 1.0})
    return Engine(model, specs, [DEFAULT_KEY], **kw)


def first_cross(eng: Engine, symbol: str, start: int, below: bool) -> tuple[int, float]:
    """A limit price the path reaches after ``start`` (below or above the start price)."""
    p0 = eng.price(symbol, start)
    for s in range(1, 3600):
        t = start - start % 1000 + s * 1000
        p = eng.price(symbol, t)
        if (below and p < p0) or (not below and p > p0):
            return t, p
    raise AssertionError("the path never moved")


def test_market_buy_fills_at_the_current_price_with_fee_in_base() -> None:
    eng = make()
    o = eng.place(KEY, "BTC/USDT", "buy", "market", amount=0.01, now_ms=T0)
    px = eng.price("BTC/USDT", T0)
    assert o.status == "filled" and o.filled == 0.01
    assert o.fills[0].price == px and not o.fills[0].maker
    assert o.fills[0].fee == pytest.approx(0.01 * 0.001) and o.fills[0].fee_asset == "BTC"
    acct = eng.account(KEY)
    assert acct.free("USDT") == pytest.approx(100_000 - 0.01 * px)
    assert acct.free("BTC") == pytest.approx(1.0 + 0.01 - 0.00001)
    assert acct.locked("USDT") == 0 and acct.locked("BTC") == 0


def test_market_sell_fee_in_quote() -> None:
    eng = make()
    o = eng.place(KEY, "BTC/USDT", "sell", "market", amount=0.5, now_ms=T0)
    px = eng.price("BTC/USDT", T0)
    assert o.fills[0].fee_asset == "USDT"
    assert eng.account(KEY).free("USDT") == pytest.approx(100_000 + 0.5 * px * 0.999)
    assert eng.account(KEY).free("BTC") == pytest.approx(0.5)


def test_limit_rests_then_fills_at_its_price_when_the_path_crosses() -> None:
    eng = make()
    t_cross, p_cross = first_cross(eng, "BTC/USDT", T0, below=True)
    o = eng.place(KEY, "BTC/USDT", "buy", "limit", amount=0.01, price=p_cross, now_ms=T0)
    assert o.status == "new" and not o.fills
    assert eng.account(KEY).locked("USDT") == pytest.approx(0.01 * p_cross)
    eng.advance(t_cross - 1000)
    assert o.status == "new"
    eng.advance(t_cross + 5000)  # a jump: fills are stamped when they happened
    assert o.status == "filled"
    f = o.fills[0]
    assert f.price == p_cross and f.maker and f.time_ms <= t_cross and f.fee_rate == 0.001
    assert eng.account(KEY).locked("USDT") == 0


def test_marketable_limit_takes_the_current_price() -> None:
    eng = make()
    px = eng.price("BTC/USDT", T0)
    o = eng.place(KEY, "BTC/USDT", "buy", "limit", amount=0.01, price=round(px * 1.01, 1), now_ms=T0)
    assert o.status == "filled" and o.fills[0].price == px and not o.fills[0].maker
    # the lock at the limit price is released down to what was paid
    assert eng.account(KEY).free("USDT") == pytest.approx(100_000 - 0.01 * px)
    assert eng.account(KEY).locked("USDT") == 0


def test_large_limit_fills_in_parts_limited_by_liquidity() -> None:
    eng = make(balances={"USDT": 10_000_000.0, "BTC": 0.0}, liquidity=0.5)
    px = eng.price("BTC/USDT", T0)
    o = eng.place(KEY, "BTC/USDT", "buy", "limit", amount=5.0, price=round(px * 1.05, 1), now_ms=T0)
    assert o.status == "partially_filled" and 0 < o.filled < 5.0
    vol = eng.model.candle("BTC/USDT", 1000, T0 - T0 % 1000)[5]
    assert o.filled <= vol * 0.5 + 1e-9
    eng.advance(T0 + 120_000)
    assert o.status == "filled" and len(o.fills) > 2
    assert math.isclose(sum(f.qty for f in o.fills), 5.0)
    seconds = [f.time_ms // 1000 for f in o.fills]
    assert len(set(seconds)) == len(seconds), "at most one fill per second and order"


def test_insufficient_funds_and_min_notional_and_lot() -> None:
    eng = make()
    with pytest.raises(Reject) as e:
        eng.place(KEY, "BTC/USDT", "buy", "market", amount=10, now_ms=T0)
    assert e.value.kind == "insufficient_funds"
    with pytest.raises(Reject) as e:
        eng.place(KEY, "BTC/USDT", "sell", "limit", amount=2, price=100_000.0, now_ms=T0)
    assert e.value.kind == "insufficient_funds"
    with pytest.raises(Reject) as e:
        eng.place(KEY, "BTC/USDT", "buy", "market", amount=0.00001, now_ms=T0)
    assert e.value.kind == "min_notional"
    with pytest.raises(Reject) as e:
        eng.place(KEY, "BTC/USDT", "buy", "market", amount=0.0100001, now_ms=T0)
    assert e.value.kind == "bad_quantity"
    with pytest.raises(Reject) as e:
        eng.place(KEY, "BTC/USDT", "buy", "limit", amount=0.01, price=50_000.05, now_ms=T0)
    assert e.value.kind == "bad_price"
    with pytest.raises(Reject) as e:
        eng.place(KEY, "BTC/USDT:USDT", "buy", "market", amount=0.01, now_ms=T0)
    assert e.value.kind == "unsupported"
    assert not eng.orders  # nothing rejected was kept
    assert eng.account(KEY).free("USDT") == 100_000.0


def test_duplicate_client_id_among_open_orders() -> None:
    eng = make()
    eng.place(KEY, "BTC/USDT", "buy", "limit", amount=0.01, price=10_000.0, client_id="x1", now_ms=T0)
    with pytest.raises(Reject) as e:
        eng.place(KEY, "BTC/USDT", "buy", "limit", amount=0.01, price=10_000.0, client_id="x1", now_ms=T0)
    assert e.value.kind == "duplicate_client_id"
    o = eng.find(KEY, client_id="x1")
    assert o is not None
    eng.cancel(KEY, client_id="x1", now_ms=T0 + 1)
    assert o.status == "canceled" and eng.account(KEY).locked("USDT") == 0
    # a closed order's client id may be used again (binance, okx)
    eng.place(KEY, "BTC/USDT", "buy", "limit", amount=0.01, price=10_000.0, client_id="x1", now_ms=T0 + 2)
    assert eng.find(KEY, client_id="x1").id != o.id


def test_cancel_unknown_or_closed() -> None:
    eng = make()
    o = eng.place(KEY, "BTC/USDT", "buy", "market", amount=0.01, now_ms=T0)
    with pytest.raises(Reject):
        eng.cancel(KEY, order_id=o.id, now_ms=T0)
    with pytest.raises(Reject):
        eng.cancel(KEY, order_id=12345, now_ms=T0)


def test_stop_sell_triggers_on_the_way_down() -> None:
    eng = make()
    t_cross, p_cross = first_cross(eng, "BTC/USDT", T0, below=True)
    o = eng.place(KEY, "BTC/USDT", "sell", "stop_market", amount=0.1, stop_price=p_cross, now_ms=T0)
    assert o.status == "new" and eng.account(KEY).locked("BTC") == pytest.approx(0.1)
    eng.advance(t_cross + 1000)
    assert o.status == "filled" and o.fills[0].price <= p_cross
    assert eng.account(KEY).locked("BTC") == 0


def test_quote_amount_market_buy() -> None:
    eng = make()
    px = eng.price("BTC/USDT", T0)
    o = eng.place(KEY, "BTC/USDT", "buy", "market", quote_amount=1000.0, now_ms=T0)
    assert o.filled == math.floor(1000 / px * 1e5) / 1e5


def test_accounts_are_separate_per_key() -> None:
    other = SimKey("k2", "s2", balances={"USDT": 50.0})
    model = MarketModel(1)
    eng = Engine(model, {"BTC/USDT": model.spec("BTC/USDT")}, [DEFAULT_KEY, other])
    eng.place(KEY, "BTC/USDT", "buy", "market", amount=0.01, now_ms=T0)
    assert eng.account("k2").free("USDT") == 50.0
    assert eng.open_orders("k2") == [] and eng.account_fills("k2") == []
    assert eng.find("k2", order_id=next(iter(eng.orders))) is None


def test_spec_parsers_and_signatures() -> None:
    assert parse_key_spec("a:b:c") == SimKey("a", "b", "c")
    assert parse_key_spec("a:b").passphrase is None
    with pytest.raises(ValueError):
        parse_key_spec("nope")
    assert parse_balance_spec("usdt=12.5") == ("USDT", 12.5)
    with pytest.raises(ValueError):
        parse_balance_spec("USDT=-1")
    assert "s3cr3t" not in repr(SimKey("k", "s3cr3t", "pp"))
    # binance's documented example signature
    payload = ("symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
               "&recvWindow=5000&timestamp=1499827319559")
    secret = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
    assert hmac_sha256_hex(secret, payload) == (
        "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71")
    assert len(hmac_sha256_b64("s", "x")) == 44
