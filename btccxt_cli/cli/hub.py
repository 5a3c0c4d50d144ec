"""``btccxt hub CONFIG.yaml``: the market-data hub (runtime/hubd.py); ``--check`` diagnoses a URL.

The hub reads the same YAML as ``btccxt run`` (exchange, symbols, feed, ``hub:``); a
``strategy:`` is not needed. ``--plain`` prints one line per published bar and per event;
otherwise a dashboard shows the series, publish counts, the exchange and Redis states.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any

import typer

__all__ = ["hub_command"]


def hub_command(
    config: str = typer.Argument(..., help="The YAML config (or, with --check, a redis:// URL).",
                                 show_default=False),
    plain: bool = typer.Option(False, "--plain", help="One plain line per published bar and event."),
    check: bool = typer.Option(False, "--check", help="Diagnose the hub's Redis URL and exit."),
    url: str | None = typer.Option(None, "--url", help="Redis URL (default: the config's hub.url)."),
    duration: str | None = typer.Option(None, "--duration", metavar="SECONDS",
                                        help="Stop after SECONDS."),
) -> None:
    """Publish the config's bars to Redis Streams for runners with feed.mode: hub."""
    from btccxt_cli.cli.common import fail, parse_seconds
    from btccxt_cli.errors import BtccxtError, ConfigError

    try:
        seconds = parse_seconds(duration, "--duration", low=0.1, high=366 * 86400.0,
                                hint="leave --duration out to run until stopped")
        if check and "://" in config:
            cfg, target = None, _redis_option(config, "--check")
        else:
            if url is not None:
                _redis_option(url, "--url")
            cfg = _load(Path(config))
            target = url or cfg.hub.url
            if not target:
                raise ConfigError("no hub.url in the config", file=config,
                                  hint="add hub: {url: redis://127.0.0.1:6379/0}, or pass --url")
        if check:
            from btccxt_cli.runtime.hubcheck import check_hub

            ns = (cfg.hub.namespace or cfg.exchange.id) if cfg is not None else None
            ok = check_hub(target, ns, out=lambda line: sys.stdout.write(line + "\n"))
            raise typer.Exit(0 if ok else 2)
        assert cfg is not None
        from btccxt_cli.cache.source import check_config_sim

        check_config_sim(cfg)  # exchange.sim serves exchange.id, or one line at its line
        from btccxt_cli.runtime.hubcheck import REDIS_HINT, reachable

        why = reachable(target)  # no Redis at the start: one line, exit 2 (later: waits)
        if why is not None:
            if url is not None:
                raise ConfigError(why, key="--url", hint=REDIS_HINT)
            raise cfg.source.error(("hub", "url"), why, hint=REDIS_HINT)
        _serve(cfg, target, plain=plain, duration=seconds)
    except BtccxtError as exc:
        fail(exc)


def _redis_option(value: str, option: str) -> str:
    """A Redis URL given on the command line, checked as the config's are (one line, exit 2)."""
    from btccxt_cli.config.schema import check_redis_url
    from btccxt_cli.errors import ConfigError

    try:
        return check_redis_url(value)
    except ValueError as exc:
        raise ConfigError(f"{exc}; got {value!r}", key=option) from None


def _load(path: Path, text: str | None = None) -> Any:
    """The config (``text``: the file's, already read); a hub needs no strategy (one is
    filled in when the file has none)."""
    from btccxt_cli.config.load import loads_config, parse_yaml, read_config_text

    if text is None:  # read once: a pipe (<(cat hub.yaml)) cannot be read twice
        text = read_config_text(path)
    data, _ = parse_yaml(text, file=str(path))
    if "strategy" not in data:
        sep = "" if text.endswith("\n") else "\n"
        text += sep + "strategy: {name: print_bars}\n"
    cfg = loads_config(text, file=str(path), base_dir=path.parent, env_file=path.parent / ".env")
    if cfg.feed.mode == "hub":
        raise cfg.source.error(("feed", "mode"), "a hub cannot read from a hub",
                               hint="use mode: websocket (or threaded) in the hub's config")
    return cfg


def _serve(cfg: Any, url: str, *, plain: bool, duration: float | None) -> None:
    from btccxt_cli.cli.common import setup_run_logging
    from btccxt_cli.runtime.hubd import HubPublisher

    sim = None
    sim_url = cfg.exchange.sim_url
    setup_run_logging(cfg, None)
    if cfg.exchange.sim is True:
        from btccxt_cli.sim.app import SimThread

        sim = SimThread(exchanges=(cfg.exchange.id,))
        sim.start()
        sim_url = sim.url(cfg.exchange.id)
    ex = cfg.exchange
    ccxt_cfg: dict[str, Any] = {"enableRateLimit": ex.rate_limit}
    if ex.options:
        ccxt_cfg["options"] = dict(ex.options)
    feeds = cfg.symbol_feeds()
    backfill = next((f.backfill for f in feeds if isinstance(f.backfill, int)), 100)
    stop = threading.Event()

    def line(text: str) -> None:
        if plain:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()

    hub = HubPublisher(ex.id, [(f.symbol, f.timeframe) for f in feeds], url,
                       namespace=cfg.hub.namespace,
                       store_kwargs={"config": ccxt_cfg, "sim_url": sim_url, "sandbox": ex.sandbox,
                                     "rate_budget": cfg.rate_limit.shared},
                       mode=cfg.feed.mode, backfill=backfill, ohlcv_limit=cfg.feed.ohlcv_limit,
                       maxlen=cfg.hub.maxlen, lease_s=cfg.hub.lease, heartbeat_s=cfg.hub.heartbeat,
                       max_wanted=cfg.hub.max_wanted, on_line=line if plain else None)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    timer = threading.Timer(duration, stop.set) if duration else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    view = None
    if not plain and sys.stdout.isatty() and cfg.dashboard.enabled:
        from btccxt_cli.cli.hub_view import HubView

        view = HubView(hub, url, refresh=cfg.dashboard.refresh_per_second)
        view.start()
    try:
        hub.run(stop)
    finally:
        if view is not None:
            view.stop()
        if timer is not None:
            timer.cancel()
        if sim is not None:
            sim.stop()
        st = hub.stats
        sys.stdout.write(f"hub stopped: {st.published} bars published, {st.refused} refused as "
                         f"already there, {st.takeovers} time(s) leader\n")
        sys.stdout.flush()
