"""The simulator's derivatives engine (``sim/positions.py``) on its own: resting swap orders and
their margin, leverage changes with a position open, cross-margin liquidation, funding only for
positions open at the settlement, and the swap switch of engines without derivatives. Pure
calls on the real engine and market model (no sockets: the wire formats are tested in
``test_sim_swaps*.py``)."""

from __future__ import annotations

import pytest

from btccxt_cli.sim.accounts import DEFAULT_KEY, Engine, Reject
from btccxt_cli.sim.market import MarketModel

SWAP = "BTC/USDT:USDT"
KEY = DEFAULT_KEY.key
T0 = 1_800_000_000_000  # a funding time (a multiple of 8 h)
H8 = 8 * 3_600_000


def engine(usdt: float = 10_000.0, **kwargs: object) -> Engine:
    model = MarketModel(1)
    return Engine(model, {SWAP: model.spec(SWAP)}, [DEFAULT_KEY], balances={"USDT": usdt},
                  derivatives=True, maker_fee=0.0002, taker_fee=0.0005, liquidity=float("inf"),
                  **kwargs)  # type: ignore[arg-type]


def first_second(eng: Engine, start: int, pred: object) -> int:
    """The first whole second after ``start`` whose price satisfies ``pred``."""
    t = start - start % 1000 + 1000
    while not pred(eng.price(SWAP, t)):  # type: ignore[operator]
        t += 1000
        assert t - start < 7 * 86_400_000, "the price path never got there"
    return t


def test_resting_limit_locks_margin_then_fills_at_its_price_and_cancel_frees_it() -> None:
    eng = engine()
    eng.derivs.set_leverage(KEY, SWAP, 10)
    px = eng.price(SWAP, T0 + 1000)
    limit = round(px * 0.999, 1)
    o = eng.place(KEY, SWAP, "buy", "limit", now_ms=T0 + 1000, amount=0.1, price=limit)
    acct = eng.account(KEY)
    assert o.status == "new" and acct.locked("USDT") == pytest.approx(0.1 * limit / 10)
    t = first_second(eng, T0 + 1000, lambda p: p <= limit)
    eng.advance(t)
    assert o.status == "filled" and o.fills[0].price == limit and o.fills[0].maker
    pos = eng.derivs.open_positions(KEY)[0]
    assert (pos.qty, pos.entry, pos.margin) == (0.1, limit, pytest.approx(0.1 * limit / 10))
    assert acct.locked("USDT") == pytest.approx(pos.margin)
    other = eng.place(KEY, SWAP, "buy", "limit", now_ms=t, amount=0.1, price=round(limit * 0.5, 1))
    eng.cancel(KEY, now_ms=t, order_id=other.id)
    assert acct.locked("USDT") == pytest.approx(pos.margin)  # the cancelled order's margin is back


def test_leverage_change_remargins_an_open_position_or_is_refused() -> None:
    eng = engine(usdt=1_000.0)
    eng.derivs.set_leverage(KEY, SWAP, 20)
    eng.place(KEY, SWAP, "buy", "market", now_ms=T0 + 1000, amount=0.1)
    pos = eng.derivs.open_positions(KEY)[0]
    eng.derivs.set_leverage(KEY, SWAP, 10)
    assert pos.margin == pytest.approx(0.1 * pos.entry / 10) and pos.leverage == 10
    with pytest.raises(Reject) as e:  # 1x of ~6000 USDT with ~1000 in the wallet
        eng.derivs.set_leverage(KEY, SWAP, 1)
    assert e.value.kind == "insufficient_funds" and pos.leverage == 10
    with pytest.raises(Reject) as e:
        eng.derivs.set_margin_mode(KEY, SWAP, "isolated")
    assert e.value.kind == "position_open"


def test_cross_positions_are_liquidated_when_the_wallet_cannot_carry_them() -> None:
    eng = engine(usdt=65.0)  # a 100x long of 0.1 BTC leaves a few USDT free
    eng.derivs.set_leverage(KEY, SWAP, 100)
    eng.place(KEY, SWAP, "buy", "market", now_ms=T0 + 1000, amount=0.1)
    pos = eng.derivs.open_positions(KEY)[0]
    acct = eng.account(KEY)
    liq = pos.liq_price(acct.free("USDT"))
    assert liq is not None and pos.entry > liq
    t = first_second(eng, T0 + 1000, lambda p: p <= liq)
    eng.advance(t - 1000)
    assert eng.derivs.open_positions(KEY)
    eng.advance(t)
    assert not eng.derivs.open_positions(KEY)
    forced = list(eng.orders.values())[-1]
    assert forced.client_id.startswith("autoclose-") and forced.reduce_only and forced.filled == 0.1
    assert 0.0 <= acct.free("USDT") < 65.0 * 0.5 and acct.locked("USDT") == 0


def test_funding_settles_positions_open_at_the_settlement_only() -> None:
    eng = engine(funding_interval_ms=H8)
    eng.advance(T0 + 1000)  # the first look settles nothing that came before
    assert eng.derivs.payments == []
    eng.place(KEY, SWAP, "sell", "market", now_ms=T0 + 2000, amount=0.1)
    eng.advance(T0 + 2 * H8 + 1000)  # two settlements pass
    paid = eng.derivs.payments
    assert [p.time_ms for p in paid] == [T0 + H8, T0 + 2 * H8]
    for p in paid:
        rate = eng.derivs.funding_rate(SWAP, p.time_ms)
        assert p.amount == pytest.approx(0.1 * eng.price(SWAP, p.time_ms) * rate)  # a short
    assert eng.derivs.open_positions(KEY)[0].funding == pytest.approx(sum(p.amount for p in paid))


def test_engines_without_derivatives_refuse_swaps_and_spot_refuses_reduce_only() -> None:
    model = MarketModel(1)
    spot_only = Engine(model, {SWAP: model.spec(SWAP)}, [DEFAULT_KEY])
    with pytest.raises(Reject) as e:
        spot_only.place(KEY, SWAP, "buy", "market", now_ms=T0, amount=0.01)
    assert e.value.kind == "unsupported"
    both = Engine(model, {"BTC/USDT": model.spec("BTC/USDT")}, [DEFAULT_KEY], derivatives=True)
    with pytest.raises(Reject) as e:
        both.place(KEY, "BTC/USDT", "sell", "market", now_ms=T0, amount=0.01, reduce_only=True)
    assert e.value.kind == "unsupported"
