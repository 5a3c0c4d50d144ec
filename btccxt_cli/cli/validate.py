"""``btccxt validate CONFIG`` and ``btccxt config schema``.

Role: load a config and run every offline check (schema, rules, ccxt metadata, and the strategy:
the same checks as ``btccxt run``, loading the class and its params without running it), then
print a short summary, or ONE error line on stderr with exit code 2 and no traceback. ``config schema`` prints
the JSON Schema of the YAML. The network is touched only with ``--online`` or a ``sim: URL``
(then the symbols are checked against the exchange's markets); ``sim: true`` checks them
against a built-in simulator started on 127.0.0.1, never the exchange.

Imports typer only at module level; pydantic, PyYAML and ccxt load inside the commands so that
``btccxt --help`` stays fast.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from btccxt_cli.errors import BtccxtError

if TYPE_CHECKING:
    from btccxt_cli.config.schema import Config
    from btccxt_cli.exchange.describe import ExchangeFacts

__all__ = ["validate_command", "config_schema_command", "config_app", "summarize"]

logger = logging.getLogger(__name__)

config_app = typer.Typer(
    name="config",
    help="Inspect the configuration format.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def validate_command(
    config: Annotated[Path, typer.Argument(help="The YAML config file to check.", metavar="CONFIG")],
    online: Annotated[bool, typer.Option(
        "--online", help="Also check the symbols against the exchange's live markets (network). "
        "With `sim:` the simulator's markets are always checked, never the exchange's.")] = False,
) -> None:
    """Check a config file: schema, rules, what ccxt knows about the exchange, and the symbols
    against the exchange's markets when it is reachable (the simulator's URL, or --online)."""
    from btccxt_cli.log import redact

    try:
        from btccxt_cli.config.load import loads_config, read_config_text
        from btccxt_cli.exchange.describe import validate_exchange
        from btccxt_cli.runtime.strategies import check_strategy

        text = read_config_text(config)  # read once: a pipe (<(cat x.yaml)) cannot be read twice
        hub = _is_hub_config(text, config)
        if hub:  # `btccxt hub`'s own reading: a hub runs no strategy
            from btccxt_cli.cli.hub import _load

            loaded = _load(config, text)
        else:
            loaded = loads_config(text, file=str(config), base_dir=config.parent,
                                  env_file=config.parent / ".env")
        facts = validate_exchange(loaded)
        strategy_cls, strategy_path = check_strategy(loaded, config.resolve().parent)
        if loaded.notify.urls:  # the same check as run's, so validate passes only what run takes
            from btccxt_cli.runtime.notify import check_urls

            check_urls(loaded.notify.urls, loaded.source)
        if online or loaded.exchange.sim_url or loaded.exchange.sim is True:
            if loaded.exchange.sim_url:
                from btccxt_cli.cache.source import check_config_sim

                check_config_sim(loaded)  # the simulator serves exchange.id (or at its line)
            _check_symbols_online(loaded, online=online)
    except BtccxtError as exc:
        typer.echo(f"error: {redact(str(exc))}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except Exception as exc:  # a bug of ours: still one line, never a traceback with locals
        logger.debug("validate failed unexpectedly", exc_info=True)
        typer.echo(f"error: internal error while validating {config}: {type(exc).__name__}: "
                   f"{redact(str(exc))} (please report this)", err=True)
        raise typer.Exit(1) from None
    if hub:
        typer.echo(summarize(loaded, facts, config, hub=True))
        return
    typer.echo(summarize(loaded, facts, config, strategy=(strategy_cls.__name__, strategy_path)))


def _is_hub_config(text: str, path: Path) -> bool:
    """A config for ``btccxt hub``: a ``hub:`` section, no ``strategy:`` and a feed that is not
    itself a hub (a file that cannot be parsed is left to ``loads_config`` to report)."""
    try:
        from btccxt_cli.config.load import parse_yaml

        data, _ = parse_yaml(text, file=str(path))
    except Exception:
        return False
    feed = data.get("feed") if isinstance(data, dict) else None
    return (isinstance(data, dict) and isinstance(data.get("hub"), dict)
            and "strategy" not in data
            and not (isinstance(feed, dict) and feed.get("mode") == "hub"))


def _check_symbols_online(loaded: Config, *, online: bool) -> None:
    """Load the exchange's markets and check every symbol: the simulator's for ``sim: URL``,
    the built-in simulator's for ``sim: true`` (started here, on 127.0.0.1, as ``run`` does:
    never the real exchange), the exchange's with ``--online``. Unreachable: exit 2 at the
    config's line, like every other reason the config cannot run."""
    from btccxt_cli.exchange.describe import check_symbols, load_markets_located
    from btccxt_cli.exchange.factory import make_exchange

    ex_id, url = loaded.exchange.id, loaded.exchange.sim_url
    sim = None
    if loaded.exchange.sim is True:
        from btccxt_cli.sim.app import SimThread

        sim = SimThread(exchanges=(ex_id,))  # the markets `run` would serve
        sim.start()
        url = sim.url(ex_id)
    try:
        ex = make_exchange(ex_id, kind="sync", config={"timeout": 10_000}, sim_url=url,
                           sandbox=loaded.exchange.sandbox)
        # the hint that fits: for a simulator nothing is wrong with the network or --online
        hint = (f"start it with `btccxt sim -e {ex_id}` and use the URL it prints, or check the "
                "URL") if url else "check the network, or leave out --online to validate offline"
        check_symbols(loaded, load_markets_located(loaded, ex, sim_url=url, hint=hint,
                                                   what=", symbols not checked"))
    finally:
        if sim is not None:
            sim.stop()


def config_schema_command() -> None:
    """Print the JSON Schema of the config file."""
    from btccxt_cli.config.schema import Config

    typer.echo(json.dumps(Config.json_schema(), indent=2))


config_app.command("schema")(config_schema_command)


def _fmt_params(params: dict[str, Any]) -> str:
    if not params:
        return ""
    inner = ", ".join(f"{k}: {v}" for k, v in params.items())
    return f" {{{inner}}}"


def summarize(config: Config, facts: ExchangeFacts | None, path: Path | str, *,
              strategy: tuple[str, Path] | None = None, hub: bool = False) -> str:
    """The short OK summary printed by ``btccxt validate`` (``strategy``: class name and file;
    ``hub``: a config for ``btccxt hub``, which runs no strategy and no broker)."""
    ex = config.exchange
    name = f"{ex.id} ({facts.name})" if facts is not None and facts.name != ex.id else ex.id
    if ex.sim is True:
        where = "built-in simulator"
    elif ex.sim_url:
        where = f"simulator at {ex.sim_url}"
    elif ex.sandbox:
        where = "sandbox (testnet)"
    else:
        where = "real exchange"
    creds = "with API keys" if ex.has_credentials else "no API keys"
    feed = config.feed
    backfill = feed.backfill
    if isinstance(backfill, int):
        bf = f"backfill {backfill} bars" if backfill else "no backfill"
    else:
        bf = f"backfill from {backfill.isoformat()}"
    symbols = ", ".join(
        f.symbol if f.timeframe == feed.timeframe else f"{f.symbol} ({f.timeframe})"
        for f in config.symbol_feeds()
    )
    strat = config.strategy.name or str(config.strategy.path)
    if strategy is not None:
        strat += f" ({strategy[0]} in {strategy[1]})"
    broker = config.broker
    lines = [
        f"OK: {path}" + (" (a hub config: btccxt hub)" if hub else ""),
        f"  exchange  {name}, {where}, {creds}",
        f"  feed      {feed.mode}, {feed.timeframe} bars, {bf}",
        f"  symbols   {symbols}",
    ]
    if hub:
        url = str(config.hub.url or "").split("@")[-1] or "(none: pass --url)"
        lines.append(f"  hub       {url}, namespace {config.hub.namespace or config.exchange.id}")
        return "\n".join(lines)
    lines += [
        f"  strategy  {strat}{_fmt_params(dict(config.strategy.params))}",
        f"  broker    {broker.mode}, cash {broker.cash:g}, commission {broker.commission:g}",
    ]
    return "\n".join(lines)
