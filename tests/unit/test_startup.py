"""`btccxt --help` must stay fast: the CLI module imports no heavy library."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("ccxt", "backtrader", "aiohttp", "pydantic", "yaml")


def test_cli_app_import_leaves_heavy_libraries_out():
    code = ("import sys, btccxt_cli.cli.app; "
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"imported at startup: {out.stdout.strip()}"


def test_help_and_version_work():
    help_ = subprocess.run([sys.executable, "-m", "btccxt_cli", "--help"], capture_output=True,
                           text=True, check=True).stdout
    for cmd in ("run", "validate", "sim", "config"):
        assert cmd in help_
    ver = subprocess.run([sys.executable, "-m", "btccxt_cli", "--version"], capture_output=True,
                         text=True, check=True).stdout
    assert ver.startswith("btccxt ")
