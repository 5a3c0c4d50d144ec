"""Strategies: find the module a config names, load its ``bt.Strategy``, report its errors.

A name is looked up in ``strategies/`` beside the config, in the working directory and in the
repository; a path is loaded as given. ``check_strategy`` is what both ``btccxt run`` and
``btccxt validate`` call: load the class and check the config's params against it, errors
located at the config's line. Imports backtrader only inside ``load_strategy``.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import traceback
from pathlib import Path
from types import ModuleType

from btccxt_cli.config.schema import Config, StrategyConfig
from btccxt_cli.errors import BtccxtError, ConfigError

__all__ = ["StrategyFailed", "check_params", "check_strategy", "load_strategy", "user_traceback",
           "REPO_STRATEGIES"]

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
    dirs: list[Path] = []
    for d in ((config_dir / "strategies") if config_dir else None, Path.cwd() / "strategies",
              REPO_STRATEGIES):
        if d is not None and d.resolve() not in {x.resolve() for x in dirs}:  # each folder once
            dirs.append(d)
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


def check_params(cls: type, config: Config) -> None:
    """Every key of ``strategy.params`` is a param of ``cls`` (a located error names the fix)."""
    import difflib

    known = list(cls.params._getkeys())  # type: ignore[attr-defined]
    for key in config.strategy.params:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = (f"did you mean {close[0]!r}?" if close
                    else f"{cls.__name__} takes: {', '.join(known) or 'no params'}")
            raise config.source.error(("strategy", "params", key),
                                      f"unknown parameter {key!r} for {cls.__name__}", hint=hint)


def check_strategy(config: Config, config_dir: Path | None) -> tuple[type, Path]:
    """The strategy ``config`` names, loaded and its params checked (``run`` and ``validate``).

    A strategy that cannot be found or has several Strategy classes is a ``ConfigError`` at the
    config's ``strategy`` line; one that fails to import is ``StrategyFailed``.
    """
    key = ("strategy", "path") if config.strategy.path is not None else ("strategy", "name")
    try:
        cls, path = load_strategy(config.strategy, config_dir)
    except StrategyFailed:
        raise
    except ConfigError as exc:
        if exc.file is not None:
            raise
        raise config.source.error(key, exc.message, hint=exc.hint) from exc
    check_params(cls, config)
    return cls, path


def user_traceback(exc: BaseException, path: Path | None) -> str:
    """The traceback with only the user's frames (plus the exception line)."""
    frames = traceback.extract_tb(exc.__traceback__)
    if path is not None:
        mine = [f for f in frames if Path(f.filename).resolve() == path.resolve()]
        frames = traceback.StackSummary.from_list(mine or frames)
    return "".join(["Traceback (most recent call last):\n", *frames.format(),
                    *traceback.format_exception_only(type(exc), exc)])
