"""The orders database's position ledger and delivery bookkeeping (``cache/orders.py``)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from btccxt_cli.cache.orders import (
    FillRecord,
    Holding,
    OrderRecord,
    OrderStore,
    may_trade,
    read_holdings,
)

ACCOUNT = "binance:0123456789abcdef"


def fill(tid: str, side: str, amount: float, price: float, fee: float = 0.0) -> FillRecord:
    return FillRecord(ACCOUNT, tid, "bx1", "BTC/USDT", side, price, amount, fee, "BTC", 1_000)


def test_a_fill_and_its_ledger_change_are_one_and_never_twice(tmp_path: Path) -> None:
    with OrderStore(tmp_path / "o.sqlite") as db:
        held = db.add_fill_to_ledger(fill("t1", "buy", 0.01, 100.0, 0.00001), 0.00999)
        assert held == Holding(ACCOUNT, "BTC/USDT", 0.00999, 100.0, 0.0, 1_000)
        assert db.add_fill_to_ledger(fill("t1", "buy", 0.01, 100.0), 0.00999) is None  # seen
        db.add_fill_to_ledger(fill("t2", "buy", 0.01, 200.0), 0.01)
        assert db.holding(ACCOUNT, "BTC/USDT").price == pytest.approx(
            (0.00999 * 100 + 0.01 * 200) / 0.01999)
        held = db.add_fill_to_ledger(fill("t3", "sell", 0.01999, 300.0), -0.01999)
        assert held is not None and held.size == 0.0 and held.price == 0.0
        assert len(db.dump()["fills"]) == 3
    assert read_holdings(tmp_path / "o.sqlite", ACCOUNT)["BTC/USDT"].size == 0.0


def test_adopting_raises_the_position_and_records_what_was_adopted(tmp_path: Path) -> None:
    with OrderStore(tmp_path / "o.sqlite") as db:
        db.add_fill_to_ledger(fill("t1", "buy", 0.1, 100.0), 0.1)
        held = db.adopt(ACCOUNT, "BTC/USDT", 1.1, 200.0, 5)
        assert (held.size, held.adopted) == (1.1, pytest.approx(1.0))
        assert held.price == pytest.approx((0.1 * 100 + 1.0 * 200) / 1.1)
        held = db.adopt(ACCOUNT, "BTC/USDT", 0.5, 200.0, 6)  # never lowered
        assert (held.size, held.adopted) == (1.1, pytest.approx(1.0))


def test_read_holdings_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "none" / "o.sqlite"
    assert read_holdings(missing, ACCOUNT) == {}
    assert not missing.parent.exists()


def test_may_trade_says_what_the_bot_may_sell() -> None:
    held = {"BTC/USDT": Holding(ACCOUNT, "BTC/USDT", 0.005)}
    assert may_trade(["BTC/USDT", "ETH/USDT"], {"BTC": 1.0}, held, adopt=False) == (
        "BTC/USDT 0.005 BTC, ETH/USDT 0 ETH (bought by its own orders; coins the account held "
        "before are never sold)")
    assert may_trade(["BTC/USDT", "BTC/USDC"], {"BTC": 1.0}, held, adopt=True) == (
        "BTC/USDT 1 BTC, BTC/USDC 0 BTC (everything the account holds (broker.adopt_holdings))")
    swap = {"BTC/USDT:USDT": Holding(ACCOUNT, "BTC/USDT:USDT", -0.02)}
    assert may_trade(["BTC/USDT:USDT"], {"BTC": 1.0}, swap, adopt=False) == (
        "BTC/USDT:USDT -0.02 BTC (swaps: the bot's own position; it never trades against one it "
        "did not open)")


def test_final_orders_are_told_once_and_older_files_are_not_replayed(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)  # a file written before the notified column existed
    con.execute("CREATE TABLE orders (client_id TEXT PRIMARY KEY, account TEXT NOT NULL, "
                "run_id TEXT NOT NULL, seq INTEGER NOT NULL, symbol TEXT NOT NULL, side TEXT NOT "
                "NULL, type TEXT NOT NULL, amount REAL NOT NULL, price REAL, stop_price REAL, "
                "exchange_id TEXT, status TEXT NOT NULL, filled REAL NOT NULL DEFAULT 0, cost REAL "
                "NOT NULL DEFAULT 0, fee REAL NOT NULL DEFAULT 0, fee_currency TEXT, reason TEXT, "
                "created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL)")
    con.execute("INSERT INTO orders VALUES ('bxold', ?, 'r', 1, 'BTC/USDT', 'buy', 'market', 0.01, "
                "NULL, NULL, '1', 'closed', 0.01, 600, 0, NULL, NULL, 1, 1)", (ACCOUNT,))
    con.commit()
    con.close()
    with OrderStore(path) as db:
        assert db.untold_final_orders(ACCOUNT) == []  # told by the version that wrote them
        db.insert_order(OrderRecord("bxnew", ACCOUNT, "r", 2, "BTC/USDT", "buy", "limit", 0.01,
                                    50.0, None, "canceled", 2, 2))
        assert [r.client_id for r in db.untold_final_orders(ACCOUNT)] == ["bxnew"]
        db.mark_notified("bxnew")
        assert db.untold_final_orders(ACCOUNT) == []
        assert db.get_order("bxnew").notified is True


def test_one_trade_id_in_two_orders_is_two_fills_and_delivered_per_order(tmp_path: Path) -> None:
    """binance numbers trades per symbol, and a fresh account numbers them again: the same id
    in two of our orders is two fills (keyed by order too), each told on its own."""
    with OrderStore(tmp_path / "o.sqlite") as db:
        a = FillRecord(ACCOUNT, "4000000", "bxa", "BTC/USDT", "buy", 100.0, 0.01, 0.0, None, 1)
        b = FillRecord(ACCOUNT, "4000000", "bxb", "ETH/USDT", "buy", 10.0, 0.5, 0.0, None, 2)
        assert db.add_fill_to_ledger(a, 0.01) is not None
        assert db.add_fill_to_ledger(b, 0.5) is not None
        assert db.add_fill(a) is False  # the same trade of the same order: once
        db.mark_delivered(ACCOUNT, ["4000000"], "bxa")
        assert [f.delivered for f in db.fills("bxa")] == [True]
        assert [f.delivered for f in db.fills("bxb")] == [False]


def test_an_older_file_keyed_by_trade_id_alone_is_rebuilt_with_its_fills(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with OrderStore(path) as db:
        db.add_fill(FillRecord(ACCOUNT, "t1", "bxa", "BTC/USDT", "buy", 100.0, 0.01, 0.0, None, 1,
                               delivered=True))
    con = sqlite3.connect(path)  # as written before fills were keyed by their order
    con.executescript("""
        ALTER TABLE fills RENAME TO f0;
        CREATE TABLE fills (account TEXT NOT NULL, trade_id TEXT NOT NULL, client_id TEXT NOT NULL,
            symbol TEXT NOT NULL, side TEXT NOT NULL, price REAL NOT NULL, amount REAL NOT NULL,
            fee REAL NOT NULL DEFAULT 0, fee_currency TEXT, time_ms INTEGER NOT NULL,
            delivered INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (account, trade_id));
        INSERT INTO fills SELECT * FROM f0; DROP TABLE f0;""")
    con.close()
    with OrderStore(path) as db:
        assert [(f.trade_id, f.delivered) for f in db.fills("bxa")] == [("t1", True)]
        assert db.add_fill(FillRecord(ACCOUNT, "t1", "bxb", "BTC/USDT", "sell", 101.0, 0.01, 0.0,
                                      None, 2))
    with OrderStore(path) as db:  # once: opening again changes nothing
        assert len(db.dump()["fills"]) == 2
