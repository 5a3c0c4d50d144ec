"""Docs, help texts and example configs agree with the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from btccxt_cli.cli.app import app
from btccxt_cli.cli.sim import SIMULATED_EXCHANGES

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "docs" / "config.md", ROOT / "docs" / "simulator.md"]
WIDE = {"COLUMNS": "250", "TERMINAL_WIDTH": "250"}
COMMANDS = [["run"], ["validate"], ["sim"], ["check-ws"], ["exchanges"], ["backfill"], ["config", "schema"], []]


def helptext(*args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    return result.output


def flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_the_help_lists_the_exchanges_the_simulator_serves():
    from btccxt_cli.sim.venues import VENUES

    assert set(SIMULATED_EXCHANGES) == set(VENUES)
    listed = ", ".join(SIMULATED_EXCHANGES)
    assert listed in flat(helptext("sim"))
    assert listed in flat(helptext())


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_the_docs_list_the_exchanges_the_simulator_serves(doc: Path):
    names = list(SIMULATED_EXCHANGES)
    text = flat(doc.read_text(encoding="utf-8"))
    assert f"{', '.join(names[:-1])} and {names[-1]}" in text
    assert not re.search(r"(speaks|serves) (the real )?binance and okx (wire|\.|\|)", text, re.I), doc


def test_example_configs_do_not_say_live_orders_are_missing():
    for path in (ROOT / "configs").glob("*.yaml"):
        assert "not available yet" not in path.read_text(encoding="utf-8"), path


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a) or "btccxt")
def test_help_shows_no_emoji_no_flag_types_and_upper_case_arguments(args: list[str]):
    text = helptext(*args)
    assert "㊙" not in text
    assert "<bool>" not in text  # flags take no value (--plain true is refused)
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    for arg in re.findall(r"\{([^}]*)\}", usage):
        assert arg == arg.upper(), usage


def test_run_and_validate_name_their_argument_alike_and_keys_show_whole():
    assert "{CONFIG}" in helptext("run") and "{CONFIG}" in helptext("validate")
    assert "KEY:SECRET[:PASSPHRASE]" in helptext("sim")
