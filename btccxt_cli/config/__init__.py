"""Configuration: typed models of the YAML (``schema``), the loader with line numbers and
``${ENV}`` secrets (``load``), and cross-field rules (``rules``).

Imports pydantic and PyYAML; never ccxt, typer or rich. The CLI imports this package inside its
commands so that ``btccxt --help`` stays fast.

    from btccxt_cli.config import load_config
    config = load_config("configs/demo.yaml")   # Config, or one located ConfigError
"""

from __future__ import annotations

from btccxt_cli.config.load import load_config, loads_config, parse_yaml, read_dotenv
from btccxt_cli.config.rules import check_config
from btccxt_cli.config.schema import (
    BrokerConfig,
    Config,
    DashboardConfig,
    EventsConfig,
    ExchangeConfig,
    FeedConfig,
    LoggingConfig,
    SourceMap,
    StrategyConfig,
    SymbolConfig,
    SymbolFeed,
    format_path,
)

__all__ = [
    "load_config",
    "loads_config",
    "parse_yaml",
    "read_dotenv",
    "check_config",
    "Config",
    "ExchangeConfig",
    "SymbolConfig",
    "FeedConfig",
    "StrategyConfig",
    "BrokerConfig",
    "DashboardConfig",
    "LoggingConfig",
    "EventsConfig",
    "SymbolFeed",
    "SourceMap",
    "format_path",
]
