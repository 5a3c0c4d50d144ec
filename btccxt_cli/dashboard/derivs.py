"""The broker panel's swap/futures positions: one row per ``DerivPosition``.

Pure: imports only ``model`` and rich. Columns give way in a fixed order of importance like the
Bars table's (``columns.fit``): symbol, side, size and unrealised P&L are always shown, then
the liquidation price, leverage, mark, funding, entry and the distance to liquidation, as
the panel's width allows. Rows are the positions with the largest |unrealised P&L| first; when
they do not all fit, the last line says how many more there are and their unrealised P&L.
"""

from __future__ import annotations

import math

from rich.text import Text

from btccxt_cli.dashboard.columns import Column, fit, line_of, price
from btccxt_cli.model import DerivPosition, Snapshot

__all__ = ["DERIV_COLUMNS", "deriv_lines"]

Decimals = tuple[int | None, int | None]  # price decimals, amount decimals of the symbol
_MODE = {"isolated": "iso", "cross": "cross"}


def _leverage(p: DerivPosition, d: Decimals) -> str:
    return f"{p.leverage:g}x {_MODE.get(p.margin_mode, p.margin_mode)}"


def _to_liq(p: DerivPosition, d: Decimals) -> str:
    """How far the mark may move before liquidation, as a fraction of the mark."""
    if p.liquidation is None or not p.mark:
        return "-"
    return f"{abs(p.mark - p.liquidation) / p.mark:.1%}"


def _money(v: float) -> str:
    return f"{round(v, 2) + 0.0:+,.2f}"  # + 0.0: never "-0.00"


def _num(v: float | None, decimals: int | None, digits: int = 8) -> str:
    """``price`` with the symbol's decimals; without them ``digits`` significant digits in
    plain notation (a position's symbol need not have a feed: never ``2e+06``)."""
    if v is None or decimals is not None or not v or not math.isfinite(v):
        return price(v, decimals, digits)
    text = f"{v:.{max(0, digits - 1 - math.floor(math.log10(abs(v))))}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


# display order; ``rank`` is the order of importance (ties give way together)
DERIV_COLUMNS: tuple[Column, ...] = (
    Column("symbol", "symbol", 0, lambda p, d: p.symbol, left=True),
    Column("side", "side", 0, lambda p, d: p.side, left=True, seed=len("short")),
    Column("size", "size", 0, lambda p, d: _num(abs(p.size), d[1], 6)),
    Column("entry", "entry", 5, lambda p, d: _num(p.entry, d[0])),
    Column("mark", "mark", 3, lambda p, d: _num(p.mark, d[0])),
    Column("upnl", "uPnL", 0, lambda p, d: _money(p.upnl)),
    Column("liq", "liq", 1, lambda p, d: _num(p.liquidation, d[0])),
    Column("to_liq", "to liq", 6, _to_liq),
    Column("lev", "lev", 2, _leverage, left=True),
    # funding's effect on the money, like uPnL: negative when paid, positive when received
    Column("funding", "funding", 4, lambda p, d: _money(-p.funding)),
)


def _style(c: Column, text: str) -> str:
    if c.key in ("upnl", "funding"):
        return "red" if text.startswith("-") else "green" if text.strip("+0.,") else ""
    return ""


def deriv_lines(snap: Snapshot, width: int, room: int, widths: dict[str, int]) -> list[Text]:
    """The positions table in at most ``room`` lines of ``width`` (``room`` >= 1).

    ``widths``: the widest cell seen per column, kept by the caller across refreshes.
    """
    b = snap.broker
    if b is None or not b.derivs:
        return []
    decimals: dict[str, Decimals] = {f.symbol: (f.price_decimals, f.amount_decimals) for f in snap.feeds}
    ranked = sorted(b.derivs, key=lambda p: -abs(p.upnl))
    shown = ranked if len(ranked) <= room - 1 else ranked[:max(0, room - 2)]
    rows = [[c.cell(p, decimals.get(p.symbol, (None, None))) for c in DERIV_COLUMNS] for p in shown]
    for i, c in enumerate(DERIV_COLUMNS):
        widths[c.key] = max([widths.get(c.key, max(len(c.header), c.seed)), *(len(r[i]) for r in rows)])
    cols = fit(widths, width, DERIV_COLUMNS)
    index = {c.key: i for i, c in enumerate(DERIV_COLUMNS)}
    lines = [line_of([c.header for c in cols], cols, widths, header=True)] if shown else []
    lines += [line_of([r[index[c.key]] for c in cols], cols, widths, style_of=_style) for r in rows]
    rest = ranked[len(shown):]
    if rest:
        what = f"+{len(rest)} more positions" if shown else f"{len(rest)} positions"
        lines.append(Text(f"{what} (uPnL {_money(sum(p.upnl for p in rest))})", style="dim",
                          no_wrap=True, overflow="ellipsis"))
    return lines
