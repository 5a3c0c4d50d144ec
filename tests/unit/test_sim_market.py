"""The simulator's market model: deterministic, self-consistent, exactly representable."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from btccxt_cli.sim.market import LISTING_MS, TIMEFRAMES_MS, MarketModel

T0 = 1_700_000_000_000  # 2023-11-14 22:13:20 UTC
SYMBOLS = ["BTC/USDT", "ETH/USDT", "XRP/USDT", "DOGE/USDT", "C001/USDT", "BTC/USDT:USDT",
           "XRP/USDT:USDT"]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_sim_package_never_imports_the_client_side() -> None:
    """``sim`` may use aiohttp, orjson, clock and timeframes; never ccxt or the client side."""
    import btccxt_cli.sim as sim_pkg

    root = Path(sim_pkg.__file__).parent
    files = sorted(root.rglob("*.py"))
    assert files
    for path in files:
        for name in _imports(path):
            top = name.split(".")[0]
            if top == "btccxt_cli":
                assert name.startswith(("btccxt_cli.sim", "btccxt_cli.clock",
                                        "btccxt_cli.timeframes")), f"{path.name} imports {name}"
            else:
                forbidden = ("ccxt", "backtrader", "typer", "rich")
                assert top not in forbidden, f"{path.name} imports {name}"
    market = _imports(root / "market.py")
    assert not {n.split(".")[0] for n in market} & {"aiohttp", "orjson", "btccxt_cli"}


def test_same_seed_same_truth_other_seed_other_truth() -> None:
    a, b, c = MarketModel(1), MarketModel(1), MarketModel(2)
    for sym in SYMBOLS:
        assert a.price(sym, T0 + 123) == b.price(sym, T0 + 123)
        assert a.candle(sym, 60_000, T0) == b.candle(sym, 60_000, T0)
        assert a.candle(sym, 60_000, T0) != c.candle(sym, 60_000, T0)
    assert a.price("BTC/USDT", T0) != a.price("ETH/USDT", T0)


def test_batch_equals_single_and_bars_are_contiguous() -> None:
    m = MarketModel(7)
    for sym in SYMBOLS:
        for tf in (1_000, 60_000, 3_600_000):
            first = T0 - T0 % tf
            batch = m.candles(sym, tf, first, 50)
            assert batch == [m.candle(sym, tf, first + i * tf) for i in range(50)]
            for prev, nxt in zip(batch, batch[1:], strict=False):
                assert nxt[0] - prev[0] == tf
                assert nxt[1] == prev[4]  # open == previous close


@pytest.mark.parametrize("tf", sorted(TIMEFRAMES_MS.values()))
def test_high_low_cover_open_close_and_volume_positive(tf: int) -> None:
    m = MarketModel(3)
    for sym in SYMBOLS:
        first = T0 - T0 % tf
        for ts, o, h, lo, c, v in m.candles(sym, tf, first, 200):
            assert h >= max(o, c) and lo <= min(o, c) and lo > 0
            assert v > 0
            assert ts % tf == 0


def test_prices_are_plausible() -> None:
    m = MarketModel(1)
    year = 365 * 86_400_000
    for t in range(T0, T0 + year, year // 50):
        assert 30_000 < m.price("BTC/USDT", t) < 120_000
        assert 1_500 < m.price("ETH/USDT", t) < 6_000
        assert 0.001 < m.price("C042/USDT", t) < 5_000


def test_values_survive_the_wire_format() -> None:
    """What the venues send as strings parses back to exactly the model's floats."""
    m = MarketModel(5)
    for sym in SYMBOLS:
        spec = m.spec(sym)
        for candle in m.candles(sym, 60_000, T0, 300):
            for x in candle[1:5]:
                assert float(f"{x:.8f}") == x  # binance pads to 8 decimals
                assert float(spec.fmt_price(x)) == x  # okx sends the tick's decimals
                assert round(x * spec.price_scale) / spec.price_scale == x  # on the tick grid
            v = candle[5]
            assert float(f"{v:.8f}") == v and float(spec.fmt_volume(v)) == v
            assert round(v * spec.lot_scale) / spec.lot_scale == v  # on the lot grid


def test_specs_look_like_real_markets() -> None:
    m = MarketModel(1)
    btc = m.spec("BTC/USDT")
    assert (btc.tick_str(), btc.lot_str()) == ("0.1", "0.00001")
    swap = m.spec("BTC/USDT:USDT")
    assert swap.is_swap and swap.contract_value_decimals == 2  # ctVal 0.01 BTC, like okx
    assert swap.lot_decimals == 4  # 0.01 contract of 0.01 BTC
    with pytest.raises(ValueError):
        m.spec("BTCUSDT")


def test_partial_grows_into_the_final_candle() -> None:
    m = MarketModel(11)
    for sym in ("BTC/USDT", "DOGE/USDT", "ETH/USDT:USDT"):
        for tf in (1_000, 60_000, 900_000):
            open_ = T0 - T0 % tf
            final = m.candle(sym, tf, open_)
            first = m.partial(sym, tf, open_, open_)
            assert first[1:5] == (final[1],) * 4 and first[5] == 0
            prev = first
            steps = 40
            for k in range(1, steps):
                p = m.partial(sym, tf, open_, open_ + tf * k // steps)
                ts, o, h, lo, c, v = p
                assert ts == open_ and o == final[1]
                assert lo <= min(o, c) <= max(o, c) <= h  # covers open and close
                assert final[3] <= lo and h <= final[2]  # within the final range
                assert h >= prev[2] and lo <= prev[3] and v >= prev[5]  # never shrinks
                assert v <= final[5]
                prev = p
            assert m.partial(sym, tf, open_, open_ + tf) == final
            assert m.partial(sym, tf, open_, open_ + 5 * tf) == final


def test_timeframes_share_the_price_path() -> None:
    m = MarketModel(1)
    hour = T0 - T0 % 3_600_000
    h1 = m.candle("ETH/USDT", 3_600_000, hour)
    m1 = m.candles("ETH/USDT", 60_000, hour, 60)
    s1 = m.candle("ETH/USDT", 1_000, hour)
    assert h1[1] == m1[0][1] == s1[1]
    assert h1[4] == m1[-1][4]


def test_a_year_of_minutes_is_cheap() -> None:
    """525,600 one-minute bars compute in a few seconds at most (speed is not asserted tightly)."""
    m = MarketModel(1)
    bars = m.candles("BTC/USDT", 60_000, LISTING_MS - LISTING_MS % 60_000 + 60_000, 525_600)
    assert len(bars) == 525_600 and bars[-1][0] - bars[0][0] == 525_599 * 60_000


WIRE = Path(__file__).resolve().parents[1] / "fixtures" / "wire"


def _wire(path: str) -> dict:
    import json

    return json.loads((WIRE / path).read_text(encoding="utf-8"))


def test_recorded_finals_are_the_model_truth() -> None:
    """The recorded closing pushes carry exactly the model's final candle (seed 1)."""
    m = MarketModel(1)
    k = _wire("binance/ws_kline_1s_final.json")["k"]
    assert k["x"] is True
    assert m.candle("BTC/USDT", 1_000, k["t"]) == (
        k["t"], float(k["o"]), float(k["h"]), float(k["l"]), float(k["c"]), float(k["v"]))
    row = _wire("okx/ws_candle1s_final.json")["data"][0]
    assert row[8] == "1"
    assert m.candle("BTC/USDT", 1_000, int(row[0])) == (int(row[0]), *map(float, row[1:6]))
    partial = _wire("binance/ws_kline_1s_partial.json")["k"]
    assert partial["x"] is False
    assert m.partial("BTC/USDT", 1_000, partial["t"], partial["t"])[1] == float(partial["o"])
