"""``btccxt exchanges``: what ccxt offers for candles, per exchange, read offline.

Role: list every ccxt exchange with its REST OHLCV (``fetchOHLCV``), WebSocket OHLCV
(ccxt.pro ``watchOHLCV``), number of timeframes and whether the btccxt simulator speaks it.
Nothing touches the network: ``describe`` instantiates the ccxt classes and reads their static
metadata; the table is computed once per process. A Rich table on a terminal, plain columns
otherwise, one JSON object with ``--json``.

Imports typer only at module level; ccxt (through ``exchange.describe``) and rich load
inside the command.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Annotated, Any

import typer

__all__ = ["exchanges_command", "ExchangeRow", "exchange_rows", "render_plain"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExchangeRow:
    """One line of ``btccxt exchanges``."""

    id: str
    name: str
    rest_ohlcv: bool
    ws_ohlcv: bool
    timeframes: int
    simulator: bool
    """Verified with the btccxt simulator (``describe.SIMULATED_EXCHANGES``)."""


@lru_cache(maxsize=1)
def exchange_rows() -> tuple[ExchangeRow, ...]:
    """Every ccxt exchange's row, built once per process (no network)."""
    from btccxt_cli.exchange.describe import SIMULATED_EXCHANGES, describe, exchange_ids

    rows = []
    for ex_id in exchange_ids():
        try:
            f = describe(ex_id)
        except Exception:  # one odd class must not hide the others
            logger.warning("could not describe %s", ex_id, exc_info=True)
            continue
        rows.append(ExchangeRow(f.id, f.name, f.has_fetch_ohlcv, f.has_watch_ohlcv,
                                len(f.timeframes), f.id in SIMULATED_EXCHANGES))
    return tuple(rows)


def _yes(flag: bool) -> str:
    return "yes" if flag else "-"


_HEAD = ("id", "name", "REST OHLCV", "WebSocket OHLCV", "timeframes", "simulator")


def _cells(r: ExchangeRow) -> tuple[str, ...]:
    return (r.id, r.name, _yes(r.rest_ohlcv), _yes(r.ws_ohlcv), str(r.timeframes),
            "verified" if r.simulator else "")


def _footer(rows: list[ExchangeRow]) -> str:
    ws = sum(r.ws_ohlcv for r in rows)
    sim = ", ".join(r.id for r in rows if r.simulator) or "none listed"
    return (f"{len(rows)} exchanges, {ws} with WebSocket OHLCV; verified with the btccxt "
            f"simulator: {sim}. Check one live with `btccxt check-ws ID`.")


def render_plain(rows: list[ExchangeRow]) -> str:
    """Aligned plain-text columns, one exchange per line, and a summary line."""
    table = [_HEAD, *(_cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(_HEAD))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
             for line in table]
    return "\n".join([*lines, _footer(rows)])


def _render_table(rows: list[ExchangeRow]) -> Any:
    from rich.table import Table

    table = Table(caption=_footer(rows), caption_justify="left")
    for head in _HEAD:
        table.add_column(head, justify="right" if head == "timeframes" else "left", no_wrap=True)
    for r in rows:
        cells = list(_cells(r))
        table.add_row(*cells, style="bold" if r.simulator else None)
    return table


def exchanges_command(
    ws_only: Annotated[bool, typer.Option("--ws-only", help="Only exchanges with WebSocket OHLCV.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """List ccxt's exchanges: REST and WebSocket OHLCV support, timeframes, simulator."""
    from importlib.metadata import version

    rows = [r for r in exchange_rows() if r.ws_ohlcv or not ws_only]
    if json_out:
        typer.echo(json.dumps({"ccxt_version": version("ccxt"), "count": len(rows),
                               "exchanges": [asdict(r) for r in rows]}, indent=2))
        return
    from rich.console import Console

    console = Console()
    if console.is_terminal:
        console.print(_render_table(rows))
    else:
        typer.echo(render_plain(rows))
