"""``bars.gaps``: gap detection, range arithmetic, request plans and the gap report (tables)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from btccxt_cli.bars.gaps import (
    GapReport,
    align_down,
    align_up,
    clip_ranges,
    find_gaps,
    gap_report,
    intersect_ranges,
    merge_ranges,
    plan_requests,
    range_bars,
    subtract_ranges,
)

M = 60_000  # one 1m bar


@pytest.mark.parametrize("ts, start, end, expected", [
    ([], 0, 5 * M, [(0, 4 * M)]),                                   # nothing cached
    ([0, M, 2 * M, 3 * M, 4 * M], 0, 5 * M, []),                    # complete
    ([0, M, 4 * M], 0, 6 * M, [(2 * M, 3 * M), (5 * M, 5 * M)]),    # inner + tail
    ([2 * M, 3 * M], 0, 4 * M, [(0, M)]),                           # head
    ([0, 0, M, M, 3 * M], 0, 4 * M, [(2 * M, 2 * M)]),              # duplicates ignored
    ([-M, 10 * M], 0, 2 * M, [(0, M)]),                             # outside the window ignored
    ([M + 5], 0, 3 * M, [(0, 0), (2 * M, 2 * M)]),                  # off-grid counts for its bar
    ([], 30_000, 3 * M, [(M, 2 * M)]),                              # start rounds up
    ([], 0, 2 * M + 1, [(0, 2 * M)]),                               # end exclusive, unaligned
    ([], 0, 0, []),                                                 # empty window
    ([], 5 * M, 2 * M, []),                                         # inverted window
    ([0], 0, M, []),                                                # one bar, present
])
def test_find_gaps(ts, start, end, expected):
    assert find_gaps(ts, M, start, end) == expected


def test_find_gaps_rejects_bad_tf():
    with pytest.raises(ValueError):
        find_gaps([], 0, 0, M)


@pytest.mark.parametrize("ranges, expected", [
    ([], []),
    ([(0, M), (2 * M, 3 * M)], [(0, 3 * M)]),            # adjacent merge
    ([(0, M), (3 * M, 3 * M)], [(0, M), (3 * M, 3 * M)]),  # one bar apart: kept
    ([(2 * M, 5 * M), (0, 3 * M)], [(0, 5 * M)]),        # overlap, unsorted
    ([(0, 5 * M), (M, 2 * M)], [(0, 5 * M)]),            # contained
    ([(3 * M, M)], []),                                  # inverted dropped
])
def test_merge_ranges(ranges, expected):
    assert merge_ranges(ranges, M) == expected


@pytest.mark.parametrize("ranges, remove, expected", [
    ([(0, 9 * M)], [], [(0, 9 * M)]),
    ([(0, 9 * M)], [(0, 9 * M)], []),
    ([(0, 9 * M)], [(3 * M, 4 * M)], [(0, 2 * M), (5 * M, 9 * M)]),
    ([(0, 9 * M)], [(0, 2 * M), (8 * M, 20 * M)], [(3 * M, 7 * M)]),
    ([(0, 2 * M), (5 * M, 6 * M)], [(M, 5 * M)], [(0, 0), (6 * M, 6 * M)]),
    ([(5 * M, 6 * M)], [(0, M)], [(5 * M, 6 * M)]),
])
def test_subtract_ranges(ranges, remove, expected):
    assert subtract_ranges(ranges, remove, M) == expected


@pytest.mark.parametrize("a, b, expected", [
    ([(0, 9 * M)], [(3 * M, 4 * M)], [(3 * M, 4 * M)]),
    ([(0, 2 * M), (5 * M, 9 * M)], [(M, 6 * M)], [(M, 2 * M), (5 * M, 6 * M)]),
    ([(0, M)], [(2 * M, 3 * M)], []),
])
def test_intersect_ranges(a, b, expected):
    assert intersect_ranges(a, b, M) == expected


def test_clip_and_align():
    assert clip_ranges([(0, 9 * M)], M, 30_000, 3 * M) == [(M, 2 * M)]
    assert clip_ranges([(0, 9 * M)], M, 5 * M, 5 * M) == []
    assert (align_up(1, M), align_up(M, M), align_down(M - 1, M), align_down(M, M)) == (M, M, 0, M)
    assert range_bars((0, 4 * M), M) == 5
    assert range_bars((4 * M, 0), M) == 0


@pytest.mark.parametrize("ranges, limit, expected", [
    ([], 3, []),
    ([(0, 4 * M)], 3, [(0, 3 * M), (3 * M, 5 * M)]),
    ([(0, 2 * M)], 3, [(0, 3 * M)]),
    ([(0, 0), (5 * M, 5 * M)], 1000, [(0, M), (5 * M, 6 * M)]),     # each gap its own window
    ([(0, M), (2 * M, 3 * M)], 1000, [(0, 4 * M)]),                 # adjacent merged first
])
def test_plan_requests(ranges, limit, expected):
    assert plan_requests(ranges, M, limit) == expected


def test_plan_requests_rejects_bad_limit():
    with pytest.raises(ValueError):
        plan_requests([(0, M)], M, 0)


def test_gap_report_separates_exchange_gaps_from_missing_ones():
    ts = [5 * M, 6 * M, 9 * M]
    empty = [(0, 4 * M)]  # before the listing: the exchange said so
    rep = gap_report(ts, empty, M, 0, 10 * M)
    assert rep.exchange == ((0, 4 * M),)
    assert rep.missing == ((7 * M, 8 * M),)
    assert (rep.exchange_bars, rep.missing_bars, rep.complete) == (5, 2, False)
    d = rep.to_dict()
    assert d["exchange_gaps"][0]["bars"] == 5 and d["missing_gaps"][0]["start"] == 7 * M
    assert d["exchange_gaps"][0]["start_iso"] == "1970-01-01T00:00:00Z"
    assert d["complete"] is False


def test_gap_report_partial_overlap_and_complete():
    rep = gap_report([], [(2 * M, 3 * M), (20 * M, 30 * M)], M, 0, 5 * M)
    assert rep.exchange == ((2 * M, 3 * M),)
    assert rep.missing == ((0, M), (4 * M, 4 * M))
    full = gap_report([0, M], [], M, 0, 2 * M)
    assert full.complete and full == GapReport(M, 0, 2 * M)


@given(st.sets(st.integers(0, 199)), st.integers(0, 100), st.integers(100, 220))
def test_gaps_and_timestamps_partition_the_window(present, lo, hi):
    ts = sorted(i * M for i in present)
    gaps = find_gaps(ts, M, lo * M, hi * M)
    missing = {t for a, b in gaps for t in range(a, b + M, M)}
    have = {t for t in ts if lo * M <= t < hi * M}
    assert missing | have == set(range(lo * M, hi * M, M))
    assert not missing & have
    windows = plan_requests(gaps, M, 7)
    assert all(0 < (e - s) // M <= 7 for s, e in windows)
    assert {t for s, e in windows for t in range(s, e, M)} == missing
