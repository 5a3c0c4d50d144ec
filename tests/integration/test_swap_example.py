"""The README's swap example (configs/okx_swap.yaml, strategies/swap_flip.py) runs offline as the
README says: on paper, and with live orders to the in-process simulator, going long and short.

The commands are read from the README's "Perpetual swaps, long and short" section, so the test
fails when they stop working. Each run is stopped once the strategy has held a long and a short
position (a cross of its averages comes every few seconds on the simulator's 1s path)."""

from __future__ import annotations

import os
import re
import shlex
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from btccxt_cli.sim.accounts import DEFAULT_KEY
from tests.cli.test_live_cli import wait_for
from tests.cli.test_run_cli import read_events

pytestmark = pytest.mark.live

ROOT = Path(__file__).resolve().parents[2]
SWAP = "BTC/USDT:USDT"
SIZE = 0.01  # the config's size


def readme_commands() -> list[str]:
    """The lines of the bash blocks of the README's swap section."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Perpetual swaps, long and short", 1)[1].split("\n## ", 1)[0]
    return [line for block in re.findall(r"```bash\n(.*?)```", section, re.S)
            for line in block.splitlines() if line.strip()]


def positions_held(events: Path) -> list[float]:
    """The strategy's position after each completed order, from the events file."""
    if not events.exists():
        return []
    pos, held = 0.0, []
    for r in read_events(events):
        if r["type"] == "order" and r["event"] == "Completed" and r["symbol"] == SWAP:
            pos = round(pos + abs(r["size"]) * (1 if r["side"] == "buy" else -1), 10)
            held.append(pos)
    return held


def long_and_short(events: Path) -> bool:
    held = positions_held(events)
    return any(h > 0 for h in held) and any(h < 0 for h in held)


def run_until_long_and_short(args: list[str], *, cwd: Path, env: dict[str, str], events: Path,
                             stop: Any) -> tuple[subprocess.Popen, str, str]:
    p = subprocess.Popen([sys.executable, "-m", "btccxt_cli", *args, "--plain", "--events", str(events)],
                         cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: long_and_short(events), p, timeout=45.0)
        stop(p)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    return p, out, err


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BTCCXT_SIM_")}
    env["NO_COLOR"] = "1"
    return env


def check_flips(held: list[float]) -> None:
    # one order per cross: open at +-SIZE, then flips between +SIZE and -SIZE
    assert held[0] in (SIZE, -SIZE), held
    assert all(h in (SIZE, -SIZE) for h in held), held
    assert all(a == -b for a, b in zip(held, held[1:], strict=False)), held


def test_the_readme_paper_command_goes_long_and_short(tmp_path: Path) -> None:
    [paper] = [c for c in readme_commands() if c.startswith("btccxt run configs/okx_swap.yaml")]
    assert shlex.split(paper) == ["btccxt", "run", "configs/okx_swap.yaml"]
    events = tmp_path / "events.jsonl"
    p, out, err = run_until_long_and_short(shlex.split(paper)[1:], cwd=ROOT, env=base_env(),
                                           events=events, stop=lambda p: p.send_signal(signal.SIGINT))
    assert p.returncode == 0, err[-3000:]
    assert "stopped: signal SIGINT" in out
    assert "Traceback" not in err
    check_flips(positions_held(events))
    assert re.search(r"swap_flip: BTC/USDT:USDT fast SMA (above|below) slow: going long 0\.01", err)
    assert re.search(r"swap_flip: BTC/USDT:USDT SELL 0\.0[12] @ [\d.]+, position now -0\.01", err)


def test_the_readme_live_commands_trade_on_the_simulator(tmp_path: Path) -> None:
    copy, live = [c for c in readme_commands() if "okx_swap_live.yaml" in c]
    # 1. the copy set to broker.mode: live (written here, not beside the shipped config)
    assert copy.startswith("sed ") and " configs/okx_swap.yaml > okx_swap_live.yaml" in copy
    subprocess.run(["bash", "-c", copy.replace("configs/okx_swap.yaml", str(ROOT / "configs" / "okx_swap.yaml"))],
                   cwd=tmp_path, check=True, timeout=30)
    assert "\n  mode: live " in (tmp_path / "okx_swap_live.yaml").read_text()
    # 2. the run, with the simulator's default key in the variables the README sets
    words = shlex.split(live)
    assigned = dict(w.split("=", 1) for w in words if re.match(r"^[A-Z_]+=", w))
    assert assigned == {"BTCCXT_SIM_API_KEY": DEFAULT_KEY.key, "BTCCXT_SIM_SECRET": DEFAULT_KEY.secret,
                        "BTCCXT_SIM_PASSPHRASE": DEFAULT_KEY.passphrase}
    args = words[len(assigned):]
    assert args == ["btccxt", "run", "okx_swap_live.yaml", "--live", "--yes"]
    events = tmp_path / "events.jsonl"
    p, out, err = run_until_long_and_short(args[1:], cwd=tmp_path, env={**base_env(), **assigned},
                                           events=events,
                                           stop=lambda p: (tmp_path / "STOP").write_text(""))
    assert p.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    assert "LIVE TRADING on okx (simulator http://127.0.0.1:" in out
    assert "  swaps     3x isolated: BTC/USDT:USDT (leverage and margin mode, set on the exchange " \
        "at start)" in out.splitlines()
    assert f"orders db {tmp_path / 'okx_swap_sim.orders.sqlite'}" in out
    held = positions_held(events)
    check_flips(held)
    # what the exchange filled, in the run's orders database beside the copy
    with sqlite3.connect(tmp_path / "okx_swap_sim.orders.sqlite") as con:
        orders = con.execute("SELECT side, amount, status, filled FROM orders ORDER BY seq").fetchall()
        [(symbol, ledger)] = con.execute("SELECT symbol, size FROM positions").fetchall()
    done = [(side, amount) for side, amount, status, filled in orders if status == "closed" and filled]
    assert len(done) >= len(held) >= 2
    assert (symbol, ledger) == (SWAP, pytest.approx(sum(a if s == "buy" else -a for s, a in done)))
    for text in (out, err, events.read_text()):
        assert DEFAULT_KEY.secret not in text and str(DEFAULT_KEY.passphrase) not in text


@pytest.mark.long
def test_swap_flip_logs_the_live_brokers_funding_and_a_position_closed_outside(
        sim_factory: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """swap_flip on the live broker (the test_broker harness; funding settled every second):
    a funding payment the broker tells is logged as the exchange paid it; a position closed at the exchange while
    the bot was down is logged when the next run starts."""
    import logging

    from btccxt_cli.config.schema import StrategyConfig
    from btccxt_cli.exchange.factory import make_exchange
    from btccxt_cli.runtime.strategies import load_strategy
    from tests.integration.test_broker import KEYS, Outcome, run

    swap_flip, _ = load_strategy(StrategyConfig(name="swap_flip"))

    class Harnessed(swap_flip):  # type: ignore[misc,valid-type]
        """swap_flip with the harness's parameters and stop condition, holding its first
        position: the broker reads positions and funding only with its timed balance reads,
        and every fill puts the next one off (bt/ordersync.py), so a flip each few bars
        would keep funding from being told at all."""

        params = (("act", None), ("done", None), ("outcome", None), ("on_order", None))

        def __init__(self) -> None:
            super().__init__()
            self.p.outcome.strategy = self
            self.opened = False

        def next(self) -> None:
            if not self.opened:
                super().next()
                self.opened = any(o is not None for o in self.pending.values())
            if self.p.done(self):
                self.env.runstop()

    caplog.set_level(logging.INFO, logger="btccxt_cli.strategy.swap_flip")

    def logged(part: str) -> list[logging.LogRecord]:
        return [r for r in caplog.records
                if r.name == "btccxt_cli.strategy.swap_flip" and part in r.getMessage()]

    sim = sim_factory(exchanges=("okx",), balances={"USDT": 10_000.0}, funding_interval_s=1)
    db = tmp_path / "orders.sqlite"
    kw = {"leverage": 3, "margin_mode": "isolated", "funding_interval": 0.2, "balance_interval": 0.2,
          "reconcile_interval": 1.0}  # positions and funding read every second while idle

    def funding_told_and_idle(s: Any) -> bool:  # the broker reads funding every few seconds
        return bool(logged(" funding ")) and all(o is None for o in s.pending.values())

    first = run(sim, "okx", lambda s, n: None, funding_told_and_idle, db=db, symbol=SWAP,
                broker_kw=kw, strategy=Harnessed, out=Outcome(), timeout=40)
    assert not first.timed_out, first.notes
    ex = make_exchange("okx", sim_url=sim.url("okx"), config=KEYS)
    ex.load_markets()
    paid = {str(r["id"]): r["amount"] for r in ex.fetch_funding_history(SWAP)}
    for rec in logged(" funding "):  # "BTC/USDT:USDT funding paid 0.0012 USDT"
        m = re.fullmatch(r"BTC/USDT:USDT funding (paid|received) ([\d.e-]+) USDT", rec.getMessage())
        assert m is not None, rec.getMessage()
        amount = float(m.group(2)) * (-1 if m.group(1) == "paid" else 1)
        assert any(v == pytest.approx(amount, rel=1e-6) for v in paid.values()), (amount, paid)
    # while no bot runs, someone closes its position at the exchange
    [pos] = [p for p in ex.fetch_positions([SWAP]) if float(p["contracts"] or 0)]
    held = float(pos["contracts"]) * float(pos["contractSize"]) * (1 if pos["side"] == "long" else -1)
    ex.create_order(SWAP, "market", "sell" if held > 0 else "buy", float(pos["contracts"]),
                    params={"reduceOnly": True, "marginMode": "isolated"})
    second = run(sim, "okx", lambda s, n: None, lambda s: bool(logged("closed outside the bot")),
                 db=db, symbol=SWAP, broker_kw=kw, strategy=Harnessed, out=Outcome(), timeout=30)
    assert not second.timed_out, second.notes
    [rec] = logged("closed outside the bot")
    assert rec.levelno == logging.WARNING
    assert rec.getMessage().startswith(f"BTC/USDT:USDT position {held:+.8g} closed outside the bot "
                                       "(closed outside) at "), rec.getMessage()
