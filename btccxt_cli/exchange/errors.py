"""The one seam where ccxt exceptions become btccxt errors (``map_ccxt_error``).

Also small predicates the sources use to pick a reaction: retry with backoff, wait
``Retry-After``, or give up on a subscription.
"""

from __future__ import annotations

from typing import Any

from btccxt_cli.errors import (
    BtccxtError,
    CredentialsError,
    ExchangeRejectedError,
    RateLimitError,
    TemporaryError,
    UnsupportedError,
)

__all__ = ["map_ccxt_error", "retry_after_s", "is_temporary", "is_rate_limit", "is_fatal"]


def _ccxt() -> Any:
    import ccxt

    return ccxt


def retry_after_s(exchange: Any) -> float | None:
    """``Retry-After`` of the exchange's last HTTP answer, in seconds, if it sent one."""
    headers = getattr(exchange, "last_response_headers", None) or {}
    for k, v in dict(headers).items():
        if str(k).lower() == "retry-after":
            try:
                return max(0.0, float(v))
            except (TypeError, ValueError):
                return None
    return None


def is_rate_limit(exc: BaseException) -> bool:
    ccxt = _ccxt()
    return isinstance(exc, (ccxt.DDoSProtection, ccxt.RateLimitExceeded))


def is_temporary(exc: BaseException) -> bool:
    """Network trouble, outages, rate limits, 5xx: worth a retry after a pause.

    ``OperationFailed`` is ccxt's parent of every network error; binance reports HTTP 500
    as ``-1001`` which ccxt raises as a bare ``OperationFailed``.
    """
    ccxt = _ccxt()
    return isinstance(exc, (ccxt.OperationFailed, ConnectionError, TimeoutError, OSError))


def is_fatal(exc: BaseException) -> bool:
    """Errors no retry can cure for this request: bad symbol or request, credentials, support."""
    ccxt = _ccxt()
    return isinstance(exc, (ccxt.BadRequest, ccxt.AuthenticationError, ccxt.NotSupported,
                            ccxt.PermissionDenied, ccxt.AccountSuspended))


def map_ccxt_error(exc: BaseException, *, exchange: Any = None, what: str = "") -> BtccxtError:
    """Translate a ccxt exception into our tree; callers ``raise map_ccxt_error(e) from e``."""
    ccxt = _ccxt()
    name = getattr(exchange, "id", "") or "exchange"
    prefix = f"{name}: {what}: " if what else f"{name}: "
    text = str(exc)
    if isinstance(exc, BtccxtError):
        return exc
    if isinstance(exc, (ccxt.DDoSProtection, ccxt.RateLimitExceeded)):
        ra = retry_after_s(exchange) if exchange is not None else None
        return RateLimitError(prefix + "rate limited by the exchange", retry_after=ra,
                              hint="btccxt backs off and retries; lower the number of symbols "
                                   "or raise the timeframe if this persists")
    if isinstance(exc, ccxt.AuthenticationError):
        return CredentialsError(prefix + "credentials rejected",
                                hint="check the API key, secret and passphrase environment variables")
    if isinstance(exc, ccxt.BadSymbol):
        return UnsupportedError(prefix + text, hint="check the symbol; `btccxt validate` lists close matches")
    if isinstance(exc, ccxt.NotSupported):
        return UnsupportedError(prefix + text)
    if isinstance(exc, ccxt.NetworkError):
        return TemporaryError(prefix + f"network error: {type(exc).__name__}: {text}",
                              hint="check the network; btccxt retries with backoff")
    if isinstance(exc, ccxt.ExchangeError):
        return ExchangeRejectedError(prefix + text)
    if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
        return TemporaryError(prefix + f"network error: {exc}")
    return BtccxtError(prefix + f"{type(exc).__name__}: {text}")
