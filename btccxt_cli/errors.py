"""The whole btccxt error tree, grouped by what the caller must do.

    BtccxtError                       base; ``exit_code`` is what the CLI returns
    ├── ConfigError                   bad or missing configuration: stop, fix the file (exit 2)
    │   └── CredentialsError          a key/secret is missing or rejected (exit 2)
    ├── UnsupportedError              exchange, symbol or timeframe not available (exit 2)
    ├── DependencyError               a library is missing or too old (exit 2)
    ├── TemporaryError                network trouble: retry with backoff
    │   ├── RateLimitError            429/418: wait ``retry_after`` seconds, then retry
    │   └── FeedStalledError          a socket stayed open but silent too long
    └── ExchangeRejectedError         the exchange refused a request: do not retry blindly

ccxt exceptions are translated into these in one place, ``btccxt_cli.exchange.errors``.
"""

from __future__ import annotations

__all__ = [
    "BtccxtError",
    "ConfigError",
    "CredentialsError",
    "UnsupportedError",
    "DependencyError",
    "TemporaryError",
    "RateLimitError",
    "FeedStalledError",
    "ExchangeRejectedError",
]


class BtccxtError(Exception):
    """Base of every error btccxt raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(BtccxtError):
    """The configuration is wrong; the message names the file, line and fix."""

    exit_code = 2

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 column: int | None = None, key: str | None = None, hint: str = "") -> None:
        where = ""
        if file:
            where = file
            if line:
                where += f":{line}"
                if column:
                    where += f":{column}"
            where += ": "
        if key:
            where += f"{key}: "
        super().__init__(where + message, hint=hint)
        self.file, self.line, self.column, self.key = file, line, column, key


class CredentialsError(ConfigError):
    """A credential is missing from the environment or was rejected by the exchange."""


class UnsupportedError(BtccxtError):
    """The exchange, symbol or timeframe is not available."""

    exit_code = 2


class DependencyError(BtccxtError):
    """A required library is missing or too old."""

    exit_code = 2


class TemporaryError(BtccxtError):
    """Network trouble that a retry with backoff may cure."""


class RateLimitError(TemporaryError):
    """The exchange asked us to slow down (HTTP 429/418)."""

    def __init__(self, message: str, *, retry_after: float | None = None, hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.retry_after = retry_after


class FeedStalledError(TemporaryError):
    """A socket stayed open but delivered nothing for too long."""


class ExchangeRejectedError(BtccxtError):
    """The exchange refused the request (bad symbol, bad order ...)."""
