"""docs/deploy.md's systemd unit is a unit systemd would read as we mean it: restart on
failure (never on a bad config), stop by SIGTERM, a stop timeout above the stop grace, keys from
an environment file, and a command this CLI accepts."""

from __future__ import annotations

import configparser
import re
import shlex
from pathlib import Path

from btccxt_cli.runtime.stopping import STOP_GRACE

DOC = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"


def unit() -> configparser.ConfigParser:
    text = DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"```ini\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 1, "one systemd unit in docs/deploy.md"
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(blocks[0])
    return parser


def test_the_unit_parses_and_has_the_keys_a_long_run_needs():
    u = unit()
    assert u.sections() == ["Unit", "Service", "Install"]
    s = u["Service"]
    assert s["Restart"] == "on-failure"
    assert s["KillSignal"] == "SIGTERM"
    assert s["RestartPreventExitStatus"] == "2"  # a bad config is not fixed by restarting
    assert s["EnvironmentFile"].startswith("/")
    argv = shlex.split(s["ExecStart"])
    assert argv[0].endswith("/btccxt") and argv[1] == "run" and argv[2].endswith(".yaml")
    grace = float(argv[argv.index("--stop-grace") + 1]) if "--stop-grace" in argv else STOP_GRACE
    assert float(s["TimeoutStopSec"]) > grace + 5  # the grace, then closing
    assert u["Install"]["WantedBy"] == "multi-user.target"


def test_the_unit_command_line_is_accepted_by_btccxt_run(tmp_path):
    import subprocess
    import sys

    argv = shlex.split(unit()["Service"]["ExecStart"])[1:]
    argv[1] = str(tmp_path / "live.yaml")  # not there: the only complaint (exit 2, the file named)
    p = subprocess.run([sys.executable, "-m", "btccxt_cli", *argv], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 2
    assert "live.yaml" in p.stderr and "No such option" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
