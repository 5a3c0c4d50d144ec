"""Local OHLCV cache (SQLite) and resumable backfill.

    from btccxt_cli.cache import OhlcvCache, default_cache_path, Backfiller

``sqlite.py`` holds the store (no network); ``backfill.py`` downloads into it through a ccxt
client. ``Backfiller`` and ``BackfillResult`` load lazily, so importing the store (as
``btccxt --help`` does for the default path) does not pull in the exchange layer.
Must not import: ccxt at module level, typer, rich, backtrader, the simulator.
"""

from __future__ import annotations

from typing import Any

from btccxt_cli.cache.sqlite import OhlcvCache, default_cache_path

__all__ = ["OhlcvCache", "default_cache_path", "Backfiller", "BackfillResult"]

_LAZY = {"Backfiller": "btccxt_cli.cache.backfill", "BackfillResult": "btccxt_cli.cache.backfill"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'btccxt_cli.cache' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
