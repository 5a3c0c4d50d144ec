"""Run scopes and the one-run lock of the live broker (issue 19 item 7), and fees per currency."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from btccxt_cli.bt.fees import FeeBook
from btccxt_cli.bt.runlock import RunLock, default_scope, lock_path
from btccxt_cli.cache.orders import FillRecord, OrderRecord, OrderStore
from btccxt_cli.errors import ConfigError

ACCOUNT = "binance:0123456789abcdef"


def order(cid: str, scope: str, status: str = "open") -> OrderRecord:
    return OrderRecord(client_id=cid, account=ACCOUNT, run_id="r1", seq=1, symbol="BTC/USDT",
                       side="buy", type="limit", amount=0.01, price=100.0, stop_price=None,
                       status=status, created_ms=1, updated_ms=1, scope=scope)


def test_a_run_adopts_only_the_orders_of_its_scope(tmp_path: Path) -> None:
    with OrderStore(tmp_path / "o.sqlite") as db:
        db.insert_order(order("bxa", "a"))
        db.insert_order(order("bxb", "b"))
        db.insert_order(order("bxb2", "b", status="canceled"))
        db.add_fill(FillRecord(ACCOUNT, "t1", "bxa", "BTC/USDT", "buy", 100.0, 0.01, 0.0, None, 5))
        assert [r.client_id for r in db.live_orders(ACCOUNT, "a")] == ["bxa"]
        assert [r.client_id for r in db.live_orders(ACCOUNT, "b")] == ["bxb"]
        assert [r.client_id for r in db.untold_final_orders(ACCOUNT, "b")] == ["bxb2"]
        assert db.untold_final_orders(ACCOUNT, "a") == []
        assert [f.trade_id for f in db.undelivered_fills(ACCOUNT, "a")] == ["t1"]
        assert db.undelivered_fills(ACCOUNT, "b") == []


def test_orders_of_a_file_without_scopes_are_claimed_by_the_first_run(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    with OrderStore(path) as db:
        db.insert_order(order("bxold", ""))
    con = sqlite3.connect(path)  # a file written before scopes: no column
    con.execute("ALTER TABLE orders DROP COLUMN scope")
    con.commit()
    con.close()
    with OrderStore(path) as db:
        assert db.live_orders(ACCOUNT, "") != []
        assert db.claim_unscoped(ACCOUNT, "mine") == 1
        assert [r.client_id for r in db.live_orders(ACCOUNT, "mine")] == ["bxold"]
        assert db.claim_unscoped(ACCOUNT, "other") == 0


def test_orders_of_a_file_without_expiries_are_good_till_cancelled(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    with OrderStore(path) as db:
        db.insert_order(order("bxold", "a"))
    con = sqlite3.connect(path)  # a file written before valid= expiries: no column
    con.execute("ALTER TABLE orders DROP COLUMN expires_ms")
    con.commit()
    con.close()
    with OrderStore(path) as db:
        (old,) = db.live_orders(ACCOUNT, "a")
        assert old.expires_ms is None
        db.insert_order(replace(order("bxnew", "a"), expires_ms=1_700_000_000_000))
        assert {r.client_id: r.expires_ms for r in db.live_orders(ACCOUNT, "a")} == \
            {"bxold": None, "bxnew": 1_700_000_000_000}


def test_a_second_live_run_on_the_same_scope_is_refused_naming_the_first(tmp_path: Path) -> None:
    db = tmp_path / "o.sqlite"
    first = RunLock(db, ACCOUNT, "cfg#sma", started_ms=1_700_000_000_000)
    first.acquire()
    try:
        other_scope = RunLock(db, ACCOUNT, "cfg#other", started_ms=2)
        other_scope.acquire()  # another scope runs beside it
        other_scope.release()
        with pytest.raises(ConfigError) as err:
            RunLock(db, ACCOUNT, "cfg#sma", started_ms=3).acquire()
        text = str(err.value)
        import os

        assert f"pid {os.getpid()}" in text and "2023-11-14 22:13:20 UTC" in text
        assert "broker.run_scope" in text and str(db) in text and "\n" not in text
        assert err.value.exit_code == 2
    finally:
        first.release()
    again = RunLock(db, ACCOUNT, "cfg#sma", started_ms=4)
    again.acquire()  # free once the first run released it
    again.release()
    assert lock_path(db, ACCOUNT, "cfg#sma").parent == tmp_path
    RunLock(":memory:", ACCOUNT, "x", started_ms=0).acquire()  # no file, no lock


def test_the_default_scope_is_the_config_file_and_the_strategy(tmp_path: Path) -> None:
    cfg = tmp_path / "a.yaml"
    assert default_scope(cfg, "sma_cross") == f"{cfg.resolve()}#sma_cross"
    assert default_scope(cfg, "sma_cross") != default_scope(tmp_path / "b.yaml", "sma_cross")
    assert default_scope(None, "sma_cross") == "sma_cross"


class _Order:
    def __init__(self) -> None:
        self.info: dict[str, Any] = {}

    def addinfo(self, **kw: Any) -> None:
        self.info.update(kw)


def test_fees_are_kept_per_currency_and_a_third_currency_is_valued() -> None:
    market = {"base": "BTC", "quote": "USDT"}
    book, o = FeeBook(), _Order()

    def f(fee: float, cur: str) -> FillRecord:
        return FillRecord(ACCOUNT, cur, "bx1", "BTC/USDT", "buy", 50_000.0, 0.01, fee, cur, 1)

    assert book.add(o, f(0.5, "USDT"), market) == 0.5
    assert book.add(o, f(0.00001, "BTC"), market) == pytest.approx(0.5)
    assert book.add(o, f(0.002, "BNB"), market, value=1.2) == 1.2  # valued by the worker
    assert book.add(o, f(0.001, "OKB"), market) == 0.0  # no price: not in comm, still reported
    assert o.info["fees"] == {"USDT": 0.5, "BTC": 0.00001, "BNB": 0.002, "OKB": 0.001}
