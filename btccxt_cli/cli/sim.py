"""``btccxt sim``: serve the exchange simulator on 127.0.0.1 until Ctrl-C or SIGTERM.

The first lines on stdout are ``EXCHANGE_ID BASE_URL``, one per exchange, flushed before
anything else, so scripts and tests can read the ports::

    $ btccxt sim -e binance -e okx
    binance http://127.0.0.1:43817
    okx http://127.0.0.1:40121

aiohttp and the simulator are imported inside the command (``btccxt --help`` stays fast).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Annotated, Any

import typer

__all__ = ["sim_command", "DEFAULT_EXCHANGES", "SIMULATED_EXCHANGES"]

DEFAULT_EXCHANGES = ("binance", "okx")
SIMULATED_EXCHANGES = ("binance", "okx", "bybit", "kucoin", "bitget", "kraken")
"""Every exchange the simulator serves (``sim.venues.VENUES``; written out here so that the help
loads no simulator code; a test keeps the two, the docs and the help in step)."""

logger = logging.getLogger(__name__)


def _symbols_by_exchange(exchanges: list[str], symbols: list[str] | None,
                         generate: int) -> dict[str, list[str]] | None:
    """``--symbol BTC/USDT`` goes to every exchange, ``--symbol okx=BTC/USDT:USDT`` to one."""
    if not symbols and not generate:
        return None
    out: dict[str, list[str]] = {ex: [] for ex in exchanges}
    for item in symbols or []:
        target, sep, symbol = item.partition("=")
        if sep:
            if target not in out:
                raise typer.BadParameter(f"{target!r} is not one of the served exchanges "
                                         f"{exchanges}", param_hint="--symbol")
            out[target].append(symbol)
        else:
            for ex in exchanges:
                out[ex].append(item)
    if generate:
        for ex in exchanges:
            out[ex] += [f"C{i:03d}/USDT" for i in range(1, generate + 1)]
    return {ex: syms for ex, syms in out.items() if syms}


def _check_ports(port: int, count: int) -> None:
    """``port`` .. ``port + count - 1`` are TCP ports (``0``: free ones), else a ``ConfigError``."""
    from btccxt_cli.errors import ConfigError

    if port == 0:
        return
    if not 1 <= port <= 65535:
        raise ConfigError(f"{port} is not a port from 1 to 65535", key="--port",
                          hint="0 picks free ports")
    last = port + count - 1
    if last > 65535:
        raise ConfigError(f"{count} exchanges need ports {port} to {last}, past 65535",
                          key="--port", hint=f"give a port of at most {65536 - count}, "
                          "or 0 picks free ports")


def sim_command(
    exchange: Annotated[list[str] | None, typer.Option(
        "--exchange", "-e", help="Exchange to simulate (repeatable): "
        f"{', '.join(SIMULATED_EXCHANGES)}. Default: binance and okx.",
        show_default=False)] = None,
    port: int = typer.Option(
        0, "--port", "-p", help="Port of the first exchange, the next ones use P+1, P+2 ...; "
        "0 picks free ports."),
    symbols: Annotated[list[str] | None, typer.Option(
        "--symbol", "-s", help="Unified symbol to list (repeatable): BTC/USDT for every "
        "exchange, okx=BTC/USDT:USDT for one. Default: each venue's standard list.",
        show_default=False)] = None,
    generate_symbols: int = typer.Option(
        0, "--generate-symbols", help="Also list N generated symbols C001/USDT, C002/USDT ..."),
    seed: int = typer.Option(1, "--seed", help="Seed of the deterministic market model."),
    clock_offset_ms: int = typer.Option(
        0, "--clock-offset-ms", help="Exchange clock skew: the exchange's now = local + offset."),
    push_interval_ms: int | None = typer.Option(
        None, "--push-interval-ms", help="Push period of forming candles (default min(tf/4, 2000))."),
    ws_ping_interval: float = typer.Option(
        20.0, "--ws-ping-interval", help="Seconds between server WebSocket pings (binance)."),
    api_keys: Annotated[list[str] | None, typer.Option(
        "--api-key", help="API key the private endpoints accept, KEY:SECRET[:PASSPHRASE] "
        "(repeatable; default: the test key "
        "btccxt-sim-key:btccxt-sim-secret:btccxt-sim-passphrase).", show_default=False)] = None,
    balances: Annotated[list[str] | None, typer.Option(
        "--balance", help="Starting balance of every account, ASSET=AMOUNT (repeatable; default "
        "USDT=100000 BTC=1 ETH=10).", show_default=False)] = None,
    liquidity: float = typer.Option(
        1.0, "--liquidity", min=0.000001, help="Resting orders fill at most this multiple of each "
        "second's 1s-candle volume per second (larger orders fill in parts)."),
    funding_interval: float = typer.Option(
        8 * 3600, "--funding-interval", min=1, help="Seconds between the perpetual swaps' "
        "funding settlements (8 h as on the exchanges)."),
) -> None:
    """Serve simulated exchanges (REST + WebSocket) on 127.0.0.1 until interrupted."""
    from btccxt_cli.cli.common import fail
    from btccxt_cli.errors import ConfigError

    exchanges = list(dict.fromkeys(exchange or DEFAULT_EXCHANGES))
    try:
        _check_ports(port, len(exchanges))
        if generate_symbols < 0:
            raise ConfigError(f"{generate_symbols} is negative", key="--generate-symbols",
                              hint="give a count of 0 or more")
    except ConfigError as exc:
        fail(exc)
    by_exchange = _symbols_by_exchange(exchanges, symbols, generate_symbols)
    ports = {ex: port + i for i, ex in enumerate(exchanges)} if port else None
    from btccxt_cli.sim.accounts import parse_balance_spec, parse_key_spec

    try:
        keys = [parse_key_spec(k) for k in api_keys] if api_keys else None
        start = dict(parse_balance_spec(b) for b in balances) if balances else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    try:
        asyncio.run(_serve(exchanges=exchanges, symbols=by_exchange, seed=seed,
                           clock_offset_ms=clock_offset_ms, push_interval_ms=push_interval_ms,
                           ports=ports, ws_ping_interval_s=ws_ping_interval, api_keys=keys,
                           balances=start, liquidity=liquidity,
                           funding_interval_s=funding_interval))
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except OSError as exc:  # port in use, permission ...
        typer.echo(f"error: cannot serve the simulator: {exc}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:  # platforms without loop signal handlers
        pass


async def _serve(**kwargs: Any) -> None:
    from btccxt_cli.sim.app import Simulator

    sim = Simulator(**kwargs)
    await sim.start()
    try:
        for ex in sim.exchanges:
            typer.echo(f"{ex} {sim.url(ex)}")
        sys.stdout.flush()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):  # Windows, or not the main thread
                logger.debug("cannot install a handler for %s", sig)
        await stop.wait()
        logger.info("stopping the simulator")
    finally:
        await sim.stop()
