"""SimThread reaches the Simulator's API by delegation (no copies of its methods): every public
method and attribute of ``Simulator`` answers on the thread wrapper, state changes land on the
simulator's loop (seen through the control API over HTTP), and names it does not have fail the
usual way."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from btccxt_cli.sim.app import SimThread, Simulator
from btccxt_cli.sim.faults import FAULT_NAMES
from tests.integration.simtools import get_json

EX = "binance"


def test_every_public_simulator_method_and_fault_is_on_simthread(sim_factory: Any) -> None:
    sim = sim_factory(exchanges=(EX,))
    public = [n for n, _ in inspect.getmembers(Simulator, inspect.isfunction) if not n.startswith("_")]
    assert set(FAULT_NAMES) <= set(public)
    for name in public:
        assert callable(getattr(sim, name)), name
    assert sim.exchanges == (EX,) and sim.model is sim.sim.model  # attributes read through


def test_state_changes_run_on_the_loop_and_show_in_the_control_api(sim_factory: Any) -> None:
    sim = sim_factory(exchanges=(EX,))
    sim.duplicate(EX, True)
    sim.rest_delay(EX, 5)
    faults = get_json(sim.url(EX) + "/_sim/faults")
    assert faults["duplicate"] is True and faults["rest_delay_ms"] == 5
    assert sim.call("stats", EX)["faults"] == sim.stats(EX)["faults"]
    sim.fault(EX, "clear_faults")
    assert get_json(sim.url(EX) + "/_sim/faults")["duplicate"] is False
    with pytest.raises(ValueError, match="unknown fault"):
        sim.fault(EX, "no_such_fault")


def test_unknown_and_private_names_and_an_unstarted_thread() -> None:
    idle = SimThread(exchanges=(EX,))
    with pytest.raises(RuntimeError, match="not started"):
        idle.stats(EX)
    assert not hasattr(idle, "_servers")  # private names are never delegated
    with SimThread(exchanges=(EX,)) as sim:
        with pytest.raises(AttributeError):
            sim.no_such_method  # noqa: B018
