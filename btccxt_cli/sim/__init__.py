"""Offline exchange simulator: binance and okx REST + WebSocket on 127.0.0.1.

A standalone aiohttp application that speaks the real wire protocols, so unmodified ccxt and
ccxt.pro objects can talk to it (see ``docs/simulator.md``)::

    from btccxt_cli.sim import SimThread
    with SimThread() as sim:
        print(sim.url("binance"))

Never imports the client side of btccxt (``exchange``, ``sources``, ``bt`` ...) nor ccxt; the two
sides meet by URL only. ``Simulator``/``SimThread`` are loaded lazily so that importing
``btccxt_cli.sim.market`` does not pull in aiohttp.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MarketModel", "Simulator", "SimThread"]

_LAZY = {
    "MarketModel": "btccxt_cli.sim.market",
    "Simulator": "btccxt_cli.sim.app",
    "SimThread": "btccxt_cli.sim.app",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'btccxt_cli.sim' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
