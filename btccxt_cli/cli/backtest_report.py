"""``btccxt backtest --report FILE.html``: one self-contained HTML file (plotly, its JavaScript
inlined, so it opens offline in any browser).

What it holds, top to bottom: the metrics table; per symbol, the window's candles with a
green triangle up at each buy and a red triangle down at each sell (at the fill's time and
price; hover shows size and fee); the equity curve; the drawdown from the running peak
(percent). Long windows are drawn from at most ``MAX_POINTS`` candles per symbol (consecutive
bars merged into one: first open, highest high, lowest low, last close) and as many equity
points; orders are always all drawn.

plotly is an optional extra (``pip install 'btccxt[report]'``); ``require_plotly`` says so in
one line (exit 2) before anything runs. Must not import: ccxt, backtrader.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from btccxt_cli.errors import DependencyError

__all__ = ["require_plotly", "write_report", "MAX_POINTS"]

MAX_POINTS = 5_000


def require_plotly() -> None:
    try:
        import plotly  # noqa: F401
    except ImportError:
        raise DependencyError("--report needs plotly, which is not installed",
                              hint="pip install 'btccxt[report]' (or pip install plotly), or "
                                   "leave --report out") from None


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def _merge(candles: Sequence[Any], most: int) -> list[tuple[int, float, float, float, float]]:
    """At most ``most`` candles: consecutive ones merged (first open, max high, min low, last close)."""
    k = max(1, -(-len(candles) // most))
    out = []
    for i in range(0, len(candles), k):
        part = candles[i:i + k]
        out.append((part[0].ts, part[0].open, max(c.high for c in part), min(c.low for c in part),
                    part[-1].close))
    return out


def _thin(points: Sequence[tuple[int, float]], most: int) -> list[tuple[int, float]]:
    k = max(1, -(-len(points) // most))
    out = list(points[::k])
    if points and out[-1] != points[-1]:
        out.append(points[-1])
    return out


def write_report(path: Path, res: Any, candles: dict[str, Sequence[Any]], title: str,
                 labels: Sequence[tuple[str, str]], fmt: Any) -> None:
    """Write the report of ``res`` (a ``BacktestResult`` with its equity ``curve``)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    symbols = list(candles)
    n = len(symbols)
    specs = [[{"type": "table"}]] + [[{"type": "xy"}]] * (n + 2)
    titles = ["metrics", *(f"{s}: candles, buys and sells" for s in symbols), "equity",
              "drawdown (%)"]
    heights = [0.9] + [1.6] * n + [1.0, 0.7]
    fig = make_subplots(rows=n + 3, cols=1, specs=specs, subplot_titles=titles,
                        row_heights=heights, vertical_spacing=0.04)
    fig.add_trace(go.Table(header={"values": ["metric", "value"]},
                           cells={"values": [[lab for _, lab in labels],
                                             [fmt(k, res.metrics.get(k)) for k, _ in labels]]}),
                  row=1, col=1)
    for i, sym in enumerate(symbols, start=2):
        bars = _merge(candles[sym], MAX_POINTS)
        fig.add_trace(go.Candlestick(x=[_dt(b[0]) for b in bars], open=[b[1] for b in bars],
                                     high=[b[2] for b in bars], low=[b[3] for b in bars],
                                     close=[b[4] for b in bars], name=sym, showlegend=False),
                      row=i, col=1)
        for side, symbol, color in (("buy", "triangle-up", "#1a9850"), ("sell", "triangle-down", "#d73027"),
                                    ("liquidation", "x", "#000000")):
            mine = [o for o in res.orders if o["symbol"] == sym and o["status"] in ("Completed", "Partial")
                    and (o.get("liquidation") if side == "liquidation"
                         else o["side"] == side and not o.get("liquidation"))]
            if not mine:
                continue
            fig.add_trace(go.Scatter(
                x=[_dt(o["time"]) for o in mine], y=[o["price"] for o in mine], mode="markers",
                marker={"symbol": symbol, "size": 10, "color": color}, name=f"{sym} {side}",
                text=[f"{o['side']} {o['size']:g} @ {o['price']:.8g}, fee {o['fee']:.6g}"
                      + (" (liquidation)" if o.get("liquidation") else "") for o in mine],
                hoverinfo="text+x"), row=i, col=1)
        fig.update_xaxes(rangeslider_visible=False, row=i, col=1)
    curve = _thin(res.curve, MAX_POINTS)
    xs = [_dt(t) for t, _ in curve]
    fig.add_trace(go.Scatter(x=xs, y=[v for _, v in curve], mode="lines", name="equity",
                             line={"color": "#3366cc"}), row=n + 2, col=1)
    peak = float("-inf")
    dd = []
    for _, v in res.curve:
        peak = max(peak, v)
        dd.append((v / peak - 1.0) * 100.0 if peak > 0 else 0.0)
    dd_thin = _thin(list(zip([t for t, _ in res.curve], dd, strict=True)), MAX_POINTS)
    fig.add_trace(go.Scatter(x=[_dt(t) for t, _ in dd_thin], y=[d for _, d in dd_thin],
                             mode="lines", fill="tozeroy", name="drawdown %",
                             line={"color": "#d73027"}), row=n + 3, col=1)
    fig.update_layout(title=title, height=420 + 380 * n + 500, showlegend=True,
                      template="plotly_white")
    fig.write_html(str(path), include_plotlyjs=True, full_html=True)
