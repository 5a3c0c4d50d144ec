"""The 60-second chaos soak (bench/soak.py) as CI runs it: every fault kind, nothing lost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parents[2] / "bench" / "soak.py"


@pytest.mark.timeout(300)
def test_sixty_second_soak_loses_nothing():
    p = subprocess.run([sys.executable, str(SOAK), "--duration", "60", "--every", "5", "8", "--seed", "5"],
                       capture_output=True, text=True, timeout=240)
    report = p.stdout
    assert p.returncode == 0, report[-3000:] + p.stderr[-2000:]
    for line in ("lost                   0", "duplicated             0", "out_of_order           0",
                 "wrong                  0", "RESULT: PASS"):
        assert line in report, report[-2000:]
    assert "faults injected        8" in report
