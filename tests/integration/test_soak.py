"""The chaos soak (bench/soak.py) as CI runs it: every fault kind, nothing lost.

Seed 3 with a fault every 3-5 s injects the seven kinds, one each, within 26 s (some overlap:
a stall into an outage, a reset during it, duplicates and reorders as it ends); the run lasts
33 s, so the eighth fault (at 40 s) never comes and the count stays exact on a slow machine.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parents[2] / "bench" / "soak.py"


@pytest.mark.long
@pytest.mark.xdist_group("soak")  # one soak at a time (--dist loadgroup)
@pytest.mark.timeout(300)
def test_soak_with_every_fault_kind_loses_nothing():
    p = subprocess.run([sys.executable, str(SOAK), "--duration", "33", "--every", "3", "5", "--seed", "3"],
                       capture_output=True, text=True, timeout=240)
    report = p.stdout
    assert p.returncode == 0, report[-3000:] + p.stderr[-2000:]
    for line in ("lost                   0", "duplicated             0", "out_of_order           0",
                 "wrong                  0", "RESULT: PASS"):
        assert line in report, report[-2000:]
    assert "faults injected        7" in report
    for kind in ("drop_close", "drop_reset", "outage", "stall", "dup_reorder",
                 "rest_errors_after_drop", "lost_subscription"):
        assert f"s: {kind}" in report, report[-2000:]
