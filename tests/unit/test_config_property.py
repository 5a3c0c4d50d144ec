"""Property: whatever YAML comes in, loading and checking raise nothing but ConfigError."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from btccxt_cli.config import loads_config
from btccxt_cli.errors import ConfigError
from btccxt_cli.exchange.describe import validate_exchange

VALID: dict[str, Any] = {
    "exchange": {"id": "binance", "sim": True, "options": {}},
    "symbols": ["BTC/USDT", {"symbol": "ETH/USDT", "timeframe": "5m", "backfill": 10}],
    "feed": {"mode": "websocket", "timeframe": "1s", "backfill": 60, "drop_newest": False,
             "ohlcv_limit": 100, "settle_delay": 0.25, "reconnect_delay": 5.0,
             "max_reconnect_delay": 60.0, "watchdog_silence": None},
    "strategy": {"name": "sma_cross", "params": {"fast": 3, "slow": 8}},
    "broker": {"mode": "paper", "cash": 10000.0, "commission": 0.001},
    "dashboard": {"enabled": True, "refresh_per_second": 4},
    "logging": {"level": "INFO", "file": None},
    "events": {"file": None},
    "lookback": 1000,
}

KEY_NAMES = sorted({
    "exchange", "symbols", "feed", "strategy", "broker", "dashboard", "logging", "events",
    "lookback", "id", "sandbox", "sim", "api_key", "secret", "password", "options", "rate_limit",
    "symbol", "mode", "timeframe", "backfill", "drop_newest", "ohlcv_limit", "settle_delay",
    "reconnect_delay", "max_reconnect_delay", "watchdog_silence", "name", "path", "params", "cash",
    "commission", "enabled", "refresh_per_second", "level", "file", "timefrane", "<<",
})
WORDS = ["1m", "1s", "5m", "7m", "1H", "1M", "BTC/USDT", "BTCUSDT", "ETH/USDT:USDT", "binance",
         "okx", "bybit", "btcmarkets", "kraken", "binanc", "websocket", "rest", "threaded", "live",
         "paper", "none", "${X}", "${MISSING}", "${", "$${X}", "2024-01-01", "2024-13-45",
         "http://127.0.0.1:8765", "http://x", "sma_cross", "a.py", "debug", "", " ", "\t", "\\",
         "é", "\u2028"]

scalars = (st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30)
           | st.floats() | st.text(max_size=12) | st.sampled_from(WORDS))
keys = st.sampled_from(KEY_NAMES) | st.text(min_size=1, max_size=10)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=25)
documents = st.dictionaries(keys, values, max_size=8)
ENV = {"X": "value-of-x-0001"}


@pytest.fixture(autouse=True, scope="module")
def _no_secret_registration() -> Iterator[None]:
    # Random strings must not land in the global redaction list that other tests rely on.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("btccxt_cli.config.load.register_secret", lambda value: None)
        yield


def load_and_check(text: str) -> None:
    try:
        config = loads_config(text, file="prop.yaml", env=ENV)
        validate_exchange(config)
    except ConfigError as err:
        message = str(err)
        assert message.startswith("prop.yaml:")
        assert err.file == "prop.yaml" and err.line is not None and err.line >= 1
        assert "\n" not in message
        assert "Traceback" not in message


def dump(data: Any) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_random_mappings_raise_only_config_error(doc: dict[str, Any]) -> None:
    load_and_check(dump(doc))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_random_text_raises_only_config_error(text: str) -> None:
    load_and_check(text)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, prefix + (i,))
    return out


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    doc = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent: Any = doc
        for part in path[:-1]:
            parent = parent[part]
        op = draw(st.sampled_from(["replace", "delete", "rename", "nest"]))
        last = path[-1]
        if op == "replace":
            parent[last] = draw(values)
        elif op == "delete":
            del parent[last]
        elif op == "rename" and isinstance(parent, dict):
            parent[draw(keys)] = parent.pop(last)
        elif op == "nest":
            parent[last] = {draw(keys): parent[last]}
    return doc


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_valid_configs_raise_only_config_error(doc: dict[str, Any]) -> None:
    load_and_check(dump(doc))


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_corrupted_yaml_text_raises_only_config_error(data: st.DataObject) -> None:
    text = dump(VALID)
    pos = data.draw(st.integers(min_value=0, max_value=len(text)))
    cut = data.draw(st.integers(min_value=0, max_value=5))
    insert = data.draw(st.text(alphabet=":-[]{}&*!|>'\"#%@` \t\n?,", max_size=4))
    load_and_check(text[:pos] + insert + text[pos + cut:])


def test_valid_base_document_loads() -> None:
    validate_exchange(loads_config(dump(VALID), env=ENV))
