"""The console script records a stop signal that comes while the CLI is still loading."""

from __future__ import annotations

import subprocess
import sys

import pytest

_SIGNAL_WHILE_LOADING = """
import os, signal, sys
import btccxt_cli.entry as entry
real = entry._install
def install_then_signal():
    previous = real()
    os.kill(os.getpid(), signal.{sig})  # arrives while the CLI is being imported
    return previous
entry._install = install_then_signal
entry.main(["run", "configs/demo.yaml"])
"""


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_signal_while_the_cli_loads_is_a_normal_stop(sig):
    proc = subprocess.run([sys.executable, "-c", _SIGNAL_WHILE_LOADING.format(sig=sig)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"stopped: signal {sig} during start-up"
    assert "Traceback" not in proc.stderr


def test_without_a_signal_the_command_runs():
    proc = subprocess.run([sys.executable, "-m", "btccxt_cli", "--version"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert proc.stdout.startswith("btccxt ")
