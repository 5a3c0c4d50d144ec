"""Stop means stop: ``btccxt run`` ends on SIGTERM, Ctrl-C or ``--duration`` whatever the strategy
does, a signal during start-up is a normal stop, and a strategy's ``sys.exit`` is said in one line.

Every test runs the real CLI in a subprocess against the simulator and waits on output lines or
the process itself, with timeouts (never a sleep).
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.cli.test_run_cli import btccxt, read_events, write_config

BLOCKED = """import time

import backtrader as bt


class Blocked(bt.Strategy):
    def next(self):
        if len(self.data) > 4:
            print("BLOCKING", flush=True)
            time.sleep(1000)  # a hung call: never returns by itself
"""

# the main thread never sees the signal: it blocks it, so another thread gets it (the same as
# a signal landing between the strategy's last bytecode and a blocking call: Python runs its
# handler only when the call returns)
DEAF = """import signal
import time

import backtrader as bt


class Deaf(bt.Strategy):
    def next(self):
        if len(self.data) > 4:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
            print("BLOCKING", flush=True)
            time.sleep(1000)  # a hung call: never returns by itself
"""

SLOW_IMPORT = """import time

import backtrader as bt

print("IMPORTING", flush=True)
for _ in range(600):  # start-up takes long (a slow import, a slow exchange ...), in Python: a
    time.sleep(0.1)  # signal landing before a sleep began is handled when that sleep ends


class Late(bt.Strategy):
    pass
"""

EXITS = """import os
import sys

import backtrader as bt


class Exits(bt.Strategy):
    def next(self):
        if len(self.data) > 4:
            {call}
"""


class Output:
    """Reads a process's stdout and stderr on threads; ``wait_for(text)`` waits on a stdout line
    with a timeout."""

    def __init__(self, p) -> None:
        self.p = p
        self.lines: list[str] = []
        self.err: list[str] = []
        self._new = threading.Condition()
        self._threads = [threading.Thread(target=self._read, daemon=True),
                         threading.Thread(target=lambda: self.err.extend(p.stderr), daemon=True)]
        for t in self._threads:
            t.start()

    def _read(self) -> None:
        for line in self.p.stdout:
            with self._new:
                self.lines.append(line)
                self._new.notify_all()
        with self._new:
            self.lines.append("")  # end of output
            self._new.notify_all()

    def wait_for(self, text: str, timeout: float = 60.0) -> None:
        with self._new:
            ok = self._new.wait_for(lambda: any(text in x for x in self.lines)
                                    or "" in self.lines, timeout)
        assert ok and any(text in x for x in self.lines), \
            f"no {text!r} in the output: {''.join(self.lines)[-2000:]} {''.join(self.err)[-2000:]}"

    def finish(self, timeout: float) -> tuple[str, str]:
        self.p.wait(timeout)
        for t in self._threads:
            t.join(5)
        return "".join(self.lines), "".join(self.err)


def strategy_config(tmp_path: Path, sim, code: str, name: str = "strat.py") -> tuple[Path, Path]:
    strat = tmp_path / name
    strat.write_text(code)
    return write_config(tmp_path, sim.url("binance"), strategy=f"path: {strat}",
                        symbols=("BTC/USDT",)), strat


def line_of(strat: Path, text: str) -> int:
    return next(i for i, line in enumerate(strat.read_text().splitlines(), 1) if text in line)


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "duration"])
def test_a_strategy_blocked_in_next_is_stopped_by_force(sim, tmp_path, how):
    cfg, strat = strategy_config(tmp_path, sim, BLOCKED)
    ev = tmp_path / "events.jsonl"
    grace = 5.0 if how == "SIGTERM" else 1.0  # the default once; shorter for the others
    args = ["run", str(cfg), "--plain", "--events", str(ev)]
    if how != "SIGTERM":
        args += ["--stop-grace", str(grace)]
    if how == "duration":
        args += ["--duration", "4"]
    p = btccxt(*args)
    out = Output(p)
    try:
        out.wait_for("BLOCKING")
        t0 = time.monotonic()
        if how != "duration":
            p.send_signal(getattr(signal, how))
        stdout, err = out.finish(timeout=grace + 30)
    finally:
        p.kill()
    elapsed = time.monotonic() - t0
    assert p.returncode == 4, err[-2000:]
    if how != "duration":  # not the 1000 s sleep (closing and leaving are slow on a loaded machine)
        assert elapsed < grace + 20, f"took {elapsed:.1f} s after {how}"
    where = f"{strat}:{line_of(strat, 'time.sleep(1000)')}"
    cause = {"SIGTERM": "signal SIGTERM", "SIGINT": "signal SIGINT", "duration": "--duration 4s"}[how]
    stuck = [x for x in err.splitlines() if "did not return" in x]
    assert len(stuck) == 1, err[-2000:]
    assert f"the strategy did not return within {grace:g} s of {cause}: stuck in next() at {where}" \
        in stuck[0]
    assert "time.sleep(1000)" in stuck[0] and "exit 4" in stuck[0]
    assert "Traceback" not in err
    assert f"stopped: {cause}, then by force (exit 4)" in stdout  # the summary is printed
    records = read_events(ev)  # flushed and closed: every line is whole JSON
    assert records[-1]["type"] == "stop" and records[-1]["event"] == "forced"
    assert where in records[-1]["message"]
    assert sum(r["type"] == "bar" for r in records) >= 5


def test_a_stop_signal_the_blocked_strategy_thread_never_sees_still_stops_the_run(sim, tmp_path):
    cfg, strat = strategy_config(tmp_path, sim, DEAF)
    p = btccxt("run", str(cfg), "--plain", "--stop-grace", "1")
    out = Output(p)
    try:
        out.wait_for("BLOCKING")
        p.send_signal(signal.SIGINT)
        stdout, err = out.finish(timeout=60)  # before: not until the strategy returned
    finally:
        p.kill()
    assert p.returncode == 4, err[-2000:]
    where = f"{strat}:{line_of(strat, 'time.sleep(1000)')}"
    assert f"the strategy did not return within 1 s of signal SIGINT: stuck in next() at {where}" \
        in err
    assert "stopped: signal SIGINT, then by force (exit 4)" in stdout


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_signal_during_start_up_is_a_normal_stop(sim, tmp_path, sig):
    cfg, _ = strategy_config(tmp_path, sim, SLOW_IMPORT)
    p = btccxt("run", str(cfg), "--plain")
    out = Output(p)
    try:
        out.wait_for("IMPORTING")  # start-up is under way: the strategy is being loaded
        t0 = time.monotonic()
        p.send_signal(getattr(signal, sig))
        stdout, err = out.finish(timeout=30)
    finally:
        p.kill()
    assert p.returncode == 0, err[-2000:]
    assert time.monotonic() - t0 < 30  # not the 60 s import (leaving takes seconds under load)
    assert f"stopped: signal {sig} during start-up" in stdout
    assert "Traceback" not in err


def test_sys_exit_in_the_strategy_is_said_in_one_line_with_its_code(sim, tmp_path):
    cfg, strat = strategy_config(tmp_path, sim, EXITS.format(call="sys.exit(3)"))
    ev = tmp_path / "events.jsonl"
    p = btccxt("run", str(cfg), "--plain", "--events", str(ev))
    stdout, err = p.communicate(timeout=60)
    assert p.returncode == 3, err[-2000:]
    where = f"{strat}:{line_of(strat, 'sys.exit(3)')}"
    assert f"stopped: the strategy ended the run with sys.exit(3) at {where} in next() " \
           "(exit code 3)" in stdout
    assert "Traceback" not in err
    assert read_events(ev)[-1] == {"type": "stop", "event": "sys.exit", "code": 3,
                                   "time": read_events(ev)[-1]["time"]}


def test_os_exit_in_the_strategy_loses_no_event(sim, tmp_path):
    """``os._exit`` cannot be caught; the events file is flushed per line, so nothing is lost."""
    cfg, _ = strategy_config(tmp_path, sim, EXITS.format(call="os._exit(5)"))
    ev = tmp_path / "events.jsonl"
    p = btccxt("run", str(cfg), "--plain", "--events", str(ev))
    stdout, err = p.communicate(timeout=60)
    assert p.returncode == 5, err[-2000:]
    lines = ev.read_text().splitlines()
    for line in lines:
        json.loads(line)  # no half-written line
    bars = [line for line in stdout.splitlines() if line.startswith("bar ")]
    assert sum('"type":"bar"' in line for line in lines) == len(bars) >= 5


LINGERS = """import threading
import time

import backtrader as bt


class Lingers(bt.Strategy):
    def __init__(self):
        threading.Thread(target=time.sleep, args=(1000,), name="my-poller").start()
"""


def test_a_thread_the_strategy_left_running_does_not_keep_the_process_alive(sim, tmp_path):
    cfg, _ = strategy_config(tmp_path, sim, LINGERS)
    p = btccxt("run", str(cfg), "--plain", "--max-bars", "2", "--stop-grace", "1")
    stdout, err = p.communicate(timeout=60)
    assert p.returncode == 0, err[-2000:]
    assert "stopped: --max-bars 2 reached" in stdout
    assert "thread(s) my-poller still running 1 s after the run ended" in err
