"""How many bars one ``fetch_ohlcv`` request may ask for, per exchange and market.

Role: :func:`request_limit` reads ccxt's ``features`` of a client (4.4+), falling back to
:data:`KNOWN_LIMITS` and then :data:`DEFAULT_LIMIT`; the backfill sizes its request windows with
it. Reads attributes of a client it is given; no I/O.

Must not import: ccxt, typer, rich, backtrader, the simulator.
"""

from __future__ import annotations

from typing import Any

__all__ = ["request_limit", "KNOWN_LIMITS", "DEFAULT_LIMIT", "share_rate_budget"]

KNOWN_LIMITS: dict[str, int] = {"binance": 1000, "okx": 300, "bybit": 1000, "kucoin": 1500,
                                 "bitget": 200, "kraken": 720}
"""Bars per ``fetch_ohlcv`` request when ccxt's ``features`` do not say (spot markets)."""

DEFAULT_LIMIT = 100
"""Last resort for exchanges neither ccxt's ``features`` nor ``KNOWN_LIMITS`` describe."""


def request_limit(exchange: Any, symbol: str | None = None) -> int:
    """Bars one ``fetch_ohlcv`` call returns at most on ``exchange`` (for ``symbol``'s market).

    Read from ccxt's ``features[type][subtype].fetchOHLCV.limit`` (4.4+), else
    ``KNOWN_LIMITS``, else ``DEFAULT_LIMIT``.
    """
    features = getattr(exchange, "features", None) or {}
    market: dict[str, Any] = {}
    if symbol is not None and getattr(exchange, "markets", None):
        market = exchange.markets.get(symbol) or {}
    mtype = market.get("type") or "spot"
    node = features.get(mtype) or features.get("spot") or {}
    if isinstance(node, dict) and "fetchOHLCV" not in node:  # swap/future: linear | inverse
        sub = "inverse" if market.get("inverse") else "linear"
        node = node.get(sub) or {}
    spec = node.get("fetchOHLCV") if isinstance(node, dict) else None
    if isinstance(spec, dict) and isinstance(spec.get("limit"), int) and spec["limit"] > 0:
        return int(spec["limit"])
    return KNOWN_LIMITS.get(getattr(exchange, "id", ""), DEFAULT_LIMIT)


def share_rate_budget(exchange: Any, url: str | None = None) -> Any:
    """Draw ``exchange``'s REST calls from the budget shared by every process on the IP.

    ``url`` (or ``$BTCCXT_RATE_LIMIT_SHARED``): ``redis://...`` of the shared token bucket
    (``hub/budget.py``; ``rate_limit.shared`` in a config). None when neither is set.
    """
    import os

    url = url or os.environ.get("BTCCXT_RATE_LIMIT_SHARED") or None
    if not url:
        return None
    from btccxt_cli.hub.budget import install_budget

    return install_budget(exchange, url)
