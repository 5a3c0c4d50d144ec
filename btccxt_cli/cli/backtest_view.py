"""What ``btccxt backtest`` shows: the summary (Rich tables on a terminal, plain lines
otherwise), the sweep table, the ``--json`` document and the ``--trades`` CSV.

rich loads inside the functions. Must not import: ccxt, backtrader.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

__all__ = ["summary_lines", "print_summary", "print_sweep", "sort_runs", "json_doc", "json_sweep",
           "write_trades",
           "SORT_KEYS", "TRADES_COLUMNS"]

SORT_KEYS = ("sharpe", "total_return", "final_value", "max_drawdown", "win_rate", "trades",
             "avg_trade", "exposure", "fees")
"""Metrics a sweep can be sorted by (``--sort``); max_drawdown and fees sort ascending."""

TRADES_COLUMNS = ("kind", "time", "time_iso", "symbol", "side", "size", "price", "fee", "status",
                  "opened_iso", "closed_iso", "pnl", "pnl_net", "bars", "liquidation")

_LABELS = (("start", "period start"), ("end", "period end"), ("bars", "bars (window)"),
           ("initial_value", "initial value"), ("final_value", "final value"),
           ("total_return", "total return"), ("max_drawdown", "max drawdown"),
           ("sharpe", "Sharpe (annualised)"), ("trades", "trades"), ("win_rate", "win rate"),
           ("avg_trade", "average trade (net)"), ("exposure", "exposure"), ("fees", "fees"))
_PERCENT = {"total_return", "max_drawdown", "win_rate", "exposure"}


def _fmt(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key in _PERCENT:
        return f"{value * 100:+.2f}%" if key == "total_return" else f"{value * 100:.2f}%"
    if isinstance(value, float):
        return f"{value:,.4f}" if key in ("sharpe",) else f"{value:,.2f}"
    return str(value)


def summary_lines(res: Any, head: str) -> list[str]:
    """The summary as plain lines (not a terminal, or logs)."""
    out = [head]
    for key, label in _LABELS:
        out.append(f"  {label}: {_fmt(key, res.metrics.get(key))}")
    for sym, s in res.per_symbol.items():
        out.append(f"  {sym}: bars {s.get('bars', 0)} (warm-up {s.get('warmup_bars', 0)}), "
                   f"trades {s.get('trades', 0)}, win rate {_fmt('win_rate', s.get('win_rate'))}, "
                   f"P&L net {_fmt('pnl', s.get('pnl_net'))}, fees {_fmt('fees', s.get('fees'))}")
    return out


def print_summary(console: Any, res: Any, head: str) -> None:
    """Rich tables on a terminal; the plain lines otherwise."""
    if not console.is_terminal:
        for line in summary_lines(res, head):
            console.print(line, markup=False, soft_wrap=True, highlight=False)
        return
    from rich.table import Table

    table = Table(title=head, show_header=False, title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, label in _LABELS:
        table.add_row(label, _fmt(key, res.metrics.get(key)))
    console.print(table)
    per = Table(show_header=True, title="per symbol", title_justify="left")
    for col in ("symbol", "bars", "warm-up", "trades", "win rate", "P&L net", "fees"):
        per.add_column(col, justify="left" if col == "symbol" else "right")
    for sym, s in res.per_symbol.items():
        per.add_row(sym, str(s.get("bars", 0)), str(s.get("warmup_bars", 0)), str(s.get("trades", 0)),
                    _fmt("win_rate", s.get("win_rate")), _fmt("pnl", s.get("pnl_net")),
                    _fmt("fees", s.get("fees")))
    console.print(per)


def sort_runs(runs: list[Any], key: str) -> list[Any]:
    """Best first by ``key`` (ascending for drawdown and fees); failed runs and None last."""
    low_first = key in ("max_drawdown", "fees")

    def order(r: Any) -> tuple[int, float]:
        v = r.metrics.get(key) if r.error is None else None
        if v is None:
            return (1, 0.0)
        return (0, float(v) if low_first else -float(v))

    return sorted(runs, key=order)


def print_sweep(console: Any, runs: list[Any], key: str, head: str) -> None:
    names = list(runs[0].params) if runs else []
    cols = ["total_return", "sharpe", "max_drawdown", "trades", "win_rate", "final_value"]
    if key not in cols:
        cols.insert(0, key)
    rows = []
    for r in runs:
        vals = [str(r.params.get(n)) for n in names]
        if r.error is not None:
            rows.append([*vals, f"failed: {r.error}"] + [""] * (len(cols) - 1))
        else:
            rows.append([*vals, *(_fmt(c, r.metrics.get(c)) for c in cols)])
    if not console.is_terminal:
        console.print(head, markup=False, highlight=False, soft_wrap=True)
        console.print("  " + "\t".join([*names, *cols]), markup=False, highlight=False, soft_wrap=True)
        for row in rows:
            console.print("  " + "\t".join(row), markup=False, highlight=False, soft_wrap=True)
        return
    from rich.table import Table

    table = Table(title=f"{head} (sorted by {key})", title_justify="left")
    for n in names:
        table.add_column(n)
    for c in cols:
        table.add_column(c, justify="right")
    for row in rows:
        table.add_row(*row)
    console.print(table)


def json_doc(res: Any, window: dict[str, Any]) -> str:
    """``--json`` of one run: ``metrics``, ``per_symbol``, ``orders``, ``trades``, ``window``."""
    doc = {"window": window, "params": res.params, "metrics": res.metrics,
           "per_symbol": res.per_symbol, "orders": res.orders, "trades": res.trades}
    return json.dumps(doc, indent=2, allow_nan=False, default=_num)


def json_sweep(runs: list[Any], window: dict[str, Any], key: str) -> str:
    """``--json`` of a sweep: every run (params, metrics, error), best first by ``key``."""
    doc = {"window": window, "sort": key,
           "runs": [{"params": r.params, "metrics": r.metrics, "per_symbol": r.per_symbol,
                     "error": r.error} for r in runs]}
    return json.dumps(doc, indent=2, allow_nan=False, default=_num)


def _num(value: Any) -> Any:
    return float(value)


def write_trades(path: Path, res: Any) -> int:
    """Every order, then every closed trade, as CSV rows (``TRADES_COLUMNS``)."""
    n = 0
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=TRADES_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for o in res.orders:
            w.writerow({"kind": "order", "time_iso": o["iso"], **o,
                        "liquidation": "true" if o.get("liquidation") else ""})
            n += 1
        for t in res.trades:
            w.writerow({"kind": "trade", "time": t["closed"], "time_iso": t["closed_iso"],
                        "fee": t["fees"], **t})
            n += 1
    return n
