"""One scripted swap round trip, traded live against the simulator and then on the paper broker
over the same bars, ends flat in both with the same P&L but for the price the live orders met.

The script (``SCRIPT``) opens a long of 0.05 BTC on live bar k, flips it to a short of 0.05 in
one order at bar k+m and closes it at bar k+2m, on okx's ``BTC/USDT:USDT`` (3x isolated),
with funding settled every 2 s so that both runs pay and receive it. ``btccxt run --live``
trades it against the simulator (real ccxt signing, real sockets); ``btccxt backtest`` then
replays the bars that run saw (from the cache it wrote) on the paper broker, with funding from
the simulator's rate history, like ``test_backtest_parity.py`` does for spot.

What must agree, and why not to the cent:

- the bars the orders filled in, their sides and sizes, and the end: flat on both, no position
  left at the exchange or in the bot's ledger;
- funding, to the 8 decimals okx's bills give each payment: both pay ``size * mark * rate`` at the same settlements (a position held
  through the bar closing at a settlement pays at that bar's close, which is the simulator's
  mark at that second);
- fees: each live fill pays the simulator's taker fee, 0.1 % of its value, the paper's
  ``broker.commission``;
- the price: a paper market order fills at the next bar's open, which is the price at the close
  of the bar that decided it; the live order reaches the exchange a few milliseconds to a few
  hundred later and fills at the price of that moment. So the P&L differs by exactly what those
  price moves made, ``-sum(signed size * (live price - paper price)) * (1 + fee)`` for each fill
  (checked to 1e-6), which the test bounds at 0.05 % of the price per fill: the tolerance is
  ``sum(|size| * |live price - paper price|) * (1 + fee)``, never fees or funding.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from btccxt_cli.exchange.factory import make_exchange
from btccxt_cli.sim.accounts import DEFAULT_KEY
from tests.cli.test_run_cli import btccxt, read_events

pytestmark = pytest.mark.live

SWAP = "BTC/USDT:USDT"
FEE = 0.001  # okx taker on the simulator; the paper broker's commission
SIZE = 0.05
K, M = 2, 4  # long on live bar K, short at K+M, flat at K+2M
ENV = {"BTCCXT_SIM_KEY": DEFAULT_KEY.key, "BTCCXT_SIM_SECRET": DEFAULT_KEY.secret,
       "BTCCXT_SIM_PASSPHRASE": DEFAULT_KEY.passphrase or "", "NO_COLOR": "1"}

SCRIPT = '''import backtrader as bt


class Script(bt.Strategy):
    """Long ``size`` on live bar k, short ``size`` at k+m (one order), flat at k+2m."""

    params = (("k", 2), ("m", 4), ("size", 0.05))

    def start(self):
        self.n = 0
        self.live = False

    def notify_data(self, data, status, *args, **kwargs):
        self.live = status == data.LIVE

    def next(self):
        if not self.live:
            return
        self.n += 1
        if self.n == self.p.k:
            self.buy(size=self.p.size)
        elif self.n == self.p.k + self.p.m:
            self.sell(size=2 * self.p.size)
        elif self.n == self.p.k + 2 * self.p.m:
            self.buy(size=self.p.size)
'''


def _config(tmp_path: Path, sim_url: str) -> Path:
    (tmp_path / "script.py").write_text(SCRIPT)
    cfg = tmp_path / "swap.yaml"
    cfg.write_text(f"""exchange:
  id: okx
  sim: {sim_url}
  api_key: ${{BTCCXT_SIM_KEY}}
  secret: ${{BTCCXT_SIM_SECRET}}
  password: ${{BTCCXT_SIM_PASSPHRASE}}
symbols: [{SWAP}]
feed:
  mode: websocket
  timeframe: 1s
  backfill: 5
  cache: {tmp_path / 'ohlcv.sqlite'}
strategy:
  path: script.py
  params: {{k: {K}, m: {M}, size: {SIZE}}}
broker:
  mode: live
  cash: 10000
  commission: {FEE}
  leverage: 3
  margin_mode: isolated
  orders_db: orders.sqlite
  poll_interval: 0.2
logging:
  level: INFO
""")
    return cfg


def _window(records: list[dict[str, Any]]) -> tuple[int, int]:
    """The first bar the strategy saw LIVE, and the end of the last bar of the run."""
    live = False
    first = None
    last = 0
    for r in records:
        if r["type"] == "state":
            live = r["event"] == "LIVE"
        elif r["type"] == "bar":
            if live and first is None:
                first = r["ts"]
            last = max(last, r["ts"])
    assert first is not None, "the run never went LIVE"
    return first, last + 1000


def _equity(sim: Any) -> float:
    usdt = sim.balances("okx")["USDT"]
    return usdt["free"] + usdt["locked"]


@pytest.mark.long
def test_a_scripted_long_short_round_trip_ends_alike_live_and_on_paper(sim_factory: Any,
                                                                      tmp_path: Path) -> None:
    sim = sim_factory(exchanges=("okx",), balances={"USDT": 10_000.0}, funding_interval_s=2)
    cfg = _config(tmp_path, sim.url("okx"))
    start_equity = _equity(sim)
    events = tmp_path / "events.jsonl"
    run = btccxt("run", str(cfg), "--plain", "--live", "--yes", "--max-bars", str(K + 2 * M + 2),
                 "--events", str(events), env=ENV)
    out, err = run.communicate(timeout=90)
    assert run.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    records = read_events(events)
    live = [r for r in records if r["type"] == "order" and r["event"] == "Completed"]
    assert [(r["side"], abs(r["size"])) for r in live] == [("buy", SIZE), ("sell", 2 * SIZE),
                                                          ("buy", SIZE)], live

    # the exchange: flat, and what the account's money did (realised P&L, fees, funding)
    ex = make_exchange("okx", sim_url=sim.url("okx"), config={
        "apiKey": DEFAULT_KEY.key, "secret": DEFAULT_KEY.secret, "password": DEFAULT_KEY.passphrase})
    ex.load_markets()
    assert [p for p in ex.fetch_positions([SWAP]) if float(p["contracts"] or 0)] == []
    assert sim.positions("okx") == []
    live_pnl = _equity(sim) - start_equity
    by_cid = {o["client_id"]: o for o in sim.orders("okx")}
    fills = [by_cid[r["client_id"]] for r in live]
    live_px = [o["cost"] / o["filled"] for o in fills]
    for o, px in zip(fills, live_px, strict=True):  # the simulator's fee is the paper's commission
        assert o["fee"] == pytest.approx(FEE * o["filled"] * px, abs=1e-9)
    paid = [r for r in ex.fetch_funding_history(SWAP) if r["timestamp"] >= live[0]["bar"]]
    live_funding = -sum(r["amount"] for r in paid)  # paid: positive, like the backtest's
    assert len(paid) >= 2, "the position was held over several settlements"
    # the bot's ledger is flat too
    import sqlite3

    with sqlite3.connect(tmp_path / "orders.sqlite") as con:
        assert [r[0] for r in con.execute("SELECT size FROM positions")] == [0.0]

    # the same bars on the paper broker: the cache the run wrote, funding from the simulator
    since, until = _window(records)
    bt = btccxt("backtest", str(cfg), "--since", str(since), "--until", str(until), "--json",
                env=ENV)
    bout, berr = bt.communicate(timeout=90)
    assert bt.returncode == 0, berr[-3000:]
    doc = json.loads(bout)
    paper = [o for o in doc["orders"] if o["status"] == "Completed"]
    assert [(o["time"], o["side"], o["size"]) for o in paper] == \
        [(r["bar"], r["side"], abs(r["size"])) for r in live], (paper, live)
    paper_pnl = doc["metrics"]["final_value"] - 10_000.0
    paper_funding = doc["per_symbol"][SWAP]["funding"]

    # funding alike; fees at the same rate; the P&L apart by the price the live orders met
    # (okx's bills carry each payment to 8 decimals)
    assert paper_funding == pytest.approx(live_funding, abs=0.5e-8 * len(paid) + 1e-12)
    assert paper_funding != 0
    signed = [SIZE, -2 * SIZE, SIZE]
    moved = [lp - o["price"] for lp, o in zip(live_px, paper, strict=True)]
    for d, o in zip(moved, paper, strict=True):
        assert abs(d) <= 0.0005 * o["price"], (moved, "a live order met a price far from the bar's")
    want = -sum(s * d for s, d in zip(signed, moved, strict=True)) - \
        FEE * sum(abs(s) * d for s, d in zip(signed, moved, strict=True))
    assert live_pnl - paper_pnl == pytest.approx(want, abs=1e-6), (live_pnl, paper_pnl, moved)
    tolerance = sum(abs(s) * abs(d) for s, d in zip(signed, moved, strict=True)) * (1 + FEE)
    assert abs(live_pnl - paper_pnl) <= tolerance + 1e-6
