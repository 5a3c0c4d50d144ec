"""Credentials only where they are used: paper configs load without keys, live ones say why."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from btccxt_cli.config.load import load_config, loads_config
from btccxt_cli.errors import CredentialsError

ROOT = Path(__file__).resolve().parents[2]
CREDS = ("exchange:\n  id: okx\n  api_key: ${T_KEY}\n  secret: ${T_SECRET}\n  password: ${T_PASS}\n"
         "symbols: [BTC/USDT]\nstrategy: {name: sma_cross}\n")
LIVE = CREDS + "broker: {mode: live}\n"


def test_paper_config_with_unset_credential_variables_loads_without_keys(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="btccxt_cli"):
        config = loads_config(CREDS, file="okx.yaml", env={})
    ex = config.exchange
    assert (ex.api_key, ex.secret, ex.password) == (None, None, None)
    assert not ex.has_credentials
    assert any("T_KEY, T_SECRET, T_PASS not set; paper trading" in r.getMessage() for r in caplog.records)


def test_paper_config_with_the_variables_set_uses_them() -> None:
    config = loads_config(CREDS, env={"T_KEY": "k-000111", "T_SECRET": "s-000222", "T_PASS": "p-000333"})
    assert config.exchange.secret is not None and config.exchange.secret.get_secret_value() == "s-000222"


def test_half_given_credentials_are_still_an_error() -> None:
    with pytest.raises(CredentialsError, match="T_SECRET is not set"):
        loads_config(CREDS, env={"T_KEY": "k-000111", "T_PASS": "p-000333"})


def test_live_config_says_live_orders_need_the_variable(tmp_path: Path) -> None:
    path = tmp_path / "live.yaml"
    path.write_text(LIVE, encoding="utf-8")
    with pytest.raises(CredentialsError) as info:
        load_config(path, env={})
    err = info.value
    assert (err.line, err.key) == (3, "exchange.api_key")
    assert "T_KEY is not set, and broker.mode live places real orders with it" in str(err)


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "configs").glob("*.yaml")))
def test_every_shipped_paper_config_validates_with_no_environment(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from btccxt_cli.cli.app import app

    for key in [k for k in os.environ if k.endswith(("_API_KEY", "_SECRET", "_PASSPHRASE"))]:
        monkeypatch.delenv(key)
    result = CliRunner().invoke(app, ["validate", str(ROOT / "configs" / name)])
    assert result.exit_code == 0, result.output
    assert "paper" in result.stdout
