"""WebSocket mode: ccxt.pro ``watch_ohlcv``, one watch loop per series, on the store's loop.

All series of a store share one ccxt.pro exchange (so one connection per exchange stream).
Each series has its own watch loop because ccxt re-subscribes only the stream that is
watched again after a drop (field-notes.md), and its own REST keeper that fills gaps,
confirms bars whose final update never came, and so keeps bars flowing by REST while the
socket is down (the REST fallback). A watchdog treats a silent series as dropped.

Runs only on the store's event loop thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from btccxt_cli.bars.closes import CloseCounter
from btccxt_cli.clock import Clock
from btccxt_cli.exchange.errors import is_temporary
from btccxt_cli.exchange.taps import TESTED_CCXT, forget_updates, subscription_keys
from btccxt_cli.model import BarSource, Candle, FeedState
from btccxt_cli.sources.base import RestGate, Series
from btccxt_cli.sources.liveness import Liveness, Redial
from btccxt_cli.sources.pipe import WAITING
from btccxt_cli.sources.rest import RestSchedule, rest_keeper
from btccxt_cli.sources.shards import market_kind, pin_connection, shard_size
from btccxt_cli.sources.ws_shards import ShardMessages, client_of, until_dropped

__all__ = ["WsHub"]

HAND_OVER_POLL_S = 0.0001
"""How often the loop looks whether the strategy's thread took a complete close (``_hand_close_over``)."""
HAND_OVER_STALL_S = 0.002
"""The loop goes on when the strategy's thread took nothing for this long (it is busy elsewhere)."""
HAND_OVER_MAX_S = 0.05
"""... and after this long in any case."""
FORGET_EVERY = 60  # a tapped shard bounds ccxt's update records every this many watches (~1 min)


def _refuses_symbol(exc: BaseException) -> bool:
    """The exchange will never serve this symbol to these credentials."""
    import ccxt

    return isinstance(exc, (ccxt.BadSymbol, ccxt.AuthenticationError, ccxt.PermissionDenied,
                            ccxt.AccountSuspended))

logger = logging.getLogger(__name__)


class _Sub:
    """A series' tasks and wake-up event inside the hub."""

    def __init__(self, series: Series, schedule: RestSchedule) -> None:
        self.series = series
        self.schedule = schedule
        self.wake = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.down = False
        self.watch_task: asyncio.Task[None] | None = None
        self.group: _Group | None = None
        self.tap_seen = False  # the closed-flag tap delivered a message of this series


class _Group:
    """Series subscribed together with one ``watch_ohlcv_for_symbols`` loop.

    ccxt.pro paces outgoing socket messages (binance: a cost of 5 in its token bucket, about
    4 subscribes a second), so one ``watch_ohlcv`` per series takes 25 s to subscribe 100
    symbols, at start and after every drop. A group subscribes all its series in one
    message, and ccxt re-subscribes the whole group when the loop watches again. A group is
    one shard: at most ``shards.shard_size`` streams, on socket ``index`` of its market kind
    where ccxt addresses sockets by index (binance).
    """

    def __init__(self, subs: list[_Sub], kind: str = "", index: int = 0) -> None:
        self.subs = subs
        self.kind = kind
        self.index = index
        self.task: asyncio.Task[None] | None = None
        self.queued = False  # waiting for its turn to subscribe: new series may still join

    @property
    def pairs(self) -> list[list[str]]:
        return [[sub.series.p.symbol, sub.series.p.timeframe] for sub in self.subs]


class WsHub:
    """The store's WebSocket side: watch loops, keepers, the closed-flag sink and a watchdog.

    Args:
        exchange: a ccxt.pro exchange (ideally a tapped class, see ``exchange.taps``).
        tapped: whether ``exchange`` calls ``btccxt_sink`` with every OHLCV message.
    """

    def __init__(self, exchange: Any, *, tapped: bool, gate: RestGate, clock: Clock) -> None:
        self.exchange = exchange
        self.tapped = tapped
        self.gate = gate
        self.clock = clock
        self._subs: dict[tuple[str, str], _Sub] = {}
        self._watchdog: asyncio.Task[None] | None = None
        self.reconnects = 0
        # tapped exchanges see every message through the sink, so series can share one
        # batch subscription; the others need each watch_ohlcv's return value
        self.batch = tapped and bool(exchange.has.get("watchOHLCVForSymbols"))
        self._pending: list[_Sub] = []
        self._flush: asyncio.TimerHandle | None = None
        self._groups: list[_Group] = []  # live shards (their sizes decide where new series go)
        self._hand_over_due = False
        self._closes: dict[str, CloseCounter] = {}  # per interval: when a close is complete
        self.handed_over = 0  # complete closes handed to the strategy's thread (tests, bench)
        self.shards = ShardMessages(exchange)  # when each shard's (un)subscribes go
        # a failed REST read makes the exchange "dark": probed about once a second, and its
        # first sign of life (REST answer, socket message) ends every reconnect wait at once
        self.life = Liveness(self._probe, gate=gate, on_back=self._retry_rest_now)
        if tapped:
            exchange.btccxt_sink = self._sink

    def _interval(self, timeframe: str) -> str:
        return str(self.exchange.timeframes.get(timeframe, timeframe))

    # ---------------------------------------------------------------- membership
    def add(self, series: Series) -> None:
        key = (series.p.symbol, self._interval(series.p.timeframe))
        sched = RestSchedule(series, self.gate, self.clock, grace_s=series.p.grace_s, polling=False)
        sched.on_health = self._rest_health
        sub = _Sub(series, sched)
        self._subs[key] = sub
        series.note(transport="websocket")
        series.note_message()  # the watchdog counts silence from the subscription's start
        if self.batch:  # series added within 20 ms of each other share one subscribe message
            self._pending.append(sub)
            if self._flush is None:
                self._flush = asyncio.get_running_loop().call_later(0.02, self._start_group)
        else:
            sub.watch_task = asyncio.create_task(self._watch(sub), name=f"watch {series.name}")
        sub.tasks.append(asyncio.create_task(rest_keeper(sched, self.exchange, sub.wake),
                                             name=f"rest {series.name}"))
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = asyncio.create_task(self._watchdog_loop(), name="ws watchdog")

    def _start_group(self) -> None:
        self._flush = None
        subs = [sub for sub in self._pending if sub.series.phase != sub.series.OVER]
        self._pending = []
        kinds: dict[str, list[_Sub]] = {}
        for sub in subs:  # one batch per market type: ccxt serves spot and swaps on different sockets
            try:
                kind = market_kind(self.exchange.market(sub.series.p.symbol))
            except Exception:
                kind = f"?{sub.series.p.symbol}"
            kinds.setdefault(kind, []).append(sub)
        for kind, members in kinds.items():
            members = self.shards.join_queued(self._groups, kind, members)
            for index, shard in self._shards(kind, members):
                group = _Group(shard, kind, index)
                for sub in shard:
                    sub.group = group
                self._groups.append(group)
                group.task = asyncio.create_task(self._watch_group(group),
                                                 name=f"watch {len(shard)} series")

    def _shards(self, kind: str, members: list[_Sub]) -> list[tuple[int, list[_Sub]]]:
        """Split new series of one market kind into shards within the exchange's limit per
        socket, filling the sockets already in use first (lowest index first)."""
        size = shard_size(self.exchange, kind)
        load: dict[int, int] = {}
        self._groups = [g for g in self._groups if g.subs]
        for g in self._groups:
            if g.kind == kind:
                load[g.index] = load.get(g.index, 0) + len(g.subs)
        out: list[tuple[int, list[_Sub]]] = []
        index, rest = 0, list(members)
        while rest:
            free = size - load.get(index, 0)
            if free > 0:
                out.append((index, rest[:free]))
                rest = rest[free:]
            index += 1
        return out

    async def remove(self, series: Series) -> None:
        key = (series.p.symbol, self._interval(series.p.timeframe))
        sub = self._subs.pop(key, None)
        if sub is None:
            return
        if sub in self._pending:
            self._pending.remove(sub)
        group = sub.group
        if group is not None:
            group.subs.remove(sub)  # the sink ignores it from now on
            if not group.subs and group.task is not None:
                group.task.cancel()
        tasks = [*sub.tasks, *( [sub.watch_task] if sub.watch_task else [])]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # tell the exchange too, where ccxt can (the shared connection stays up), later
        self.shards.unwatch_soon(None if group is None else (group.kind, group.index),
                                 series.p.symbol, series.p.timeframe)
        if not self._subs:
            self.shards.drop()  # the last series: its sockets close, no unsubscribe is due
            self.life.close()
            if self._watchdog is not None:
                self._watchdog.cancel()

    # ---------------------------------------------------------------- signs of life
    def _rest_health(self, ok: bool) -> None:
        if ok:
            self.life.alive()
        else:
            self.life.rest_failed()

    async def _probe(self) -> object:
        """One light REST read (the newest bar of some series): does the exchange answer?"""
        sub = next(iter(self._subs.values()), None)
        if sub is None:  # nothing left to reconnect
            return None
        return await self.exchange.fetch_ohlcv(sub.series.p.symbol, sub.series.p.timeframe, limit=1)

    def _retry_rest_now(self) -> None:
        for sub in self._subs.values():
            sub.schedule.retry_now()
            sub.wake.set()

    # ---------------------------------------------------------------- data path
    def _sink(self, symbol: str, interval: str, candles: list[Candle], closed: list[bool]) -> None:
        self.life.alive()
        sub = self._subs.get((symbol, interval))
        if sub is None:
            return
        sub.tap_seen = True
        s = sub.series
        # no GIL hand-over per bar: bars closing together (one burst of messages) all reach
        # their pipes first, then the strategy's thread gets the GIL once: after the close's
        # last bar (_hand_close_over), or once per loop pass where no close is counted
        # (_hand_over)
        released = s.on_live(candles, closed, handoff=False)
        more = False  # more bars of this close are coming: its hand-over follows the last
        if released and released[-1].source is BarSource.LIVE and s.pipe.handoff:
            counter = self._closes.get(interval)
            if counter is None:
                counter = self._closes[interval] = CloseCounter()
            if counter.count(released[-1].candle.ts):
                self._hand_close_over(s.pipe.queued)
            more = counter.incomplete()
        # a pipe whose consumer is this loop itself (the hub's publisher: ``handoff`` off) has
        # no thread to hand the GIL to: a sleep(0) there only let the hub's other thread in
        if released and not more and not self._hand_over_due and s.pipe.handoff:
            self._hand_over_due = True
            asyncio.get_running_loop().call_soon(self._hand_over)
        if s.assembler.has_gap() or (released and sub.schedule.needs_wake()):
            sub.wake.set()
        if released and s.state is FeedState.CONNECTED and s.caught_up():
            s.set_state(FeedState.LIVE)

    def _hand_close_over(self, queued: list[int] | None) -> None:
        """The last bar of a close is in its pipe: let the strategy's thread take them all
        before this loop reads on.

        Bars closing together come as a burst of messages, and right behind them the first
        updates of the next bars (every symbol's). Both threads want the one GIL: while the
        loop parsed those updates, the strategy's thread, woken for the close, waited for it
        (up to the interpreter's 5 ms switch interval) with the close's last bars still to
        take. So the loop sleeps in short steps (each lets the other thread run) until the
        store's pipes are empty and the strategy's thread waits for more (its ``next()`` has
        run). It goes on when nothing was taken for ``HAND_OVER_STALL_S`` (the strategy's
        thread is busy elsewhere: a slow ``next()``, no cerebro at all), after
        ``HAND_OVER_MAX_S`` in any case, and at once when another thread asks the loop for
        something (an order the strategy sent from ``next()``). Real time on purpose: this is
        about the CPU, not the exchange's clock. Pipes whose consumer is this loop itself (the
        hub's publisher: ``handoff`` off) never come here."""
        if queued is None or queued[0] <= 0:
            return
        self.handed_over += 1
        start = moved = time.perf_counter()
        left = queued[0]
        # another thread asking this loop for something (the broker's order from next())
        # ends the wait at once: the loop's ready queue grows only from other threads now
        ready = getattr(asyncio.get_running_loop(), "_ready", None)
        asked = len(ready) if ready is not None else 0
        while left > 0 or not WAITING[0]:
            time.sleep(HAND_OVER_POLL_S)
            now = time.perf_counter()
            if ready is not None and len(ready) > asked:
                return
            if queued[0] != left:
                left, moved = queued[0], now
            elif now - moved >= HAND_OVER_STALL_S or now - start >= HAND_OVER_MAX_S:
                return

    def _hand_over(self) -> None:
        """Let the woken strategy thread take the GIL now (see ``Pipe.put_many``), once per
        pass of the event loop: after the messages read together, before the next read."""
        self._hand_over_due = False
        time.sleep(0)

    async def _watch(self, sub: _Sub) -> None:
        s, p = sub.series, sub.series.p
        ex = self.exchange
        backoff = Redial(p.reconnect_delay, p.max_reconnect_delay, clock=self.clock)
        refusals = 0
        while s.phase != s.OVER:
            try:
                rows = await ex.watch_ohlcv(p.symbol, p.timeframe)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if s.phase == s.OVER:
                    return  # the store is stopping and closed the socket: nothing went down
                text = f"{type(exc).__name__}: {exc}"
                if _refuses_symbol(exc):
                    s.note(error=text)
                    s.set_state(FeedState.NOTSUBSCRIBED, text)
                    logger.error("%s: subscription refused: %s", s.name, text)
                    return
                if not is_temporary(exc):
                    # ccxt.pro lacks this channel (NotSupported, a TypeError inside ccxt) or the
                    # exchange refuses it. One refusal may be a neighbour's (bitget fails every
                    # pending watch of a client), so only a second one in a row counts.
                    refusals += 1
                    if refusals >= 2:
                        self._fall_back_to_rest(sub, text)
                        return
                else:
                    refusals = 0
                delay = backoff.failure()
                self._went_down(sub, exc)
                s.log.warning("%s: socket error (%s: %s); reconnecting in %.2f s", s.name,
                              type(exc).__name__, exc, delay)
                s.note_backoff(delay)
                if delay > 0:  # a redial failed: is the exchange reachable at all?
                    self.life.suspect()
                await self.life.pause(delay)
                continue
            backoff.success()
            self.life.alive()
            refusals = 0
            s.note_backoff(None)
            if self.tapped and self._tap_missing([sub]):
                self._untap(s.name)
            if not self.tapped:
                s.on_live([Candle.from_ccxt(r) for r in rows])
                sub.wake.set()
            if sub.down:
                self._came_back(sub)

    async def _watch_group(self, group: _Group) -> None:
        """One batch subscription for many series; drops mark them all down, and the next
        watch re-subscribes them all in one message."""
        p = group.subs[0].series.p
        ex = self.exchange
        backoff = Redial(p.reconnect_delay, p.max_reconnect_delay, clock=self.clock)
        refusals = 0
        subscribed, client = False, None
        rounds = 0
        while any(sub.series.phase != sub.series.OVER for sub in group.subs):
            try:
                if subscribed:
                    subscribed = False
                    await until_dropped(client, f"btccxt::shard::{id(group)}")
                await self.shards.pace(group)
                pin_connection(ex, group.index)  # no await between this and ccxt reading it
                await ex.watch_ohlcv_for_symbols(group.pairs)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if all(sub.series.phase == sub.series.OVER for sub in group.subs):
                    return  # the store is stopping and closed the socket: nothing went down
                if _refuses_symbol(exc) or not is_temporary(exc):
                    refusals += 1
                    if _refuses_symbol(exc) or refusals >= 2:
                        # which series the exchange objects to is unknown: let each find out
                        logger.warning("batch subscription refused (%s: %s); subscribing one by one",
                                       type(exc).__name__, exc)
                        self._dissolve(group)
                        return
                else:
                    refusals = 0
                delay = backoff.failure()
                for sub in group.subs:
                    self._went_down(sub, exc)
                    sub.series.note_backoff(delay)
                logger.warning("socket error (%s: %s); %d series reconnect in %.2f s",
                               type(exc).__name__, exc, len(group.subs), delay)
                if delay > 0:  # a redial failed: is the exchange reachable at all?
                    self.life.suspect()
                await self.life.pause(delay)
                continue
            backoff.success()
            self.life.alive()
            refusals = 0
            if not self.tapped or self._tap_missing(group.subs):
                self._untap(group.subs[0].series.name)
                self._dissolve(group)  # one watch_ohlcv loop per series reads the results
                return
            now_on = client_of(ex, group.pairs)
            if client is not None and now_on is not None and now_on is not client:
                # the socket was replaced while nothing of ours waited on it (ccxt failed its
                # futures before ours was there): the drop is told now, then the return
                import ccxt

                for sub in group.subs:
                    if not sub.down:
                        self._went_down(sub, ccxt.NetworkError("btccxt: the shard's socket dropped"))
            for sub in group.subs:
                if sub.down:
                    sub.series.note_backoff(None)
                    self._came_back(sub)
            subscribed, client = True, now_on
            rounds += 1
            if rounds % FORGET_EVERY == 0:
                forget_updates(ex, group.pairs)  # ccxt's per-symbol sets, unbounded otherwise

    def _tap_missing(self, subs: list[_Sub]) -> bool:
        """A watch answered but the tap saw none of it (or broke): ccxt changed inside."""
        return getattr(self.exchange, "btccxt_tap_broken", False) or not any(sub.tap_seen for sub in subs)

    def _untap(self, name: str) -> None:
        """Read ``watch_ohlcv`` results from now on; bars close when the next one starts or
        REST confirms them (as on exchanges without a tap)."""
        if not self.tapped:
            return
        import ccxt

        self.tapped = self.batch = False
        self.exchange.btccxt_sink = None
        logger.warning("%s: the closed-candle tap did not fire on this ccxt %s (tested: %s); reading "
                       "watch_ohlcv results instead (a bar is final when the next one starts or REST "
                       "confirms it)", name, ccxt.__version__, TESTED_CCXT)
        for sub in self._subs.values():
            sub.series.flagged = sub.series.assembler.flagged = False

    def _dissolve(self, group: _Group) -> None:
        for sub in list(group.subs):
            sub.group = None
            if sub.series.phase != sub.series.OVER:
                sub.watch_task = asyncio.create_task(self._watch(sub), name=f"watch {sub.series.name}")
        group.subs = []

    async def _renew_group(self, group: _Group) -> None:
        """Subscribe a group again (a member went silent while the connection works)."""
        if group.task is not None:
            group.task.cancel()
            await asyncio.gather(group.task, return_exceptions=True)
        try:
            await asyncio.wait_for(self._unwatch_group(group), 5)
        except Exception:
            logger.debug("un_watch_ohlcv_for_symbols failed", exc_info=True)
            for sub in group.subs:
                self._forget_subscription(sub.series)
        group.task = asyncio.create_task(self._watch_group(group), name=f"watch {len(group.subs)} series")

    async def _unwatch_group(self, group: _Group) -> None:
        await self.shards.unwatch_pairs(group.index, group.pairs, group.kind)

    def _fall_back_to_rest(self, sub: _Sub, why: str) -> None:
        """No WebSocket OHLCV for this series: poll REST instead (one read per bar), and say so."""
        s = sub.series
        s.polling = True
        sub.schedule.polling = True
        sub.schedule.grace_s = s.p.settle_s
        sub.down = False
        s.note(error=why, transport="rest")
        s.log.warning("%s: no WebSocket OHLCV here (%s); polling REST instead", s.name, why)
        if s.phase == s.LIVE:
            s.set_state(FeedState.LIVE)
        sub.wake.set()

    def _went_down(self, sub: _Sub, exc: BaseException) -> None:
        s = sub.series
        if not s.assembler.flagged:
            # no closed flags (kucoin, an untapped ccxt): the next candle after the restore
            # would close the bar forming now with its state from before the drop
            s.assembler.forget_forming()
        s.note(error=f"{type(exc).__name__}: {exc}", transport="rest-fallback")
        if not sub.down:
            sub.down = True
            s.set_state(FeedState.DISCONNECTED, f"{type(exc).__name__}: {exc}")
            s.log.warning("%s: WebSocket down; closed bars come from REST until it is back", s.name)
        sub.wake.set()

    def _came_back(self, sub: _Sub) -> None:
        s = sub.series
        sub.down = False
        self.reconnects += 1
        s.note(reconnect=True, transport="websocket")
        s.note_message()
        s.set_state(FeedState.CONNECTED, "WebSocket subscribed again")
        if s.phase == s.LIVE and s.caught_up():  # else LIVE once the missed bars are out
            s.set_state(FeedState.LIVE)
        sub.wake.set()

    # ---------------------------------------------------------------- watchdog
    async def _watchdog_loop(self) -> None:
        while self._subs:
            limits = [sub.series.p.watchdog_s for sub in self._subs.values()]
            await asyncio.sleep(max(0.05, min(limits) / 4))
            # before its first message a series may still wait in ccxt's subscribe queue
            pacing = 0.3 * len(self._subs) if not self.batch else 2.0
            silent = [sub for sub in self._subs.values()
                      if not sub.down and not sub.series.polling
                      and (sub.series.silence_s() or 0) > sub.series.p.watchdog_s
                      and (sub.series.silence_s() or 0) > sub.series.p.watchdog_s
                      + (0.0 if sub.series.status().bars["live"] else pacing)]
            if not silent:
                continue
            alive = [sub for sub in self._subs.values() if sub not in silent and not sub.down]
            for sub in silent:
                s = sub.series
                s.log.warning("%s: no data for %.1f s (watchdog %.1f s)", s.name, s.silence_s() or 0,
                              s.p.watchdog_s)
                s.note_message()
            if alive:
                renew = {id(sub.group): sub.group for sub in silent if sub.group is not None}
                for sub in silent:  # the connection works; only these subscriptions went quiet
                    if sub.group is None:
                        await self._resubscribe(sub)
                    else:
                        self._went_down(sub, TimeoutError("subscription silent (watchdog)"))
                for group in renew.values():
                    await self._renew_group(group)
            else:
                self._drop_connections("no data for too long (watchdog)")

    async def _resubscribe(self, sub: _Sub) -> None:
        s = sub.series
        self._went_down(sub, TimeoutError("subscription silent (watchdog)"))
        if sub.watch_task is not None:
            sub.watch_task.cancel()
            await asyncio.gather(sub.watch_task, return_exceptions=True)
        try:
            await asyncio.wait_for(self.exchange.un_watch_ohlcv(s.p.symbol, s.p.timeframe), 5)
        except Exception:
            s.log.debug("un_watch_ohlcv failed", exc_info=True)
            self._forget_subscription(s)
        sub.watch_task = asyncio.create_task(self._watch(sub), name=f"watch {s.name}")

    def _forget_subscription(self, s: Series) -> None:
        """Where un_watch is unavailable, make ccxt send a fresh subscribe on the next watch
        (only this stream's exact keys: other timeframes and markets stay subscribed)."""
        keys = subscription_keys(self.exchange, s.p.symbol, s.p.timeframe)
        for client in list(getattr(self.exchange, "clients", {}).values()):
            subs = getattr(client, "subscriptions", None)
            if isinstance(subs, dict):
                for key in keys:
                    subs.pop(key, None)

    def _drop_connections(self, why: str) -> None:
        import ccxt

        for client in list(getattr(self.exchange, "clients", {}).values()):
            try:
                client.on_error(ccxt.NetworkError(f"btccxt: {why}"))
            except Exception:
                logger.debug("closing a ccxt client failed", exc_info=True)
