"""The one name under which a price source's bars are cached, so simulated bars never pose as
an exchange's.

    cache_source("binance")                           -> "binance"
    cache_source("binance", "http://127.0.0.1:PORT")  -> "binance@sim:seed-1"

A real exchange keeps its ccxt id. A simulator is keyed apart by the identity it reports on
its control API (``GET /_sim/identity``: its seed, since every simulated price is a function
of the seed, symbol, timeframe and time), so two simulators with different seeds never share
rows. Every cache user names its source here: ``btccxt backfill`` and its export, the store's
warm-up and write-back (``btccxt run``), and ``btccxt cache``.

The simulator is reached by URL only (loopback, no proxy). Must not import: ccxt, typer, rich,
backtrader, the simulator.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from btccxt_cli.errors import BtccxtError, ConfigError, TemporaryError

if TYPE_CHECKING:
    from btccxt_cli.config.schema import Config

__all__ = ["SIM_MARK", "cache_source", "check_config_sim", "sim_identity", "split_source"]

SIM_MARK = "@sim:"
"""Between the exchange id and the simulator's identity in a source name."""

_IDENTITY = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def cache_source(exchange_id: str, sim_url: str | None = None, *, timeout: float = 5.0,
                 option: str | None = None) -> str:
    """The cache's name for bars of ``exchange_id``: the plain id for the real exchange, or
    ``ID@sim:IDENTITY`` for a simulator at ``sim_url`` (asked for its identity).

    ``option`` is the command-line option that named ``exchange_id`` (``--exchange``), for
    the hint when the simulator serves another exchange; a config's ``exchange.sim`` is
    checked at its line by ``check_config_sim`` before anything starts.

    Raises:
        ConfigError: the URL serves another exchange, or is not a btccxt simulator (exit 2).
        TemporaryError: the simulator cannot be reached (exit 1).
    """
    if not sim_url:
        return exchange_id
    ident = sim_identity(sim_url, timeout=timeout)
    served = ident.get("exchange")
    if served and served != exchange_id:
        use_url = f"the URL `btccxt sim -e {exchange_id}` prints"
        raise ConfigError(f"the simulator at {sim_url} serves {served}, not {exchange_id}",
                          hint=f"pass {option} {served}, or {use_url}" if option
                          else f"use {use_url}")
    return f"{exchange_id}{SIM_MARK}{ident['identity']}"


def check_config_sim(config: Config, *, timeout: float = 5.0) -> None:
    """A config whose ``exchange.sim`` URL serves another exchange than its ``exchange.id``:
    ONE ``ConfigError`` at ``exchange.id``'s line saying what to change (exit 2).

    A simulator that cannot be reached, or is not a btccxt one, is left to the command's own
    connection and its message.
    """
    url = config.exchange.sim_url
    if not url:
        return
    try:
        served = sim_identity(url, timeout=timeout).get("exchange")
    except BtccxtError:
        return
    wanted = config.exchange.id
    if served and served != wanted:
        raise config.source.error(
            ("exchange", "id"), f"the simulator at {url} serves {served}, not {wanted}",
            hint=f"set exchange.id: {served}, or exchange.sim: a URL that serves {wanted}, "
                 f"as `btccxt sim -e {wanted}` prints")


def split_source(source: str) -> tuple[str, str | None]:
    """``("binance", None)`` for ``binance``; ``("binance", "seed-1")`` for a simulator source;
    ``("binance", "")`` for simulated bars of an unknown seed (``binance@sim``, as btccxt
    named them before sources had identities)."""
    exchange, sep, rest = source.partition("@")
    if not sep:
        return source, None
    return exchange, rest[len("sim:"):] if rest.startswith("sim:") else ""


def sim_identity(sim_url: str, *, timeout: float = 5.0) -> dict[str, Any]:
    """The simulator's ``GET /_sim/identity`` answer (``exchange``, ``seed``, ``identity``)."""
    import urllib.error
    import urllib.request

    url = sim_url.rstrip("/") + "/_sim/identity"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy
    not_sim = ConfigError(f"{sim_url} does not say which prices it serves ({url}): it is not a "
                          "btccxt simulator, or an older one",
                          hint="start one with `btccxt sim` and pass the URL it prints")
    try:
        with opener.open(url, timeout=timeout) as resp:
            doc = json.loads(resp.read())
    except urllib.error.HTTPError:
        raise not_sim from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TemporaryError(f"cannot reach the simulator at {sim_url} ({reason})",
                             hint="start it with `btccxt sim`, or check the URL") from None
    except ValueError:
        raise not_sim from None
    if not isinstance(doc, dict) or not _IDENTITY.match(str(doc.get("identity", ""))):
        raise not_sim
    return doc
