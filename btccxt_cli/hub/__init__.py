"""The market-data hub on Redis Streams (issue 15).

``btccxt hub CONFIG.yaml`` (``runtime/hubd.py``) owns the exchange connections and publishes
every closed bar to one Redis stream per exchange, symbol and timeframe, with the bar's open
time as the entry id, so Redis itself refuses a bar published twice. Runners with
``feed.mode: hub`` read those streams (``hub/reader.py``) into the same ``Series`` pipeline
as every other source, so a strategy sees the same bars and notifications.

This package: key names and the entry format (``keys.py``) and the runners' reader
(``reader.py``). No backtrader, no ccxt; ``redis`` is imported inside functions.
"""
