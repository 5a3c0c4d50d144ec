"""``btccxt status URL``: a running instance's health, read from its metrics port.

Reads ``/healthz`` and ``/readyz`` (runtime/health.py) of a run started with
``--metrics-port`` / ``metrics.port`` (or any process that mounts them, such as the hub) and
prints a Rich table: feeds, states, last bar age, reconnects, bars, and the account (orders,
P&L). ``--json`` prints both bodies as one JSON object. Exit codes for cron and monitors:
0 ready, 1 degraded (answers, but not ready or not healthy), 2 unreachable (one line).

Imports typer only at module level; rich loads inside the command.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import typer

__all__ = ["status_command", "fetch_status", "EXIT_READY", "EXIT_DEGRADED", "EXIT_UNREACHABLE"]

EXIT_READY, EXIT_DEGRADED, EXIT_UNREACHABLE = 0, 1, 2


class Unreachable(Exception):
    """The instance did not answer (or not as btccxt does)."""


def _base(url: str) -> str:
    url = url.strip().rstrip("/")
    if url.isdigit():  # a bare port: this machine
        return f"http://127.0.0.1:{url}"
    if "://" not in url:
        url = "http://" + url
    for suffix in ("/metrics", "/readyz", "/healthz"):
        if url.endswith(suffix):
            url = url[: -len(suffix)]
    return url


def _get(url: str, timeout: float) -> tuple[int, dict[str, Any]]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - a user's URL
            code, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:  # 503: not ready, with the same JSON body
        code, raw = exc.code, exc.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        text = getattr(reason, "strerror", None) or str(reason)
        raise Unreachable(text.lower() if text else type(exc).__name__) from None
    try:
        body = json.loads(raw)
    except ValueError:
        raise Unreachable(f"{url} answered HTTP {code} without a btccxt JSON body") from None
    if not isinstance(body, dict):
        raise Unreachable(f"{url} answered HTTP {code} without a btccxt JSON body")
    return code, body


def fetch_status(url: str, timeout: float = 5.0) -> dict[str, Any]:
    """``{"url", "healthy", "ready", "health": {...}, "readiness": {...}}``; raises
    ``Unreachable`` when the instance does not answer."""
    base = _base(url)
    hcode, health = _get(base + "/healthz", timeout)
    rcode, ready = _get(base + "/readyz", timeout)
    return {"url": base, "healthy": hcode == 200, "ready": rcode == 200 and bool(ready.get("ready")),
            "health": health, "readiness": ready}


def _age(s: Any) -> str:
    if s is None:
        return "-"
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


def _render(st: dict[str, Any], out: Any) -> None:
    from rich.table import Table

    r = st["readiness"]
    verdict = "READY" if st["ready"] and st["healthy"] else "DEGRADED"
    head = f"{verdict}  {r.get('title') or st['url']}"
    if r.get("uptime_s") is not None:
        head += f"  up {_age(r['uptime_s'])}"
    if not st["healthy"]:
        head += f"  ({st['health'].get('status', 'not healthy')})"
    table = Table(title=head, title_justify="left")
    for col in ("symbol", "tf", "state", "last bar age", "reconnects", "bars (live)", "ready"):
        table.add_column(col, justify="right" if col in ("last bar age", "reconnects",
                                                         "bars (live)") else "left")
    for f in r.get("feeds", []):
        bars = f.get("bars") or {}
        table.add_row(f.get("symbol", "?"), f.get("timeframe", "?"), f.get("state", "?"),
                      _age(f.get("last_bar_age_s")), str(f.get("reconnects", 0)),
                      f"{sum(bars.values())} ({bars.get('live', 0)})",
                      "yes" if f.get("ready") else f"no: {f.get('reason', '')}")
    out.print(table)
    lines = []
    b = r.get("broker")
    if b:
        lines.append(f"order updates: {b.get('updates')}" + ("" if b.get("ready") else " (down)"))
    a = r.get("account")
    if a:
        lines.append(f"{a.get('mode', '')}: value {a.get('value', 0):.2f}, P&L {a.get('pnl', 0):+.2f}, "
                     f"trades {a.get('trades', 0)}, open orders {a.get('open_orders', 0)}")
    if r.get("reason"):
        lines.append(str(r["reason"]))
    for line in lines:
        out.print(line, markup=False, soft_wrap=True)


def status_command(
    url: str = typer.Argument(..., help="The instance's metrics address: http://HOST:PORT "
                              "(or HOST:PORT, or a port on this machine).", show_default=False),
    as_json: bool = typer.Option(False, "--json", help="Print health and readiness as JSON."),
    timeout: float = typer.Option(5.0, "--timeout", min=0.1, max=300,
                                  help="Seconds to wait for each answer."),
) -> None:
    """Health of a running btccxt: exit 0 ready, 1 degraded, 2 unreachable."""
    try:
        st = fetch_status(url, timeout)
    except Unreachable as exc:
        sys.stderr.write(f"error: {_base(url)} is unreachable ({exc}); is the run started with "
                         "--metrics-port or metrics.port, on this address?\n")
        raise typer.Exit(EXIT_UNREACHABLE) from None
    code = EXIT_READY if st["ready"] and st["healthy"] else EXIT_DEGRADED
    if as_json:
        sys.stdout.write(json.dumps(st, indent=2) + "\n")
    else:
        import os

        from rich.console import Console

        _render(st, Console(no_color=bool(os.environ.get("NO_COLOR")) or None, highlight=False))
    raise typer.Exit(code)
