"""``btccxt validate`` and ``btccxt config schema`` through Typer's CliRunner."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from btccxt_cli.cli.validate import config_app, validate_command

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
FIXTURES = ROOT / "tests" / "fixtures" / "configs"
DUMMY_ENV = {
    "OKX_API_KEY": "dummy-okx-key-0001", "OKX_SECRET": "dummy-okx-secret-0001",
    "OKX_PASSPHRASE": "dummy-okx-pass-0001",
    "BINANCE_API_KEY": "dummy-binance-key-0001", "BINANCE_SECRET": "dummy-binance-secret-0001",
    "BYBIT_API_KEY": "dummy-bybit-key-0001", "BYBIT_SECRET": "dummy-bybit-secret-0001",
    "BITGET_API_KEY": "dummy-bitget-key-01", "BITGET_SECRET": "dummy-bitget-secret-01",
    "BITGET_PASSPHRASE": "dummy-bitget-pass-01", "KRAKEN_API_KEY": "dummy-kraken-key-01",
    "KRAKEN_SECRET": "dummy-kraken-secret-01", "KUCOIN_API_KEY": "dummy-kucoin-key-01",
    "KUCOIN_SECRET": "dummy-kucoin-secret-01", "KUCOIN_PASSPHRASE": "dummy-kucoin-pass-01",
    "BTCCXT_TEST_API_KEY": "dummy-api-key-0001", "BTCCXT_TEST_SECRET": "dummy-secret-0002",
}
runner = CliRunner()


def _local_app() -> typer.Typer:
    # The same registration as cli/app.py's _register(), for when the full app cannot be
    # imported yet (other commands still being written).
    app = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)

    @app.callback()
    def _root() -> None:
        """btccxt (test copy)."""

    app.command("validate")(validate_command)
    app.add_typer(config_app, name="config")
    return app


def _app() -> typer.Typer:
    try:
        from btccxt_cli.cli.app import app
    except ImportError:
        return _local_app()
    return app


@pytest.fixture(scope="module")
def app() -> Iterator[typer.Typer]:
    yield _app()


def test_real_app_registers_validate_and_config() -> None:
    try:
        from btccxt_cli.cli.app import app
    except ImportError as exc:
        pytest.skip(f"btccxt_cli.cli.app not importable yet: {exc}")
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "validate" in result.stdout and "config" in result.stdout
    result = runner.invoke(app, ["config", "--help"])
    assert "schema" in result.stdout


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_shipped_configs_validate(app: typer.Typer, name: str) -> None:
    result = runner.invoke(app, ["validate", str(CONFIGS / name)], env=DUMMY_ENV)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"OK: {CONFIGS / name}")
    strategy = "swap_flip" if name == "okx_swap.yaml" else "sma_cross"  # the swap example's own
    assert "exchange" in result.stdout and f"strategy  {strategy}" in result.stdout
    for value in DUMMY_ENV.values():
        assert value not in result.output


def test_demo_summary(app: typer.Typer) -> None:
    result = runner.invoke(app, ["validate", str(CONFIGS / "demo.yaml")])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert "binance (Binance), built-in simulator, no API keys" in lines[1]
    assert "websocket, 1s bars, backfill 60 bars" in lines[2]
    assert "BTC/USDT, ETH/USDT, SOL/USDT" in lines[3]
    assert "paper" in lines[5]


def test_example_config_without_env_names_the_variable(app: typer.Typer) -> None:
    env: dict[str, str | None] = {k: None for k in DUMMY_ENV}
    env["OKX_API_KEY"] = "dummy-okx-key-0001"
    result = runner.invoke(app, ["validate", str(CONFIGS / "okx_websocket.yaml")], env=env)
    assert result.exit_code == 2
    assert "exchange.secret" in result.stderr and "OKX_SECRET" in result.stderr


BAD = sorted(FIXTURES.glob("bad_*.yaml"))


def _marker_line(path: Path) -> int:
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if "# <-- " in line:
            return lineno
    raise AssertionError(path)


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_bad_config_is_one_line_and_exit_2(app: typer.Typer, path: Path) -> None:
    env = {k: v for k, v in DUMMY_ENV.items() if k.startswith("BTCCXT_TEST")}
    result = runner.invoke(app, ["validate", str(path)], env=env)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {path}:{_marker_line(path)}:")
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_missing_file(app: typer.Typer, tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {tmp_path / 'nope.yaml'}: file not found")


def test_config_schema_prints_json_schema(app: typer.Typer) -> None:
    result = runner.invoke(app, ["config", "schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema["title"] == "btccxt config"
    assert set(schema["required"]) == {"exchange", "symbols", "strategy"}
    assert "description" in schema["properties"]["lookback"]


WORDS = ["binance", "okx", "btcmarkets", "1s", "1m", "7m", "websocket", "rest", "live", "${NOPE}",
         "BTC/USDT", "BTCUSDT", "", None, True, -1, 0, 1.5, [], {}]
leaf = st.sampled_from(WORDS) | st.text(max_size=8) | st.integers()
fields = st.fixed_dictionaries({}, optional={
    "exchange": st.fixed_dictionaries({}, optional={"id": leaf, "sim": leaf, "sandbox": leaf,
                                                    "api_key": leaf, "idd": leaf}) | leaf,
    "symbols": st.lists(leaf | st.fixed_dictionaries({"symbol": leaf}, optional={"timeframe": leaf}),
                        max_size=3) | leaf,
    "feed": st.dictionaries(st.sampled_from(["mode", "timeframe", "backfill", "reconnect_delay",
                                             "max_reconnect_delay", "modee"]), leaf) | leaf,
    "strategy": st.fixed_dictionaries({}, optional={"name": leaf, "path": leaf}) | leaf,
    "broker": st.dictionaries(st.sampled_from(["mode", "cash", "commission"]), leaf),
    "lookback": leaf,
})


@pytest.fixture(scope="module")
def _no_secret_registration() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("btccxt_cli.config.load.register_secret", lambda value: None)
        yield


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(doc=fields)
def test_cli_never_shows_a_traceback(app: typer.Typer, _no_secret_registration: None,
                                     doc: dict[str, object]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.yaml"
        path.write_text(yaml.safe_dump(doc), encoding="utf-8")
        result = runner.invoke(app, ["validate", str(path)], env={"NOPE": None})
    assert result.exit_code in (0, 2), result.output
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, result.stderr


# --------------------------------------------------------------------------- strategy checks
# validate runs run's strategy checks (runtime.strategies.check_strategy) without running it

STRATEGY_CONFIG = """exchange:
  id: binance
  sim: true
symbols: [BTC/USDT]
feed: {{timeframe: 1s}}
strategy:
  {strategy}
"""
TWO_CLASSES = "import backtrader as bt\n\n\nclass A(bt.Strategy):\n    pass\n\n\nclass B(bt.Strategy):\n    pass\n"
SYNTAX_ERROR = "import backtrader as bt\n\n\nclass A(bt.Strategy)\n    pass\n"


@pytest.mark.parametrize(("strategy", "files", "code", "needle"), [
    ("name: no_such_strategy", {}, 2, "run.yaml:7:9: strategy.name: no strategy named 'no_such_strategy'"),
    ("name: sma_cross\n  params: {fats: 3}", {}, 2,
     "run.yaml:8:18: strategy.params.fats: unknown parameter 'fats' for SmaCross (did you mean 'fast'?)"),
    ("path: two.py", {"two.py": TWO_CLASSES}, 2, "strategy.path: ", ),
    ("path: broken.py", {"broken.py": SYNTAX_ERROR}, 3, "importing strategy"),
], ids=["unknown-name", "unknown-param", "two-classes", "syntax-error"])
def test_validate_rejects_what_run_rejects(app: typer.Typer, tmp_path: Path, strategy: str,
                                           files: dict[str, str], code: int, needle: str) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    cfg = tmp_path / "run.yaml"
    cfg.write_text(STRATEGY_CONFIG.format(strategy=strategy))
    result = runner.invoke(app, ["validate", str(cfg)])
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert "Traceback" not in result.output
    if "two.py" in strategy:
        assert "several strategies (A, B)" in lines[0]
    if "broken.py" in strategy:
        assert "broken.py, line 4" in lines[0]


def test_no_strategy_named_lists_each_folder_once(app: typer.Typer, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from the repository with a config in configs/: the config's strategies/ folder,
    the working directory's and the repository's are the same one, listed once."""
    monkeypatch.chdir(ROOT)
    cfg = tmp_path / "strategies_here.yaml"
    cfg.write_text(STRATEGY_CONFIG.format(strategy="name: nope"))
    result = runner.invoke(app, ["validate", str(cfg)])
    assert result.exit_code == 2
    assert result.stderr.count(str(ROOT / "strategies")) == 1, result.stderr


def test_validate_names_the_strategy_class_it_loaded(app: typer.Typer) -> None:
    result = runner.invoke(app, ["validate", str(CONFIGS / "demo.yaml")])
    assert result.exit_code == 0, result.output
    assert f"sma_cross (SmaCross in {ROOT / 'strategies' / 'sma_cross.py'})" in result.stdout


@pytest.mark.parametrize("online", [False, True], ids=["offline", "online"])
def test_a_builtin_simulator_config_has_its_symbols_checked_by_the_simulator_never_the_exchange(
        app: typer.Typer, tmp_path: Path, online: bool) -> None:
    """``sim: true``: the symbols are checked against a simulator started on 127.0.0.1 (what
    ``run`` serves), with or without --online; the test's socket guard fails any other host."""
    cfg = tmp_path / "sim.yaml"
    cfg.write_text("exchange:\n  id: binance\n  sim: true\nsymbols: [BTC/USDT, SOLL/USDT]\n"
                   "feed: {timeframe: 1m}\nstrategy: {name: sma_cross}\n")
    result = runner.invoke(app, ["validate", str(cfg), *(["--online"] if online else [])])
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert f"{cfg}:4:" in line and "SOLL/USDT" in line and "Traceback" not in result.output
    cfg.write_text(cfg.read_text().replace(", SOLL/USDT", ""))
    assert runner.invoke(app, ["validate", str(cfg)]).exit_code == 0


def test_an_unreachable_simulator_is_exit_2_at_the_configs_line(app: typer.Typer,
                                                                tmp_path: Path) -> None:
    cfg = tmp_path / "sim.yaml"
    cfg.write_text("exchange:\n  id: binance\n  sim: http://127.0.0.1:9\nsymbols: [BTC/USDT]\n"
                   "feed: {timeframe: 1m}\nstrategy: {name: sma_cross}\n")
    result = runner.invoke(app, ["validate", str(cfg)])
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert f"{cfg}:3:" in line and "unreachable" in line and "btccxt sim" in line


def test_a_strategy_path_that_is_a_folder_and_an_empty_log_file_say_so(app: typer.Typer,
                                                                       tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    base = "exchange: {id: binance, sim: true}\nsymbols: [BTC/USDT]\nfeed: {timeframe: 1m}\n"
    cfg.write_text(base + f"strategy: {{path: {tmp_path}}}\n")
    result = runner.invoke(app, ["validate", str(cfg)])
    assert result.exit_code == 2 and "is a folder (name the .py file in it" in result.stderr
    cfg.write_text(base + "strategy: {name: sma_cross}\nlogging: {file: ''}\n")
    result = runner.invoke(app, ["validate", str(cfg)])
    assert result.exit_code == 2 and "logging.file: log file path" in result.stderr
    assert "e.g. run.log" in result.stderr
def test_a_misspelt_required_key_is_named_at_its_line(app: typer.Typer, tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("exchange: {id: binance, sim: true}\nsymbol: [BTC/USDT]\n"
                   "strategy: {name: sma_cross}\n")
    result = runner.invoke(app, ["validate", str(cfg)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {cfg}:2:1: symbol: unknown key 'symbol' at the top "
                                    "level; did you mean 'symbols'?"), result.stderr
    cfg.write_text("exchange: {id: binance, sim: true}\nwhatever: [BTC/USDT]\n"
                   "strategy: {name: sma_cross}\n")  # nothing close: the missing key first
    result = runner.invoke(app, ["validate", str(cfg)])
    assert result.exit_code == 2
    assert "missing required key 'symbols'" in result.stderr, result.stderr


def test_a_hub_config_without_a_strategy_validates_as_btccxt_hub_reads_it(app: typer.Typer,
                                                                         tmp_path: Path) -> None:
    """docs/hub.md: a hub runs no strategy, so its config may leave `strategy:` out; validate
    reads it as `btccxt hub` does, where it said "missing required key 'strategy'"."""
    cfg = tmp_path / "hub.yaml"
    cfg.write_text("exchange: {id: binance, sim: true}\nsymbols: [BTC/USDT]\n"
                   "feed: {mode: websocket, timeframe: 1s}\n"
                   "hub: {url: 'redis://:pw@127.0.0.1:6379/0'}\n")
    result = runner.invoke(app, ["validate", str(cfg)])
    assert result.exit_code == 0, result.output
    assert "(a hub config: btccxt hub)" in result.stdout and "strategy" not in result.stdout
    assert "127.0.0.1:6379/0, namespace binance" in result.stdout and "pw" not in result.stdout
    runner_cfg = tmp_path / "runner.yaml"  # a hub runner still needs its strategy
    runner_cfg.write_text(cfg.read_text().replace("mode: websocket", "mode: hub"))
    result = runner.invoke(app, ["validate", str(runner_cfg)])
    assert result.exit_code == 2 and "strategy" in result.stderr
