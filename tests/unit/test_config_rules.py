"""Cross-field rules, one at a time, on Configs built in code and from text."""

from __future__ import annotations

from typing import Any

import pytest

from btccxt_cli.config import Config, loads_config, rules
from btccxt_cli.errors import ConfigError, CredentialsError


def make(**sections: Any) -> Config:
    data: dict[str, Any] = {"exchange": {"id": "binance"}, "symbols": ["BTC/USDT"],
                            "strategy": {"name": "sma_cross"}}
    data.update(sections)
    return Config.model_validate(data)


def test_every_rule_passes_a_good_config() -> None:
    rules.check_config(make())


@pytest.mark.parametrize(("rule", "sections", "key", "fragment"), [
    (rules.check_sim_and_sandbox, {"exchange": {"id": "binance", "sim": True, "sandbox": True}},
     "exchange.sandbox", "sandbox and sim"),
    (rules.check_symbol_format, {"symbols": ["BTC/USDT", "btc-usdt"]}, "symbols[1]",
     "did you mean BTC/USDT?"),
    (rules.check_symbol_format, {"symbols": ["BTC/USDT:"]}, "symbols[0]", "not a ccxt symbol"),
    (rules.check_duplicate_symbols, {"symbols": ["BTC/USDT", {"symbol": "BTC/USDT"}]}, "symbols[1]",
     "listed twice"),
    (rules.check_timeframes, {"feed": {"timeframe": "5 minutes"}}, "feed.timeframe",
     "did you mean 5m?"),
    (rules.check_timeframes, {"feed": {"timeframe": "1y"}}, "feed.timeframe", "not a timeframe"),
    (rules.check_timeframes, {"symbols": [{"symbol": "BTC/USDT", "timeframe": "0m"}]},
     "symbols[0].timeframe", "not a timeframe"),
    (rules.check_reconnect_delays, {"feed": {"reconnect_delay": 2.5, "max_reconnect_delay": 1.0}},
     "feed.max_reconnect_delay", "(1) is less than reconnect_delay (2.5)"),
    (rules.check_strategy_source, {"strategy": {"name": "a", "path": "b.py"}}, "strategy.path",
     "not both"),
    (rules.check_strategy_source, {"strategy": {}}, "strategy", "missing name or path"),
    (rules.check_broker_mode, {"broker": {"mode": "live"}}, "broker.mode",
     "mode: live needs exchange.api_key and exchange.secret"),
    (rules.check_broker_limits, {"broker": {"limits": {"max_position": {"ETH/USDT": 1.0}}}},
     "broker.limits.max_position.ETH/USDT", "ETH/USDT is not one of the symbols"),
])
def test_rule_raises_located_error(rule: Any, sections: dict[str, Any], key: str, fragment: str) -> None:
    config = make(**sections)
    with pytest.raises(ConfigError) as info:
        rule(config)
    assert info.value.key == key
    assert fragment in str(info.value)
    assert info.value.line is None  # built in code: no source positions
    with pytest.raises(ConfigError):
        rules.check_config(config)


def test_same_symbol_on_two_timeframes_is_allowed() -> None:
    rules.check_duplicate_symbols(make(symbols=["BTC/USDT", {"symbol": "BTC/USDT", "timeframe": "5m"}]))


@pytest.mark.parametrize("symbol", ["BTC/USDT", "BTC/USDT:USDT", "BTC/USD:BTC-240628",
                                    "1000PEPE/USDT", "BTC/USDT:USDT-240628-60000-C", "stETH/ETH"])
def test_valid_symbol_shapes(symbol: str) -> None:
    rules.check_symbol_format(make(symbols=[symbol]))


@pytest.mark.parametrize(("text", "better"), [
    ("BTCUSDT", "BTC/USDT"), ("eth-usdt", "ETH/USDT"), ("SOL_USDC", "SOL/USDC"), ("XYZ", None),
])
def test_suggest_symbol(text: str, better: str | None) -> None:
    assert rules.suggest_symbol(text) == better


@pytest.mark.parametrize(("text", "better"), [
    ("1H", "1h"), ("5min", "5m"), ("1 month", "1M"), ("1M", "1M"), ("4hours", "4h"), ("x", None),
    ("1D", "1d"),
])
def test_suggest_timeframe(text: str, better: str | None) -> None:
    assert rules.suggest_timeframe(text) == better


def test_credentials_must_come_in_pairs() -> None:
    base = "exchange:\n  id: binance\n{extra}symbols: [BTC/USDT]\nstrategy: {{name: s}}\n"
    with pytest.raises(CredentialsError) as info:
        loads_config(base.format(extra="  secret: ${S}\n"), file="c.yaml", env={"S": "secret-xyz-1"})
    assert (info.value.key, info.value.line) == ("exchange.secret", 3)
    with pytest.raises(CredentialsError, match="password is set without api_key"):
        loads_config(base.format(extra="  password: ${P}\n"), env={"P": "pass-xyz-1"})


def test_rule_errors_from_text_carry_positions() -> None:
    text = ("exchange: {id: binance}\nsymbols:\n  - BTC/USDT\n  - symbol: BTC/USDT\n"
            "strategy: {name: s}\n")
    with pytest.raises(ConfigError) as info:
        loads_config(text, file="c.yaml", env={})
    assert (info.value.line, info.value.column, info.value.key) == (4, 5, "symbols[1]")


def test_rules_tuple_holds_every_rule() -> None:
    public = {name for name in rules.__all__ if name.startswith("check_") and name != "check_config"}
    assert {r.__name__ for r in rules.RULES} == public


def test_backfill_start_must_not_be_in_the_future() -> None:
    from btccxt_cli.clock import ManualClock

    clock = ManualClock(start_ms=1_767_225_600_000)  # 2026-01-01T00:00:00Z
    rules.check_backfill_start(make(feed={"backfill": "2025-12-31T23:59:59Z"}), clock)
    rules.check_backfill_start(make(feed={"backfill": "2026-01-01T00:00:00Z"}), clock)  # now
    with pytest.raises(ConfigError) as err:
        rules.check_backfill_start(make(feed={"backfill": "2026-01-01T00:00:01Z"}), clock)
    assert err.value.key == "feed.backfill"
    assert "2026-01-01T00:00:01Z is in the future (now is 2026-01-01T00:00:00Z)" in str(err.value)
    with pytest.raises(ConfigError) as err:
        rules.check_backfill_start(make(symbols=["BTC/USDT", {"symbol": "ETH/USDT",
                                                              "backfill": "2026-02-01"}]), clock)
    assert err.value.key == "symbols[1].backfill"
    rules.check_backfill_start(make(feed={"backfill": 500}), clock)  # a count is never future


SWAP_CFG = ("exchange: {{id: okx}}\nsymbols:\n  - BTC/USDT:USDT\n  - ETH/USDT:USDT\n"
            "strategy: {{name: s}}\nbroker:\n{extra}")


def test_leverage_and_margin_mode_are_per_symbol_or_for_all() -> None:
    cfg = loads_config(SWAP_CFG.format(extra="  leverage: {BTC/USDT:USDT: 5}\n"
                                             "  margin_mode: cross\n"), env={})
    assert cfg.broker.leverage_of("BTC/USDT:USDT") == 5.0
    assert cfg.broker.leverage_of("ETH/USDT:USDT") == 1.0
    assert cfg.broker.margin_mode_of("ETH/USDT:USDT") == "cross"
    cfg = loads_config(SWAP_CFG.format(extra="  leverage: 3\n"), env={})
    assert cfg.broker.leverage_of("ETH/USDT:USDT") == 3.0
    assert cfg.broker.margin_mode_of("BTC/USDT:USDT") == "isolated"


def test_leverage_above_its_cap_or_for_an_unlisted_symbol_is_refused_with_its_line() -> None:
    text = SWAP_CFG.format(extra="  leverage: 10\n  limits:\n    max_leverage: {BTC/USDT:USDT: 5}\n")
    with pytest.raises(ConfigError, match=r"above broker.limits.max_leverage\[BTC/USDT:USDT\] = 5") as info:
        loads_config(text, file="c.yaml", env={})
    assert (info.value.key, info.value.line) == ("broker.leverage", 7)
    assert "lower the leverage" in str(info.value)
    with pytest.raises(ConfigError, match="SOL/USDT:USDT is not one of the symbols"):
        loads_config(SWAP_CFG.format(extra="  margin_mode: {SOL/USDT:USDT: cross}\n"), env={})
    with pytest.raises(ConfigError):
        loads_config(SWAP_CFG.format(extra="  leverage: 0.5\n"), env={})


def test_a_funding_feed_is_for_swaps_only() -> None:
    cfg = loads_config(SWAP_CFG.format(extra="  leverage: 2\n").replace(
        "  - ETH/USDT:USDT\n", "  - {symbol: ETH/USDT:USDT, funding_feed: true}\n"), env={})
    assert [s.funding_feed for s in cfg.symbol_feeds()] == [False, True]
    text = SWAP_CFG.format(extra="  leverage: 2\n").replace(
        "  - ETH/USDT:USDT\n", "  - {symbol: ETH/USDT, funding_feed: true}\n")
    with pytest.raises(ConfigError, match="ETH/USDT is not a swap: it has no funding rates") as info:
        loads_config(text, file="c.yaml", env={})
    assert info.value.key == "symbols[1].funding_feed"
