"""The simulator in a process of its own (``btccxt sim``), reached through its control API.

An exchange is not in the client's process: with hundreds of symbols of 1s bars an
in-process simulator shares btccxt's interpreter (and its GIL) and its sending becomes part of
what is measured. Used by ``bench/many.py`` and ``bench/latency.py`` (``--sim-process``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.parse
import urllib.request
from typing import Any


class SimProcess:
    """``btccxt sim -e EXCHANGE --generate-symbols N``; ``names`` are its generated symbols."""

    def __init__(self, exchange: str, n: int) -> None:
        self.exchange = exchange
        self.proc = subprocess.Popen([sys.executable, "-m", "btccxt_cli", "sim", "-e", exchange, "--port", "0",
                                      "--generate-symbols", str(n)], stdout=subprocess.PIPE, text=True)
        self._url = self.proc.stdout.readline().split()[1]
        self.names = [f"C{i:03d}/USDT" for i in range(1, n + 1)]

    def url(self, exchange: str) -> str:
        return self._url

    def _get(self, path: str, **query: Any) -> Any:
        q = f"?{urllib.parse.urlencode(query)}" if query else ""
        with urllib.request.urlopen(f"{self._url}/_sim/{path}{q}", timeout=30) as r:
            return json.load(r)

    def stats(self, exchange: str) -> dict:
        return self._get("stats")

    def reset_stats(self, exchange: str) -> None:
        urllib.request.urlopen(urllib.request.Request(f"{self._url}/_sim/reset_stats", method="POST"),
                               timeout=10).close()

    def truth(self, exchange: str, symbol: str, timeframe: str, since: int, until: int) -> list[tuple]:
        rows = self._get("truth", symbol=symbol, timeframe=timeframe, since=since, until=until)["candles"]
        return [tuple(r) for r in rows]

    def closes_sent_ns(self, symbol: str, timeframe: str, opens: list[int]) -> dict[int, int | None]:
        """When each bar's final update was first sent (``perf_counter_ns``, comparable across
        processes on Linux)."""
        out: dict[int, int | None] = {}
        for i in range(0, len(opens), 200):
            part = opens[i:i + 200]
            got = self._get("close_sent", symbol=symbol, timeframe=timeframe, opens=",".join(map(str, part)))
            out.update({int(k): v for k, v in got["sent_ns"].items()})
        return out

    def __enter__(self) -> SimProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(10)
