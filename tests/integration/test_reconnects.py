"""Threads, file descriptors and sockets stay flat across repeated socket drops."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import reconnects  # noqa: E402


def test_no_thread_fd_or_socket_growth_across_drops():
    samples = reconnects.run(24, ["BTC/USDT", "ETH/USDT"], report_every=6)
    first, last = samples[1], samples[-1]  # after 6 and after 24 drops
    assert last[1] <= first[1], f"threads grew: {samples}"
    assert last[2] <= first[2] + 4, f"file descriptors grew: {samples}"
    assert last[3] <= first[3] + 4, f"sockets grew: {samples}"
