"""Bar assembly rules, without I/O or asyncio."""

from __future__ import annotations

import random

import pytest

from btccxt_cli.bars.assembler import BarAssembler
from btccxt_cli.model import BarSource, Candle

TF = 1_000


def c(ts: int, close: float = 1.0, vol: float = 1.0) -> Candle:
    return Candle(ts * TF, 1.0, max(1.0, close), min(1.0, close), close, vol)


def ts_of(emitted) -> list[int]:
    return [e.candle.ts // TF for e in emitted]


def test_later_candle_closes_earlier_without_flags():
    a = BarAssembler(TF, last_ts=9 * TF)
    assert a.on_live([c(10, 1.1, 1)]) == []
    assert a.on_live([c(10, 1.2, 2)]) == []
    out = a.on_live([c(11, 1.3, 1)])
    assert ts_of(out) == [10]
    assert out[0].candle.close == 1.2  # the last update, not the first snapshot
    assert out[0].source is BarSource.LIVE


def test_flagged_source_waits_for_flag_not_for_later_candle():
    a = BarAssembler(TF, last_ts=9 * TF, flagged=True)
    a.on_live([c(10, 1.1, 1)])
    assert a.on_live([c(11, 1.0, 1)]) == []  # reordered: next bar's first update came first
    out = a.on_live([c(10, 1.25, 3)], closed=True)  # the final of bar 10
    assert ts_of(out) == [10] and out[0].candle.close == 1.25


def test_flag_closes_immediately():
    a = BarAssembler(TF, last_ts=9 * TF, flagged=True)
    assert ts_of(a.on_live([c(10, 1.5, 5)], closed=True)) == [10]


@pytest.mark.parametrize("flagged", [False, True])
def test_duplicates_and_stale_updates_are_absorbed(flagged):
    a = BarAssembler(TF, last_ts=9 * TF, flagged=flagged)
    a.on_live([c(10, 1.1, 1), c(10, 1.2, 2)])
    a.on_live([c(10, 1.1, 1)])  # stale (volume went down)
    out = a.on_live([c(10, 1.2, 2)], closed=True)
    out += a.on_live([c(11, 1.0, 1)])
    out += a.on_live([c(10, 1.2, 2)], closed=True)  # duplicate final after release
    out += a.on_live([c(9, 9.0, 9)])  # older than anything released
    assert ts_of(out) == [10]
    assert out[0].candle.close == 1.2


def test_gap_after_reconnect_is_reported_and_filled_in_order():
    a = BarAssembler(TF, last_ts=9 * TF, flagged=True)
    assert ts_of(a.on_live([c(10)], closed=True)) == [10]
    # reconnect: the stream resumes at bar 14
    assert a.on_live([c(14, 1.0, 1)]) == []
    assert a.has_gap() and a.rest_due(500) == 0
    assert a.on_live([c(14, 1.1, 2)], closed=True) == []  # held back behind the gap
    out = a.on_rest([c(11), c(12), c(13), c(14, 1.1, 2), c(15, 1.0, 1)], since=11 * TF,
                    now_ms=15 * TF + 100)
    assert ts_of(out) == [11, 12, 13, 14]
    assert [e.source for e in out[:3]] == [BarSource.GAPFILL] * 3
    assert out[3].source is BarSource.LIVE
    assert not a.has_gap()


def test_rest_newest_row_is_final_only_after_end_plus_settle():
    a = BarAssembler(TF, last_ts=9 * TF)
    rows = [c(10), c(11)]
    assert ts_of(a.on_rest(rows, since=10 * TF, now_ms=12 * TF + 100, settle_ms=250)) == [10]
    assert ts_of(a.on_rest(rows, since=11 * TF, now_ms=12 * TF + 300, settle_ms=250)) == [11]


def test_drop_newest_drops_the_newest_row_of_every_answer():
    a = BarAssembler(TF, last_ts=9 * TF)
    out = a.on_rest([c(10), c(11), c(12)], since=10 * TF, now_ms=100 * TF, drop_newest=True)
    assert ts_of(out) == [10, 11]


def test_exchange_gaps_are_skipped_not_waited_for():
    a = BarAssembler(TF, last_ts=9 * TF)
    out = a.on_rest([c(10), c(13), c(14)], since=10 * TF, now_ms=100 * TF)
    assert ts_of(out) == [10, 13, 14]
    assert list(a.skipped) == [(11 * TF, 12 * TF)]
    # a symbol listed after the requested start
    b = BarAssembler(TF, last_ts=0)
    assert ts_of(b.on_rest([c(500), c(501)], since=TF, now_ms=1000 * TF)) == [500, 501]


def test_rest_due_schedule():
    a = BarAssembler(TF, last_ts=9 * TF)
    assert a.rest_due(250) == 11 * TF + 250  # bar 10 ends at 11s
    assert BarAssembler(TF).rest_due(250) is None


def test_first_release_without_history():
    a = BarAssembler(TF)
    assert ts_of(a.on_live([c(5)])) == []
    assert ts_of(a.on_live([c(6)])) == [5]


def test_late_non_final_never_overwrites_final():
    a = BarAssembler(TF, last_ts=9 * TF, flagged=True)
    out = a.on_live([c(11)])  # next bar first
    out += a.on_live([c(10, 2.0, 5)], closed=True)
    out += a.on_live([c(10, 1.5, 9)])  # a non-final after the final must be ignored
    out += a.on_live([c(11, 1.0, 2)], closed=True)
    assert ts_of(out) == [10, 11]
    assert out[0].candle.close == 2.0


@pytest.mark.parametrize("seed", range(20))
def test_random_shuffles_and_duplicates_never_break_order(seed):
    """Property: whatever order flagged updates arrive in, with REST filling what is missing,
    every bar is released once, in order, with its final values."""
    rng = random.Random(seed)
    n = 60
    finals = {i: Candle(i * TF, 1.0, 2.0, 0.5, 1.0 + i / 100, 10.0 + i) for i in range(10, 10 + n)}
    msgs = []
    for f in finals.values():
        msgs += [(Candle(f.ts, 1.0, 1.5, 0.9, 1.2, f.volume / 2), False), (f, True)]
    # swap some neighbours, duplicate some, drop some finals
    for _ in range(40):
        k = rng.randrange(len(msgs) - 1)
        msgs[k], msgs[k + 1] = msgs[k + 1], msgs[k]
    msgs += [rng.choice(msgs) for _ in range(20)]
    dropped = {rng.randrange(10, 10 + n) for _ in range(8)}
    msgs = [m for m in msgs if not (m[1] and m[0].ts // TF in dropped)]
    a = BarAssembler(TF, last_ts=9 * TF, flagged=True)
    out = []
    for cand, fin in msgs:
        out += a.on_live([cand], closed=fin)
        if a.has_gap():
            exp = a.expected
            out += a.on_rest([finals[t // TF] for t in range(exp, (10 + n) * TF, TF)],
                             since=exp, now_ms=(10 + n + 5) * TF)
    # the stream ends: a REST confirmation closes whatever is left
    exp = a.expected
    out += a.on_rest([finals[t // TF] for t in range(exp, (10 + n) * TF, TF)], since=exp,
                     now_ms=(10 + n + 5) * TF)
    assert ts_of(out) == list(range(10, 10 + n))
    assert [e.candle for e in out] == [finals[i] for i in range(10, 10 + n)]
