"""CCXTFeed: a live backtrader data feed that drains its series' pipe.

``_load`` returns True (a closed bar), None (nothing yet, after waiting at most ``qcheck``
seconds on the pipe, so an idle run uses no CPU) or False (the feed ended). State changes
travel through the same pipe as bars, so ``notify_data`` sees them in order.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from datetime import datetime, timezone
from typing import Any

import backtrader as bt

from btccxt_cli.model import BarSource, FeedState
from btccxt_cli.sources.base import SeriesParams, to_ms
from btccxt_cli.timeframes import from_backtrader

__all__ = ["CCXTFeed"]

logger = logging.getLogger(__name__)

# (clock, bar close in exchange ms) -> clock.monotonic() until which the feeds whose next bar
# closes then wait for it (CCXTFeed._wait); cerebro asks its feeds from one thread
_ALIGN: dict[tuple[int, int], float] = {}

_STATUS = {
    FeedState.CONNECTED: bt.feed.DataBase.CONNECTED,
    FeedState.DISCONNECTED: bt.feed.DataBase.DISCONNECTED,
    FeedState.CONNBROKEN: bt.feed.DataBase.CONNBROKEN,
    FeedState.DELAYED: bt.feed.DataBase.DELAYED,
    FeedState.LIVE: bt.feed.DataBase.LIVE,
    FeedState.NOTSUBSCRIBED: bt.feed.DataBase.NOTSUBSCRIBED,
    FeedState.NOTSUPPORTED_TF: bt.feed.DataBase.NOTSUPPORTED_TF,
    FeedState.UNKNOWN: bt.feed.DataBase.UNKNOWN,
}


class CCXTFeed(bt.feed.DataBase):
    """Live OHLCV bars from a ccxt exchange, in rest, threaded or websocket mode.

    Parameters (the seed document's table, plus a few of ours):

    - ``store``: the ``CCXTStore``.
    - ``dataname``: the ccxt symbol (``BTC/USDT``, ``BTC/USDT:USDT``).
    - ``timeframe``/``compression``: backtrader's, e.g. ``bt.TimeFrame.Minutes``, 1.
    - ``fromdate``: load history from this time (naive datetimes are UTC).
    - ``backfill_bars``: or load this many bars of history (when ``fromdate`` is None).
    - ``backfill_start`` (True): load history first; False starts with the next live bar.
    - ``historical`` (False): end the feed after the history instead of going live.
    - ``use_websocket`` (False): ccxt.pro ``watch_ohlcv``; ``use_threaded_data`` (False):
      REST polling in the store's background thread; neither: REST polling on the
      strategy's thread.
    - ``ohlcv_limit`` (100): bars per REST request (history pages and gap fills).
    - ``drop_newest`` (False): drop the newest bar of every REST answer.
    - ``ws_reconnect_delay`` (5.0) / ``ws_max_reconnect_delay`` (60.0): start and ceiling (s)
      of the jittered exponential backoff between failed redials. A socket that was working
      is redialled at once, and any sign of the exchange (a REST answer) ends a wait.
    - ``settle_delay`` (0.25): seconds after a bar's end before the REST read.
    - ``watchdog_silence`` (None = one bar + max(5 s, half a bar), at most 120 s): seconds of
      silence after which a subscription counts as dropped.
    - ``confirm_grace`` (None = 20 % of a bar, 1-10 s): WebSocket mode reads REST when a
      bar's final update has not come this long after its end.
    - ``qcheck`` (0.5): longest wait (s) inside one ``_load`` call.
    - ``align_wait`` (0.05): when another feed's bar arrives while this feed's own next bar
      is already due, keep waiting for it until this long (s) after the first feed began
      waiting for a bar closing at that time (one window per bar close, shared by the feeds),
      so that bars closing together reach ``next()`` together; a feed whose next bar is not
      due yet gives way at once.
    - ``lookback`` (None): with ``cerebro.run(exactbars=1)`` (bounded memory, as
      ``btccxt run`` does), keep at least this many bars of this data in memory; indicators
      keep their own minimum period. None keeps backtrader's default.
    - ``bar_stamp`` ("close"): backtrader treats a bar's datetime as its end (its resampler,
      replayer and timers group bars that way), so bars are stamped at their close minus
      1 ms (a daily bar keeps its own date). ``"open"`` stamps the exchange's open time, as
      older ccxt feeds did; resampling is then one base bar off.
    - ``debug`` (False): log every message and decision at DEBUG level.
    """

    params = (
        ("store", None),
        ("use_websocket", False),
        ("use_threaded_data", False),
        ("ohlcv_limit", 100),
        ("drop_newest", False),
        ("ws_reconnect_delay", 5.0),
        ("ws_max_reconnect_delay", 60.0),
        ("debug", False),
        ("backfill_start", True),
        ("backfill_bars", None),
        ("historical", False),
        ("settle_delay", 0.25),
        ("watchdog_silence", None),
        ("confirm_grace", None),
        ("qcheck", 0.5),
        ("align_wait", 0.05),
        ("bar_stamp", "close"),
        ("lookback", None),
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        if self.p.store is None:
            raise TypeError("CCXTFeed needs store=CCXTStore(...)")
        self._handle: Any = None
        self._ended = False
        self._rewound = 0
        self._given = False  # the bar given at the last ask, counted as waiting till the pass ends
        self._ticks: Any = None  # (first tick name, line 0, [(tick name, line)]): _tick_fill
        self._bar_lines: Any = None  # the lines a bar fills, in _fill's order
        # the events of the latest bars, by the datetime number _fill wrote into the lines:
        # cerebro may load a bar and stash it (rewind) before the strategy sees the previous
        # one, so "the last loaded" is not "the current"; current_event() looks it up here
        self._recent: OrderedDict[float, Any] = OrderedDict()
        self.symbol = self.p.dataname
        self.ccxt_timeframe = from_backtrader(self.p.timeframe, self.p.compression)
        self._validate()

    def _validate(self) -> None:
        p = self.p
        if p.use_websocket and p.use_threaded_data:
            raise ValueError("choose one of use_websocket and use_threaded_data")
        if not 1 <= int(p.ohlcv_limit) <= 1000:
            raise ValueError("ohlcv_limit must be between 1 and 1000")
        if p.bar_stamp not in ("open", "close"):
            raise ValueError("bar_stamp must be 'open' or 'close'")
        if p.ws_reconnect_delay < 0 or p.ws_max_reconnect_delay < p.ws_reconnect_delay:
            raise ValueError("need 0 <= ws_reconnect_delay <= ws_max_reconnect_delay")

    @property
    def mode(self) -> str:
        if getattr(self.p.store, "hub_url", None):  # bars from a `btccxt hub` (hub/reader.py)
            return "hub"
        if self.p.use_websocket:
            return "websocket"
        return "threaded" if self.p.use_threaded_data else "rest"

    def series_params(self) -> SeriesParams:
        p = self.p
        fromdate = p.fromdate if isinstance(p.fromdate, datetime) else None
        return SeriesParams(
            symbol=p.dataname, timeframe=self.ccxt_timeframe, mode=self.mode,
            fromdate_ms=to_ms(fromdate), backfill_bars=p.backfill_bars,
            backfill_start=bool(p.backfill_start), historical=bool(p.historical),
            ohlcv_limit=int(p.ohlcv_limit), drop_newest=bool(p.drop_newest),
            settle_s=float(p.settle_delay), reconnect_delay=float(p.ws_reconnect_delay),
            max_reconnect_delay=float(p.ws_max_reconnect_delay),
            watchdog_silence_s=p.watchdog_silence, confirm_grace_s=p.confirm_grace, debug=bool(p.debug),
            exchange_id=getattr(p.store, "exchange_id", None),  # its bar alignment (weeks, months)
        )

    # ------------------------------------------------------------ backtrader hooks
    def islive(self) -> bool:
        return not self.p.historical

    def haslivedata(self) -> bool:
        return self._handle is not None and len(self._handle.series.pipe) > 0

    def qbuffer(self, savemem: int = 0, replaying: bool = False) -> None:
        """Bounded buffers (``exactbars``), but never fewer than ``lookback`` bars, and never
        fewer than 2: a cycle in which this feed has no new bar (others do) moves its lines
        forward and back, which on a 1-bar buffer drops its last bar (backtrader then reads an
        empty line: ``IndexError`` in ``_clk_update`` with many feeds)."""
        super().qbuffer(savemem=savemem, replaying=replaying)
        for line in self.lines:
            line.minbuffer(max(2, int(self.p.lookback or 0)))

    def start(self) -> None:
        super().start()
        self._ended = False
        self._rewound = 0  # bars cerebro moved this feed back over (``rewind``), not yet re-read
        self._given = False
        self._handle = self.p.store.attach(self.series_params(), name=self._name or self.p.dataname)

    def stop(self) -> None:
        super().stop()
        if self._handle is not None:
            self.p.store.detach(self._handle)

    @property
    def series(self) -> Any:
        return self._handle.series if self._handle is not None else None

    def status(self) -> Any:
        """Thread-safe status snapshot (state, last bar, counts, latency)."""
        return self._handle.series.status() if self._handle is not None else None

    def next(self, datamaster: Any = None, ticks: bool = True) -> bool | None:
        """backtrader's ``next``, without its cost when this feed has nothing (``_idle``).

        Cerebro asks a feed that gave nothing in a pass again, against the pass's master bar;
        that second ask takes what is here (and waits out a due bar's ``align_wait`` window)
        but never sleeps out ``qcheck`` again: feed after feed did (up to 0.5 s each) while
        the bars the others gave waited for ``next()`` (with 1,000 feeds, a whole close's
        bars of the last feeds reached it a bar late). A feed still loading its history
        waits for it, so that histories reach the strategy together."""
        if datamaster is not None and self._live_now():
            self._qcheck = 0.0
        if self._given:  # the bar given at the last ask never reached a pass's end
            self._unhold()
        if self._rewound:
            self._rewound -= 1  # cerebro held this feed's bar back: the base moves to it
            self._given = True  # its count (``rewind``) carries over until the pass ends
            return super().next(datamaster=datamaster, ticks=ticks)
        if datamaster is None and not ticks and self._idle():
            return None
        ret = super().next(datamaster=datamaster, ticks=ticks)
        if ret and self._handle is not None:  # (a bar cerebro held back returned above)
            # a bar given in this pass counts as waiting until the pass ends (``_tick_fill``):
            # with every feed live, cerebro lets each feed sleep out its qcheck (0.5 s), and a
            # feed asked after this one with nothing of its own did, while this bar waited for
            # next() (bars arriving after their close's next() reached the next one 0.5 s
            # late, under load in about one run in three of ``bench/hub.py --runners 10``)
            self._given = True
            self._handle.series.pipe.hold(1)
        return ret

    def _unhold(self) -> None:
        self._given = False
        if self._handle is not None:
            self._handle.series.pipe.hold(-1)

    def _live_now(self) -> bool:
        h = self._handle
        return h is not None and h.series.phase == h.series.LIVE

    def rewind(self, size: int = 1) -> None:
        super().rewind(size)
        self._rewound += size
        if self._given:  # held back again in the pass that gave it: it counts already
            self._given = False
            size -= 1
        if self._handle is not None and size:
            # the held bar counts as waiting: the next pass must not sleep out its qcheck in
            # another feed's wait while this bar is ready (it held bars up to 0.5 s)
            self._handle.series.pipe.hold(size)

    def load(self) -> bool | None:
        if self._idle():
            return None
        return super().load()

    def _idle(self) -> bool:
        """Nothing to give now, as ``_load`` would find, without backtrader's cost of asking.

        Cerebro asks every feed once a pass (every ``qcheck`` and at every doorbell ring), and
        backtrader's ``next``/``load`` measure the lines, move every line forward, ask
        ``_load`` and move them back: between bar closes, passes over 1,000 idle feeds took
        most of a run's CPU. A feed whose pipe is empty, that may not wait (cerebro's
        ``qcheck`` budget for this pass is used up) and whose next bar is not due has
        nothing, and says so at once."""
        h = self._handle
        if (h is None or h.driver is not None or self._qcheck or self._ended
                or self._barstack or self._barstash or self.p.historical):
            return False
        s = h.series
        pipe = s.pipe
        return not len(pipe) and not pipe.closed and not s.next_bar_due()

    def _load(self) -> bool | None:
        if self._ended or self._handle is None:
            return False
        h = self._handle
        pipe = h.series.pipe
        historical = bool(self.p.historical)
        while True:
            ev = pipe.get(0)
            if ev is None:
                if h.driver is not None:
                    h.driver.pump(self._qcheck if not historical else 1.0)
                    ev = pipe.get(0)
                else:
                    ev = self._wait(pipe, self._qcheck if not historical else 1.0)
                if ev is None:
                    if pipe.closed and not len(pipe):
                        self._ended = True
                        return False
                    if historical:
                        continue  # preloading: None would end the preload early
                    return None
            if ev.kind == "bar":
                self._fill(ev)
                return True
            if ev.kind == "state":
                status = _STATUS.get(ev.state)
                if status is not None:
                    self.put_notification(status, ev.message)
                if historical:
                    continue
                return None  # let cerebro deliver the notification before the next bar
            if ev.kind == "end":
                self._ended = True
                pipe.close()  # anything after the end is never read: it must not count as waiting
                return False

    def current_event(self) -> Any:
        """The ``FeedEvent`` (candle, source, recv_ns) of the bar in the lines now, if known."""
        if not len(self):
            return None
        # keyed by the very datetime number _fill wrote: no date conversion per feed and bar
        # (a runner asks every feed at every next())
        return self._recent.get(self.lines.datetime[0])

    def stamp_ms(self, open_ms: int) -> int:
        """The backtrader datetime (ms) of the bar that opened at ``open_ms``."""
        if self.p.bar_stamp == "open":
            return open_ms
        return self._handle.series.grid.close_of(open_ms) - 1

    def _check(self, forcedata: Any = None) -> None:
        """Cerebro's nudge to filters (the resampler closes bars by the clock here).

        A base bar is delivered a moment after its close; if the clock check ran in that
        moment, the resampler would close its bar without the last base bar, which would then
        land in the next one. So while this feed's next bar is due but not yet 2 s late, the
        clock check waits for it (a stalled feed still gets its resampled bar closed).
        """
        if not self._filters:
            return  # nothing to nudge (cerebro calls this for every feed in every pass)
        s = self.series
        if s is not None and s.phase == s.LIVE and s.next_bar_due():
            overdue = s.exchange_now_ms() - s.grid.close_of(s.assembler.expected)
            if overdue < 2_000:
                return
        super()._check(forcedata)

    def _timeoffset(self) -> Any:
        """The exchange clock's offset from ours (backtrader's resampler reads the clock)."""
        from datetime import timedelta

        s = self.series
        if s is None:
            return timedelta()
        return timedelta(milliseconds=s.exchange_now_ms() - s.clock.time_ms())

    def _wait(self, pipe: Any, timeout: float) -> Any:
        """Wait up to ``timeout`` for this feed's next event, giving way (once live) as soon as
        another feed has data or holds a bar cerebro moved it back over (cerebro then serves
        it); but when this feed's own next bar is due, wait for
        it whatever cerebro's ``qcheck`` says, until ``align_wait`` after the first feed began
        waiting for a bar closing at the same time, so that bars closing together reach
        ``next()`` together. The window is shared: with 1,000 feeds it is ``align_wait`` per
        bar close, not per feed (cerebro asks the feeds one after another)."""
        s = self._handle.series
        clock = s.clock
        now = clock.monotonic()
        end = now + timeout
        align_until = now
        if s.next_bar_due():
            key = (id(clock), s.grid.close_of(s.assembler.expected))
            align_until = _ALIGN.get(key)
            if align_until is None:
                align_until = _ALIGN[key] = now + float(self.p.align_wait)
                if len(_ALIGN) > 256:  # the oldest closes (dicts keep insertion order)
                    for key in list(_ALIGN)[:128]:
                        del _ALIGN[key]
        while True:
            now = clock.monotonic()
            window = now < align_until  # waiting for this feed's own due bar, rings or not
            left = (align_until if window else end) - now
            if left <= 0:
                return pipe.get(0)
            # returns early when any pipe rings; outside the window, at once while another
            # feed has events (cerebro serves them in this pass), but only once this feed is
            # live: while its history loads, its own bars are coming and it waits for them,
            # so that feeds' histories reach the strategy together, as in backtrader
            ev = pipe.get(left, give_way=not window and s.phase == s.LIVE)
            if ev is not None:
                return ev
            if clock.monotonic() >= align_until:
                return None  # timed out, or another feed has data outside the window

    def _tick_fill(self, force: bool = False) -> None:
        """backtrader's ``_tick_fill`` (the bar is the tick), without looking its lines up by
        name for every bar of every feed (cerebro calls it for each feed delivering a bar,
        at the end of the pass: the bar it gave stops counting as waiting, see ``next``)."""
        if self._given:
            self._unhold()
        ticks = self._ticks
        if ticks is None:
            lines = self.lines
            aliases = [a for a in self.getlinealiases() if a != "datetime"]
            ticks = self._ticks = ("tick_" + self._getlinealias(0), lines[0],
                                   [("tick_" + a, getattr(lines, a)) for a in aliases])
        first, line0, pairs = ticks
        if force or getattr(self, first, None) is None:
            for name, line in pairs:
                setattr(self, name, line[0])
            self.tick_last = line0[0]

    def _fill(self, ev: Any) -> None:
        c = ev.candle
        dt = datetime.fromtimestamp(self.stamp_ms(c.ts) / 1000, tz=timezone.utc).replace(tzinfo=None)
        lines = self._bar_lines
        if lines is None:
            ls = self.lines
            lines = self._bar_lines = (ls.datetime, ls.open, ls.high, ls.low, ls.close, ls.volume,
                                       ls.openinterest)
        ldt, lo, lh, ll, lc, lv, loi = lines
        num = ldt[0] = bt.date2num(dt)
        lo[0] = c.open
        lh[0] = c.high
        ll[0] = c.low
        lc[0] = c.close
        lv[0] = c.volume
        loi[0] = 0.0
        if ev.source is BarSource.LIVE:
            s = self._handle.series
            s.note_latency(float(s.exchange_now_ms() - s.grid.close_of(c.ts)))
        self.last_event = ev  # the bar just loaded (see current_event for the current one)
        recent = self._recent
        recent[num] = ev
        if len(recent) > 64:
            recent.popitem(last=False)
