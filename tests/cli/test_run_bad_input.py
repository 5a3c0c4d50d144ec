"""``btccxt run`` refuses bad input before the run starts: one line naming the value, the place
(option, or config file:line) and the fix; exit 2; no traceback; nothing created."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.cli.test_run_cli import btccxt, write_config

NOWHERE = "http://127.0.0.1:9"  # never reached: these runs stop before connecting


def refused(*args: str, timeout: float = 60) -> str:
    """Run ``btccxt run ...``; assert exit 2, one stderr line, no traceback; return the line."""
    p = btccxt("run", *args)
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 2, (out + err)[-2000:]
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err[-2000:]
    assert "Traceback" not in err and lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize("value", ["inf", "nan", "1e308", "-5", "0", "soon"])
def test_duration_must_be_finite_seconds(tmp_path, value):
    cfg = write_config(tmp_path, NOWHERE)
    line = refused(str(cfg), "--plain", f"--duration={value}")
    assert f"--duration: {value!r} is not a number of seconds from 0.1 to" in line
    assert "leave --duration out to run until stopped" in line


def test_stop_grace_must_be_finite_seconds(tmp_path):
    cfg = write_config(tmp_path, NOWHERE)
    assert "--stop-grace: 'nan'" in refused(str(cfg), "--plain", "--stop-grace", "nan")


def test_events_option_in_a_missing_folder_is_refused_and_not_created(tmp_path):
    cfg = write_config(tmp_path, NOWHERE)
    target = tmp_path / "missing" / "deeper" / "ev.jsonl"
    line = refused(str(cfg), "--plain", "--events", str(target))
    assert f"--events: events file '{target}'" in line and "does not exist" in line
    assert f"mkdir -p {target.parent}" in line
    assert not (tmp_path / "missing").exists()


def test_events_option_naming_a_folder_is_refused(tmp_path):
    cfg = write_config(tmp_path, NOWHERE)
    line = refused(str(cfg), "--plain", "--events", str(tmp_path))
    assert f"--events: events file '{tmp_path}' is a folder" in line


@pytest.mark.parametrize("extra, key, words", [
    ("logging:\n  level: INFO\n  file: nope/run.log\n", "logging.file", "does not exist"),
    ("events:\n  file: .\n", "events.file", "is a folder"),
    ("feed:\n  cache: nope/ohlcv.sqlite\n", "feed.cache", "does not exist"),
], ids=["log-file", "events-file", "cache"])
def test_output_paths_in_the_config_are_checked_at_their_line(tmp_path, extra, key, words):
    cfg = write_config(tmp_path, NOWHERE)
    text = cfg.read_text().replace("logging:\n  level: INFO\n", "")
    if extra.startswith("feed:"):
        text = text.replace("feed:\n", extra)
    else:
        text += extra
    cfg.write_text(text)
    line = refused(str(cfg), "--plain")
    lineno = next(i for i, x in enumerate(text.splitlines(), 1) if x.strip().startswith(
        key.split(".")[1] + ":"))
    assert line.startswith(f"error: {cfg}:{lineno}:") and f"{key}: " in line and words in line
    assert not (tmp_path / "nope").exists()


def test_backfill_start_in_the_future_is_refused(tmp_path):
    cfg = write_config(tmp_path, NOWHERE)
    cfg.write_text(cfg.read_text().replace("backfill: 5", "backfill: 2999-01-01"))
    line = refused(str(cfg), "--plain")
    assert f"{cfg}:" in line and "feed.backfill: the backfill start 2999-01-01T00:00:00Z is in the " \
        "future" in line and "a bar count" in line


def test_an_unreachable_exchange_is_exit_2_naming_the_config(tmp_path):
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = write_config(tmp_path, f"http://127.0.0.1:{port}")
    line = refused(str(cfg), "--plain")
    assert line.startswith(f"error: {cfg}:3:") and "exchange.sim: binance is unreachable" in line
    assert "Connection refused" in line


def test_live_orders_database_in_a_missing_folder_is_refused(tmp_path: Path):
    extra = "  api_key: ${BTCCXT_TEST_KEY}\n  secret: ${BTCCXT_TEST_SECRET}\n"
    cfg = write_config(tmp_path, NOWHERE, extra=extra)
    cfg.write_text(cfg.read_text() + "broker:\n  mode: live\n  orders_db: nope/orders.sqlite\n")
    p = btccxt("run", str(cfg), "--plain", "--live", "--yes",
               env={"BTCCXT_TEST_KEY": "k" * 16, "BTCCXT_TEST_SECRET": "s" * 16})
    out, err = p.communicate(timeout=60)
    assert p.returncode == 2 and "Traceback" not in err
    assert "broker.orders_db: orders database" in err and "does not exist" in err
    assert "k" * 16 not in err and not (tmp_path / "nope").exists()


def test_cache_from_the_environment_in_a_missing_folder_is_refused(tmp_path):
    cfg = write_config(tmp_path, NOWHERE)
    target = tmp_path / "nope" / "ohlcv.sqlite"
    p = btccxt("run", str(cfg), "--plain", env={"BTCCXT_CACHE": str(target)})
    out, err = p.communicate(timeout=60)
    assert p.returncode == 2 and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: feed.cache ($BTCCXT_CACHE): OHLCV cache")
    assert not (tmp_path / "nope").exists()


@pytest.mark.parametrize("how", ["events-option", "log-file", "events-file", "cache-as-events"])
def test_an_output_named_like_the_config_or_another_output_is_refused_and_nothing_changes(
        tmp_path, how):
    """A log, events file or cache that is the config (or another output of the run) would
    append to, overwrite or rotate away the user's file: refused first, every file as it was."""
    cfg = write_config(tmp_path, NOWHERE)
    args = [str(cfg), "--plain"]
    if how == "events-option":
        args += ["--events", str(cfg)]
    elif how == "log-file":  # rotation would leave run.yaml and run.yaml.1 of log lines
        cfg.write_text(cfg.read_text().replace(
            "  level: INFO\n", "  level: INFO\n  file: run.yaml\n  max_bytes: 1024\n  backups: 1\n"))
    elif how == "events-file":
        cfg.write_text(cfg.read_text() + "events:\n  file: ./run.yaml\n")
    else:
        cache = tmp_path / "ohlcv.sqlite"
        cfg.write_text(cfg.read_text().replace("feed:\n", f"feed:\n  cache: {cache}\n"))
        args += ["--events", str(cache)]
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    line = refused(*args)
    assert "is the config file of this command" in line or "is the OHLCV cache of this command" \
        in line or "is the events file of this command" in line, line
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
