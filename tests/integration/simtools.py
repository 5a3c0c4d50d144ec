"""Helpers shared by the simulator test modules (``test_sim_*``, ``test_e2e_*``, feed faults).

Everything here takes the exchange id as an argument: no helper reads a module-level ``EX``.

Clocks: the real-clock helpers (``watch_finals``, ``watch_live_finals``) wait on bars the
simulator pushes by itself; the manual-clock ones (``manual_sim``, ``drive``, ``drive_finals``,
``quiet_watch``) push nothing until the test advances the clock, so "nothing arrives" is
deterministic.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from btccxt_cli.clock import SYSTEM_CLOCK, ManualClock

MIN = 60_000
URL_RE = re.compile(r"^(https?|wss?)://")
FIXTURE_MS = 1_700_000_030_500  # the ManualClock the wire fixtures were recorded at
FAST = {"ws_reconnect_delay": 0.2, "ws_max_reconnect_delay": 1.0}  # quick reconnects (e2e runs)


# --------------------------------------------------------------------------- wire fixtures, URLs
def wire_dir(exchange: str) -> Path:
    """``tests/fixtures/wire/<exchange>``: the recorded wire messages of one venue."""
    return Path(__file__).resolve().parents[1] / "fixtures" / "wire" / exchange


def fixture(exchange: str, name: str) -> Any:
    """One recorded wire message (JSON) of ``exchange``."""
    return json.loads((wire_dir(exchange) / name).read_text(encoding="utf-8"))


def strings(node: Any) -> list[str]:
    """Every string in a nested structure of dicts and lists (e.g. a ccxt ``urls`` table)."""
    if isinstance(node, dict):
        return [s for v in node.values() for s in strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in strings(v)]
    return [node] if isinstance(node, str) else []


def local_pattern(base: str) -> re.Pattern[str]:
    """What a URL pointing at the simulator serving ``base`` (``http://127.0.0.1:PORT``) looks like."""
    return re.compile(rf"^(http|ws)://127\.0\.0\.1:{base.rsplit(':', 1)[1]}(/|$)")


def urls_in(urls: Any) -> list[str]:
    """The http(s)/ws(s) URLs among the strings of ``urls``."""
    return [u for u in strings(urls) if URL_RE.match(u)]


def assert_all_local(urls: Any, base: str) -> None:
    """There are URLs in ``urls``, and every one points at the simulator serving ``base``."""
    local = local_pattern(base)
    found = urls_in(urls)
    assert found
    for u in found:
        assert local.match(u), u


def get_json(url: str, method: str = "GET") -> Any:
    """The JSON body of one plain HTTP request (no ccxt in between)."""
    with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=5) as resp:
        return json.loads(resp.read())


def fetch_pages(ex: Any, symbol: str, timeframe: str, since: int, count: int, limit: int,
                step: int = MIN) -> list[list]:
    """The first ``count`` rows of a since/limit loop over ``ex.fetch_ohlcv``, ``limit`` a call.

    Each call starts ``step`` (one bar) after the last row of the one before; every call must
    return rows.
    """
    rows: list[list] = []
    cursor = since
    while len(rows) < count:
        batch = ex.fetch_ohlcv(symbol, timeframe, since=cursor, limit=limit)
        assert batch
        rows += batch
        cursor = batch[-1][0] + step
    return rows[:count]


# --------------------------------------------------------------------------- manual clock
def manual_sim(sim_factory: Any, exchange: str, **kwargs: Any) -> tuple[Any, ManualClock]:
    """A simulator of ``exchange`` on a ``ManualClock`` standing at the current time."""
    clock = ManualClock(start_ms=SYSTEM_CLOCK.time_ms())
    return sim_factory(exchanges=(exchange,), clock=clock, **kwargs), clock


async def drive(clock: ManualClock, awaitable: Awaitable[Any], step_s: float = 0.25,
                timeout: float = 10.0, poll_s: float = 0.02) -> Any:
    """Await ``awaitable`` while moving the simulator's manual clock forward.

    Every ``poll_s`` seconds of real time without an answer the clock moves ``step_s`` on.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(awaitable)
    deadline = loop.time() + timeout
    while True:
        done, _ = await asyncio.wait({task}, timeout=poll_s)
        if done:
            return task.result()
        if loop.time() > deadline:
            task.cancel()
            raise TimeoutError("nothing arrived while the clock moved")
        clock.advance(step_s)


async def quiet_watch(ex: Any, symbol: str, timeframe: str = "1s") -> asyncio.Future:
    """A pending ``watch_ohlcv`` that no update already on the wire can resolve.

    With the manual clock frozen nothing new is pushed, but ``drive()`` may have moved the clock
    a step further than needed: let those few in-flight updates resolve earlier watches first.
    """
    for _ in range(10):
        fut = asyncio.ensure_future(ex.watch_ohlcv(symbol, timeframe))
        done, _ = await asyncio.wait({fut}, timeout=0.2)
        if not done:
            return fut
    raise AssertionError("updates keep arriving although the clock stands still")


async def drive_finals(ex: Any, clock: ManualClock, symbol: str, closed: int,
                       timeframe: str = "1s") -> tuple[dict[int, tuple], Counter]:
    """Watch bars until ``closed`` are known closed; their last state and update counts.

    A bar counts as closed once a later one arrived. The manual clock is driven by ``drive()``.
    """
    last: dict[int, tuple] = {}
    updates: Counter = Counter()
    done: list[int] = []
    while len(done) < closed:
        for r in await drive(clock, ex.watch_ohlcv(symbol, timeframe)):
            last[r[0]] = tuple(r)
            updates[r[0]] += 1
        done = sorted(t for t in last if t < max(last))
    return {t: last[t] for t in done}, updates


# --------------------------------------------------------------------------- real clock
async def watch_finals(ex: Any, symbol: str, timeframe: str, closed: int,
                       timeout: float = 10.0) -> tuple[dict[int, tuple], Counter]:
    """Watch until ``closed`` bars are known closed (a later bar arrived).

    Returns the last state seen of each closed bar (its final update) and how many updates
    each bar got. ccxt.pro updates its cache rows in place, so rows are copied as they come.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: dict[int, tuple] = {}
    updates: Counter = Counter()
    done: list[int] = []
    while len(done) < closed:
        rows = await asyncio.wait_for(ex.watch_ohlcv(symbol, timeframe),
                                      timeout=max(0.01, deadline - loop.time()))
        for r in rows:
            last[r[0]] = tuple(r)
            updates[r[0]] += 1
        newest = max(last)
        done = sorted(t for t in last if t < newest)
    return {t: last[t] for t in done}, updates


async def watch_live_finals(ex: Any, symbol: str, timeframe: str, closed: int,
                            timeout: float = 10.0) -> dict[int, tuple]:
    """Watch until ``closed`` bars are known closed (a later one arrived); their last state.

    The first answer is the subscription snapshot: only bars opening after it count, so every
    bar returned was followed live from its first update to its last.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    first = await asyncio.wait_for(ex.watch_ohlcv(symbol, timeframe), timeout)
    start = max(r[0] for r in first) + 1
    last: dict[int, tuple] = {}
    done: list[int] = []
    while len(done) < closed:
        rows = await asyncio.wait_for(ex.watch_ohlcv(symbol, timeframe),
                                      timeout=max(0.01, deadline - loop.time()))
        for r in rows:
            if r[0] >= start:
                last[r[0]] = tuple(r)
        if last:
            newest = max(last)
            done = sorted(t for t in last if t < newest)
    return {t: last[t] for t in done}


# --------------------------------------------------------------------------- raw sockets
async def reply(ws: Any, req_id: Any, key: str = "id") -> dict:
    """The next message on raw socket ``ws`` whose ``key`` field is ``req_id``."""
    while True:
        msg = await ws.receive_json(timeout=5)
        if msg.get(key) == req_id:
            return msg


# --------------------------------------------------------------------------- end to end runs
def after_live(n: int, action: Callable[[], Any]) -> Callable[[Any], None]:
    """An on_next hook that runs ``action()`` once, when every data has ``n`` live bars."""
    state = {"done": False}

    def hook(strat: Any) -> None:
        if state["done"]:
            return
        bars = strat.p.result.bars
        if all(sum(s.source == "live" for s in bars[d._name]) >= n for d in strat.datas):
            state["done"] = True
            action()

    return hook


def states(res: Any, sym: str) -> list[str]:
    """The data states the strategy was notified of for ``sym``, in order."""
    return [st for d, st, _ in res.notes if d == sym]
