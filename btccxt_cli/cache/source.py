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
from typing import Any

from btccxt_cli.errors import ConfigError, TemporaryError

__all__ = ["SIM_MARK", "cache_source", "sim_identity", "split_source"]

SIM_MARK = "@sim:"
"""Between the exchange id and the simulator's identity in a source name."""

_IDENTITY = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def cache_source(exchange_id: str, sim_url: str | None = None, *, timeout: float = 5.0) -> str:
    """The cache's name for bars of ``exchange_id``: the plain id for the real exchange, or
    ``ID@sim:IDENTITY`` for a simulator at ``sim_url`` (asked for its identity).

    Raises:
        ConfigError: the URL serves another exchange, or is not a btccxt simulator (exit 2).
        TemporaryError: the simulator cannot be reached (exit 1).
    """
    if not sim_url:
        return exchange_id
    ident = sim_identity(sim_url, timeout=timeout)
    served = ident.get("exchange")
    if served and served != exchange_id:
        raise ConfigError(f"the simulator at {sim_url} serves {served}, not {exchange_id}",
                          hint=f"pass --exchange {served}, or the URL `btccxt sim` printed for "
                               f"{exchange_id}")
    return f"{exchange_id}{SIM_MARK}{ident['identity']}"


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
