"""Every bad config in tests/fixtures/configs gives ONE located ConfigError.

Each ``bad_*.yaml`` marks the line where the error must point with a comment::

    timefrane: 5m  # <-- feed.timefrane :: did you mean 'timeframe'?

(key path, or ``-`` for none; then a fragment the message must contain).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from btccxt_cli.config import load_config
from btccxt_cli.errors import ConfigError, CredentialsError
from btccxt_cli.exchange.describe import validate_exchange

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "configs"
BAD = sorted(FIXTURES.glob("bad_*.yaml"))
GOOD = sorted(FIXTURES.glob("good_*.yaml"))
ENV = {"BTCCXT_TEST_API_KEY": "dummy-api-key-0001", "BTCCXT_TEST_SECRET": "dummy-secret-0002"}


def expectation(path: Path) -> tuple[int, str | None, str]:
    """(line, key, fragment) from the ``# <--`` marker."""
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if "# <-- " in line:
            key, _, fragment = line.split("# <-- ", 1)[1].partition(" :: ")
            return lineno, (None if key.strip() == "-" else key.strip()), fragment.strip()
    raise AssertionError(f"{path.name} has no '# <--' marker")


def check(path: Path, env: dict[str, str] | None = None) -> None:
    """What ``btccxt validate`` runs: load, rules, then the offline exchange checks."""
    config = load_config(path, env=ENV if env is None else env)
    validate_exchange(config)


def test_there_are_enough_bad_fixtures() -> None:
    assert len(BAD) >= 15


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_bad_config_points_at_the_line_and_key(path: Path) -> None:
    line, key, fragment = expectation(path)
    with pytest.raises(ConfigError) as info:
        check(path)
    err = info.value
    assert err.file == str(path)
    assert err.line == line, str(err)
    assert err.column is not None and err.column >= 1
    assert err.key == key, str(err)
    assert fragment in str(err)
    text = str(err)
    assert text.startswith(f"{path}:{line}:{err.column}: ")
    assert "\n" not in text


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.stem)
def test_good_fixtures_load(path: Path) -> None:
    check(path)


def test_missing_env_is_a_credentials_error() -> None:
    with pytest.raises(CredentialsError) as info:
        check(FIXTURES / "bad_missing_env.yaml")
    assert str((FIXTURES / ".env").resolve()) in str(info.value)


def test_okx_password_is_a_credentials_error() -> None:
    with pytest.raises(CredentialsError):
        check(FIXTURES / "bad_okx_without_password.yaml")
