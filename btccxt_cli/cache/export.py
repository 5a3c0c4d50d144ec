"""Write cached bars to a CSV or Parquet file (``btccxt backfill --export``).

Role: :func:`export_rows` reads windows of one exchange and timeframe from an ``OhlcvCache`` as
rows of :data:`EXPORT_COLUMNS`; :func:`export_csv` and :func:`export_parquet` write such rows and
return how many they wrote. :func:`iso_utc` is the ``datetime`` column's text form. The csv
module and pyarrow load inside the writers (pyarrow is optional: ``btccxt[parquet]``).

Must not import: typer, rich, ccxt, backtrader, the simulator.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from btccxt_cli.errors import DependencyError

if TYPE_CHECKING:
    from btccxt_cli.cache.sqlite import OhlcvCache

__all__ = ["EXPORT_COLUMNS", "export_rows", "export_csv", "export_parquet", "iso_utc"]

EXPORT_COLUMNS = ("exchange", "symbol", "timeframe", "timestamp", "datetime", "open", "high",
                  "low", "close", "volume")
"""Columns of ``--export`` files; ``timestamp`` is the bar open in epoch ms, ``datetime`` its
ISO 8601 form in UTC."""


def iso_utc(ms: int) -> str:
    """Epoch milliseconds as ISO 8601 in UTC, to the second: ``2024-01-31T12:00:00Z``."""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def export_rows(cache: OhlcvCache, exchange_id: str, timeframe: str,
                windows: Iterable[tuple[str, int, int]]) -> Iterator[tuple[Any, ...]]:
    """Rows of :data:`EXPORT_COLUMNS` for each ``(symbol, start_ms, end_ms)`` window, read
    lazily from ``cache`` in window order (bars in time order within each)."""
    for symbol, a, b in windows:
        for c in cache.iter_read(exchange_id, symbol, timeframe, a, b):
            yield (exchange_id, symbol, timeframe, c.ts, iso_utc(c.ts), c.open,
                   c.high, c.low, c.close, c.volume)


def export_csv(path: Path, rows: Iterator[tuple[Any, ...]]) -> int:
    """Write ``EXPORT_COLUMNS`` rows as CSV (floats in shortest round-trip form)."""
    import csv

    n = 0
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(EXPORT_COLUMNS)
        for row in rows:
            w.writerow(row)
            n += 1
    return n


def export_parquet(path: Path, rows: Iterator[tuple[Any, ...]], *, batch: int = 100_000) -> int:
    """Write ``EXPORT_COLUMNS`` rows as Parquet, ``batch`` rows per row group (needs pyarrow)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise DependencyError("--export parquet needs pyarrow",
                              hint="pip install 'btccxt[parquet]'") from None
    schema = pa.schema([("exchange", pa.string()), ("symbol", pa.string()),
                        ("timeframe", pa.string()), ("timestamp", pa.int64()),
                        ("datetime", pa.timestamp("ms", tz="UTC")), ("open", pa.float64()),
                        ("high", pa.float64()), ("low", pa.float64()), ("close", pa.float64()),
                        ("volume", pa.float64())])
    n = 0
    with pq.ParquetWriter(str(path), schema) as writer:
        buf: list[tuple[Any, ...]] = []

        def flush() -> None:
            cols = list(zip(*buf, strict=True))
            cols[4] = cols[3]  # the datetime column is the epoch ms, typed as a timestamp
            arrays = [pa.array(cols[i], type=schema.field(i).type) for i in range(len(cols))]
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))

        for row in rows:
            buf.append(row)
            n += 1
            if len(buf) >= batch:
                flush()
                buf = []
        if buf:
            flush()
    return n
