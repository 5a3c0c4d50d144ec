"""``btccxt run --live`` as a user runs it: the double opt-in, the pre-flight summary, the kill
switch (file and SIGUSR1), and no secret in any output. A subprocess, the simulator by URL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from btccxt_cli.sim.accounts import SimKey

pytestmark = pytest.mark.live

KEY = "lk-3f9c27aa41e0"
SECRET = "ls-9d0b6e12c7f4-5a"
PASS = "lp-71c2e8"
ENV = {"BTCCXT_LIVE_KEY": KEY, "BTCCXT_LIVE_SECRET": SECRET, "BTCCXT_LIVE_PASS": PASS,
       "NO_COLOR": "1"}

PROBE = """import backtrader as bt


class LiveProbe(bt.Strategy):
    params = (("sell_too_much", True),)

    def __init__(self):
        self.sent = False

    def next(self):
        if self.sent or self.data._laststatus != self.data.LIVE:
            return
        self.sent = True
        self.buy(size=0.001)
        self.buy(size=0.001, price=round(self.data.close[0] * 0.8, 1), exectype=bt.Order.Limit)
        if self.p.sell_too_much:
            self.sell(size=0.4)  # the bot holds ~0.001 BTC: refused before it is sent
"""


def write_config(tmp_path: Path, sim_url: str, *, mode: str = "live", broker_extra: str = "",
                 symbols: str = "[BTC/USDT]", limits_extra: str = "") -> Path:
    (tmp_path / "probe.py").write_text(PROBE)
    cfg = tmp_path / "live.yaml"
    cfg.write_text(f"""exchange:
  id: binance
  sim: {sim_url}
  api_key: ${{BTCCXT_LIVE_KEY}}
  secret: ${{BTCCXT_LIVE_SECRET}}
symbols: {symbols}
feed:
  mode: websocket
  timeframe: 1s
  backfill: 2
strategy:
  path: probe.py
broker:
  mode: {mode}
  orders_db: orders.sqlite
  poll_interval: 0.2
  kill_switch_file: STOP
  limits:
    max_position: {{BTC/USDT: 0.5}}
    max_orders_per_minute: 10
{limits_extra}{broker_extra}logging:
  level: INFO
  file: run.log
events:
  file: events.jsonl
""")
    return cfg


def btccxt(*args: str, **kw: Any) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "btccxt_cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                            env={**os.environ, **ENV}, **kw)


def wait_for(cond: Callable[[], bool], p: subprocess.Popen, timeout: float = 30.0) -> None:
    """Wait on a condition of the simulator's state (checked every 0.1 s), failing if the run ends."""
    tick = threading.Event()
    for _ in range(int(timeout * 10)):
        if cond():
            return
        if p.poll() is not None:
            out, err = p.communicate()
            raise AssertionError(f"the run ended early ({p.returncode}): {out[-1500:]} {err[-1500:]}")
        tick.wait(0.1)
    p.kill()
    raise AssertionError("timed out")


@pytest.fixture
def live_sim(sim_factory: Any) -> Any:
    return sim_factory(exchanges=("binance",), api_keys=[SimKey(KEY, SECRET, PASS)],
                       balances={"USDT": 5_000.0})


def test_live_orders_need_the_config_and_the_flag(live_sim: Any, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, live_sim.url("binance"))
    p = btccxt("run", str(cfg), "--plain", "--max-bars", "1")
    out, err = p.communicate(timeout=60)
    assert p.returncode == 2 and "--live was not given" in err
    paper = write_config(tmp_path, live_sim.url("binance"), mode="paper")
    p = btccxt("run", str(paper), "--plain", "--live", "--yes")
    out, err = p.communicate(timeout=60)
    assert p.returncode == 2 and "--live needs broker.mode: live" in err
    assert live_sim.orders("binance") == []


def test_non_interactive_live_run_without_yes_is_refused_after_the_summary(
        live_sim: Any, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, live_sim.url("binance"))
    p = btccxt("run", str(cfg), "--plain", "--live")
    out, err = p.communicate(timeout=60)
    assert p.returncode == 2, err
    assert "LIVE TRADING on binance (simulator http://127.0.0.1:" in out
    assert "balances  USDT 5000" in out and "symbols   BTC/USDT" in out
    assert "max_position BTC/USDT 0.5" in out
    assert "pass --yes" in err
    assert live_sim.orders("binance") == []
    assert "swaps     " not in out and "leverage" not in out  # spot only: no swap lines


def test_live_summary_names_each_swaps_leverage_and_margin_mode(live_sim: Any, tmp_path: Path) -> None:
    """Swap symbols (a ``:settle`` part): the leverage and margin mode the run sets on the
    exchange, grouped, and the swap limits; the spot symbol is not among them."""
    cfg = write_config(tmp_path, live_sim.url("binance"),
                       symbols="[BTC/USDT, BTC/USDT:USDT, ETH/USDT:USDT]",
                       limits_extra="    max_leverage: {BTC/USDT:USDT: 10}\n"
                                    "    min_liquidation_distance: 0.15\n",
                       broker_extra="  leverage: {BTC/USDT:USDT: 5, ETH/USDT:USDT: 3}\n"
                                    "  margin_mode: {ETH/USDT:USDT: cross}\n")
    p = btccxt("run", str(cfg), "--plain", "--live")
    out, err = p.communicate(timeout=60)
    assert p.returncode == 2, err
    assert "pass --yes" in err
    lines = out.splitlines()
    limits = next(line for line in lines if line.startswith("  limits    "))
    assert limits.endswith("max_orders_per_minute 10, max_leverage BTC/USDT:USDT 10, "
                           "min_liquidation_distance 0.15"), limits
    assert "  swaps     5x isolated: BTC/USDT:USDT; 3x cross: ETH/USDT:USDT (leverage and margin " \
        "mode, set on the exchange at start)" in lines, out
    assert live_sim.orders("binance") == []


@pytest.mark.parametrize("adopt", [False, True], ids=["own-fills", "adopt-holdings"])
def test_the_bot_sells_the_accounts_coins_only_when_told_to(sim_factory: Any, tmp_path: Path,
                                                            adopt: bool) -> None:
    """The account holds 1 BTC the bot never bought. The summary shows the account's holdings
    and what the bot may sell; the probe's sell of 0.4 BTC is refused locally unless
    ``broker.adopt_holdings`` is true."""
    sim = sim_factory(exchanges=("binance",), api_keys=[SimKey(KEY, SECRET, PASS)],
                      balances={"USDT": 5_000.0, "BTC": 1.0})
    extra = "  adopt_holdings: true\n" if adopt else ""
    cfg = write_config(tmp_path, sim.url("binance"), broker_extra=extra)
    p = btccxt("run", str(cfg), "--plain", "--live", "--yes")

    def sell_decided() -> bool:
        if adopt:
            return any(o["side"] == "sell" and o["status"] == "filled" for o in sim.orders("binance"))
        path = tmp_path / "events.jsonl"
        return path.exists() and '"Rejected"' in path.read_text()

    wait_for(sell_decided, p)
    (tmp_path / "STOP").write_text("")
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err[-3000:]
    assert "balances  BTC 1, USDT 5000" in out
    if adopt:
        assert "may sell  BTC/USDT 1 BTC (everything the account holds (broker.adopt_holdings))" in out
    else:
        assert "may sell  BTC/USDT 0 BTC (bought by its own orders; coins the account held " \
            "before are never sold)" in out
    sells = [o for o in sim.orders("binance") if o["side"] == "sell"]
    assert [(o["amount"], o["status"]) for o in sells] == ([(0.4, "filled")] if adopt else [])


def test_kill_file_cancels_open_orders_and_stops_and_no_secret_leaks(
        live_sim: Any, tmp_path: Path) -> None:
    # the first create is executed but answered with HTTP 500: the broker must look it up
    live_sim.order_ack_fault("binance", mode="500")
    cfg = write_config(tmp_path, live_sim.url("binance"))
    p = btccxt("run", str(cfg), "--plain", "--live", "--yes")

    def resting() -> bool:
        return any(o["type"] == "limit" and o["status"] == "new" for o in live_sim.orders("binance"))

    def order_stream_up() -> bool:  # the events file says how order changes arrive
        path = tmp_path / "events.jsonl"
        return path.exists() and any('"orders"' in line and '"websocket"' in line
                                     for line in path.read_text().splitlines())

    wait_for(resting, p)
    wait_for(order_stream_up, p)
    (tmp_path / "STOP").write_text("")
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err[-3000:]
    assert "stopped: kill switch: file" in out
    orders = live_sim.orders("binance")
    assert sorted((o["type"], o["status"]) for o in orders) == [("limit", "canceled"),
                                                               ("market", "filled")]
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    kinds = [(e["type"], e.get("event")) for e in events if e["type"] in ("order", "kill")]
    updates = [e for e in events if e["type"] == "orders"]
    assert [e["event"] for e in updates[:2]] == ["connecting", "websocket"], updates
    assert ("kill", None) in kinds
    assert ("order", "Completed") in kinds and ("order", "Canceled") in kinds
    rejected = [e for e in events if e.get("event") == "Rejected"]
    assert len(rejected) == 1 and "more than this bot holds" in rejected[0]["reason"]
    texts = {"stdout": out, "stderr": err, "log": (tmp_path / "run.log").read_text(),
             "events": (tmp_path / "events.jsonl").read_text()}
    db_bytes = b"".join(f.read_bytes() for f in tmp_path.glob("orders.sqlite*"))
    assert "found at the exchange by client order id" in texts["log"]
    for name, text in texts.items():
        for secret in (KEY, SECRET):
            assert secret not in text, f"{secret!r} in {name}"
    for secret in (KEY, SECRET):
        assert secret.encode() not in db_bytes


def test_sigusr1_is_the_kill_switch(live_sim: Any, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, live_sim.url("binance"))
    p = btccxt("run", str(cfg), "--plain", "--live", "--yes")
    wait_for(lambda: any(o["status"] == "new" for o in live_sim.orders("binance")), p)
    p.send_signal(signal.SIGUSR1)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err[-3000:]
    assert "stopped: kill switch: SIGUSR1" in out
    assert {o["status"] for o in live_sim.orders("binance") if o["type"] == "limit"} == {"canceled"}


def test_rejected_credentials_stop_before_trading(live_sim: Any, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, live_sim.url("binance"))
    p = subprocess.Popen([sys.executable, "-m", "btccxt_cli", "run", str(cfg), "--plain", "--live",
                          "--yes"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         stdin=subprocess.DEVNULL,
                         env={**os.environ, **ENV, "BTCCXT_LIVE_SECRET": "wrong-" + SECRET})
    out, err = p.communicate(timeout=60)
    assert p.returncode == 2, err
    assert "credentials rejected" in err
    assert SECRET not in out + err and KEY not in out + err
    assert live_sim.orders("binance") == []


# --------------------------------------------------------------------------- the prompt
class Terminal:
    """``btccxt`` with its stdin on a pseudo-terminal (what a user at a shell has) and its
    stdout and stderr on pipes read by threads, so the test can wait for the prompt."""

    def __init__(self, *args: str) -> None:
        master, slave = os.openpty()
        self.master = master
        self._cond = threading.Condition()
        self._out = bytearray()
        self._err = bytearray()
        self._open = 2
        try:
            self.p = subprocess.Popen([sys.executable, "-m", "btccxt_cli", *args], stdin=slave,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      env={**os.environ, **ENV})
        finally:
            os.close(slave)  # the child holds its own copy
        assert self.p.stdout is not None and self.p.stderr is not None
        for pipe, buf in ((self.p.stdout, self._out), (self.p.stderr, self._err)):
            threading.Thread(target=self._pump, args=(pipe.fileno(), buf), daemon=True).start()

    def _pump(self, fd: int, buf: bytearray) -> None:
        try:
            while chunk := os.read(fd, 65536):
                with self._cond:
                    buf += chunk
                    self._cond.notify_all()
        except OSError:  # closed under us after a failure
            pass
        with self._cond:
            self._open -= 1
            self._cond.notify_all()

    @property
    def out(self) -> str:
        with self._cond:
            return self._out.decode(errors="replace")

    @property
    def err(self) -> str:
        with self._cond:
            return self._err.decode(errors="replace")

    def wait_out(self, text: str, timeout: float = 30.0) -> None:
        """Wait until stdout shows ``text``; fails if the output ends first."""
        needle = text.encode()
        with self._cond:
            ok = self._cond.wait_for(lambda: needle in self._out or self._open == 0, timeout)
            found = needle in self._out
        if not found:
            self.p.kill()
            raise AssertionError(f"{text!r} never shown ({'timed out' if not ok else 'output ended'}): "
                                 f"{self.out[-1500:]} {self.err[-1500:]}")

    def type(self, line: str) -> None:
        os.write(self.master, line.encode())

    def wait(self, timeout: float = 30.0) -> int:
        """The exit code, once the process ended and its output is read."""
        try:
            code = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            raise
        with self._cond:
            self._cond.wait_for(lambda: self._open == 0, 10.0)
        return code

    def close(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(10.0)
        with self._cond:  # the pipes end with the process: let the readers finish
            self._cond.wait_for(lambda: self._open == 0, 10.0)
        for f in (self.p.stdout, self.p.stderr):
            if f is not None:
                f.close()
        os.close(self.master)


PROMPT = "Place live orders with this account? [y/N]:"


@pytest.mark.parametrize("answer", ["n\n", "\n", "\x04"], ids=["no", "default-no", "ctrl-d"])
def test_interactive_prompt_answered_no_sends_nothing(live_sim: Any, tmp_path: Path,
                                                      answer: str) -> None:
    from btccxt_cli.cache.orders import account_id

    cfg = write_config(tmp_path, live_sim.url("binance"))
    term = Terminal("run", str(cfg), "--plain", "--live")
    try:
        term.wait_out(PROMPT)
        assert term.p.poll() is None, "the run did not wait for an answer"
        term.type(answer)
        code = term.wait()
    finally:
        term.close()
    out, err = term.out, term.err
    assert code == 1, err[-3000:]
    summary = out[:out.index(PROMPT)]
    assert "LIVE TRADING on binance (simulator http://127.0.0.1:" in summary
    assert f"account   {account_id('binance', KEY)}" in summary
    assert "balances  USDT 5000" in summary and "symbols   BTC/USDT" in summary
    assert "max_position BTC/USDT 0.5" in summary
    assert "updates   pushed by WebSocket; REST every 10 s, every 0.2 s while the stream is down" \
        in summary
    # Ctrl-D (end of input) at the prompt is a no too, with the same words
    assert "aborted: no orders were sent" in out[out.index(PROMPT):]
    assert "pass --yes" not in err and "confirmed by --yes" not in out
    # nothing reached the exchange: no order, and not even a create request
    assert live_sim.orders("binance") == []
    assert "/api/v3/order" not in live_sim.stats("binance")["rest"]
    texts = {"stdout": out, "stderr": err}
    if (tmp_path / "run.log").exists():
        texts["log"] = (tmp_path / "run.log").read_text()
    for name, text in texts.items():
        for secret in (KEY, SECRET, PASS):
            assert secret not in text, f"{secret!r} in {name}"


def test_interactive_prompt_answered_yes_trades(live_sim: Any, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, live_sim.url("binance"))
    term = Terminal("run", str(cfg), "--plain", "--live")
    try:
        term.wait_out(PROMPT)
        # nothing is sent before the answer: the summary only read the balances
        assert term.p.poll() is None and live_sim.orders("binance") == []
        assert "/api/v3/order" not in live_sim.stats("binance")["rest"]
        term.type("y\n")
        wait_for(lambda: any(o["type"] == "limit" and o["status"] == "new"
                             for o in live_sim.orders("binance")), term.p)
        (tmp_path / "STOP").write_text("")
        code = term.wait()
    finally:
        term.close()
    out, err = term.out, term.err
    assert code == 0, err[-3000:]
    after = out[out.index(PROMPT):]
    assert "aborted" not in after and "stopped: kill switch: file" in after
    assert sorted((o["type"], o["status"]) for o in live_sim.orders("binance")) == [
        ("limit", "canceled"), ("market", "filled")]
    for secret in (KEY, SECRET, PASS):
        assert secret not in out + err
