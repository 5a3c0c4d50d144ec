"""The stop watch's pieces: the exit code of sys.exit(arg), where a thread is stuck, the watch
forcing a stop only when the run does not let go (events, no sleeps)."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from btccxt_cli.runtime.stopping import StopWatch, exit_code_of, raised_at, where_stuck


@pytest.mark.parametrize("arg", [None, 0, 3, 255, 256, -1, True, False, "bye"])
def test_exit_code_of_sys_exit_is_what_python_itself_exits_with(arg):
    real = subprocess.run([sys.executable, "-c", f"import sys; sys.exit({arg!r})"],
                          capture_output=True).returncode
    assert exit_code_of(SystemExit(arg)) == real


STUCK = """def next_(cond, state):
    with cond:
        state.append("in")
        cond.notify_all()
        cond.wait_for(lambda: "go" in state)
"""


def test_where_stuck_names_the_strategy_frame_and_the_innermost_one(tmp_path):
    strat = tmp_path / "strat.py"
    strat.write_text(STUCK)
    ns: dict = {}
    exec(compile(STUCK, str(strat), "exec"), ns)
    cond, state = threading.Condition(), []
    t = threading.Thread(target=ns["next_"], args=(cond, state))
    t.start()
    with cond:  # holding the lock: the thread is inside cond.wait_for (it released it)
        assert cond.wait_for(lambda: "in" in state, 5)
        what, where = where_stuck(t.ident, strat)
        assert what == "the strategy"
        assert where.startswith(f'next_() at {strat}:5: cond.wait_for(lambda: "go" in state) '
                                "(inside wait() at ")
        what, where = where_stuck(t.ident, None)
        assert what == "the run" and where.startswith("wait() at ")
        state.append("go")
        cond.notify_all()
    t.join(5)
    assert where_stuck(t.ident, strat) == ("the run", "its thread has ended")


def test_raised_at_names_the_strategy_line(tmp_path: Path):
    strat = tmp_path / "s.py"
    strat.write_text("import sys\n\n\ndef go():\n    sys.exit(3)\n")
    ns: dict = {}
    exec(compile(strat.read_text(), str(strat), "exec"), ns)
    with pytest.raises(SystemExit) as info:
        ns["go"]()
    assert raised_at(info.value, strat) == f"{strat}:5 in go()"


def make_watch(grace: float, on_force) -> tuple[StopWatch, threading.Event, threading.Event, list]:
    returned, finished, closed = threading.Event(), threading.Event(), []
    watch = StopWatch(grace=grace, returned=returned, finished=finished,
                      thread_id=threading.get_ident(), strategy_path=None,
                      close=lambda: closed.append(True), on_force=on_force, shutdown_bound=5)
    return watch, returned, finished, closed


def test_a_run_that_lets_go_is_never_forced():
    forced = threading.Event()
    watch, returned, finished, closed = make_watch(0.2, lambda line: forced.set())
    watch.arm()
    watch.request("SIGTERM")
    returned.set()
    watch.disarm()
    watch.join(5)
    assert not forced.is_set() and closed == []


def test_a_run_that_does_not_let_go_is_closed_and_forced_once():
    lines: list[str] = []
    done = threading.Event()
    watch, returned, finished, closed = make_watch(0.05, lambda line: (lines.append(line), done.set()))
    watch.arm()
    watch.request("signal SIGTERM")
    watch.request("--duration 1s")  # the first request counts
    assert done.wait(5)
    watch.join(5)
    assert closed == [True] and len(lines) == 1
    assert lines[0].startswith("the run did not return within 0.05 s of signal SIGTERM: stuck in ")


def test_an_unarmed_request_never_forces():
    watch, *_ = make_watch(0.01, lambda line: pytest.fail("forced"))
    watch.request("SIGTERM")
    watch.disarm()
    watch.join(1)
