"""Many feeds on one cerebro: a feed with nothing gives way at once to feeds that have events,
and the wait for bars closing together is one window per bar close, not one per feed."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from btccxt_cli.bt.feed import CCXTFeed
from btccxt_cli.clock import ManualClock
from btccxt_cli.model import FeedEvent
from btccxt_cli.sources.base import Pipe, Series, SeriesParams


def _in_thread(fn) -> list:
    out: list = []
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "still waiting"
    return out


def test_a_pipe_with_nothing_gives_way_while_a_sibling_holds_events():
    queued = [0]
    a, b, other = Pipe(queued=queued), Pipe(queued=queued), Pipe()
    b.put_many([FeedEvent("bar"), FeedEvent("bar")], handoff=False)
    other.put(FeedEvent("bar"))  # another store's pipe: not counted
    assert queued == [2]
    # no put happens during the wait: without give_way this would sleep out its 30 s
    assert _in_thread(lambda: a.get(30, give_way=True)) == [None]
    assert b.get(0) is not None and queued == [1]
    b.close()  # what is left in a closed pipe is never read: it does not count
    assert queued == [0]
    b.put(FeedEvent("bar"))
    assert queued == [0]


def _started(clock: ManualClock, name: str, queued: list[int] | None = None) -> Series:
    """A live series of 1m bars; ``queued``: the events counter its store's pipes share."""
    p = SeriesParams(symbol=name, timeframe="1m", mode="websocket", backfill_start=False)
    s = Series(p, exchange_now_ms=clock.time_ms, clock=clock,
               pipe=Pipe(queued=queued if queued is not None else [0]), name=name)
    s.begin()
    while s.pipe.get(0) is not None:  # its LIVE state
        pass
    return s


def _feed(s: Series) -> SimpleNamespace:
    return SimpleNamespace(_handle=SimpleNamespace(series=s), p=SimpleNamespace(align_wait=0.05))


def test_feeds_waiting_for_bars_closing_together_share_one_window():
    """Cerebro asks its feeds one after another; with 1,000 feeds a window of align_wait per
    feed held a bar close back for up to 50 s. The window opens with the first feed that waits
    for a bar closing then; a feed asked after it has passed gives way at once."""
    clock = ManualClock()
    first, later = _started(clock, "A/USDT"), _started(clock, "B/USDT")
    clock.advance(60.0)  # the bar forming at the start has closed: each feed's next bar is due
    assert first.next_bar_due() and later.next_bar_due()
    first.pipe.put(FeedEvent("bar"))  # arrives within the window
    assert _in_thread(lambda: CCXTFeed._wait(_feed(first), first.pipe, 0.0))[0] is not None
    clock.advance(0.06)  # the window of that close is over
    # (the manual clock stands still while waiting: a window of its own would never end)
    assert _in_thread(lambda: CCXTFeed._wait(_feed(later), later.pipe, 0.0)) == [None]


class _OneSeriesStore:
    """(ours) A store that hands the feed one series it was given: the feed's own logic runs."""

    def __init__(self, series: Series) -> None:
        self.series = series

    def attach(self, params: object, *, name: str | None = None) -> SimpleNamespace:
        return SimpleNamespace(series=self.series, driver=None)

    def detach(self, handle: object) -> None:
        pass


def _feed_on(series: Series, **kw: object) -> CCXTFeed:
    """A started CCXTFeed of 1m bars on ``series`` (through ``_OneSeriesStore``), in a cerebro
    (its environment, as in a run)."""
    import backtrader as bt

    feed = CCXTFeed(store=_OneSeriesStore(series), dataname=series.name, timeframe=bt.TimeFrame.Minutes,
                    compression=1, backfill_start=False, **kw)
    bt.Cerebro().adddata(feed)
    feed._start()
    return feed


def _bar(ts_ms: int, close: float) -> FeedEvent:
    from btccxt_cli.model import BarSource, Candle

    return FeedEvent("bar", candle=Candle(ts_ms, close, close, close, close, 1.0), source=BarSource.LIVE)


def test_an_idle_feed_answers_at_once_and_a_bar_cerebro_held_back_is_still_given():
    """Cerebro asks every feed once a pass; an idle feed says "nothing" without moving its lines
    (the cost that made 1,000 idle feeds most of a run's CPU). A bar cerebro held back (it
    rewinds a feed whose bar is later than another's) is given at the next ask, whatever the
    feed's pipe holds."""

    clock = ManualClock()
    s = _started(clock, "A/USDT")
    feed = _feed_on(s)
    feed.do_qcheck(False, 0.0)  # this pass's wait is used up (another feed waited)

    assert feed.next(ticks=False) is None and len(feed) == 0  # idle: nothing, lines unmoved
    s.pipe.put(_bar(0, 100.0))
    assert feed.next(ticks=False) is True and len(feed) == 1 and feed.close[0] == 100.0
    s.pipe.put(_bar(60_000, 101.0))
    assert feed.next(ticks=False) is True and feed.close[0] == 101.0
    feed.rewind()  # cerebro holds the 101 bar back (another feed's bar is earlier)
    assert len(feed) == 1 and not len(s.pipe)
    assert feed.next(ticks=False) is True and len(feed) == 2 and feed.close[0] == 101.0
    assert feed.next(ticks=False) is None and len(feed) == 2  # idle again


def test_a_feeds_ticks_and_lines_are_what_backtraders_own_code_gives():
    """_fill and _tick_fill keep their lines at hand instead of looking them up by name per bar:
    the values are backtrader's own."""
    import backtrader as bt

    clock = ManualClock()
    s = _started(clock, "A/USDT")
    feed = _feed_on(s)
    feed.do_qcheck(False, 0.0)
    s.pipe.put(_bar(60_000, 101.0))
    assert feed.next(ticks=False) is True
    feed._tick_fill(force=True)
    ours = {k: getattr(feed, k) for k in dir(feed) if k.startswith("tick_")}
    for k in ours:
        setattr(feed, k, None)
    bt.feed.AbstractDataBase._tick_fill(feed, force=True)
    theirs = {k: getattr(feed, k) for k in dir(feed) if k.startswith("tick_")}
    assert ours == theirs and ours["tick_close"] == 101.0 and ours["tick_last"] == 101.0
    assert feed.datetime.datetime(0) == bt.num2date(feed.lines.datetime[0])
    assert (feed.open[0], feed.high[0], feed.low[0], feed.volume[0]) == (101.0, 101.0, 101.0, 1.0)


def test_a_bar_cerebro_held_back_counts_as_waiting_so_no_sibling_sleeps_out_its_qcheck():
    """Cerebro rewinds a feed whose loaded bar is later than another's; the bar is then in the
    feed's lines, not its pipe. The next pass asks the feeds in order, and the first may wait
    up to qcheck (0.5 s) unless something waits elsewhere: the held bar must count, or it
    reaches next() up to 0.5 s late."""

    clock = ManualClock()
    queued = [0]

    a, b = _started(clock, "A/USDT", queued), _started(clock, "B/USDT", queued)
    feed = _feed_on(b)
    feed.do_qcheck(False, 0.0)
    b.pipe.put(_bar(60_000, 101.0))
    assert feed.next(ticks=False) is True and queued == [1]  # given: counts till the pass ends
    feed.rewind()  # held back: A's bar of an earlier time goes first
    assert queued == [1]
    assert _in_thread(lambda: a.pipe.get(30, give_way=True)) == [None]  # A gives way at once
    assert feed.next(ticks=False) is True and feed.close[0] == 101.0
    feed._tick_fill(force=True)  # cerebro's end of the pass: the bar goes to next()
    assert queued == [0]
    feed.rewind()
    b.pipe.close()  # the feed stops: nothing of it counts any more
    assert queued == [0]


def test_a_bar_given_in_a_pass_keeps_later_siblings_from_sleeping_out_their_qcheck():
    """With every feed live, cerebro lets each feed it asks wait up to qcheck (0.5 s) for a
    bar. A feed that gave its bar in a pass took it out of its pipe; a sibling asked after it
    with nothing of its own (its next bar not due) then slept out its qcheck, while the bar
    given waited for next(). It happened to bars that arrived after their close's next()
    had run (a hub runner under load): they reached the next one 0.5 s late, in about one
    run in three of ``bench/hub.py --runners 10``. A bar given counts as waiting until the
    pass ends (``_tick_fill``), or the feed's next ask at the latest; a bar held back
    (``rewind``) and given again likewise, counted once."""

    clock = ManualClock()
    queued = [0]

    late, done = _started(clock, "A/USDT", queued), _started(clock, "B/USDT", queued)
    first, second = _feed_on(late, qcheck=30.0), _feed_on(done, qcheck=30.0)
    late.pipe.put(_bar(0, 100.0))  # it came after its close's next(): B's went then
    # the next pass, with qcheck (all feeds live: backtrader lets each wait)
    first.do_qcheck(True, 0.0)
    second.do_qcheck(True, 0.0)
    assert first.next(ticks=False) is True and first.close[0] == 100.0
    assert queued == [1]  # given: waits for next()
    # B, asked after A in the same pass, answers at once (nothing rings here: a wait would
    # last its 30 s)
    assert _in_thread(lambda: second.next(ticks=False)) == [None]
    first._tick_fill(force=True)  # the pass ends: the bar goes to next()
    assert queued == [0]

    # held back (another feed's bar is earlier), given again in the next pass: the same
    late.pipe.put(_bar(60_000, 101.0))
    first.do_qcheck(True, 0.0)
    assert first.next(ticks=False) is True
    first.rewind()
    assert queued == [1]  # counted once
    first.do_qcheck(True, 0.0)
    second.do_qcheck(True, 0.0)
    assert first.next(ticks=False) is True and first.close[0] == 101.0 and queued == [1]
    assert _in_thread(lambda: second.next(ticks=False)) == [None]
    first.rewind()  # held back again in the pass that gave it
    assert queued == [1]
    # given, and the pass ended without a tick fill (a replayed feed): its next ask ends it
    assert first.next(ticks=False) is True and queued == [1]
    first.do_qcheck(False, 0.0)
    assert first.next(ticks=False) is None and queued == [0]


def test_a_series_keeps_the_empty_pipe_it_is_given():
    """An empty pipe is falsy (``__len__``): ``pipe or Pipe()`` put a pipe of its own in place of
    the store's, without the store's counter, and no feed ever gave way to a sibling's events."""
    queued = [0]
    pipe = Pipe(queued=queued)
    s = Series(SeriesParams(symbol="A/USDT", timeframe="1m"), exchange_now_ms=ManualClock().time_ms,
               clock=ManualClock(), pipe=pipe)
    assert s.pipe is pipe and s.pipe.queued is queued


def test_cerebros_second_ask_against_the_master_never_sleeps_out_qcheck():
    """In a pass where some feeds gave a bar, cerebro asks each of the others again against
    the master bar. That ask waited up to qcheck per feed, one after another, while the
    bars already given waited for next(): with 1,000 feeds the last feeds' bars of a close
    reached it a bar late. It takes what is there, at once."""

    clock = ManualClock()
    s = _started(clock, "A/USDT")
    feed = _feed_on(s, qcheck=30.0)
    feed.do_qcheck(True, 0.0)  # this pass may wait 30 s ...
    assert feed._qcheck == 30.0
    # ... but not in the second ask (nothing rings here: a wait would last the 30 s)
    assert _in_thread(lambda: feed.next(datamaster=feed, ticks=False)) == [None]
    s.pipe.put(_bar(0, 100.0))
    feed.do_qcheck(True, 0.0)
    assert _in_thread(lambda: feed.next(datamaster=feed, ticks=False)) == [True]
