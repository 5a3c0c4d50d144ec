"""Shared test setup: a loud loopback-only network guard and simulator fixtures.

Network guard. ``pyproject.toml`` runs pytest-socket with
``--allow-hosts=127.0.0.1,::1,localhost``, which blocks other connects in the calling thread.
A blocked connect inside a background thread (ccxt's event loop, the simulator thread) would
only surface as some ``NetworkError`` there, so the autouse fixture below also *records*
every connect to, or name lookup of, a non-loopback address from any thread, refuses it, and
fails the test at teardown with the list. Tests must never reach the internet.

Fixtures:
    sim: a ``SimThread`` serving binance and okx with their default symbols (function scope).
    sim_factory: ``sim_factory(**kwargs)`` starts a ``SimThread(**kwargs)``; all are stopped at
        teardown.

Order. Tests marked ``long`` (15 s or more, mostly waiting on 1-second bars) run first: the
xdist workers start on them and fill in with the short ones, so none of them starts last and
sets the suite's wall time.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The ``long`` tests first, each group in its collection order."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}
_violations: list[str] = []
_violations_lock = threading.Lock()


def _is_loopback(host: object) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    host = host.strip("[]").split("%", 1)[0]
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _record(what: str) -> None:
    with _violations_lock:
        _violations.append(f"{what} (thread {threading.current_thread().name})")


@pytest.fixture(autouse=True)
def _loopback_only() -> Iterator[None]:
    """Refuse and record any non-loopback connect or DNS lookup; fail the test if one happened."""
    inner_connect = socket.socket.connect
    inner_connect_ex = socket.socket.connect_ex
    inner_getaddrinfo = socket.getaddrinfo

    def connect(sock: socket.socket, address: Any) -> Any:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0] if isinstance(address, tuple) else address
            if not _is_loopback(host):
                _record(f"connect to {address!r}")
                raise ConnectionRefusedError(f"tests may only connect to loopback, not {address!r}")
        return inner_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> Any:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0] if isinstance(address, tuple) else address
            if not _is_loopback(host):
                _record(f"connect_ex to {address!r}")
                raise ConnectionRefusedError(f"tests may only connect to loopback, not {address!r}")
        return inner_connect_ex(sock, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _is_loopback(host):
            _record(f"name lookup of {host!r}")
            raise socket.gaierror(socket.EAI_NONAME, f"tests may not resolve {host!r}")
        return inner_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo
    with _violations_lock:
        _violations.clear()
    try:
        yield
    finally:
        if socket.socket.connect is connect:
            socket.socket.connect = inner_connect  # type: ignore[method-assign]
        if socket.socket.connect_ex is connect_ex:
            socket.socket.connect_ex = inner_connect_ex  # type: ignore[method-assign]
        if socket.getaddrinfo is getaddrinfo:
            socket.getaddrinfo = inner_getaddrinfo
        with _violations_lock:
            seen = list(_violations)
            _violations.clear()
    if seen:
        pytest.fail("non-loopback network access attempted:\n  " + "\n  ".join(seen), pytrace=False)


def _our_loggers() -> dict[str, logging.Logger]:
    return {n: lg for n, lg in logging.root.manager.loggerDict.items()
            if n.startswith("btccxt_cli") and isinstance(lg, logging.Logger)}


@pytest.fixture(autouse=True)
def _loggers_restored() -> Iterator[None]:
    """Our loggers' levels and handlers as they were before the test: a run of the CLI in
    this process (``setup_logging``) or a series with ``debug=True`` leaves nothing behind
    that would change what the next test on this worker logs or captures."""
    before = {n: (lg.level, list(lg.handlers)) for n, lg in _our_loggers().items()}
    yield
    for n, lg in _our_loggers().items():
        level, handlers = before.get(n, (logging.NOTSET, []))
        lg.setLevel(level)
        for h in [h for h in lg.handlers if h not in handlers]:
            lg.removeHandler(h)
            h.close()


@pytest.fixture
def sim_factory() -> Iterator[Callable[..., Any]]:
    """Start ``SimThread(**kwargs)`` simulators; every one is stopped at teardown."""
    from btccxt_cli.sim.app import SimThread

    started: list[SimThread] = []

    def make(**kwargs: Any) -> SimThread:
        s = SimThread(**kwargs)
        s.start()
        started.append(s)
        return s

    try:
        yield make
    finally:
        for s in reversed(started):
            s.stop()


@pytest.fixture
def sim(sim_factory: Callable[..., Any]) -> Any:
    """A simulator serving binance and okx with their default symbols."""
    return sim_factory(exchanges=("binance", "okx"))


@pytest.fixture(autouse=True, scope="session")
def _private_ohlcv_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Runs (and their subprocesses) use a cache file of this session, never the user's."""
    old = os.environ.get("BTCCXT_CACHE")
    os.environ["BTCCXT_CACHE"] = str(tmp_path_factory.mktemp("cache") / "ohlcv.sqlite")
    yield
    if old is None:
        os.environ.pop("BTCCXT_CACHE", None)
    else:
        os.environ["BTCCXT_CACHE"] = old


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real valkey-server (tests/hubtools.py) for this xdist worker: 127.0.0.1, a free port,
    its own folder. Fails loudly (never skips) when the binary is missing."""
    from tests.hubtools import ValkeyProc

    server = ValkeyProc(tmp_path_factory.mktemp("valkey")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def valkey_factory(tmp_path: Any) -> Iterator[Callable[[], Any]]:
    """``valkey_factory()`` starts a server of the test's own (to stop or freeze it)."""
    from tests.hubtools import ValkeyProc

    started: list[Any] = []

    def make() -> Any:
        s = ValkeyProc(tmp_path / f"valkey{len(started)}").start()
        started.append(s)
        return s

    try:
        yield make
    finally:
        for s in started:
            s.stop()
