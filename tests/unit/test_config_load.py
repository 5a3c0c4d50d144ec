"""load_config / loads_config: YAML positions, defaults, ${ENV}, .env, paths, YAML corner cases."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

from btccxt_cli.config import Config, load_config, loads_config, parse_yaml, read_dotenv
from btccxt_cli.errors import ConfigError, CredentialsError

MINIMAL = "exchange:\n  id: binance\nsymbols: [BTC/USDT]\nstrategy: {name: sma_cross}\n"


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(text: str, **kwargs: object) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        loads_config(text, file="c.yaml", **kwargs)  # type: ignore[arg-type]
    return info.value


# --------------------------------------------------------------------------- shape and defaults


def test_minimal_config_gets_every_default() -> None:
    config = loads_config(MINIMAL, env={})
    assert config.exchange.id == "binance"
    assert config.exchange.sim is False and not config.exchange.uses_simulator
    assert config.exchange.rate_limit is True and config.exchange.options == {}
    assert config.feed.mode == "rest"
    assert config.feed.timeframe == "1m"
    assert config.feed.backfill == 100
    assert config.feed.ohlcv_limit == 100
    assert config.feed.reconnect_delay == 5.0 and config.feed.max_reconnect_delay == 60.0
    assert config.feed.watchdog_silence is None
    assert config.broker.mode == "paper" and config.broker.cash == 10_000.0
    assert config.dashboard.enabled and config.dashboard.refresh_per_second == 4.0
    assert config.logging.level == "INFO" and config.logging.file is None
    assert config.events.file is None
    assert config.lookback == 1000


def test_config_is_frozen() -> None:
    config = loads_config(MINIMAL, env={})
    with pytest.raises(ValidationError):
        config.lookback = 5  # type: ignore[misc]


def test_symbol_overrides_resolve_per_symbol() -> None:
    text = MINIMAL.replace("symbols: [BTC/USDT]", (
        "symbols:\n  - BTC/USDT\n  - symbol: ETH/USDT\n    timeframe: 5m\n    backfill: none\n"
        "    drop_newest: true\n    ohlcv_limit: 7\n  - {symbol: SOL/USDT, backfill: 2024-02-03}\n"
    ))
    feeds = loads_config(text, env={}).symbol_feeds()
    assert [f.symbol for f in feeds] == ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
    assert (feeds[0].timeframe, feeds[0].backfill, feeds[0].drop_newest, feeds[0].ohlcv_limit) == (
        "1m", 100, False, 100)
    assert (feeds[1].timeframe, feeds[1].backfill, feeds[1].drop_newest, feeds[1].ohlcv_limit) == (
        "5m", 0, True, 7)
    assert feeds[2].backfill == datetime(2024, 2, 3, tzinfo=timezone.utc)
    assert [f.index for f in feeds] == [0, 1, 2]


@pytest.mark.parametrize(("written", "value"), [
    ("0", 0), ("none", 0), ("null", 0), ("'none'", 0), ("250", 250), ("'250'", 250),
    ("2024-01-01", datetime(2024, 1, 1, tzinfo=timezone.utc)),
    ("'2024-01-01T12:30:00Z'", datetime(2024, 1, 1, 12, 30, tzinfo=timezone.utc)),
    ("2024-01-01T12:30:00+02:00", datetime(2024, 1, 1, 10, 30, tzinfo=timezone.utc)),
    ("'2024-01-01 12:30'", datetime(2024, 1, 1, 12, 30, tzinfo=timezone.utc)),
])
def test_backfill_notations(written: str, value: object) -> None:
    config = loads_config(MINIMAL + f"feed: {{backfill: {written}}}\n", env={})
    assert config.feed.backfill == value


@pytest.mark.parametrize("written", ["-1", "true", "1.5", "yesterday", "[1]", "2024-13-45x"])
def test_bad_backfill_is_located(written: str) -> None:
    err = error_of(MINIMAL + f"feed:\n  backfill: {written}\n", env={})
    assert (err.line, err.key) == (6, "feed.backfill")


def test_broker_order_updates() -> None:
    config = loads_config(MINIMAL, env={})
    assert config.broker.updates == "auto" and config.broker.reconcile_interval == 10.0
    config = loads_config(MINIMAL + "broker:\n  updates: poll\n  reconcile_interval: 30\n", env={})
    assert config.broker.updates == "poll" and config.broker.reconcile_interval == 30.0
    err = error_of(MINIMAL + "broker:\n  updates: push\n", env={})
    assert (err.line, err.key) == (6, "broker.updates")
    assert "expected one of auto, websocket, poll" in str(err)


@pytest.mark.parametrize(("written", "value"), [
    ("true", True), ("false", False), ("null", False),
    ("http://127.0.0.1:8765", "http://127.0.0.1:8765"), ("'http://localhost:9000/'", "http://localhost:9000"),
])
def test_sim_notations(written: str, value: object) -> None:
    config = loads_config(MINIMAL.replace("id: binance", f"id: binance\n  sim: {written}"), env={})
    assert config.exchange.sim == value
    assert config.exchange.uses_simulator is bool(value)
    assert config.exchange.sim_url == (value if isinstance(value, str) else None)


@pytest.mark.parametrize("written", ["yes please", "http://127.0.0.1", "ftp://127.0.0.1:21", "8765",
                                     "'http://127.0.0.1:99999'"])
def test_bad_sim_is_located(written: str) -> None:
    err = error_of(MINIMAL.replace("id: binance", f"id: binance\n  sim: {written}"), env={})
    assert (err.line, err.key) == (3, "exchange.sim")


def test_log_level_is_case_insensitive() -> None:
    assert loads_config(MINIMAL + "logging: {level: debug}\n", env={}).logging.level == "DEBUG"
    err = error_of(MINIMAL + "logging: {level: loud}\n", env={})
    assert err.key == "logging.level" and "DEBUG" in str(err)


def test_strict_types_refuse_quoted_numbers_and_yes_no_strings() -> None:
    assert error_of(MINIMAL + "lookback: '500'\n", env={}).key == "lookback"
    assert error_of(MINIMAL + "feed: {drop_newest: 'false'}\n", env={}).key == "feed.drop_newest"


def test_json_schema_has_descriptions() -> None:
    schema = Config.json_schema()
    assert set(schema["required"]) == {"exchange", "symbols", "strategy"}
    assert schema["additionalProperties"] is False
    feed = schema["$defs"]["FeedConfig"]["properties"]
    assert feed["mode"]["enum"] == ["rest", "threaded", "websocket", "hub"]
    assert "ISO 8601" in feed["backfill"]["description"]
    items = schema["properties"]["symbols"]["items"]
    assert {"type": "string"} in items["anyOf"]


# --------------------------------------------------------------------------- positions


def test_source_map_records_keys_and_values() -> None:
    data, source = parse_yaml("a:\n  b: 1\n  c: [x, {d: 2}]\n", file="f.yaml")
    assert data == {"a": {"b": 1, "c": ["x", {"d": 2}]}}
    assert source.keys[("a", "b")] == (2, 3)
    assert source.values[("a", "b")] == (2, 6)
    assert source.values[("a", "c", 1, "d")] == (3, 14)
    assert source.locate(("a", "b")) == (2, 6)  # scalar: its value
    assert source.locate(("a",)) == (1, 1)  # mapping: its key
    assert source.locate(("a", "zzz")) == (1, 1)  # missing: nearest ancestor key


def test_first_error_in_file_order_is_reported() -> None:
    text = ("exchange:\n  id: binance\nsymbols: [BTC/USDT]\nfeed:\n  mode: nope\n"
            "strategy: {name: sma_cross}\nbroker: {cash: -1}\nlookback: x\n")
    err = error_of(text, env={})
    assert (err.line, err.key) == (5, "feed.mode")


def test_missing_required_key_points_at_parent() -> None:
    err = error_of("exchange:\n  sandbox: true\nsymbols: [BTC/USDT]\nstrategy: {name: x}\n", env={})
    assert (err.line, err.column, err.key) == (1, 1, "exchange.id")
    assert "missing required key 'id' in exchange" in str(err)


def test_missing_symbol_key_in_mapping_item() -> None:
    err = error_of(MINIMAL.replace("[BTC/USDT]", "\n  - timeframe: 5m"), env={})
    assert err.key == "symbols[0].symbol" and err.line == 4


def test_unknown_key_without_close_match_lists_allowed_keys() -> None:
    err = error_of(MINIMAL + "feed: {zzzzzz: 1}\n", env={})
    assert "did you mean" not in str(err)
    assert "allowed keys: mode, timeframe" in str(err)


# --------------------------------------------------------------------------- YAML corner cases


@pytest.mark.parametrize(("text", "fragment"), [
    ("", "the file is empty"),
    ("# only a comment\n", "the file is empty"),
    ("just text\n", "expected a mapping at the top level; got text"),
    ("a: 1\n---\nb: 2\n", "invalid YAML"),
    ("a: &x [*x]\n", "recursive alias"),
    ("? [a, b]\n: 1\n", "a key must be plain text"),
    ("1: a\n", "read as a whole number, not text"),
    ("on: a\n", "read as true, not text"),
    ("a: !!python/object:os.system {}\n", "invalid YAML"),
    ("a: !custom 1\n", "invalid YAML"),
    ("a: \x00\n", "invalid YAML"),
    ("a: 2024-13-45\n", "cannot read this value"),
    ("a: " + "[" * 200 + "]" * 200 + "\n", "nested more than"),
])
def test_yaml_corner_cases_are_config_errors(text: str, fragment: str) -> None:
    err = error_of(text, env={})
    assert fragment in str(err)
    assert err.line is not None


def test_alias_bomb_is_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 8):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    err = error_of("\n".join(lines) + "\n", env={})
    assert "document too large" in str(err)


def test_merge_keys_and_anchors_work() -> None:
    text = (
        "base: &feed {mode: rest, timeframe: 5m}\n"
    )
    with pytest.raises(ConfigError, match="unknown key 'base'"):
        loads_config(text + MINIMAL, env={})
    text = MINIMAL + "feed:\n  <<: {mode: threaded, timeframe: 5m}\n  timeframe: 15m\n"
    config = loads_config(text, env={})
    assert (config.feed.mode, config.feed.timeframe) == ("threaded", "15m")


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="directory"):
        load_config(tmp_path)
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("a: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(bad)


# --------------------------------------------------------------------------- environment


CREDS = MINIMAL.replace("id: binance", "id: binance\n  api_key: ${T_KEY}\n  secret: ${T_SECRET}")


def test_env_references_are_expanded() -> None:
    config = loads_config(CREDS, env={"T_KEY": "key-value-111", "T_SECRET": "secret-value-222"})
    assert config.exchange.api_key is not None
    assert config.exchange.api_key.get_secret_value() == "key-value-111"
    assert config.exchange.secret.get_secret_value() == "secret-value-222"  # type: ignore[union-attr]


def test_missing_env_var_names_the_dotenv_file(tmp_path: Path) -> None:
    path = write(tmp_path, CREDS)
    with pytest.raises(CredentialsError) as info:
        load_config(path, env={"T_KEY": "key-value-111"})
    err = info.value
    assert (err.line, err.key) == (4, "exchange.secret")
    assert f"environment variable T_SECRET is not set; export it or add it to {tmp_path.resolve() / '.env'}" in str(err)


def test_dotenv_beside_the_config_is_read_and_real_env_wins(tmp_path: Path) -> None:
    write(tmp_path, "# comment\nexport T_KEY=from-dotenv-key\nT_SECRET='from-dotenv-secret'\n"
          "garbage line\n", name=".env")
    path = write(tmp_path, CREDS)
    config = load_config(path, env={"T_KEY": "from-real-env"})
    assert config.exchange.api_key.get_secret_value() == "from-real-env"  # type: ignore[union-attr]
    assert config.exchange.secret.get_secret_value() == "from-dotenv-secret"  # type: ignore[union-attr]


def test_read_dotenv_forms(tmp_path: Path) -> None:
    path = write(tmp_path, 'A=1\nB = "two words"\nC=3 # note\n# D=4\nexport E=5\n=6\n', name=".env")
    assert read_dotenv(path) == {"A": "1", "B": "two words", "C": "3", "E": "5"}
    assert read_dotenv(tmp_path / "missing.env") == {}


def test_empty_credential_env_var_is_refused() -> None:
    with pytest.raises(CredentialsError, match="T_SECRET is empty"):
        loads_config(CREDS, env={"T_KEY": "key-value-111", "T_SECRET": ""})


@pytest.mark.parametrize("ref", ["'${}'", "'${1BAD}'", "'${UNCLOSED'"])
def test_malformed_references(ref: str) -> None:
    err = error_of(MINIMAL.replace("id: binance", f"id: binance\n  api_key: {ref}\n  secret: x"),
                   env={})
    assert "malformed ${...} reference" in str(err) and err.key == "exchange.api_key"


def test_references_work_in_other_fields_and_can_be_escaped() -> None:
    text = MINIMAL + "feed: {timeframe: '${TF}'}\nstrategy_comment: 1\n"
    with pytest.raises(ConfigError, match="strategy_comment"):
        loads_config(text, env={"TF": "5m"})
    config = loads_config(MINIMAL.replace("sma_cross}", "sma_cross, params: {x: '$${LIT}'}}")
                          + "feed: {timeframe: '${TF}'}\n", env={"TF": "5m"})
    assert config.feed.timeframe == "5m"
    assert config.strategy.params == {"x": "${LIT}"}


def test_inline_secret_warns_without_the_value(caplog: pytest.LogCaptureFixture) -> None:
    text = MINIMAL.replace("id: binance", "id: binance\n  api_key: inline-key-abcdef\n  secret: inline-secret-ghijkl")
    with caplog.at_level(logging.WARNING, logger="btccxt_cli"):
        loads_config(text, file="c.yaml", env={})
    messages = [r.getMessage() for r in caplog.records]
    assert any("exchange.api_key is written inline" in m for m in messages)
    assert any("exchange.secret is written inline" in m for m in messages)
    assert not any("inline-key-abcdef" in m or "inline-secret-ghijkl" in m for m in messages)


# --------------------------------------------------------------------------- paths


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "strat.py").write_text("X = 1\n")
    (tmp_path / "out").mkdir()  # output folders must exist (docs/config.md, "Files and folders")
    path = write(tmp_path, MINIMAL.replace("{name: sma_cross}", "{path: strat.py}")
                 + "events: {file: out/events.jsonl}\nlogging: {file: run.log}\n")
    config = load_config(path)
    assert config.strategy.path == tmp_path / "strat.py"
    assert config.events.file == tmp_path / "out" / "events.jsonl"
    assert config.logging.file == tmp_path / "run.log"


def test_strategy_name_must_be_a_module_name() -> None:
    err = error_of(MINIMAL.replace("{name: sma_cross}", "{name: my_strategy.py}"), env={})
    assert err.key == "strategy.name" and "use path:" in str(err)
