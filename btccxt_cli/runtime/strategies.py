"""Strategies: find the module a config names, load its ``bt.Strategy``, report its errors.

A name is looked up in ``strategies/`` beside the config, in the working directory and in the
repository; a path is loaded as given. Imports backtrader only inside ``load_strategy``.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import traceback
from pathlib import Path
from types import ModuleType

from btccxt_cli.config.schema import StrategyConfig
from btccxt_cli.errors import BtccxtError, ConfigError

__all__ = ["StrategyFailed", "load_strategy", "user_traceback", "REPO_STRATEGIES"]

REPO_STRATEGIES = Path(__file__).resolve().parents[2] / "strategies"


class StrategyFailed(BtccxtError):
    """The user's strategy raised; ``user_traceback`` holds its own frames."""

    exit_code = 3

    def __init__(self, message: str, user_traceback: str) -> None:
        super().__init__(message)
        self.user_traceback = user_traceback


def _strategy_file(cfg: StrategyConfig, config_dir: Path | None) -> Path:
    if cfg.path is not None:
        return Path(cfg.path)
    name = str(cfg.name)
    dirs = [d for d in ((config_dir / "strategies") if config_dir else None,
                        Path.cwd() / "strategies", REPO_STRATEGIES) if d is not None]
    for d in dirs:
        f = d / f"{name}.py"
        if f.is_file():
            return f
    known = sorted({p.stem for d in dirs if d.is_dir() for p in d.glob("*.py") if p.stem != "__init__"})
    raise ConfigError(f"no strategy named {name!r}",
                      hint=f"looked in {', '.join(str(d) for d in dirs)}; known: {', '.join(known) or 'none'}")


def _import_file(path: Path) -> ModuleType:
    mod_name = "btccxt_user_strategy_" + re.sub(r"\W", "_", path.stem)
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot import strategy file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module  # backtrader's metaclasses look the module up there
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(mod_name, None)
        raise StrategyFailed(f"importing strategy {path} failed: {exc}", user_traceback(exc, path)) from exc
    return module


def load_strategy(cfg: StrategyConfig, config_dir: Path | None = None) -> tuple[type, Path]:
    """The ``bt.Strategy`` subclass a config names (module in strategies/ or a file)."""
    import backtrader as bt

    path = _strategy_file(cfg, config_dir)
    module = _import_file(path)
    found = [v for v in vars(module).values()
             if isinstance(v, type) and issubclass(v, bt.Strategy) and v.__module__ == module.__name__]
    if not found:
        raise ConfigError(f"{path} defines no backtrader Strategy subclass")
    if len(found) > 1:
        want = path.stem.replace("_", "").lower()
        match = [c for c in found if c.__name__.lower() == want]
        if len(match) != 1:
            raise ConfigError(f"{path} defines several strategies ({', '.join(c.__name__ for c in found)})",
                              hint="keep one Strategy subclass per file, or name it after the file")
        found = match
    return found[0], path


def user_traceback(exc: BaseException, path: Path | None) -> str:
    """The traceback with only the user's frames (plus the exception line)."""
    frames = traceback.extract_tb(exc.__traceback__)
    if path is not None:
        mine = [f for f in frames if Path(f.filename).resolve() == path.resolve()]
        frames = traceback.StackSummary.from_list(mine or frames)
    return "".join(["Traceback (most recent call last):\n", *frames.format(),
                    *traceback.format_exception_only(type(exc), exc)])
