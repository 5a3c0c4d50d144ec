"""Pure view: ``Snapshot`` -> Rich renderables. Imports only ``model`` and rich.

Tested with a fixed-width, colourless capture console.
"""

from __future__ import annotations

from datetime import datetime, timezone

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from btccxt_cli.model import Snapshot

__all__ = ["render", "sparkline"]

_BLOCKS = "▁▂▃▄▅▆▇█"
_STATE_STYLE = {"LIVE": "green", "DELAYED": "yellow", "CONNECTED": "cyan",
                "DISCONNECTED": "bold red", "NOTSUBSCRIBED": "red", "OVER": "dim"}


def sparkline(values: list[float], width: int = 16) -> str:
    """A tiny price chart of the last ``width`` values."""
    vals = values[-width:]
    if not vals:
        return ""
    lo, hi = min(vals), max(vals)
    if hi == lo:
        return _BLOCKS[3] * len(vals)
    return "".join(_BLOCKS[int((v - lo) / (hi - lo) * (len(_BLOCKS) - 1))] for v in vals)


def _fmt(v: float | None, digits: int = 6) -> str:
    return "-" if v is None else f"{v:.{digits}g}"


def _age(s: float | None) -> str:
    return "-" if s is None else f"{s:.1f}s"


def _feeds_table(snap: Snapshot) -> Table:
    t = Table(title="Bars", expand=True, title_justify="left")
    for col in ("symbol", "tf", "state", "last bar (UTC)", "open", "high", "low", "close", "volume",
                "backfill", "live", "gapfill", "msg age", "reconn", "lat ms", "trend"):
        t.add_column(col, no_wrap=True, justify="right" if col not in ("symbol", "state", "trend") else "left")
    for f in snap.feeds:
        b = f.last_bar
        when = datetime.fromtimestamp(b.ts / 1000, tz=timezone.utc).strftime("%H:%M:%S") if b else "-"
        lat = "-" if f.latency_ms_last is None else f"{f.latency_ms_last:.0f}"
        t.add_row(
            f.symbol, f.timeframe, Text(f.state, style=_STATE_STYLE.get(f.state, "")), when,
            _fmt(b.open if b else None), _fmt(b.high if b else None), _fmt(b.low if b else None),
            _fmt(b.close if b else None), _fmt(b.volume if b else None, 5),
            str(f.bars.get("backfill", 0)), str(f.bars.get("live", 0)), str(f.bars.get("gapfill", 0)),
            _age(f.last_message_age_s), str(f.reconnects), lat, sparkline(snap.closes.get(f.symbol, [])),
        )
    return t


def _connection_panel(snap: Snapshot) -> RenderableType:
    c = snap.connection
    if c is None:
        return Text("")
    back = "-" if c.backoff_s is None else f"{c.backoff_s:.1f}s"
    body = Text.assemble(
        ("exchange ", "dim"), c.exchange, ("  mode ", "dim"), c.mode, ("  state ", "dim"),
        (c.state, _STATE_STYLE.get(c.state, "")), ("  reconnects ", "dim"), str(c.reconnects),
        ("  backoff ", "dim"), back, ("  REST calls ", "dim"), str(c.rest_calls),
        ("  429s ", "dim"), str(c.rate_limited),
    )
    return Panel(body, title="Connection", title_align="left")


def _broker_panel(snap: Snapshot) -> RenderableType:
    b = snap.broker
    if b is None:
        return Text("")
    pos = ", ".join(f"{k} {v:g}" for k, v in b.positions.items() if v) or "none"
    body = Text.assemble(
        ("mode ", "dim"), b.mode, ("  cash ", "dim"), f"{b.cash:,.2f}", ("  value ", "dim"),
        f"{b.value:,.2f}", ("  P&L ", "dim"), f"{b.pnl:+,.2f}", ("  trades ", "dim"), str(b.trades),
        ("  open orders ", "dim"), str(b.open_orders), ("  positions ", "dim"), pos,
    )
    if b.updates:
        style = {"websocket": "green", "reconnecting": "yellow", "connecting": "yellow"}.get(b.updates, "")
        body.append("\nupdates   ", style="dim")
        body.append(b.updates, style=style)
    if b.balances:
        body.append("\nbalances  ", style="dim")
        body.append(", ".join(f"{a} {v:,.8g}" for a, v in sorted(b.balances.items())))
    for line in b.orders:
        body.append("\norder     ", style="dim")
        body.append(line)
    return Panel(body, title="Broker", title_align="left")


def render(snap: Snapshot) -> RenderableType:
    """The whole dashboard for one snapshot."""
    header = Text.assemble((snap.title, "bold"), ("  running ", "dim"), f"{snap.elapsed_s:.0f}s")
    events = Text("\n".join(snap.events[-8:]) or "no events yet")
    return Group(header, _feeds_table(snap), _connection_panel(snap), _broker_panel(snap),
                 Panel(events, title="Events", title_align="left"))
