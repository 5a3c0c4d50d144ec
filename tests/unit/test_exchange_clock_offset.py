"""One reading of an exchange clock: the offset it proves, by the clock's resolution.

The store builds its estimate of the exchange clock on the conservative end of a reading
(``clock.offset_bounds``), so the estimate is never ahead of the exchange: a millisecond
clock is never moved by half a second because a reading happens to end in 000, and a
whole-second clock (kraken) is read as ``[t, t + 1000)``, not as its middle.
"""

from __future__ import annotations

from btccxt_cli.bt.store import CCXTStore
from btccxt_cli.clock import offset_bounds

T = 1_700_000_001_000  # a whole second


def test_a_millisecond_reading_ending_in_000_is_not_moved_by_half_a_second() -> None:
    store = CCXTStore("binance")
    # the exchange and we agree; its clock read exactly a whole second, during a 20 ms trip
    assert store._offset_from(T, T - 10, T + 10) == -10
    assert store._offset_from(T, T, T) == 0  # was +500: half a second ahead for 600 s


def test_a_whole_second_clock_is_read_as_the_second_it_names() -> None:
    store = CCXTStore("kraken")
    assert store.clock_resolution_ms == 1000
    assert store._offset_from(T, T, T) == 0  # it may have been T.000: assume no later
    assert store._offset_from(T, T + 999, T + 999) == -999  # it reads T until T.999


def test_the_estimate_is_never_ahead_of_the_exchange_whatever_the_reading() -> None:
    for exchange, resolution in (("binance", 1), ("kraken", 1000)):
        store = CCXTStore(exchange)
        for true_offset in (-2_345, -1, 0, 1, 499, 500, 501, 999, 1_000, 7_777):
            for local in range(T, T + 2_000, 37):
                for trip in (0, 3, 250):
                    read_at = local + trip // 3  # the server reads its clock during the trip
                    server = (read_at + true_offset) // resolution * resolution
                    est = store._offset_from(server, local, local + trip)
                    assert est <= true_offset, (exchange, true_offset, local, trip)
                    # and no further behind than the trip and the resolution allow
                    assert true_offset - est <= trip + resolution


def test_offset_bounds_hold_the_true_offset() -> None:
    low, high = offset_bounds(T, T - 5, T + 5, 1000)
    assert (low, high) == (-5, 1005)
    assert offset_bounds(T, T, T) == (0, 1)
