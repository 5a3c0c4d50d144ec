"""Offline exchange checks: ccxt metadata (no network), WebSocket support, timeframes, symbols."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from typing import Any

import pytest

from btccxt_cli.config import Config, loads_config
from btccxt_cli.errors import ConfigError, CredentialsError, UnsupportedError
from btccxt_cli.exchange.describe import (
    ExchangeFacts,
    check_against_exchange,
    check_exchange_id,
    check_symbols,
    describe,
    exchange_ids,
    suggest_exchange,
    validate_exchange,
)


def make(exchange: dict[str, Any] | None = None, **sections: Any) -> Config:
    data: dict[str, Any] = {"exchange": exchange or {"id": "binance"}, "symbols": ["BTC/USDT"],
                            "strategy": {"name": "sma_cross"}}
    data.update(sections)
    return Config.model_validate(data)


def not_in_pro() -> str:
    import ccxt
    import ccxt.pro

    missing = sorted(set(ccxt.exchanges) - set(ccxt.pro.exchanges))
    if not missing:
        pytest.skip("ccxt.pro covers every ccxt exchange in this version")
    return missing[0]


def test_exchange_ids_and_suggestions() -> None:
    ids = exchange_ids()
    assert "binance" in ids and "okx" in ids
    assert suggest_exchange("binanc") == "binance"
    assert suggest_exchange("OKX") == "okx"
    assert suggest_exchange("qqqqqqqq") is None


def test_describe_reads_static_facts() -> None:
    binance = describe("binance")
    assert binance.name == "Binance"
    assert binance.has_fetch_ohlcv and binance.has_watch_ohlcv
    assert "1m" in binance.timeframes and "1s" in binance.timeframes
    assert not binance.needs_password
    okx = describe("okx")
    assert okx.needs_password and "1s" not in okx.timeframes
    assert describe("binance") is binance  # cached


def test_describe_unknown_exchange() -> None:
    with pytest.raises(UnsupportedError, match="did you mean 'binance'"):
        describe("binanc")


def test_exchange_missing_from_ccxt_pro_has_no_watch() -> None:
    ex_id = not_in_pro()
    facts = describe(ex_id)
    assert facts.has_watch_ohlcv is False
    config = make({"id": ex_id}, feed={"mode": "websocket"})
    with pytest.raises(ConfigError, match="has no WebSocket OHLCV in ccxt.pro; use mode: rest or threaded"):
        check_against_exchange(config, facts)


def test_check_exchange_id() -> None:
    check_exchange_id(make())
    with pytest.raises(ConfigError, match="did you mean 'okx'") as info:
        check_exchange_id(make({"id": "OKX"}))
    assert info.value.key == "exchange.id"
    with pytest.raises(ConfigError, match="unknown exchange 'mine'"):
        check_exchange_id(make({"id": "mine"}), ids=["binance"])


def test_simulator_adds_1s_for_okx() -> None:
    with pytest.raises(ConfigError, match="okx has no 1s bars"):
        validate_exchange(make({"id": "okx"}, feed={"timeframe": "1s"}))
    validate_exchange(make({"id": "okx", "sim": True}, feed={"timeframe": "1s", "mode": "websocket"}))
    validate_exchange(make({"id": "okx", "sim": "http://127.0.0.1:1234"}, feed={"timeframe": "1s"}))


def test_per_symbol_timeframe_is_checked_too() -> None:
    config = make({"id": "okx"}, symbols=["BTC/USDT", {"symbol": "ETH/USDT", "timeframe": "8h"}])
    with pytest.raises(ConfigError, match="okx has no 8h bars; nearest: 6h, 12h") as info:
        validate_exchange(config)
    assert info.value.key == "symbols[1].timeframe"


def test_password_required_when_keys_are_given() -> None:
    text = ("exchange:\n  id: okx\n  api_key: ${K}\n  secret: ${S}\nPWsymbols: [BTC/USDT]\n"
            "strategy: {name: s}\n")
    env = {"K": "dummy-okx-key-1", "S": "dummy-okx-secret-1", "P": "dummy-okx-pass-1"}
    with pytest.raises(CredentialsError, match="OKX_PASSPHRASE") as info:
        validate_exchange(loads_config(text.replace("PW", ""), file="c.yaml", env=env))
    assert (info.value.line, info.value.key) == (3, "exchange.api_key")
    validate_exchange(loads_config(text.replace("PW", "  password: ${P}\n"), env=env))
    validate_exchange(make({"id": "okx"}))  # no keys at all: public data only


def test_exchange_without_fetch_ohlcv() -> None:
    facts = ExchangeFacts(id="wsonly", name="WS only", has_fetch_ohlcv=False, has_watch_ohlcv=True,
                          timeframes=[], needs_password=False)
    with pytest.raises(ConfigError, match="has no fetchOHLCV"):
        check_against_exchange(make(feed={"mode": "rest"}), facts)
    with pytest.raises(ConfigError, match="nothing can be backfilled"):
        check_against_exchange(make(feed={"mode": "websocket"}), facts)
    check_against_exchange(make(feed={"mode": "websocket", "backfill": 0}), facts)


def test_simulator_only_speaks_its_venues() -> None:
    with pytest.raises(ConfigError, match="the simulator does not speak gemini"):
        validate_exchange(make({"id": "gemini", "sim": True}, symbols=["BTC/USD"]))


MARKETS = {
    "BTC/USDT": {"active": True},
    "ETH/USDT": {"active": True},
    "BTC/USDT:USDT": {"active": True},
    "OLD/USDT": {"active": False},
}


def test_check_symbols_accepts_listed_markets(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="btccxt_cli"):
        check_symbols(make(symbols=["BTC/USDT", "BTC/USDT:USDT", "OLD/USDT"]), MARKETS)
    assert any("OLD/USDT is marked inactive" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(("symbol", "fragment"), [
    ("btc/usdt", "did you mean BTC/USDT"),
    ("ETH/USDC", "did you mean ETH/USDT"),
    ("ZZZ/QQQ", "binance has no market ZZZ/QQQ"),
])
def test_check_symbols_suggests(symbol: str, fragment: str) -> None:
    text = f"exchange: {{id: binance}}\nsymbols:\n  - BTC/USDT\n  - {symbol}\nstrategy: {{name: s}}\n"
    with pytest.raises(ConfigError, match=re.escape(fragment)) as info:
        check_symbols(loads_config(text, file="c.yaml", env={}), MARKETS)
    assert (info.value.line, info.value.key) == (4, "symbols[1]")


@pytest.mark.parametrize(("module", "absent"), [
    ("btccxt_cli.exchange.describe", ("ccxt",)),
    ("btccxt_cli.config", ("ccxt", "typer", "rich")),
    ("btccxt_cli.cli.validate", ("ccxt", "pydantic", "yaml")),
])
def test_modules_import_heavy_libraries_lazily(module: str, absent: tuple[str, ...]) -> None:
    code = (f"import sys\nimport {module}\n"
            f"loaded = [m for m in {absent!r} if m in sys.modules]\nassert not loaded, loaded\n")
    subprocess.run([sys.executable, "-c", code], check=True)
