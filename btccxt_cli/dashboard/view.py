"""Pure view: ``Snapshot`` -> Rich renderables. Imports only ``model`` and rich.

The frame fits the terminal it is drawn in, at any width from 80 columns and any height:
symbol, timeframe, state and close are always shown whole; the other Bars columns give way in
a fixed order of importance (``columns.COLUMNS``); panels wrap between their fields, never
inside one; with more symbols than rows the table pages (one page per ``page_s`` seconds of
the run). A ``DashboardView`` remembers the widest cell of every column, so columns keep
their width from one refresh to the next. The frame is never taller than the terminal (less
one line) and leaves its two rightmost columns free, so Rich never has to crop or scroll it
and the echo of Ctrl-C cannot push it down: the last frame stays as it was.
Swap/futures positions (``BrokerStatus.derivs``) get a table of their own in the broker panel
(``derivs.py``), as many rows as leave the Bars table a few; spot runs have none.

Tested with fixed-size, colourless capture consoles against golden text renders.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from rich.console import Console, ConsoleOptions, Group, RenderableType
from rich.panel import Panel
from rich.text import Text

from btccxt_cli.dashboard.columns import STATE_STYLE, ColumnMemory, fit, sparkline, table
from btccxt_cli.dashboard.derivs import deriv_lines
from btccxt_cli.model import Snapshot

__all__ = ["DashboardView", "render", "sparkline"]

_TABLE_OVERHEAD = 3  # title, header, rule under the header
_MAX_ORDER_LINES = 3
_FREE_COLUMNS = 2
_MAX_DERIV_LINES = 9  # the positions table: a header and up to 8 rows ("+K more" included)
_MIN_BAR_ROWS = 4  # Bars rows the positions table leaves when the terminal is short
Item = tuple[str, str, str]  # label, value, value style


class DashboardView:
    """Renders snapshots for one run; remembers column widths across refreshes.

    Args:
        page_s: seconds each page of the Bars table stays when the symbols do not fit.
    """

    def __init__(self, page_s: float = 5.0) -> None:
        self.memory = ColumnMemory()
        self.deriv_widths: dict[str, int] = {}  # the positions table's widest cells
        self.page_s = page_s

    def __call__(self, snap: Snapshot) -> RenderableType:
        return _Frame(self, snap)


def render(snap: Snapshot) -> RenderableType:
    """The whole dashboard for one snapshot (a fresh view: no width memory)."""
    return DashboardView()(snap)


class _Frame:
    def __init__(self, view: DashboardView, snap: Snapshot) -> None:
        self.view = view
        self.snap = snap

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[RenderableType]:
        # two columns stay free: a full last line leaves the cursor in the terminal's last
        # column, where the echo of Ctrl-C ("^C") wraps and pushes the frame down one line
        snap, width = self.snap, max(20, options.max_width - _FREE_COLUMNS)
        limit = max(8, (options.height or options.max_height) - 1)
        inner = max(10, width - 4)  # a panel's border and padding
        conn = _pack(_connection_items(snap), inner) if snap.connection is not None else []
        head, tail = _broker_lines(snap, inner) if snap.broker is not None else ([], [])
        fixed = 1 + _TABLE_OVERHEAD + (len(conn) + 2 if conn else 0) + (len(head) + len(tail) + 2 if head else 0)
        # swap positions: as many rows as leave a few Bars rows and an event line
        room = limit - fixed - 3 - max(1, min(len(snap.feeds), _MIN_BAR_ROWS))
        derivs = deriv_lines(snap, inner, max(1, min(_MAX_DERIV_LINES, room)), self.view.deriv_widths)
        broker = head + derivs + tail
        fixed += len(derivs)
        rows_room = max(1, limit - fixed - 3)  # at least one event line below
        yield _header(snap, width)
        yield self._bars(width, rows_room)
        if conn:
            yield Panel(Group(*conn), title="Connection", title_align="left", width=width)
        if broker:
            yield Panel(Group(*broker), title="Broker", title_align="left", width=width)
        shown = min(len(snap.feeds), rows_room) or 1
        room = limit - fixed - shown
        if room >= 3:
            events = snap.events[-(room - 2):] if snap.events else ["no events yet"]
            body = Group(*(Text(e, no_wrap=True, overflow="ellipsis") for e in events))
            yield Panel(body, title="Events", title_align="left", width=width, height=len(events) + 2)

    def _bars(self, width: int, rows_room: int) -> RenderableType:
        snap, mem = self.snap, self.view.memory
        rows = mem.cells(snap.feeds, snap.closes)
        cols = fit(mem.widths, width)
        title, n = "Bars", len(snap.feeds)
        if n > rows_room:
            pages = math.ceil(n / rows_room)
            page = int(snap.elapsed_s // self.view.page_s) % pages
            a = page * rows_room
            b = min(n, a + rows_room)
            rows = rows[a:b]
            title = f"Bars {a + 1}-{b} of {n} (page {page + 1}/{pages}, every {self.view.page_s:g}s)"
        return table(title, rows, cols, mem.widths)


def _header(snap: Snapshot, width: int) -> Text:
    running = f"  running {snap.elapsed_s:.0f}s"
    title = Text(snap.title, style="bold", no_wrap=True, overflow="ellipsis")
    title.truncate(max(1, width - len(running)), overflow="ellipsis")
    title.append(running, style="dim")
    return title


def _pack(items: list[Item], width: int) -> list[Text]:
    """Lay ``label value`` items out in lines of ``width``; a line breaks between items only."""
    lines: list[Text] = []
    line = Text(no_wrap=True, overflow="ellipsis")
    for label, value, style in items:
        size = len(label) + 1 + len(value) if label else len(value)
        if line.plain and len(line.plain) + 2 + size > width:
            lines.append(line)
            line = Text(no_wrap=True, overflow="ellipsis")
        if line.plain:
            line.append("  ")
        if label:
            line.append(label + " ", style="dim")
        line.append(value, style=style)
    if line.plain:
        lines.append(line)
    return lines


def _connection_items(snap: Snapshot) -> list[Item]:
    c = snap.connection
    assert c is not None
    back = "-" if c.backoff_s is None else f"{c.backoff_s:.1f}s"
    return [("exchange", c.exchange, ""), ("mode", c.mode, ""),
            ("state", c.state, STATE_STYLE.get(c.state, "")), ("reconnects", str(c.reconnects), ""),
            ("backoff", back, "yellow" if c.backoff_s is not None else ""),
            ("REST calls", str(c.rest_calls), ""), ("429s", str(c.rate_limited), "")]


def _broker_lines(snap: Snapshot, width: int) -> tuple[list[Text], list[Text]]:
    """The broker panel's fields, and the lines that go below its swap positions."""
    b = snap.broker
    assert b is not None
    swaps = {p.symbol for p in b.derivs}  # shown in their own table
    pos = ", ".join(f"{k} {v:g}" for k, v in b.positions.items() if v and k not in swaps)
    items = [("mode", b.mode, ""), ("cash", f"{b.cash:,.2f}", ""), ("value", f"{b.value:,.2f}", ""),
             ("P&L", f"{b.pnl:+,.2f}", ""), ("trades", str(b.trades), ""),
             ("open orders", str(b.open_orders), "")]
    if pos or not swaps:
        items.append(("positions", pos or "none", ""))
    head, lines = _pack(items, width), []
    if b.updates:
        style = {"websocket": "green", "reconnecting": "yellow", "connecting": "yellow"}.get(b.updates, "")
        lines.append(_line("updates", b.updates, style))
    if b.balances:
        lines.append(_line("balances", ", ".join(f"{a} {v:,.8g}" for a, v in sorted(b.balances.items()))))
    orders = b.orders[:_MAX_ORDER_LINES]
    if len(b.orders) > len(orders):
        orders = orders[:-1] + [f"... and {len(b.orders) - len(orders) + 1} more"]
    lines += [_line("order", o) for o in orders]
    return head, lines


def _line(label: str, value: str, style: str = "") -> Text:
    t = Text(f"{label:<10}", style="dim", no_wrap=True, overflow="ellipsis")
    t.append(value, style=style)
    return t
