"""History requests between runners and the hub (``hub/keys.py``, ``hub/reader.py``): the
wire format both ends share, and the run of bars a runner takes."""

from __future__ import annotations

from btccxt_cli.hub.keys import (
    HubKeys,
    decode_history_reply,
    decode_history_request,
    encode_history_reply,
    encode_history_request,
)
from btccxt_cli.hub.reader import _unbroken
from btccxt_cli.model import Candle
from btccxt_cli.timeframes import BarGrid


def test_a_request_and_its_answer_go_both_ways_exactly() -> None:
    raw = encode_history_request("r1", "BTC/USDT:USDT", "1m", 60_000, 600_000)
    assert decode_history_request(raw) == ("r1", "BTC/USDT:USDT", "1m", 60_000, 600_000)
    assert decode_history_request(raw.encode()) == ("r1", "BTC/USDT:USDT", "1m", 60_000, 600_000)
    for bad in (b"nope", b"{}", b'{"id": "r", "s": "X|1m", "from": 5, "to": 5}', b"[1]"):
        assert decode_history_request(bad) is None
    bars = [Candle(60_000, 0.1 + 0.2, 1e-9, 3.0, 60123.45678, 0.0)]
    assert decode_history_reply(encode_history_reply(bars)) == (bars, None)  # floats exact
    assert decode_history_reply(encode_history_reply(None, "RateLimitExceeded: 429")) == (
        [], "RateLimitExceeded: 429")
    got, why = decode_history_reply(b"garbage")
    assert got == [] and why and "unreadable" in why
    keys = HubKeys("okx")
    assert keys.history == "btccxt:okx:history"
    assert keys.history_reply("r1") == "btccxt:okx:history:r1"


def test_a_runner_takes_the_unbroken_run_that_ends_where_its_stream_starts() -> None:
    grid = BarGrid.fixed(60_000)
    bars = {t: Candle(t, 1.0, 1.0, 1.0, 1.0, 1.0) for t in range(0, 600_000, 60_000)}
    # the stream starts at 600,000: all ten, back to the first wanted
    assert [c.ts for c in _unbroken(bars, grid, 0, 600_000)] == list(range(0, 600_000, 60_000))
    assert [c.ts for c in _unbroken(bars, grid, 300_000, 600_000)][0] == 300_000
    del bars[180_000]  # a hole: only the run after it joins the stream
    assert [c.ts for c in _unbroken(bars, grid, 0, 600_000)][0] == 240_000
    del bars[540_000]  # the bar before the stream is missing: nothing joins it
    assert _unbroken(bars, grid, 0, 600_000) == []
