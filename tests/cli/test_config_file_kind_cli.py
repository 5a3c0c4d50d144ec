"""A config path that is not a regular file (a FIFO, /dev/zero) is refused before it is opened:
one line, exit 2, for every command that reads a config; nothing blocks on it. A pipe given
as /dev/fd/N (the shell's process substitution ``<(cat x.yaml)``) is still read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from btccxt_cli.cli.app import app

runner = CliRunner()

CONFIG = ("exchange: {id: binance, sim: true}\nsymbols: [BTC/USDT]\n"
          "strategy: {name: print_bars}\n")

COMMANDS = [["run"], ["validate"], ["hub"], ["notify-test"], ["backtest", "--since", "1h"]]


def refused(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, (result.output, result.exception)
    lines = [x for x in result.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


@pytest.mark.timeout(20)
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_a_fifo_is_refused_without_opening_it(tmp_path: Path, command):
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    line = refused([command[0], str(fifo), *command[1:]])
    assert line.startswith(f"error: {fifo}: ") and "named pipe (FIFO)" in line, line
    assert "regular file" in line


@pytest.mark.timeout(20)
def test_a_symlink_to_a_fifo_is_refused(tmp_path: Path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "config.yaml"
    link.symlink_to(fifo)
    assert "named pipe (FIFO)" in refused(["validate", str(link)])


@pytest.mark.timeout(20)
@pytest.mark.parametrize("command", [["run", "--plain"], ["validate"]], ids=lambda c: c[0])
def test_a_character_device_is_refused(command):
    line = refused([command[0], "/dev/zero", *command[1:]])
    assert "/dev/zero: is a character device" in line and "regular file" in line


def test_a_symlink_to_a_regular_file_is_read(tmp_path: Path):
    real = tmp_path / "real.yaml"
    real.write_text(CONFIG, encoding="utf-8")
    link = tmp_path / "config.yaml"
    link.symlink_to(real)
    result = runner.invoke(app, ["validate", str(link)])
    assert result.exit_code == 0, result.output


@pytest.mark.timeout(20)
def test_process_substitution_is_still_read():
    r, w = os.pipe()
    try:
        os.write(w, CONFIG.encode())
        os.close(w)
        result = runner.invoke(app, ["validate", f"/dev/fd/{r}"])
    finally:
        os.close(r)
    assert result.exit_code == 0, result.output
    assert "OK: /dev/fd/" in result.output
