"""The ccxt range the closed-flag taps were tested with is the one pyproject.toml declares,
and the installed ccxt lies in it."""

from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path

from packaging.specifiers import SpecifierSet

from btccxt_cli.exchange.taps import TESTED_CCXT


def test_the_declared_ccxt_range_is_the_tested_one_and_installed():
    text = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    found = re.findall(r'^\s*"ccxt([^"]*)"', text, flags=re.M)
    assert len(found) == 1, found
    assert SpecifierSet(found[0]) == SpecifierSet(TESTED_CCXT)
    assert SpecifierSet(TESTED_CCXT).contains(version("ccxt"))
