"""``check_ws`` against the simulator: a healthy run, then one fault per failure the report names.

Every run uses 1s bars and a 1 s watch window (the simulator pushes a forming 1s candle every
250 ms). Faults are switched on before the check starts, so nothing depends on timing: a stall
or outage that outlasts the whole check cannot be missed. The pure helpers (error diagnosis,
suggestions) are tested on ccxt's own exception classes, built directly.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import ccxt
import pytest

from btccxt_cli.exchange.diagnose import (
    NTP_HINT,
    SILENT_HINT,
    STEP_TITLES,
    CheckReport,
    check_ws,
    explain_error,
    nearest_timeframes,
    suggest_symbols,
)

EXCHANGES = ["binance", "okx"]
WS_STEPS = ["ws_connect", "first_candle", "stream", "keepalive", "reconnect"]


def run(sim: Any, exchange: str, **kwargs: Any) -> CheckReport:
    kwargs.setdefault("timeframe", "1s")
    kwargs.setdefault("seconds", 1.0)
    return asyncio.run(check_ws(exchange, sim_url=sim.url(exchange), **kwargs))


def statuses(report: CheckReport) -> dict[str, str]:
    return {s.name: s.status for s in report.steps}


# --------------------------------------------------------------------------- healthy
@pytest.mark.live
@pytest.mark.parametrize("exchange", EXCHANGES)
def test_healthy_simulator_passes_every_step_and_reconnects(sim_factory: Any, exchange: str) -> None:
    sim = sim_factory(exchanges=(exchange,))
    seen: list[str] = []
    report = run(sim, exchange, reconnect_test=True, on_step=lambda s: seen.append(s.name))

    assert [s.name for s in report.steps] == list(STEP_TITLES) == seen
    assert statuses(report) == {**dict.fromkeys(STEP_TITLES, "pass"), "credentials": "skip"}
    assert report.verdict == "pass" and report.exit_code == 0
    t = report.timings()
    for key in ("rtt_ms", "skew_ms", "connect_ms", "subscribe_ms", "first_candle_ms",
                "updates_per_s", "pong_ms", "reconnect_ms"):
        assert key in t, key
    assert abs(t["skew_ms"]) < 200
    assert t["updates"] >= 2 and t["longest_silence_s"] < 1.0
    assert t["first_candle_ms"] < 1000 and t["connect_ms"] < t["first_candle_ms"]
    if exchange == "binance":  # kline events carry the exchange's event time E
        assert abs(t["event_delay_p50_ms"]) < 200
    keepalive = report.step("keepalive").detail
    assert ("text ping ping" if exchange == "okx" else "protocol ping") in keepalive
    assert all(not s.hint for s in report.steps)
    stats = sim.stats(exchange)
    # one socket, closed client-side by the reconnect test, a second one after it
    assert stats["ws_connections_total"] == 2 and stats["subscribe_requests"] == 2
    assert stats["ws_connections_open"] == 0  # check_ws closes the exchange at the end


# --------------------------------------------------------------------------- faults
@pytest.mark.live
@pytest.mark.parametrize("exchange", EXCHANGES)
def test_outage_fails_rest_with_a_hint_and_skips_the_socket(sim_factory: Any, exchange: str) -> None:
    sim = sim_factory(exchanges=(exchange,))
    sim.outage(exchange, 60)
    report = run(sim, exchange)
    rest = report.step("rest")
    assert rest.status == "fail" and report.verdict == "failed" and report.exit_code == 2
    assert rest.metrics["error"] == ("unavailable" if exchange == "binance" else "maintenance")
    assert "retry" in rest.hint and "status page" in rest.hint
    assert all(report.step(n).status == "skip" for n in ["symbol", *WS_STEPS])
    assert sim.stats(exchange)["ws_connections_total"] == 0


@pytest.mark.live
def test_refused_websocket_upgrade_fails_connect_and_points_at_rest_mode(sim_factory: Any) -> None:
    sim = sim_factory(exchanges=("binance",))
    sim.outage("binance", 60, ws=True, rest=False)
    report = run(sim, "binance")
    step = report.step("ws_connect")
    assert statuses(report)["rest"] == "pass" and step.status == "fail"
    assert "HTTP 503" in step.detail and step.metrics["http_status"] == 503
    assert "REST mode" in step.hint
    assert report.exit_code == 2


@pytest.mark.live
@pytest.mark.parametrize("exchange", EXCHANGES)
def test_stalled_socket_is_reported_as_silent(sim_factory: Any, exchange: str) -> None:
    sim = sim_factory(exchanges=(exchange,))
    sim.stall(exchange, 60)  # far longer than the check: no push can arrive
    report = run(sim, exchange)
    assert report.step("ws_connect").status == "pass"
    assert "subscribe acknowledged" in report.step("ws_connect").detail
    first = report.step("first_candle")
    assert first.status == "fail" and first.hint == SILENT_HINT
    assert "no candle within 1 s" in first.detail
    assert all(report.step(n).status == "skip" for n in ["stream", "keepalive", "reconnect"])
    assert report.verdict == "failed"


@pytest.mark.live
@pytest.mark.parametrize("status,kind,words", [(429, "rate_limited", "wait 7 s (Retry-After)"),
                                               (418, "banned", "wait 7 s (Retry-After)")])
def test_rate_limit_names_the_retry_after(sim_factory: Any, status: int, kind: str, words: str) -> None:
    sim = sim_factory(exchanges=("okx",))
    sim.rest_errors("okx", status, count=5, retry_after=7)
    report = run(sim, "okx")
    rest = report.step("rest")
    assert rest.status == "fail" and rest.metrics["error"] == kind
    assert rest.metrics["http_status"] == status and words in rest.hint
    assert f"HTTP {status}" in rest.detail


@pytest.mark.live
def test_socket_dropped_before_the_window_degrades_the_stream(sim_factory: Any) -> None:
    sim = sim_factory(exchanges=("binance",))

    def drop_after_first_candle(step: Any) -> None:
        if step.name == "first_candle":
            assert sim.drop("binance") == 1  # returns once the server has closed the socket

    report = run(sim, "binance", on_step=drop_after_first_candle)
    stream = report.step("stream")
    # the pending watch fails, or ccxt notices the close first and dials again: a warning either way
    assert stream.status == "warn", stream.detail
    assert "the socket failed 1 time(s) during the window" in stream.detail or \
        stream.metrics["redials"] == 1
    assert stream.metrics["updates"] >= 1  # and candles flowed again on a new socket
    assert report.verdict == "degraded" and report.exit_code == 1


@pytest.mark.live
def test_clock_skew_warns_with_the_ntp_hint(sim_factory: Any) -> None:
    sim = sim_factory(exchanges=("okx",), clock_offset_ms=3000)
    report = run(sim, "okx", seconds=1.5)  # the window always holds a bar boundary
    clock = report.step("clock")
    assert clock.status == "warn" and clock.hint == NTP_HINT
    assert 2800 < clock.metrics["skew_ms"] < 3200
    assert "ahead of the local clock" in clock.detail
    # the receive delays are corrected by the measured skew, so the stream itself is fine
    assert report.step("stream").status == "pass"
    assert abs(report.timings()["new_bar_delay_p50_ms"]) < 500
    assert report.verdict == "degraded" and report.exit_code == 1


@pytest.mark.live
def test_unknown_symbol_suggests_close_matches(sim_factory: Any) -> None:
    sim = sim_factory(exchanges=("binance",))
    report = run(sim, "binance", symbol="BTCUSDT")
    step = report.step("symbol")
    assert step.status == "fail"
    assert "binance has no market BTCUSDT; did you mean BTC/USDT" in step.detail
    assert all(report.step(n).status == "skip" for n in WS_STEPS)
    assert sim.stats("binance")["ws_connections_total"] == 0


@pytest.mark.live
def test_unsupported_timeframe_names_the_nearest(sim_factory: Any) -> None:
    sim = sim_factory(exchanges=("okx",))
    report = run(sim, "okx", timeframe="7m")
    step = report.step("timeframe")
    assert step.status == "fail" and "okx has no 7m bars; nearest: 5m, 15m" in step.detail
    assert "1m" in step.hint
    assert report.step("rest").status == "pass" and report.step("symbol").status == "pass"
    assert report.step("ws_connect").detail == "timeframe 7m is not offered"
    assert report.exit_code == 2


def test_unknown_exchange_is_a_failed_step_not_an_exception() -> None:
    report = asyncio.run(check_ws("binanc", seconds=1))
    step = report.step("exchange")
    assert step.status == "fail" and step.hint == "did you mean 'binance'?"
    assert {s.status for s in report.steps[1:]} == {"skip"}
    assert report.to_dict()["exit_code"] == 2


# --------------------------------------------------------------------------- pure helpers
def _binance() -> Any:
    return ccxt.binance()


@pytest.mark.parametrize("exc,status,kind", [
    (ccxt.ExchangeNotAvailable("binance GET https://api.binance.com/api/v3/time"), None, "unreachable"),
    (ccxt.ExchangeError("binance GET https://api.binance.com/api/v3/time 451 Unavailable For "
                        "Legal Reasons {}"), None, "geo_blocked"),
    (ccxt.PermissionDenied("binance {\"code\":-2015}"), 403, "auth"),
    (ccxt.ExchangeError("binance 403 Forbidden <html>cloudfront</html>"), 403, "geo_blocked"),
    (ccxt.AuthenticationError("okx {\"code\":\"50113\"}"), None, "auth"),
    (ccxt.NetworkError("Cannot connect to host stream.binance.com:9443 ssl:default "
                       "[Name or service not known]"), None, "dns"),
    (ccxt.RequestTimeout("binance GET https://api.binance.com/api/v3/time"), None, "timeout"),
    (ccxt.DDoSProtection("binance {\"code\":-1003}"), 429, "rate_limited"),
    (ccxt.BadSymbol("binance does not have market symbol FOO/BAR"), None, "bad_symbol"),
])
def test_explain_error_classifies(exc: BaseException, status: int | None, kind: str) -> None:
    d = explain_error(exc, exchange=_binance(), status=status)
    assert d.kind == kind and d.hint


def test_explain_error_follows_the_cause_chain_to_dns_and_reads_status_objects() -> None:
    try:
        try:
            raise socket.gaierror(-2, "Name or service not known")
        except socket.gaierror as inner:
            raise ccxt.ExchangeNotAvailable("binance GET https://api.binance.com/api/v3/time") from inner
    except ccxt.ExchangeNotAvailable as exc:
        assert explain_error(exc).kind == "dns"

    class Handshake(Exception):  # what aiohttp's WSServerHandshakeError carries
        status = 451

    d = explain_error(ccxt.NetworkError(Handshake("Invalid response status")), where="WebSocket")
    assert d.kind == "geo_blocked" and d.status == 451 and d.detail.startswith("WebSocket")


def test_suggestions() -> None:
    markets = {"BTC/USDT": {"id": "BTCUSDT"}, "ETH/USDT": {"id": "ETHUSDT"},
               "BTC/USDT:USDT": {"id": "BTC-USDT-SWAP"}}
    assert suggest_symbols("btc/usdt", markets) == ["BTC/USDT", "BTC/USDT:USDT"]
    assert suggest_symbols("BTC-USDT-SWAP", markets) == ["BTC/USDT:USDT"]
    assert suggest_symbols("ETH/USTD", markets)[0] == "ETH/USDT"
    assert nearest_timeframes("7m", ["1m", "5m", "15m", "1h"]) == ["5m", "15m"]
    assert nearest_timeframes("1y", ["1m", "1d"]) == ["1d"]
