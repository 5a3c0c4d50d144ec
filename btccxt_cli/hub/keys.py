"""Key names and the entry format of the hub's Redis data (one place, shared by both ends).

Under ``btccxt:{namespace}:`` (the namespace defaults to the exchange id):

- ``bars:{symbol}:{timeframe}``: a stream of closed bars; entry id ``{open_ms}-0``, fields
  ``o h l c v`` (Python float reprs: exact) and ``s`` (live, gapfill or backfill). Capped with
  ``MAXLEN ~ maxlen``.
- ``states``: a hash ``{symbol}|{timeframe}`` -> the hub's feed state (LIVE, DISCONNECTED ...);
  ``events``: a capped stream of every state change (for people and tools).
- ``alive``: the heartbeat, the leading hub's id with a TTL.
- ``leader``: the leadership lease (``SET NX PX``, renewed by the leader).
- ``wanted``: a set of ``{symbol}|{timeframe}`` runners ask the hub for (bounded by the hub).
- ``info``: a hash about the leading hub (exchange, price source, started, maxlen).
- ``notify``: one small capped stream per hub (``MAXLEN ~ NOTIFY_MAXLEN``): after each batch
  of bars, in the same ``MULTI/EXEC``, an entry (Redis's own id) with ``n``, the batch's
  sequence number (``INCR`` of ``notify:seq``, so it counts on across hubs and failovers),
  ``k``, the ``{symbol}|{timeframe}`` of every series in the batch, one a line, and ``c``,
  ``1`` when the batch completes a close (no more of that close's bars are coming; ``0``
  when the hub cannot tell). Runners block on this one key, then read only the streams of
  theirs it names; a gap in ``n`` (the cap trimmed entries a runner had not read, the key
  deleted, Redis restarted) or a quiet period makes them read all their streams from their
  last ids instead.
- ``history``: a list of history requests from runners (``encode_history_request``): bars of
  one series older than its stream and the runner's cache hold. The leading hub reads them
  by REST (its connection and rate budget: runners never call the exchange) and pushes the
  answer to ``history:{id}`` (``encode_history_reply``), which expires after
  ``HISTORY_REPLY_TTL_S``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from btccxt_cli.model import BarSource, Candle

__all__ = ["HubKeys", "DEFAULT_MAXLEN", "encode_bar", "decode_bar", "series_field",
           "parse_series_field", "DEFAULT_HEARTBEAT_S", "DEFAULT_LEASE_S", "NOTIFY_MAXLEN",
           "NOTIFY_SCRIPT", "encode_moved", "decode_notify", "HISTORY_MAX_BARS",
           "HISTORY_REPLY_TTL_S", "encode_history_request", "decode_history_request",
           "encode_history_reply", "decode_history_reply"]

DEFAULT_MAXLEN = 100_000
"""Entries kept per stream (about 28 hours of 1 s bars, 69 days of 1 m bars)."""
DEFAULT_HEARTBEAT_S = 3.0
"""The heartbeat's TTL; the hub renews it every third of it."""
DEFAULT_LEASE_S = 5.0
"""The leadership lease; a standby takes over this long after the leader stopped renewing."""
NOTIFY_MAXLEN = 1000
"""Notifications kept (about 200 s of a 200-symbol hub's batches of 1s bars; a runner further
behind reads all its streams instead). Each names the series of one batch: at most a few KB."""
NOTIFY_SCRIPT = """local n = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'n', n, 'k', ARGV[2], 'c', ARGV[3])
return n"""
"""KEYS: notify, notify:seq; ARGV: the cap, the moved series (``encode_moved``), ``1`` when
the batch completes a close, else ``0``."""


HISTORY_MAX_BARS = 5000
"""Bars one history request may ask the hub for (the newest of a longer range)."""
HISTORY_REPLY_TTL_S = 60
"""An answer to a history request that no runner takes expires after this long."""


@dataclass(frozen=True)
class HubKeys:
    namespace: str

    def _k(self, name: str) -> str:
        return f"btccxt:{self.namespace}:{name}"

    def bars(self, symbol: str, timeframe: str) -> str:
        return self._k(f"bars:{symbol}:{timeframe}")

    @property
    def states(self) -> str:
        return self._k("states")

    @property
    def events(self) -> str:
        return self._k("events")

    @property
    def alive(self) -> str:
        return self._k("alive")

    @property
    def leader(self) -> str:
        return self._k("leader")

    @property
    def wanted(self) -> str:
        return self._k("wanted")

    @property
    def info(self) -> str:
        return self._k("info")

    @property
    def notify(self) -> str:
        return self._k("notify")

    @property
    def notify_seq(self) -> str:
        return self._k("notify:seq")

    @property
    def history(self) -> str:
        return self._k("history")

    def history_reply(self, request_id: str) -> str:
        return self._k(f"history:{request_id}")


def series_field(symbol: str, timeframe: str) -> str:
    return f"{symbol}|{timeframe}"


def parse_series_field(value: str | bytes) -> tuple[str, str]:
    text = value.decode() if isinstance(value, bytes) else value
    symbol, _, tf = text.rpartition("|")
    return symbol, tf


def encode_moved(fields: list[str]) -> str:
    """The ``k`` of a notification: the series of a batch, one a line."""
    return "\n".join(dict.fromkeys(fields))


def decode_notify(fields: dict) -> tuple[int | None, list[bytes], bool]:
    """A notification entry (bytes, as a runner reads it): its sequence number (None: not
    one of ours), the ``{symbol}|{timeframe}`` of the series that moved, as bytes, and
    whether the batch completed a close (a hub of an older version never says so)."""
    n = fields.get(b"n")
    try:
        seq = int(n) if n is not None else None
    except ValueError:
        seq = None
    moved = fields.get(b"k")
    return seq, (moved.split(b"\n") if moved else []), fields.get(b"c") == b"1"


def encode_bar(c: Candle, source: BarSource) -> dict[str, str]:
    return {"o": repr(c.open), "h": repr(c.high), "l": repr(c.low), "c": repr(c.close),
            "v": repr(c.volume), "s": source.value}


def _s(v: str | bytes) -> str:
    return v.decode() if isinstance(v, bytes) else v


_SOURCES: dict[str | bytes, BarSource] = {
    **{src.value: src for src in BarSource}, **{src.value.encode(): src for src in BarSource}}


def decode_bar(entry_id: str | bytes, fields: dict) -> tuple[Candle, BarSource]:
    """A stream entry back to the candle (open time from the id) and the hub's source."""
    if b"o" in fields:  # the reader's case (bytes, parsed by hiredis): no decoding needed
        ts = int(entry_id.partition(b"-")[0]) if isinstance(entry_id, bytes) else int(
            entry_id.partition("-")[0])
        c = Candle(ts, float(fields[b"o"]), float(fields[b"h"]), float(fields[b"l"]),
                   float(fields[b"c"]), float(fields[b"v"]))
        return c, _SOURCES.get(fields.get(b"s", b"live"), BarSource.LIVE)
    f = {_s(k): _s(v) for k, v in fields.items()}
    ts = int(_s(entry_id).split("-", 1)[0])
    c = Candle(ts, float(f["o"]), float(f["h"]), float(f["l"]), float(f["c"]), float(f["v"]))
    return c, _SOURCES.get(f.get("s", "live"), BarSource.LIVE)


def encode_history_request(request_id: str, symbol: str, timeframe: str, start_ms: int,
                           until_ms: int) -> str:
    """Bars of ``symbol``/``timeframe`` opening in ``[start_ms, until_ms)``."""
    return json.dumps({"id": request_id, "s": series_field(symbol, timeframe),
                       "from": int(start_ms), "to": int(until_ms)})


def decode_history_request(raw: str | bytes) -> tuple[str, str, str, int, int] | None:
    """``(id, symbol, timeframe, start_ms, until_ms)``, or None for a malformed request."""
    try:
        req = json.loads(raw)
        symbol, tf = parse_series_field(str(req["s"]))
        start, until = int(req["from"]), int(req["to"])
        rid = str(req["id"])
    except (ValueError, KeyError, TypeError):
        return None
    if not symbol or not tf or not rid or until <= start:
        return None
    return rid, symbol, tf, start, until


def encode_history_reply(bars: list[Candle] | None, error: str | None = None) -> str:
    """Bars as ``[open_ms, o, h, l, c, v]`` (JSON floats: exact), or why there are none."""
    if error is not None:
        return json.dumps({"error": error})
    return json.dumps({"bars": [[c.ts, c.open, c.high, c.low, c.close, c.volume]
                                for c in bars or []]})


def decode_history_reply(raw: str | bytes) -> tuple[list[Candle], str | None]:
    try:
        reply = json.loads(raw)
        if reply.get("error") is not None:
            return [], str(reply["error"])
        return [Candle.from_ccxt(b) for b in reply["bars"]], None
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        return [], f"unreadable answer ({exc})"
