"""A binance WebSocket-API login refused for its timestamp (the exchange's clock stepped)
must not leave ccxt.pro's client unable to log in again (``ordersync.reset_binance_login``;
ccxt 4.5.90 raised ``KeyError: 'spot'`` and then waited for ever on the next login)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from btccxt_cli.bt.orderkit import reset_binance_login
from btccxt_cli.exchange.factory import make_exchange
from btccxt_cli.sim.accounts import DEFAULT_KEY

pytestmark = pytest.mark.live

KEYS = {"apiKey": DEFAULT_KEY.key, "secret": DEFAULT_KEY.secret}
STEP_MS = 120_000  # far past binance's request window


def test_a_login_refused_for_its_timestamp_can_be_retried_once_the_clock_is_read(sim_factory: Any) -> None:
    sim = sim_factory(exchanges=("binance",), balances={"USDT": 1_000.0})

    async def main() -> None:
        pro = make_exchange("binance", kind="pro", sim_url=sim.url("binance"), config=KEYS)
        try:
            await pro.load_markets()
            sim.sim.clock_offset_ms += STEP_MS  # the exchange's clock steps ahead
            with pytest.raises(Exception):  # noqa: B017 (ccxt 4.5.90: KeyError 'spot')
                await asyncio.wait_for(pro.authenticate(), 10)
            pro.options["timeDifference"] = -STEP_MS  # what reading the exchange clock gives
            assert reset_binance_login(pro)
            await asyncio.wait_for(pro.authenticate(), 10)  # before the reset: waited for ever
        finally:
            await pro.close()

    asyncio.run(main())
