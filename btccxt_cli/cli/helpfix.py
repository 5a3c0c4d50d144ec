"""Two display fixes for typer's Rich help (typer 0.2x), applied once by ``cli.app``.

* A flag (``--plain``) takes no value, so it gets no type label; typer's Rich panel showed
  ``<bool>`` for it, though ``--plain true`` is refused.
* An argument without a metavar is shown by its upper-case name (``{CONFIG}``), like the
  ones with one, so ``run`` and ``validate`` read alike.

Only the help text changes: parsing and errors are typer's and click's own.
"""

from __future__ import annotations

from typing import Any

__all__ = ["apply"]

_done = False


def apply() -> None:
    """Patch typer's help display (idempotent; a typer without these hooks is left alone)."""
    global _done
    if _done:
        return
    _done = True
    from typer import core

    option, argument = getattr(core, "TyperOption", None), getattr(core, "TyperArgument", None)
    if option is not None and hasattr(option, "display_type_rich"):
        shown = option.display_type_rich

        def display_type_rich(self: Any, ctx: Any) -> str | None:
            if getattr(self, "is_flag", False) or getattr(self, "count", False):
                return None
            return shown(self, ctx)

        option.display_type_rich = display_type_rich
    if argument is not None and isinstance(getattr(argument, "display_name_raw", None), property):
        argument.display_name_raw = property(
            lambda self: self.metavar if self.metavar is not None else str(self.name).upper())
