"""Secret values resolved from the environment never show in errors, reprs or logs."""

from __future__ import annotations

import logging

import pytest

from btccxt_cli.config import loads_config
from btccxt_cli.errors import ConfigError
from btccxt_cli.exchange.describe import validate_exchange
from btccxt_cli.log import redact

KEY = "AKIAEXAMPLEKEY0123456789"
SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
PASS = "correct-horse-battery-staple"
ENV = {"T_API_KEY": KEY, "T_SECRET": SECRET, "T_PASS": PASS}
VALUES = (KEY, SECRET, PASS)

HEAD = ("exchange:\n  id: {ex}\n  api_key: ${{T_API_KEY}}\n  secret: ${{T_SECRET}}\n{pw}"
        "symbols: [BTC/USDT]\nstrategy: {{name: sma_cross}}\n")


def head(ex: str = "binance", pw: bool = False) -> str:
    return HEAD.format(ex=ex, pw="  password: ${T_PASS}\n" if pw else "")


def assert_clean(text: str) -> None:
    for value in VALUES:
        assert value not in text


def test_config_repr_and_dump_hide_secrets() -> None:
    config = loads_config(head("okx", pw=True), env=ENV)
    assert config.exchange.password is not None
    assert config.exchange.password.get_secret_value() == PASS
    for text in (repr(config), str(config), repr(config.exchange), config.model_dump_json(),
                 str(config.model_dump()), repr(config.source)):
        assert_clean(text)


def test_resolved_secrets_are_registered_for_redaction() -> None:
    loads_config(head("okx", pw=True), env=ENV)
    for value in VALUES:
        assert redact(f"x {value} y") == "x *** y"


@pytest.mark.parametrize("tail", [
    "feed: {timeframe: '${T_SECRET}'}\n",  # a secret pasted into a plain field
    "feed: {mode: '${T_API_KEY}'}\n",
    "lookback: '${T_SECRET}'\n",
    "broker: {mode: '${T_PASS}'}\n",
    "symbols2: [${T_SECRET}]\n",
    "strategy2: {name: '${T_SECRET}'}\n",
])
def test_errors_never_contain_secret_values(tail: str) -> None:
    with pytest.raises(ConfigError) as info:
        loads_config(head("binance", pw=True) + tail, file="c.yaml", env=ENV)
    err = info.value
    assert_clean(str(err))
    assert_clean(repr(err))
    assert_clean(" ".join(map(str, err.args)))


def test_exchange_check_errors_never_contain_secret_values() -> None:
    config = loads_config(head("okx"), file="c.yaml", env=ENV)
    with pytest.raises(ConfigError) as info:
        validate_exchange(config)
    assert_clean(str(info.value))


@pytest.mark.parametrize("value", ["12345678901234", "[a-secret-list-item, b]", "{k: inline-map-secret}"])
def test_badly_typed_credentials_are_not_echoed(value: str) -> None:
    text = f"exchange:\n  id: binance\n  api_key: {value}\nsymbols: [BTC/USDT]\nstrategy: {{name: s}}\n"
    with pytest.raises(ConfigError) as info:
        loads_config(text, file="c.yaml", env={})
    assert info.value.key == "exchange.api_key"
    for part in ("12345678901234", "a-secret-list-item", "inline-map-secret"):
        assert part not in str(info.value)


def test_inline_secret_is_masked_in_later_logs(caplog: pytest.LogCaptureFixture) -> None:
    inline = "inline-only-secret-value-77"
    text = f"exchange:\n  id: binance\n  api_key: k-inline-0001\n  secret: {inline}\n" \
           "symbols: [BTC/USDT]\nstrategy: {name: s}\n"
    with caplog.at_level(logging.WARNING, logger="btccxt_cli"):
        loads_config(text, file="c.yaml", env={})
    assert all(inline not in r.getMessage() for r in caplog.records)
    assert redact(inline) == "***"
