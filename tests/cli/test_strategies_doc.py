"""docs/strategies.md's worked example validates and runs against the built-in simulator."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from btccxt_cli.cli.app import app

DOC = Path(__file__).resolve().parents[2] / "docs" / "strategies.md"


def example_files() -> dict[str, str]:
    blocks = re.findall(r"```(?:python|yaml)\n(# (\S+)\n.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    return {name: text for text, name in blocks}


def test_the_worked_example_validates_and_runs(tmp_path: Path):
    files = example_files()
    assert set(files) == {"breakout.py", "breakout.yaml"}
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    cfg = tmp_path / "breakout.yaml"
    result = CliRunner().invoke(app, ["validate", str(cfg)])
    assert result.exit_code == 0, result.output
    assert f"breakout.py (Breakout in {tmp_path / 'breakout.py'}) {{period: 5, stake: 0.01}}" in result.stdout
    p = subprocess.run([sys.executable, "-m", "btccxt_cli", "run", str(cfg), "--plain", "--max-bars", "3"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path,
                       env={k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_SECRET"))})
    assert p.returncode == 0, p.stderr[-2000:]
    assert "stopped: --max-bars 3 reached" in p.stdout
    assert re.search(r"^bar BTC/USDT 1s \S+Z O .* \[live\]", p.stdout, re.M)
    assert "btccxt_cli.strategy.breakout: BTC/USDT is LIVE" in p.stderr
