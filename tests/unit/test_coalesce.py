"""How queued one-symbol subscribes become merged messages (sources/coalesce.py); the socket
side (one message for 30 kraken symbols, one a socket on bitget, the restores) is in
tests/integration/test_ws_limits.py."""

from __future__ import annotations

import json

from btccxt_cli.sources.coalesce import _SPECS, BITGET_ARGS_BYTES, KRAKEN_SYMBOLS, _Queue


def _kraken(symbol: str, interval: int = 1, req_id: int = 1) -> dict:
    return {"method": "subscribe", "params": {"channel": "ohlc", "symbol": [symbol],
                                              "interval": interval}, "req_id": req_id}


def _bitget(inst_id: str, channel: str = "candle1m") -> dict:
    return {"op": "subscribe", "args": [{"instType": "SPOT", "channel": channel, "instId": inst_id}]}


def _queue(spec, messages: list[dict]) -> _Queue:
    q = _Queue()
    for m in messages:
        key, item = spec.split(m)
        q.add(key, m, item)
    return q


def _drain(spec, q: _Queue) -> list[dict]:
    out = []
    while (m := q.take(spec)) is not None:
        out.append(m)
    return out


def test_kraken_symbols_go_in_messages_of_at_most_the_cap_by_interval_in_order():
    spec = _SPECS["kraken"]
    names = [f"S{i:04d}/USD" for i in range(KRAKEN_SYMBOLS * 2 + 30)]
    msgs = [_kraken(s, req_id=i + 1) for i, s in enumerate(names)] + [_kraken("X/USD", interval=5)]
    out = _drain(spec, _queue(spec, msgs))
    assert [len(m["params"]["symbol"]) for m in out] == [KRAKEN_SYMBOLS, KRAKEN_SYMBOLS, 30, 1]
    assert [s for m in out[:3] for s in m["params"]["symbol"]] == names  # all, once, in order
    assert {m["params"]["interval"] for m in out[:3]} == {1} and out[3]["params"]["interval"] == 5
    assert all(m["method"] == "subscribe" and m["params"]["channel"] == "ohlc" for m in out)


def test_bitget_args_go_in_messages_within_its_bytes_a_request():
    spec = _SPECS["bitget"]
    ids = [f"Z{i:04d}USDT" for i in range(300)]
    out = _drain(spec, _queue(spec, [_bitget(i) for i in ids]))
    assert len(out) > 1
    assert all(len(json.dumps(m["args"], separators=(",", ":"))) <= BITGET_ARGS_BYTES for m in out)
    assert all(len(m["args"]) > 40 for m in out[:-1])  # full messages, not one arg each
    assert [a["instId"] for m in out for a in m["args"]] == ids
    assert all(m["op"] == "subscribe" for m in out)


def test_only_one_symbol_ohlcv_subscribes_are_merged():
    kraken, bitget = _SPECS["kraken"], _SPECS["bitget"]
    two = _kraken("A/USD")
    two["params"]["symbol"].append("B/USD")
    ticker = {"method": "subscribe", "params": {"channel": "ticker", "symbol": ["A/USD"]}}
    assert kraken.split(two) is None and kraken.split(ticker) is None
    assert kraken.split({"method": "unsubscribe", "params": _kraken("A/USD")["params"]}) is None
    books = _bitget("AUSDT", channel="books")
    unsub = {**_bitget("AUSDT"), "op": "unsubscribe"}
    assert bitget.split(books) is None and bitget.split(unsub) is None and bitget.split("ping") is None
