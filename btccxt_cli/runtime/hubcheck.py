"""``btccxt hub --check``: is this Redis URL fit for a hub, and what does the hub there say?

Step by step, one line each (``ok``/``FAIL``/``info``): connect and PING, server version
(Redis >= 6.2 or Valkey: exclusive XRANGE), an XADD with an explicit id accepted and the same
id refused (what makes publishing idempotent), then the hub's heartbeat, leader and streams
under the namespace.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from btccxt_cli.hub.keys import HubKeys

__all__ = ["check_hub", "reachable", "REDIS_HINT"]

#: what to do when the hub's Redis does not answer at the start
REDIS_HINT = ("start Redis or Valkey there (docs/hub.md: apt install valkey-server, or docker run "
              "-d -p 6379:6379 valkey/valkey:8), or fix the URL; `btccxt hub --check URL` "
              "diagnoses it")


def check_hub(url: str, namespace: str | None, out: Callable[[str], None]) -> bool:
    """Print the diagnosis; True when the URL can carry a hub."""
    import redis

    shown = url.split("@")[-1]  # never print a password in the URL
    r = redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3)
    try:
        t0 = time.perf_counter()
        r.ping()
        out(f"ok    connect {shown}: PING answered in {(time.perf_counter() - t0) * 1000:.1f} ms")
    except redis.AuthenticationError as exc:
        out(f"FAIL  connect {shown}: authentication refused ({exc}); put the password in the "
            "URL: redis://:PASSWORD@HOST:6379/0")
        return False
    except redis.RedisError as exc:
        out(f"FAIL  connect {shown}: {exc}; is Redis/Valkey running there? "
            "(docs/hub.md: apt install valkey-server, or docker run -p 6379:6379 valkey/valkey)")
        return False
    try:
        info = r.info("server")
        name = "valkey" if info.get("valkey_version") else "redis"
        version = str(info.get("valkey_version") or info.get("redis_version") or "?")
        major_minor = tuple(int(x) for x in version.split(".")[:2] if x.isdigit())
        if name == "redis" and major_minor < (6, 2):
            out(f"FAIL  server: redis {version}; the hub needs Redis >= 6.2 (or Valkey)")
            return False
        out(f"ok    server: {name} {version}")
        key = f"btccxt:check:{uuid.uuid4().hex}"
        try:
            r.xadd(key, {"x": "1"}, id="1000-0")
            try:
                r.xadd(key, {"x": "1"}, id="1000-0")
                out("FAIL  XADD accepted an id twice; bars could be doubled")
                return False
            except redis.ResponseError:
                out("ok    streams: an entry id is accepted once and refused the second time")
        finally:
            r.delete(key)
        if namespace:
            k = HubKeys(namespace)
            alive = r.get(k.alive)
            leader = r.get(k.leader)
            ttl = r.pttl(k.alive)
            if alive:
                out(f"ok    hub '{namespace}': heartbeat from {alive.decode()} "
                    f"(expires in {max(0, ttl) / 1000:.1f} s)")
            else:
                out(f"info  hub '{namespace}': no heartbeat (no `btccxt hub` running for it)")
            if leader:
                out(f"info  leader: {leader.decode()}")
            streams = sorted(r.scan_iter(match=k.bars("*", "*"), count=1000))
            for s in streams[:20]:
                last = r.xrevrange(s, "+", "-", count=1)
                last_id = last[0][0].decode() if last else "-"
                out(f"info  stream {s.decode()}: {r.xlen(s)} bars, last {last_id}")
            if len(streams) > 20:
                out(f"info  ... {len(streams) - 20} more streams")
        return True
    except redis.RedisError as exc:
        out(f"FAIL  {shown}: {exc}")
        return False
    finally:
        r.close()


def reachable(url: str, timeout: float = 3.0) -> str | None:
    """None if Redis at ``url`` answers a PING within ``timeout`` seconds, else why not (a
    password in the URL never shows): what a hub or a hub runner checks before it starts, so a
    wrong URL or a Redis that is not running is one line, exit 2, not a run that waits."""
    import redis

    r = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        r.ping()
        return None
    except redis.AuthenticationError as exc:
        return f"Redis at {url.split('@')[-1]} refused the password ({exc})"
    except redis.RedisError as exc:
        return f"cannot reach Redis at {url.split('@')[-1]} ({exc})"
    finally:
        r.close()
