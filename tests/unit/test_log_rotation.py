"""Logs for long runs: ``logging.file`` rotates (size or daily), ``logging.format: json`` writes
one JSON object per line with secrets masked, on the file and on stderr."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from logging.handlers import RotatingFileHandler, TimedRotatingFileHandler
from pathlib import Path

import pytest

from btccxt_cli.log import register_secret, setup_logging

SECRET = "lg-S3cr3t-0b1c2d3e4f"


@pytest.fixture(autouse=True)
def _restore_logging():
    yield
    root = logging.getLogger("btccxt_cli")
    for h in list(root.handlers):
        if getattr(h, "_btccxt", False):
            root.removeHandler(h)
            h.close()


def _file_handler() -> logging.Handler:
    return next(h for h in logging.getLogger("btccxt_cli").handlers
                if isinstance(h, logging.FileHandler))


def test_size_rotation_keeps_the_configured_backups(tmp_path: Path):
    log = tmp_path / "run.log"
    setup_logging("INFO", file=str(log), handler=logging.StreamHandler(io.StringIO()),
                  rotate="size", max_bytes=2048, backups=2)
    assert isinstance(_file_handler(), RotatingFileHandler)
    lg = logging.getLogger("btccxt_cli.test")
    for i in range(200):
        lg.info("line %03d %s", i, "x" * 40)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["run.log", "run.log.1", "run.log.2"]
    assert all(p.stat().st_size <= 2048 for p in tmp_path.iterdir())
    assert "line 199" in log.read_text()


def test_daily_rotation_and_none(tmp_path: Path):
    setup_logging("INFO", file=str(tmp_path / "d.log"), handler=logging.StreamHandler(io.StringIO()),
                  rotate="daily", backups=7)
    h = _file_handler()
    assert isinstance(h, TimedRotatingFileHandler)
    assert (h.when, h.utc, h.backupCount) == ("MIDNIGHT", True, 7)
    setup_logging("INFO", file=str(tmp_path / "n.log"), handler=logging.StreamHandler(io.StringIO()),
                  rotate="none")
    h = _file_handler()
    assert type(h) is logging.FileHandler


def test_json_lines_with_secrets_masked(tmp_path: Path):
    register_secret(SECRET)
    log = tmp_path / "run.log"
    stream = io.StringIO()
    setup_logging("INFO", file=str(log), fmt="json")
    # the stream handler is stderr's; swap its stream to read it
    root = logging.getLogger("btccxt_cli")
    sh = next(h for h in root.handlers if type(h) is logging.StreamHandler)
    sh.setStream(stream)
    lg = logging.getLogger("btccxt_cli.test")
    lg.warning("key %s refused", SECRET)
    try:
        raise ValueError(f"bad {SECRET}")
    except ValueError:
        lg.exception("failed")
    for text in (log.read_text(), stream.getvalue()):
        recs = [json.loads(line) for line in text.splitlines()]
        assert [r["level"] for r in recs] == ["WARNING", "ERROR"]
        assert recs[0]["message"] == "key *** refused" and recs[0]["logger"] == "btccxt_cli.test"
        assert recs[0]["time"].endswith("Z")
        assert "ValueError: bad ***" in recs[1]["exc_info"]
        assert SECRET not in text


def test_a_run_config_with_json_logs_and_rotation(tmp_path: Path):
    """The config keys reach the handlers (btccxt validate accepts them; bad values: exit 2)."""
    cfg = tmp_path / "c.yaml"
    base = "exchange: {id: binance}\nsymbols: [BTC/USDT]\nstrategy: {name: print_bars}\n"
    cfg.write_text(base + "logging: {file: run.log, format: json, rotate: daily, backups: 3}\n")
    from btccxt_cli.config.load import load_config

    c = load_config(cfg)
    assert (c.logging.format, c.logging.rotate, c.logging.backups, c.logging.max_bytes) == (
        "json", "daily", 3, 10 * 1024 * 1024)
    cfg.write_text(base + "logging: {rotate: weekly}\n")
    p = subprocess.run([sys.executable, "-m", "btccxt_cli", "validate", str(cfg)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "logging.rotate" in p.stderr and "c.yaml:4" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
