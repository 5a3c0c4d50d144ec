"""Many symbols on bybit, kucoin and bitget: btccxt stays within each exchange's documented
WebSocket limits, which the simulator enforces the way the exchange does (docs/simulator.md,
"WebSocket limits"):

* bybit spot: 10 args per subscribe request (refused: ``args size >10``); derivatives: 21,000
  characters of topics per socket (refused);
* kucoin: 100 messages per 10 s, 100 topics per subscribe, 400 topics per socket (refused,
  code 509);
* bitget: 10 messages a second (error 30007 and a close), 1,000 channels per socket and 240
  subscribe requests an hour per socket (30006), 4,096 bytes of channels a request (30016).

ccxt.pro 4.5.90 has no batch OHLCV call on kucoin and bitget: every series sends its own
subscribe, on one socket, paced by ccxt at the exchange's REST rate (kucoin ~133, bitget 20 a
second) unless btccxt sets the cost of a socket message (``shards.pace_sockets``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection

import aiohttp
import pytest

from btccxt_cli.bt.store import CCXTStore
from btccxt_cli.exchange.factory import make_exchange
from btccxt_cli.sources.base import SeriesParams
from btccxt_cli.sources.coalesce import BITGET_ARGS_BYTES
from btccxt_cli.sources.shards import MESSAGE_RATES, pace_sockets
from tests.integration.harness import assert_matches_truth, run_feeds, truth_map
from tests.integration.simtools import after_live, reply
from tests.integration.test_many_symbols import _wait as wait_until
from tests.integration.test_sharding import SPOT, run_and_drop, socket_loads

M = 30
SYMBOLS = SPOT[:M]


def _sim(sim_factory, exchange: str, symbols: list[str] = SYMBOLS, **limits: int):
    return sim_factory(exchanges=(exchange,), symbols={exchange: symbols},
                       ws_limits={exchange: limits} if limits else None)


def _check_run(sim, exchange: str, res, before: dict, after: dict, symbols: list[str],
               skip: Collection[str] = ()) -> None:
    """No refusal or close, every series subscribed before the drop and after it, and the
    bars of every fifth series (but ``skip``) equal to the simulator's."""
    for stats in (before, after):
        assert stats["ws_limit_refusals"] == 0 and stats["ws_limit_closes"] == 0, stats
        assert sum(socket_loads(stats)) == len(symbols), stats["subscriptions"]  # all restored
    assert after["drops"] >= 1
    for sym in symbols[:: max(1, len(symbols) // 5)]:
        if sym not in skip:
            assert_matches_truth(sim, exchange, sym, "1s", res.bars[sym], tf_ms=1000)


async def _with_pro(sim, exchange: str, body):
    ex = make_exchange(exchange, kind="pro", sim_url=sim.url(exchange))
    try:
        await ex.load_markets()
        return await body(ex)
    finally:
        await ex.close()


# ------------------------------------------------------------------ bybit
def test_bybit_subscribes_30_spot_symbols_in_requests_of_10_args_and_restores_them(sim_factory):
    """The real limit and btccxt's default shard size: three requests, none refused."""
    sim = _sim(sim_factory, "bybit")
    res, (before, after) = run_and_drop(sim, "bybit", SYMBOLS, config={})
    _check_run(sim, "bybit", res, before, after, SYMBOLS)
    assert before["subscribe_requests"] >= M // 10 and after["subscribe_requests"] >= 2 * M // 10


def test_bybit_refuses_a_spot_request_past_10_args(sim_factory):
    """What ccxt.pro alone does with one batch of 11 spot symbols: one request, refused."""
    sim = _sim(sim_factory, "bybit")

    async def body(ex):
        with pytest.raises(Exception) as err:
            await asyncio.wait_for(ex.watch_ohlcv_for_symbols([[s, "1s"] for s in SYMBOLS[:11]]), 10)
        return err.value

    exc = asyncio.run(_with_pro(sim, "bybit", body))
    assert "args size >10" in str(exc), repr(exc)
    stats = sim.stats("bybit")
    assert stats["ws_limit_refusals"] == 1 and sum(socket_loads(stats)) == 0


def test_bybit_refuses_derivative_topics_past_the_characters_a_socket_may_hold(sim_factory):
    swaps = [s + ":USDT" for s in SYMBOLS[:3]]
    sim = _sim(sim_factory, "bybit", swaps, args_chars=40)  # two "kline.1.Z000USDT" (16 each)
    url = sim.url("bybit").replace("http", "ws") + "/v5/public/linear"

    async def go() -> tuple[list[dict], dict]:
        answers = []
        async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
            for i, sym in enumerate(swaps):
                topic = "kline.1." + sym.split("/")[0] + "USDT"
                await ws.send_str(json.dumps({"op": "subscribe", "req_id": str(i), "args": [topic]}))
                # its answer: klines of a topic taken before may come first
                answers.append(await reply(ws, str(i), key="req_id"))
            return answers, sim.stats("bybit")  # while the socket is open

    answers, stats = asyncio.run(go())
    assert [a["success"] for a in answers] == [True, True, False], answers
    assert "40 characters" in answers[2]["ret_msg"] and answers[2]["op"] == "subscribe"
    assert stats["ws_limit_refusals"] == 1 and socket_loads(stats) == [2]


def test_bybit_derivatives_put_each_shard_on_its_own_socket_within_its_characters(sim_factory):
    """A lowered 170 characters of topics a socket (bybit: 21,000; ten "kline.1.Z000USDT" are
    160): ccxt alone puts every derivative topic on one socket, and the 11th is refused;
    btccxt's shards of 10 each go to their own socket, again after the drop."""
    swaps = [s + ":USDT" for s in SYMBOLS]
    sim = _sim(sim_factory, "bybit", swaps, args_chars=170)
    res, (before, after) = run_and_drop(sim, "bybit", swaps,
                                        config={"options": {"btccxtWsShard": 10}})
    assert socket_loads(before) == [10, 10, 10] and socket_loads(after) == [10, 10, 10], after
    _check_run(sim, "bybit", res, before, after, swaps)


# ------------------------------------------------------------------ kucoin
def test_kucoin_30_symbols_subscribe_and_restore_within_its_limits(sim_factory):
    """The real message rate, and a lowered 12 topics a socket (kucoin: 400): ccxt alone puts
    every topic on one socket; btccxt spreads them over sockets of 10, again after the drop."""
    sim = _sim(sim_factory, "kucoin", streams_per_connection=12)
    res, (before, after) = run_and_drop(sim, "kucoin", SYMBOLS,
                                        config={"options": {"btccxtWsShard": 10}})
    assert socket_loads(before) == [10, 10, 10] and socket_loads(after) == [10, 10, 10], after
    _check_run(sim, "kucoin", res, before, after, SYMBOLS)
    # kucoin pushes no snapshot on subscribe and has no closed flag: the bar forming when the
    # socket dropped used to be closed by the first later candle after the restore with its
    # state from before the drop (its open, volume 0). Every series, every bar:
    assert not _stale_partials(sim, res, SYMBOLS)
    for sym in SYMBOLS:
        assert_matches_truth(sim, "kucoin", sym, "1s", res.bars[sym], tf_ms=1000)


@pytest.mark.parametrize("exchange", ["kucoin", "bitget"])
def test_removed_series_are_unsubscribed_on_their_own_sockets(sim_factory, exchange):
    """12 series over sockets of 5 topics; removing the first 5 empties their socket and
    frees its room: the next series goes there, not to a fourth socket."""
    symbols = SPOT[:13]
    sim = _sim(sim_factory, exchange, symbols, streams_per_connection=5)
    store = CCXTStore(exchange, sim_url=sim.url(exchange), config={"options": {"btccxtWsShard": 5}})

    def loads() -> list[int]:
        return socket_loads(sim.stats(exchange))

    def attach(sym: str):
        return store.attach(SeriesParams(symbol=sym, timeframe="1s", mode="websocket",
                                         backfill_start=False, exchange_id=exchange))

    try:
        handles = [attach(sym) for sym in symbols[:12]]
        assert wait_until(lambda: loads() == [2, 5, 5])
        for h in handles[:5]:
            store.detach(h)
        assert wait_until(lambda: loads() == [2, 5])
        attach(symbols[12])
        assert wait_until(lambda: loads() == [1, 2, 5])
        stats = sim.stats(exchange)
        assert stats["ws_limit_refusals"] == 0 and stats["unsubscribe_requests"] == 5
        assert len(stats["subscriptions"]) == 3  # the emptied socket took the new series
    finally:
        store.stop()


def _stale_partials(sim, res, symbols: list[str]) -> dict[str, list[int]]:
    """Series whose every mismatch with the truth is a bar with the right open, no volume
    and high = low = close = open: the state the bar had at its first update."""
    out: dict[str, list[int]] = {}
    for sym in symbols:
        seen = res.bars[sym]
        truth = truth_map(sim, "kucoin", sym, "1s", seen[0].ts, seen[-1].ts + 1000)
        wrong = [s for s in seen if truth.get(s.ts) != s.ohlcv]
        if wrong and all(s.ts in truth and s.ohlcv == (truth[s.ts][0],) * 4 + (0.0,)
                         for s in wrong):
            out[sym] = [s.ts for s in wrong]
    return out


@pytest.mark.long
def test_kucoin_subscribes_are_paced_within_its_messages_per_10_seconds(sim_factory):
    """21 series, 21 subscribes on one socket, against a lowered cap of 20 messages in 10 s:
    ccxt alone sends them at once (about 133 a second) and kucoin refuses the 21st; paced
    at 1.7 a second (17 in 10 s, room for a ping and ccxt's one early message), none is."""
    symbols = SPOT[:21]
    sim = _sim(sim_factory, "kucoin", symbols, messages_per_10s=20)
    store = CCXTStore("kucoin", sim_url=sim.url("kucoin"), config={"options": {"btccxtWsRate": 1.7}})
    seen: list[dict] = []
    # the last subscribe goes ~12 s after the first: no watchdog renewal meanwhile
    res = run_feeds(store, symbols, live_bars=3, backfill_bars=2, use_websocket=True,
                    watchdog_silence=30, timeout=40,
                    on_next=after_live(2, lambda: seen.append(sim.stats("kucoin"))))
    assert not res.timed_out and seen
    stats = seen[0]
    assert stats["ws_limit_refusals"] == 0 and sum(socket_loads(stats)) == len(symbols), stats
    for sym in symbols[::5]:
        assert_matches_truth(sim, "kucoin", sym, "1s", res.bars[sym], tf_ms=1000)


def _kucoin_socket(sim) -> str:
    """A socket address with a token of the simulator's bullet-public endpoint."""
    base = sim.url("kucoin")

    async def token() -> str:
        async with aiohttp.ClientSession() as http:
            async with http.post(base + "/api/v1/bullet-public") as r:
                data = (await r.json())["data"]
        server = data["instanceServers"][0]["endpoint"]
        return f"{server}?token={data['token']}&connectId=t1"

    return asyncio.run(token())


def _kucoin_subscribe(sim, url: str, topics: list[str]) -> tuple[list[dict], bool, dict]:
    async def go() -> tuple[list[dict], bool, dict]:
        answers = []
        async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
            assert json.loads((await ws.receive(timeout=5)).data)["type"] == "welcome"
            for i, topic in enumerate(topics):
                await ws.send_str(json.dumps({"id": str(i), "type": "subscribe", "topic": topic,
                                              "response": True}))
                # its answer: candles of a topic taken before ("message") may come first
                while (msg := json.loads((await ws.receive(timeout=5)).data)).get("type") == "message":
                    pass
                answers.append(msg)
            return answers, ws.closed, sim.stats("kucoin")  # while the socket is open

    return asyncio.run(go())


def test_kucoin_refuses_messages_past_its_rate_and_topics_past_its_caps(sim_factory):
    sim = _sim(sim_factory, "kucoin", SYMBOLS[:8], messages_per_10s=6, streams_per_connection=4,
               args_per_request=3)
    url = _kucoin_socket(sim)
    topics = [f"/market/candles:{s.replace('/', '-')}_1sec" for s in SYMBOLS[:5]]
    topics.insert(1, "/market/ticker:" + ",".join(s.replace("/", "-") for s in SYMBOLS[:4]))
    topics.append("/market/candles:" + SYMBOLS[7].replace("/", "-") + "_1sec")  # the 7th message
    answers, closed, stats = _kucoin_subscribe(sim, url, topics)
    errors = [(a["type"], a.get("code"), a.get("data")) for a in answers]
    assert errors == [
        ("ack", None, None),
        ("error", 509, "exceed max subscription count limitation of 3 per time"),
        ("ack", None, None), ("ack", None, None), ("ack", None, None),
        ("error", 509, "exceed max subscription count limitation of 4 per session"),
        ("error", 509, "exceed max permits per 10 seconds"),
    ], errors
    assert not closed  # kucoin refuses; the socket stays
    assert stats["ws_limit_refusals"] == 3 and stats["ws_limit_closes"] == 0
    assert socket_loads(stats) == [4]


# ------------------------------------------------------------------ bitget
def test_bitget_30_subscribes_stay_within_10_messages_a_second_and_are_restored(sim_factory):
    """The real limit: ccxt alone sends 20 messages a second on a socket, and bitget closes
    it at the 11th of a second; paced at 7 a second, no socket is closed."""
    sim = _sim(sim_factory, "bitget")
    res, (before, after) = run_and_drop(sim, "bitget", SYMBOLS, config={})
    _check_run(sim, "bitget", res, before, after, SYMBOLS)


def test_bitget_spreads_30_symbols_over_sockets_and_restores_them_there(sim_factory):
    """A lowered 12 channels and 12 subscribe requests a socket (bitget: 1,000 channels, 240
    requests an hour): ccxt alone sends every subscribe on one socket, and the 13th is refused;
    btccxt spreads them over sockets of 10, again after the drop (a new socket's count starts
    afresh)."""
    sim = _sim(sim_factory, "bitget", streams_per_connection=12, subscribes_per_hour=12)
    res, (before, after) = run_and_drop(sim, "bitget", SYMBOLS,
                                        config={"options": {"btccxtWsShard": 10}})
    assert socket_loads(before) == [10, 10, 10] and socket_loads(after) == [10, 10, 10], after
    _check_run(sim, "bitget", res, before, after, SYMBOLS)
    # each socket's 10 subscribes went as one message (coalesce.py), and so did the restore
    # (or a few, as the series came back one by one): ccxt alone sends 30 and 30
    assert before["subscribe_requests"] == 3, before["subscribe_requests"]
    assert after["subscribe_requests"] - 3 <= 9, after["subscribe_requests"]


def test_bitget_refuses_subscribe_requests_past_its_count_an_hour(sim_factory):
    sim = _sim(sim_factory, "bitget", SYMBOLS[:4], subscribes_per_hour=3)
    url = sim.url("bitget").replace("http", "ws") + "/v2/ws/public"
    args = [{"instType": "SPOT", "channel": "candle1s", "instId": s.replace("/", "")}
            for s in SYMBOLS[:4]]

    async def go() -> tuple[list[dict], bool, dict]:
        events = []
        async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
            for arg in args:
                await ws.send_str(json.dumps({"op": "subscribe", "args": [arg]}))
                while True:  # the answer, not the snapshot after it
                    msg = json.loads((await ws.receive(timeout=5)).data)
                    if msg.get("event"):
                        events.append(msg)
                        break
            return events, ws.closed, sim.stats("bitget")  # while the socket is open

    events, closed, stats = asyncio.run(go())
    assert [e["event"] for e in events] == ["subscribe"] * 3 + ["error"], events
    assert (events[3]["code"], events[3]["msg"], "arg" in events[3]) == (30006, "request too many", False)
    assert not closed and stats["ws_limit_refusals"] == 1 and socket_loads(stats) == [3]
    assert stats["subscribe_requests"] == 3


def test_bitget_refuses_a_request_past_its_bytes_of_channels(sim_factory):
    """The real 4,096 bytes: 70 args (about 4,100 bytes) in one request are refused, 60 are
    taken; btccxt merges at most 4,000 bytes (coalesce.BITGET_ARGS_BYTES)."""
    symbols = [f"Z{i:03d}/USDT" for i in range(70)]
    sim = _sim(sim_factory, "bitget", symbols)
    url = sim.url("bitget").replace("http", "ws") + "/v2/ws/public"
    args = [{"instType": "SPOT", "channel": "candle1s", "instId": s.replace("/", "")}
            for s in symbols]
    assert len(json.dumps(args, separators=(",", ":"))) > 4096
    assert len(json.dumps(args[:60], separators=(",", ":"))) <= BITGET_ARGS_BYTES

    async def go() -> tuple[dict, list[dict], dict]:
        async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
            await ws.send_str(json.dumps({"op": "subscribe", "args": args}))
            refused = json.loads((await ws.receive(timeout=5)).data)
            await ws.send_str(json.dumps({"op": "subscribe", "args": args[:60]}))
            acks: list[dict] = []
            while len(acks) < 60:
                msg = json.loads((await ws.receive(timeout=5)).data)
                if msg.get("event"):
                    acks.append(msg)
            return refused, acks, sim.stats("bitget")

    refused, acks, stats = asyncio.run(go())
    assert (refused["event"], refused["code"]) == ("error", 30016), refused
    assert {a["event"] for a in acks} == {"subscribe"}
    assert stats["ws_limit_refusals"] == 1 and socket_loads(stats) == [60]


def test_bitget_closes_a_socket_sending_more_than_10_messages_a_second(sim_factory):
    """What ccxt.pro alone does with 15 symbols: 15 subscribes in 0.75 s, and the close."""
    sim = _sim(sim_factory, "bitget")

    async def body(ex):
        return await asyncio.gather(*(asyncio.wait_for(ex.watch_ohlcv(s, "1s"), 10)
                                      for s in SYMBOLS[:15]), return_exceptions=True)

    results = asyncio.run(_with_pro(sim, "bitget", body))
    failed = [r for r in results if isinstance(r, BaseException)]
    assert failed and all("30007" in str(r) for r in failed), results
    assert sim.stats("bitget")["ws_limit_closes"] == 1


def test_bitget_refuses_a_channel_past_the_channels_a_socket_may_hold(sim_factory):
    sim = _sim(sim_factory, "bitget", SYMBOLS[:6], streams_per_connection=5)
    url = sim.url("bitget").replace("http", "ws") + "/v2/ws/public"
    args = [{"instType": "SPOT", "channel": "candle1s", "instId": s.replace("/", "")}
            for s in SYMBOLS[:6]]

    async def go() -> tuple[list[dict], dict]:
        out = []
        async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
            await ws.send_str(json.dumps({"op": "subscribe", "args": args}))
            while len([m for m in out if m.get("event")]) < 6:
                out.append(json.loads((await ws.receive(timeout=5)).data))
            return [m for m in out if m.get("event")], sim.stats("bitget")  # the socket open

    events, stats = asyncio.run(go())
    assert [e["event"] for e in events] == ["subscribe"] * 5 + ["error"], events
    assert (events[5]["code"], events[5]["msg"], events[5]["arg"]) == (30006, "request too many", args[5])
    assert stats["ws_limit_refusals"] == 1 and socket_loads(stats) == [5]


# ------------------------------------------------------------------ kraken
def test_kraken_subscribes_30_symbols_in_one_message_and_restores_them(sim_factory):
    """ccxt.pro sends one subscribe per series at kraken's pace of one message a second (30 s
    for 30 symbols, 17 minutes for 1,000); btccxt sends the symbols attached together in one
    message, and the restore after a drop in one or a few."""
    sim = _sim(sim_factory, "kraken")
    # kraken's REST pace (1 a second) would take 30 s to backfill 30 symbols: lifted, as in
    # test_e2e_bitget_kraken (and with it the socket's pace; one message stays one message)
    res, (before, after) = run_and_drop(sim, "kraken", SYMBOLS, config={"rateLimit": 50})
    _check_run(sim, "kraken", res, before, after, SYMBOLS)
    assert before["subscribe_requests"] == 1, before["subscribe_requests"]
    assert after["subscribe_requests"] - 1 <= 3, after["subscribe_requests"]


# ------------------------------------------------------------------ the pacing itself
@pytest.mark.parametrize("exchange", sorted(MESSAGE_RATES))
def test_ccxt_is_told_to_send_at_most_the_exchanges_message_rate(exchange):
    import ccxt.pro

    ex = getattr(ccxt.pro, exchange)()
    assert pace_sockets(ex) == MESSAGE_RATES[exchange]
    per_ms = ex.tokenBucket["refillRate"] / ex.options["ws"]["cost"]
    assert per_ms * 1000 == pytest.approx(MESSAGE_RATES[exchange])
    kept = getattr(ccxt.pro, exchange)({"options": {"ws": {"cost": 3}}})
    assert pace_sockets(kept) is None and kept.options["ws"]["cost"] == 3  # the user's own
