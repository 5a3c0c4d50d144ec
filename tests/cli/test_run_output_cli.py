"""What ``btccxt run`` prints: ISO bar times in --plain, a summary that counts what the
strategy saw, and log lines above the dashboard with one time and one level."""

from __future__ import annotations

import io
import logging
import re
from types import SimpleNamespace

from rich.console import Console

from btccxt_cli.config.schema import LoggingConfig
from tests.cli.test_run_cli import btccxt, read_events, write_config

ISO = re.compile(r"^bar (\S+) 1s (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ) O ")


def test_plain_shows_iso_times_and_the_summary_counts_what_the_strategy_saw(sim, tmp_path):
    cfg = write_config(tmp_path, sim.url("binance"))
    ev = tmp_path / "events.jsonl"
    p = btccxt("run", str(cfg), "--plain", "--max-bars", "3", "--events", str(ev))
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err[-2000:]
    lines = out.splitlines()
    bars = [line for line in lines if line.startswith("bar ")]
    assert bars and all(ISO.match(line) for line in bars), bars[:3]
    records = [r for r in read_events(ev) if r["type"] == "bar"]
    assert all(isinstance(r["ts"], int) for r in records)  # the events file keeps the ms
    for sym in ("BTC/USDT", "ETH/USDT"):
        printed = [line for line in bars if line.split()[1] == sym]
        recorded = [r for r in records if r["symbol"] == sym]
        counts = {k: sum(r["source"] == k for r in recorded) for k in ("backfill", "live", "gapfill")}
        assert len(printed) == len(recorded)
        want = f"  {sym}: backfill {counts['backfill']}, live {counts['live']}, gapfill {counts['gapfill']}"
        assert want in lines, (want, [line for line in lines if sym + ":" in line])
    gap_bars = sum(r["source"] == "gapfill" for r in records)
    assert any(f"gap-filled bars {gap_bars}," in line for line in lines)


def test_log_lines_above_the_dashboard_carry_one_time_and_one_level():
    from btccxt_cli.cli.common import setup_run_logging

    console = Console(width=160, record=True, color_system=None, file=io.StringIO())
    cfg = SimpleNamespace(logging=LoggingConfig(level="INFO"))
    try:
        setup_run_logging(cfg, console)
        logging.getLogger("btccxt_cli.sources.ws").warning("socket error; 2 series reconnect in %.2f s", 10.666)
        logging.getLogger("btccxt_cli.sources.ws").info("not on the terminal")
    finally:
        root = logging.getLogger("btccxt_cli")
        for h in [h for h in root.handlers if getattr(h, "_btccxt", False)]:
            root.removeHandler(h)
    text = console.export_text()
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert lines[0].count("WARNING") == 1
    assert len(re.findall(r"\d\d:\d\d:\d\d", lines[0])) == 1
    assert "btccxt_cli.sources.ws: socket error; 2 series reconnect in 10.67 s" in lines[0]
