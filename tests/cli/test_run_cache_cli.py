"""``btccxt run`` with a broken OHLCV cache: one warning (path, cause, repair), the run goes on.

A live run must not die because its cache is damaged or its disk is full: it warns once and
trades on without caching. The cache file here is broken for real: garbage bytes, or a
file-size limit on the run's process (``RLIMIT_FSIZE``: the kernel refuses writes past it, as
on a full disk or a spent quota) that the cache's journal outgrows during the run.
"""

from __future__ import annotations

import resource
from pathlib import Path
from typing import Any

from btccxt_cli.cache.sqlite import OhlcvCache

from .test_run_cli import btccxt, write_config


def _with_cache(cfg: Path, db: Path) -> Path:
    cfg.write_text(cfg.read_text().replace("feed:\n", f"feed:\n  cache: {db}\n", 1))
    return cfg


def _cache_warnings(text: str) -> list[str]:
    return [line for line in text.splitlines() if "OHLCV cache" in line and "cannot be used" in line]


def test_a_damaged_cache_warns_once_and_the_run_goes_on(sim: Any, tmp_path: Path) -> None:
    db = tmp_path / "ohlcv.sqlite"
    db.write_bytes(b"not a database at all " * 500)
    cfg = _with_cache(write_config(tmp_path, sim.url("binance")), db)
    p = btccxt("run", str(cfg), "--plain", "--max-bars", "3")
    out, err = p.communicate(timeout=90)
    assert p.returncode == 0, err[-3000:]
    assert "stopped: --max-bars 3 reached" in out
    assert "Traceback" not in err
    [line] = _cache_warnings(out + err)
    assert str(db) in line and "not a database" in line and "move the file away" in line
    assert db.read_bytes().startswith(b"not a database at all")  # left as it was


def _file_limit(n: int) -> Any:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (n, resource.RLIM_INFINITY))
    return apply


def test_a_cache_whose_disk_fills_during_the_run_warns_once_and_the_run_goes_on(
        sim: Any, tmp_path: Path) -> None:
    db = tmp_path / "ohlcv.sqlite"
    OhlcvCache(db).close()
    cfg = _with_cache(write_config(tmp_path, sim.url("binance")), db)
    # room for the shared-memory index (32 KiB) and a few journal pages: the first bars are
    # committed, then the journal cannot grow
    p = btccxt("run", str(cfg), "--plain", "--max-bars", "8", preexec_fn=_file_limit(48 * 1024))
    out, err = p.communicate(timeout=90)
    assert p.returncode == 0, err[-3000:]
    assert "stopped: --max-bars 8 reached" in out
    assert "Traceback" not in err
    [line] = _cache_warnings(out + err)
    assert str(db) in line and ("disk" in line or "full" in line) and "free disk space" in line
    with OhlcvCache(db) as cache:  # it broke during the run: the first bars were cached
        cached = sum(n for *_, n, _lo, _hi in cache.series())
    assert 0 < cached < 2 * (5 + 8)
