"""The order soak's rule for one order's notifications (bench/orders_soak.py), across runs."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from orders_soak import valid_sequence  # noqa: E402


def test_one_run_submitted_accepted_partials_and_one_final_status() -> None:
    assert valid_sequence(["Submitted", "Accepted", "Partial", "Completed"])
    assert valid_sequence(["Submitted", "Rejected"])
    assert not valid_sequence(["Submitted", "Accepted", "Accepted", "Completed"])
    assert not valid_sequence(["Submitted", "Submitted", "Rejected"])  # told twice in one run
    assert not valid_sequence(["Accepted", "Completed"])
    assert not valid_sequence(["Submitted", "Completed", "Completed"])


def test_an_order_adopted_by_a_later_run_is_accepted_once_there_and_submitted_first() -> None:
    # confirmed before the crash: Accepted again, once, by the run that adopts it
    assert valid_sequence(["Submitted", "Accepted", "Accepted", "Completed"], [0, 0, 1, 1])
    # not confirmed before the crash (pending): Submitted again, first in the next run
    assert valid_sequence(["Submitted", "Submitted", "Rejected"], [0, 1, 1])
    assert valid_sequence(["Submitted", "Submitted", "Accepted", "Completed"], [0, 1, 1, 1])
    assert not valid_sequence(["Submitted", "Submitted", "Accepted", "Submitted", "Completed"],
                              [0, 1, 1, 1, 1])  # a Submitted after the run's first
    assert not valid_sequence(["Submitted", "Accepted", "Accepted", "Completed"], [0, 1, 1, 1])
