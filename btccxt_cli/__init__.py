"""btccxt: a live-trading runner for crypto exchanges on backtrader, ccxt and ccxt.pro.

Public API, loaded lazily so that ``import btccxt_cli`` (and ``btccxt --help``) stays fast::

    from btccxt_cli import CCXTStore, CCXTFeed, CCXTBroker
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["CCXTStore", "CCXTFeed", "CCXTBroker", "__version__"]

_LAZY = {
    "CCXTStore": "btccxt_cli.bt.store",
    "CCXTFeed": "btccxt_cli.bt.feed",
    "CCXTBroker": "btccxt_cli.bt.broker",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'btccxt_cli' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
