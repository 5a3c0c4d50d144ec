"""``btccxt notify-test CONFIG.yaml``: send one test message to the config's ``notify.urls``.

The URLs hold tokens: they are registered as secrets when the config loads and never printed
(nor is apprise's own log, which may quote them). Exit codes: 0 delivered, 1 delivery failed
(one line saying why), 2 bad config or no URL configured.

Imports typer only at module level; apprise loads inside ``runtime/notify.py``'s functions.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

__all__ = ["notify_test_command"]


def notify_test_command(
    config: Path = typer.Argument(..., help="The YAML config file with a notify: section.",
                                  show_default=False, metavar="CONFIG"),
) -> None:
    """Send one test message to every notify.urls of the config."""
    from btccxt_cli.cli.common import fail
    from btccxt_cli.config.load import load_config
    from btccxt_cli.errors import BtccxtError
    from btccxt_cli.log import redact, setup_logging
    from btccxt_cli.runtime.notify import check_urls, send_once

    try:
        cfg = load_config(config)
        n = cfg.notify
        if not n.urls:
            raise cfg.source.error(("notify", "urls"), "no notification URL is configured",
                                   hint="add notify: {urls: [\"${NOTIFY_URL}\"]} with an apprise "
                                   "URL in that variable (see docs/config.md, notify)")
        check_urls(n.urls, cfg.source)
    except BtccxtError as exc:
        fail(exc)
    setup_logging(cfg.logging.level if cfg.logging.level != "INFO" else "WARNING")
    error = send_once(n.urls, n.title, f"btccxt test message from {config.name}: notifications "
                      "work.", timeout=n.timeout)
    if error is not None:
        sys.stderr.write(f"error: the test message was not delivered: {redact(error)} (check "
                         f"notify.urls in {config} (or the variable it names) and that the "
                         "service is up)\n")
        raise typer.Exit(1)
    sys.stdout.write(f"sent a test message to {len(n.urls)} notification URL"
                     f"{'s' if len(n.urls) != 1 else ''}\n")
