"""Fees of live fills, per currency (``docs/orders.md``, "Fees").

An exchange charges a fill's fee in the quote currency, the base currency, or a third one
(binance's BNB, okx's OKB when the account pays fees with it). backtrader's ``comm`` is one
number in the quote currency, so:

* a quote fee is taken as it is; a base fee is valued at the fill's price;
* a third currency's fee is valued at that currency's price in the quote currency, read by the
  order worker when the fill arrives (:func:`fee_value`: the last price of ``FEE/QUOTE`` (the
  ticker, else the last 1m close), or the inverse of ``QUOTE/FEE``; kept a minute), and carried
  by the fill's event;
* whatever the currency, ``order.info["fees"]`` holds the fees of the order's fills per
  currency, as the exchange charged them (never summed across currencies under one label).

A fee whose value cannot be read adds nothing to ``comm`` and is logged once per currency;
it is still in ``order.info["fees"]``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from btccxt_cli.cache.orders import FillRecord

__all__ = ["FeeBook", "fee_value", "RATE_TTL"]

logger = logging.getLogger(__name__)

RATE_TTL = 60.0  # seconds a third currency's price is reused


async def fee_value(price_of: Callable[[str], Awaitable[float]], markets: dict[str, Any],
                    fill: FillRecord, market: dict[str, Any],
                    cache: dict[str, tuple[float, float]], now: float) -> float | None:
    """The fee of ``fill`` in the quote currency of ``market`` (None: not known). Reads a
    price (``price_of(symbol)``, 0 when it has none) only for a fee in a third currency."""
    base, quote, cur = market.get("base"), market.get("quote"), fill.fee_currency
    if not fill.fee or cur is None or cur == quote:
        return fill.fee
    if cur == base:
        return fill.fee * fill.price
    hit = cache.get(cur)
    if hit is not None and now - hit[1] < RATE_TTL:
        return fill.fee * hit[0]
    rate: float | None = None
    if f"{cur}/{quote}" in markets:
        rate = await price_of(f"{cur}/{quote}") or None
    elif f"{quote}/{cur}" in markets:
        inv = await price_of(f"{quote}/{cur}")
        rate = 1.0 / inv if inv else None
    if rate is None:
        logger.info("no price of %s in %s (a fee currency)", cur, quote)
        return None
    cache[cur] = (rate, now)
    return fill.fee * rate


class FeeBook:
    """Turns each fill's fee into backtrader's ``comm`` and keeps the fees per currency in
    ``order.info["fees"]`` (strategy thread)."""

    def __init__(self) -> None:
        self._warned: set[str] = set()

    def add(self, order: Any, fill: FillRecord, market: dict[str, Any],
            value: float | None = None) -> float:
        """The fill's fee in the quote currency (``value``: as the worker valued it)."""
        cur = fill.fee_currency
        if fill.fee and cur:
            fees = dict(order.info.get("fees") or {})
            fees[cur] = fees.get(cur, 0.0) + fill.fee
            order.addinfo(fees=fees)
        if not fill.fee or cur is None or cur == market.get("quote"):
            return fill.fee
        if cur == market.get("base"):
            return fill.fee * fill.price
        if value is not None:
            return value
        if cur not in self._warned:
            self._warned.add(cur)
            logger.warning("a fee in %s could not be valued in %s: it is not in the order's comm "
                           "(order.info['fees'] has it)", cur, market.get("quote"))
        return 0.0
