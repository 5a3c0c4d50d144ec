"""``btccxt backtest`` speed and memory beside plain backtrader, in the same run.

    python bench/backtest.py [--bars 525600] [--symbol BTC/USDT] [--rounds 2] [--no-memory]

One year of 1m bars (525,600) of one symbol, from the in-process simulator into a fresh
cache (``Backfiller``, not timed), exported to CSV (``cache/export.py``, not timed). Then the
same ``sma_cross`` (fast 10, slow 30, trading from the first bar: no warm-up, every bar live)
over the same bars, each timed alone in this process:

* **btccxt backtest**: ``runtime.backtest.run_backtest`` over the cache, as the command runs
  it (``CCXTFeed`` on the cache-replay store, ``exactbars=1``, the paper broker, analyzers);
* **backtrader, CSV, defaults**: ``GenericCSVData`` of the export with cerebro's defaults
  (``preload`` and ``runonce``: indicators computed vectorised, every bar kept in memory);
* **backtrader, CSV, exactbars=1**: the same with the memory mode btccxt runs in (bars
  streamed, no preload, no runonce): the like-for-like event-by-event reference.

Both trade identically (orders and final value are compared). Memory: the peak RSS (VmHWM)
of a fresh process running ``btccxt backtest`` over a quarter and over the whole window. Bars
are streamed, so what grows is backtrader's broker, which keeps every order object it was
given (in plain backtrader and paper runs as well): the growth per order is printed. Target: within 1.2x of plain backtrader's time.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

EX = "binance"
TF = "1m"
MIN = 60_000


def _config(tmp: Path, db: Path, symbol: str) -> Path:
    cfg = tmp / "bench.yaml"
    cfg.write_text(f"""exchange: {{id: {EX}}}
symbols: [{symbol}]
feed: {{mode: websocket, timeframe: {TF}, backfill: 0, cache: {db}}}
strategy: {{name: sma_cross, params: {{fast: 10, slow: 30, stake: 0.01}}}}
broker: {{cash: 10000000, commission: 0.001}}
""")
    return cfg


def _fill_cache(db: Path, symbol: str, since: int, until: int) -> str:
    from btccxt_cli.cache.backfill import Backfiller
    from btccxt_cli.cache.sqlite import OhlcvCache
    from btccxt_cli.exchange.factory import make_exchange
    from btccxt_cli.sim.app import SimThread

    sim = SimThread(exchanges=(EX,)).start()
    try:
        url = sim.url(EX)
        client = make_exchange(EX, kind="sync", sim_url=url, config={"enableRateLimit": False})
        with OhlcvCache(db) as cache:
            Backfiller(client, cache, exchange_id=EX, source=EX, symbol=symbol, timeframe=TF,
                       since_ms=since, until_ms=until).run()
            return str(cache.count(EX, symbol, TF, since, until))
    finally:
        sim.stop()


def _export(db: Path, csv_path: Path, symbol: str, since: int, until: int) -> int:
    from btccxt_cli.cache.export import export_csv, export_rows
    from btccxt_cli.cache.sqlite import OhlcvCache

    with OhlcvCache(db) as cache:
        return export_csv(csv_path, export_rows(cache, EX, TF, [(symbol, since, until)]))


def run_btccxt(cfg_path: Path, since: int, until: int) -> tuple[float, int, float]:
    from btccxt_cli.bt.replay import cache_rows
    from btccxt_cli.cache.sqlite import OhlcvCache
    from btccxt_cli.config.load import load_config
    from btccxt_cli.runtime.backtest import run_backtest

    cfg = load_config(cfg_path)
    with OhlcvCache(cfg.feed.cache) as cache:
        t0 = time.process_time()
        res = run_backtest(cfg, cfg_path.parent, cache_rows(cache, EX), since, until)
        dt = time.process_time() - t0
    orders = [o for o in res.orders if o["status"] == "Completed"]
    return dt, len(orders), res.metrics["final_value"]


def run_plain(csv_path: Path, exactbars: int) -> tuple[float, int, float]:
    import backtrader as bt

    from btccxt_cli.runtime.strategies import REPO_STRATEGIES, _import_file

    base = _import_file(REPO_STRATEGIES / "sma_cross.py").SmaCross

    class Plain(base):  # type: ignore[misc, valid-type]
        """sma_cross with every bar live (a CSV feed sends no LIVE notification)."""

        def __init__(self) -> None:
            super().__init__()
            self.live = {d: True for d in self.datas}
            self.fills = 0

        def notify_order(self, order) -> None:  # noqa: ANN001
            if order.status == order.Completed:
                self.fills += 1

    data = bt.feeds.GenericCSVData(dataname=str(csv_path), headers=True, dtformat="%Y-%m-%dT%H:%M:%SZ",
                                   timeframe=bt.TimeFrame.Minutes, compression=1, datetime=4,
                                   open=5, high=6, low=7, close=8, volume=9, openinterest=-1)
    cerebro = bt.Cerebro(stdstats=False, exactbars=exactbars)
    cerebro.broker.setcash(10_000_000)
    cerebro.broker.setcommission(commission=0.001)
    cerebro.adddata(data)
    cerebro.addstrategy(Plain, fast=10, slow=30, stake=0.01)
    t0 = time.process_time()
    strat = cerebro.run()[0]
    dt = time.process_time() - t0
    return dt, strat.fills, cerebro.broker.getvalue()


def _child(cfg_path: Path, since: int, until: int) -> None:
    """(a fresh process) one backtest; prints its time and peak RSS as JSON."""
    dt, orders, value = run_btccxt(cfg_path, since, until)
    rss = _hwm_mb()
    sys.stdout.write(json.dumps({"seconds": dt, "orders": orders, "rss_mb": rss}) + "\n")


def _hwm_mb() -> float:
    """This process's peak RSS (VmHWM; unlike ru_maxrss it starts afresh at exec, so the
    parent's size when it forked this child does not count)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _peak(cfg_path: Path, since: int, until: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(cfg_path), str(since), str(until)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bars", type=int, default=525_600)
    ap.add_argument("--symbol", default="BTC/USDT")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        _child(Path(a.child[0]), int(a.child[1]), int(a.child[2]))
        return
    import backtrader as bt

    import btccxt_cli

    until = int(time.time() * 1000) // MIN * MIN - MIN
    since = until - a.bars * MIN
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        db, csv_path = tmp / "ohlcv.sqlite", tmp / "bars.csv"
        t0 = time.perf_counter()
        cached = _fill_cache(db, a.symbol, since, until)
        rows = _export(db, csv_path, a.symbol, since, until)
        print(f"# python {platform.python_version()} on {platform.machine()}, backtrader "
              f"{bt.__version__}, btccxt {btccxt_cli.__version__}; {cached} {TF} bars of "
              f"{a.symbol} cached and {rows} exported in {time.perf_counter() - t0:.1f} s (not timed)")
        cfg_path = _config(tmp, db, a.symbol)
        runs: dict[str, list[tuple[float, int, float]]] = {"ours": [], "plain": [], "plain1": []}
        for _ in range(a.rounds):  # interleaved; the best round of each counts (shared machine)
            runs["ours"].append(run_btccxt(cfg_path, since, until + 1))
            runs["plain"].append(run_plain(csv_path, exactbars=0))
            runs["plain1"].append(run_plain(csv_path, exactbars=1))
        ours, plain, plain1 = (min(runs[k]) for k in ("ours", "plain", "plain1"))
        print(f"# best of {a.rounds} interleaved rounds; seconds of every round: "
              + ", ".join(f"{k} {' '.join(f'{r[0]:.1f}' for r in v)}" for k, v in runs.items()))
        print(f"{'case':34} {'CPU s':>8} {'bars/s':>9} {'orders':>7} {'final value':>15}")
        for name, (dt, n, v) in (("btccxt backtest (exactbars=1)", ours),
                                 ("backtrader CSV, defaults", plain),
                                 ("backtrader CSV, exactbars=1", plain1)):
            print(f"{name:34} {dt:8.2f} {a.bars / dt:9,.0f} {n:7d} {v:15.4f}")
        same = ours[1] == plain[1] == plain1[1] and abs(ours[2] - plain[2]) < 1e-6 * plain[2]
        print(f"same orders and final value: {'yes' if same else 'NO'}")
        print(f"btccxt / backtrader defaults: {ours[0] / plain[0]:.2f}x; "
              f"btccxt / backtrader exactbars=1: {ours[0] / plain1[0]:.2f}x (target <= 1.2x)")
        if not a.no_memory:
            quarter = _peak(cfg_path, until - a.bars // 4 * MIN, until + 1)
            whole = _peak(cfg_path, since, until + 1)
            print(f"peak RSS of a fresh process: {a.bars // 4:,} bars {quarter['rss_mb']:.0f} MB "
                  f"({quarter['orders']:,} orders), {a.bars:,} bars {whole['rss_mb']:.0f} MB "
                  f"({whole['orders']:,} orders)")
            per_order = (whole["rss_mb"] - quarter["rss_mb"]) * 1024 / max(1, whole["orders"] - quarter["orders"])
            print(f"  growth per order: {per_order:.1f} KB (backtrader's broker keeps every order "
                  "object; bars are streamed: exactbars=1, lookback bounded)")


if __name__ == "__main__":
    main()
