"""``OrderStore``: the live broker's orders and fills in one SQLite file.

The broker writes an order *before* it is sent (status ``pending``), so a crash at any point
leaves a row to reconcile: on restart, every order that is not final is looked up at the
exchange by its client order id and never sent again. Fills are keyed by the exchange's trade
id, so a fill seen twice is stored once; ``delivered`` says whether the strategy was told.

``positions`` is the bot's own position ledger per account and symbol: the base units this
bot's fills bought less what they sold (net of fees charged in the base currency), plus what
was adopted from the account's holdings when ``broker.adopt_holdings`` asked for it. A fill and
its ledger change are written in one transaction, so the two never disagree after a crash.

Schema (created on first open)::

    orders(client_id TEXT PRIMARY KEY, account TEXT, run_id TEXT, seq INTEGER, symbol TEXT,
           side TEXT, type TEXT, amount REAL, price REAL, stop_price REAL, exchange_id TEXT,
           status TEXT, filled REAL, cost REAL, fee REAL, fee_currency TEXT, reason TEXT,
           created_ms INTEGER, updated_ms INTEGER, notified INTEGER, scope TEXT,
           expires_ms INTEGER, trail REAL)
    fills(account TEXT, trade_id TEXT, client_id TEXT, symbol TEXT, side TEXT, price REAL,
          amount REAL, fee REAL, fee_currency TEXT, time_ms INTEGER, delivered INTEGER,
          PRIMARY KEY(account, client_id, trade_id))
    runs(run_id TEXT PRIMARY KEY, account TEXT, started_ms INTEGER, next_seq INTEGER)
    positions(account TEXT, symbol TEXT, size REAL, price REAL, adopted REAL,
              updated_ms INTEGER, PRIMARY KEY(account, symbol))
    funding(account TEXT, id TEXT, symbol TEXT, amount REAL, time_ms INTEGER,
            PRIMARY KEY(account, id))
    outside(account TEXT, symbol TEXT, before REAL, after REAL, price REAL, reason TEXT,
            time_ms INTEGER)

``funding`` holds each swap funding payment once (``amount`` < 0: paid); ``outside`` records
every time a swap position of the bot was closed outside its orders (a liquidation) and the
ledger lowered to the exchange's.

``account`` is ``exchange:<first 16 hex of sha256(api key)>``: never the key itself. ``scope``
is the run scope (``broker.run_scope``): a run adopts only the orders of its own scope (rows
written before scopes existed say ``''`` and are claimed by the first run that starts). Order
statuses: ``pending`` (written, not yet sent), ``sending``, ``unknown`` (the create call failed
in a way that does not say whether the exchange got it), ``open``, ``closed`` (filled),
``canceled``, ``expired``, ``rejected``. The first four are *live*.

One connection shared by threads under a lock (WAL, ``synchronous=NORMAL``). Must not import
ccxt, backtrader, typer or rich.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from btccxt_cli.paths import check_output_file, data_dir

__all__ = ["OrderStore", "OrderRecord", "FillRecord", "Holding", "account_id",
           "default_orders_path", "read_holdings", "may_trade", "LIVE_STATUSES", "FINAL_STATUSES"]

logger = logging.getLogger(__name__)

LIVE_STATUSES = ("pending", "sending", "unknown", "open")
FINAL_STATUSES = ("closed", "canceled", "expired", "rejected")

_FILLS_TABLE = """CREATE TABLE IF NOT EXISTS fills (
    account TEXT NOT NULL, trade_id TEXT NOT NULL, client_id TEXT NOT NULL, symbol TEXT NOT NULL,
    side TEXT NOT NULL, price REAL NOT NULL, amount REAL NOT NULL, fee REAL NOT NULL DEFAULT 0,
    fee_currency TEXT, time_ms INTEGER NOT NULL, delivered INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (account, client_id, trade_id)
)"""
_FILLS_INDEX = "CREATE INDEX IF NOT EXISTS fills_order ON fills (client_id)"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    client_id TEXT PRIMARY KEY, account TEXT NOT NULL, run_id TEXT NOT NULL, seq INTEGER NOT NULL,
    symbol TEXT NOT NULL, side TEXT NOT NULL, type TEXT NOT NULL, amount REAL NOT NULL,
    price REAL, stop_price REAL, exchange_id TEXT, status TEXT NOT NULL,
    filled REAL NOT NULL DEFAULT 0, cost REAL NOT NULL DEFAULT 0, fee REAL NOT NULL DEFAULT 0,
    fee_currency TEXT, reason TEXT, created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_live ON orders (account, status);
""" + _FILLS_TABLE + ";\n" + _FILLS_INDEX + ";\n" + """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, account TEXT NOT NULL, started_ms INTEGER NOT NULL,
    next_seq INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS positions (
    account TEXT NOT NULL, symbol TEXT NOT NULL, size REAL NOT NULL DEFAULT 0,
    price REAL NOT NULL DEFAULT 0, adopted REAL NOT NULL DEFAULT 0, updated_ms INTEGER NOT NULL,
    PRIMARY KEY (account, symbol)
);
CREATE TABLE IF NOT EXISTS funding (
    account TEXT NOT NULL, id TEXT NOT NULL, symbol TEXT NOT NULL, amount REAL NOT NULL,
    time_ms INTEGER NOT NULL, PRIMARY KEY (account, id)
);
CREATE TABLE IF NOT EXISTS outside (
    account TEXT NOT NULL, symbol TEXT NOT NULL, before REAL NOT NULL, after REAL NOT NULL,
    price REAL NOT NULL, reason TEXT NOT NULL, time_ms INTEGER NOT NULL
);
"""


def account_id(exchange: str, api_key: str | None) -> str:
    """``binance:1a2b...``: the exchange and a hash of the key (the key is never stored)."""
    digest = hashlib.sha256((api_key or "").encode()).hexdigest()[:16]
    return f"{exchange}:{digest}"


def default_orders_path() -> Path:
    """``$BTCCXT_ORDERS_DB`` if set, else ``orders.sqlite`` in btccxt's data folder.

    The folder is ``~/Library/Application Support/btccxt`` on macOS, ``%LOCALAPPDATA%\\btccxt``
    on Windows and ``$XDG_DATA_HOME/btccxt`` (default ``~/.local/share/btccxt``) elsewhere.
    """
    env = os.environ.get("BTCCXT_ORDERS_DB")
    if env:
        return Path(env).expanduser()
    return data_dir() / "orders.sqlite"


def read_holdings(path: str | Path, account: str) -> dict[str, Holding]:
    """The bot's positions in an orders database, read-only (nothing is created): ``{}`` if the
    file or its ledger does not exist yet."""
    if str(path) == ":memory:" or not Path(path).is_file():
        return {}
    try:
        con = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
        try:
            rows = con.execute(f"SELECT {', '.join(_HOLDING_COLS)} FROM positions WHERE account = ?",
                               (account,)).fetchall()
        finally:
            con.close()
    except sqlite3.Error:
        return {}
    return {r[1]: Holding(*r) for r in rows}


def may_trade(symbols: Iterable[str], totals: dict[str, float], held: dict[str, Holding],
              adopt: bool) -> str:
    """What a live run's bot may sell, for the ``--live`` summary: per symbol, its own position
    (or, with ``adopt_holdings``, everything the account holds of the base currency)."""
    parts = []
    seen: set[str] = set()
    swaps = []
    for symbol in symbols:
        base = symbol.split("/")[0]
        if ":" in symbol:  # a swap: the bot's own position, long or short (docs/swaps.md)
            size = held[symbol].size if symbol in held else 0.0
            swaps.append(f"{symbol} {size:+g} {base}" if size else f"{symbol} 0 {base}")
            continue
        if adopt:
            size = 0.0 if base in seen else totals.get(base, 0.0)
            seen.add(base)
        else:
            size = held[symbol].size if symbol in held else 0.0
        parts.append(f"{symbol} {size:g} {base}")
    why = ("everything the account holds (broker.adopt_holdings)" if adopt else
           "bought by its own orders; coins the account held before are never sold")
    out = ", ".join(parts) + f" ({why})" if parts else ""
    if swaps:
        out += ("; " if out else "") + ", ".join(swaps) + (
            " (swaps: the bot's own position; it never trades against one it did not open)")
    return out


@dataclass
class OrderRecord:
    """One row of ``orders``."""

    client_id: str
    account: str
    run_id: str
    seq: int
    symbol: str
    side: str
    type: str
    amount: float
    price: float | None
    stop_price: float | None
    status: str
    created_ms: int
    updated_ms: int
    exchange_id: str | None = None
    filled: float = 0.0
    cost: float = 0.0
    fee: float = 0.0
    fee_currency: str | None = None
    reason: str | None = None
    notified: bool = False  # the strategy was told its final status
    scope: str = ""  # the run scope that placed it (broker.run_scope)
    #: the exchange time (ms) at which the broker cancels it as expired (backtrader's
    #: ``valid=``); None: good till cancelled
    expires_ms: int | None = None
    #: a trailing stop's trail, a fraction of the best price (backtrader's ``trailpercent``)
    trail: float | None = None

    @property
    def live(self) -> bool:
        return self.status in LIVE_STATUSES


@dataclass
class FillRecord:
    """One row of ``fills``."""

    account: str
    trade_id: str
    client_id: str
    symbol: str
    side: str
    price: float
    amount: float
    fee: float
    fee_currency: str | None
    time_ms: int
    delivered: bool = False


@dataclass(frozen=True)
class Holding:
    """One row of ``positions``: the bot's own position in ``symbol`` (base units) and its
    average entry price; ``adopted`` is the part taken over from the account's holdings."""

    account: str
    symbol: str
    size: float = 0.0
    price: float = 0.0
    adopted: float = 0.0
    updated_ms: int = 0

    def moved(self, delta: float, price: float, now_ms: int) -> Holding:
        """The holding after ``delta`` base units at ``price`` (the average entry moves only
        when the position grows, and restarts at ``price`` when it changes sign)."""
        size = self.size + delta
        if abs(size) <= 1e-15:
            size, avg = 0.0, 0.0
        elif self.size == 0.0 or (self.size > 0) != (size > 0):
            avg = price
        elif abs(size) > abs(self.size):
            avg = (self.size * self.price + delta * price) / size
        else:
            avg = self.price
        return replace(self, size=size, price=avg, updated_ms=now_ms)


_ORDER_COLS = [f.name for f in fields(OrderRecord)]


def _order(row: Any) -> OrderRecord:
    rec = OrderRecord(*row)
    rec.notified = bool(rec.notified)
    return rec
_HOLDING_COLS = [f.name for f in fields(Holding)]
_FILL_COLS = [f.name for f in fields(FillRecord)]


class OrderStore:
    """Orders and fills of the live broker (thread-safe; one connection under a lock).

    Args:
        path: the SQLite file (created with its folder), or ``":memory:"``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":  # a missing folder only inside btccxt's data folder
            self.path = str(check_output_file(self.path, what="orders database", option="db_path"))
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        with self._lock:
            if self.path != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            cols = {r[1] for r in self._db.execute("PRAGMA table_info(orders)")}
            if "notified" not in cols:  # orders of older files were told (new rows say 0)
                self._db.execute("ALTER TABLE orders ADD COLUMN notified INTEGER NOT NULL DEFAULT 1")
            if "scope" not in cols:  # rows of older files: claimed by the first run to start
                self._db.execute("ALTER TABLE orders ADD COLUMN scope TEXT NOT NULL DEFAULT ''")
            if "expires_ms" not in cols:  # rows of older files: good till cancelled
                self._db.execute("ALTER TABLE orders ADD COLUMN expires_ms INTEGER")
            if "trail" not in cols:
                self._db.execute("ALTER TABLE orders ADD COLUMN trail REAL")
            self._key_fills_by_order()

    def _key_fills_by_order(self) -> None:
        """Files written before fills were keyed by their order too: binance numbers trades per
        symbol and a fresh account (a simulator, a testnet) numbers them again, so one trade id
        can belong to two of our orders; keyed by (account, trade id) alone, the second fill was
        dropped as a duplicate and its order never completed. Rebuilds the table once."""
        pk = [r[1] for r in self._db.execute("PRAGMA table_info(fills)") if r[5]]
        if "client_id" in pk:
            return
        cols = ", ".join(_FILL_COLS)
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute("ALTER TABLE fills RENAME TO fills_before_v2")
            self._db.execute("DROP INDEX IF EXISTS fills_order")
            self._db.execute(_FILLS_TABLE)
            self._db.execute(_FILLS_INDEX)
            self._db.execute(f"INSERT INTO fills ({cols}) SELECT {cols} FROM fills_before_v2")
            self._db.execute("DROP TABLE fills_before_v2")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> OrderStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ runs
    def start_run(self, run_id: str, account: str, now_ms: int) -> None:
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO runs (run_id, account, started_ms, next_seq) "
                             "VALUES (?, ?, ?, 1)", (run_id, account, now_ms))

    def next_seq(self, run_id: str) -> int:
        """The next sequence number of ``run_id`` (1, 2, ...), persisted before it is used."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT next_seq FROM runs WHERE run_id = ?", (run_id,)).fetchone()
                if row is None:
                    raise KeyError(f"unknown run {run_id!r}")
                self._db.execute("UPDATE runs SET next_seq = next_seq + 1 WHERE run_id = ?", (run_id,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return int(row[0])

    # ------------------------------------------------------------------ orders
    def insert_order(self, rec: OrderRecord) -> None:
        """Store a new order (before it is sent); a client id is never reused."""
        with self._lock:
            self._db.execute(f"INSERT INTO orders ({', '.join(_ORDER_COLS)}) VALUES "
                             f"({', '.join('?' for _ in _ORDER_COLS)})",
                             [getattr(rec, c) for c in _ORDER_COLS])

    def update_order(self, client_id: str, **values: Any) -> None:
        bad = set(values) - set(_ORDER_COLS)
        if bad:
            raise KeyError(f"unknown order columns: {sorted(bad)}")
        if not values:
            return
        with self._lock:
            self._db.execute(f"UPDATE orders SET {', '.join(f'{k} = ?' for k in values)} "
                             "WHERE client_id = ?", [*values.values(), client_id])

    def get_order(self, client_id: str) -> OrderRecord | None:
        with self._lock:
            row = self._db.execute(f"SELECT {', '.join(_ORDER_COLS)} FROM orders WHERE client_id = ?",
                                   (client_id,)).fetchone()
        return _order(row) if row else None

    def untold_final_orders(self, account: str, scope: str = "") -> list[OrderRecord]:
        """Final orders of ``account`` and run ``scope`` whose final status the strategy was
        never told."""
        return self._orders("account = ? AND scope = ? AND notified = 0 AND status IN (?, ?, ?, ?)",
                            (account, scope, *FINAL_STATUSES))

    def claim_unscoped(self, account: str, scope: str) -> int:
        """Orders of ``account`` stored before run scopes existed (scope ``''``) become
        ``scope``'s; returns how many."""
        if not scope:
            return 0
        with self._lock:
            cur = self._db.execute("UPDATE orders SET scope = ? WHERE account = ? AND scope = ''",
                                   (scope, account))
            return cur.rowcount

    def given_up(self, account: str, scope: str, since_ms: int) -> list[OrderRecord]:
        """Orders of ``account`` and ``scope`` given up on "not found" (``bt/sweep.py``) since
        ``since_ms``: watched again by the next run."""
        return self._orders("account = ? AND scope = ? AND status IN ('rejected', 'canceled') AND "
                            "updated_ms >= ? AND (reason LIKE 'not found at the exchange%' OR "
                            "reason LIKE 'the exchange no longer knows%')", (account, scope, since_ms))

    def mark_notified(self, client_id: str) -> None:
        with self._lock:
            self._db.execute("UPDATE orders SET notified = 1 WHERE client_id = ?", (client_id,))

    def live_orders(self, account: str, scope: str = "") -> list[OrderRecord]:
        """Orders of ``account`` and run ``scope`` that are not final, oldest first."""
        return self._orders("account = ? AND scope = ? AND status IN (?, ?, ?, ?)",
                            (account, scope, *LIVE_STATUSES))

    def orders(self, account: str | None = None) -> list[OrderRecord]:
        if account is None:
            return self._orders("1", ())
        return self._orders("account = ?", (account,))

    def _orders(self, where: str, args: Iterable[Any]) -> list[OrderRecord]:
        with self._lock:
            rows = self._db.execute(f"SELECT {', '.join(_ORDER_COLS)} FROM orders WHERE {where} "
                                    "ORDER BY created_ms, seq", tuple(args)).fetchall()
        return [_order(r) for r in rows]

    # ------------------------------------------------------------------ fills
    def add_fill(self, rec: FillRecord) -> bool:
        """Store a fill; False if that trade of that order was already stored."""
        with self._lock:
            cur = self._db.execute(f"INSERT OR IGNORE INTO fills ({', '.join(_FILL_COLS)}) VALUES "
                                   f"({', '.join('?' for _ in _FILL_COLS)})",
                                   [int(v) if isinstance(v, bool) else v
                                    for v in (getattr(rec, c) for c in _FILL_COLS)])
            return cur.rowcount == 1

    def add_fill_to_ledger(self, rec: FillRecord, delta: float) -> Holding | None:
        """Store a fill and move the bot's position in its symbol by ``delta`` base units, in
        one transaction. Returns the position after it, or None if the trade id was already
        stored (the ledger is then left alone)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if not self.add_fill(rec):
                    self._db.execute("ROLLBACK")
                    return None
                held = self.holding(rec.account, rec.symbol).moved(delta, rec.price, rec.time_ms)
                self._put_holding(held)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return held

    def holding(self, account: str, symbol: str) -> Holding:
        """The bot's position in ``symbol`` (zero if it never traded it)."""
        with self._lock:
            row = self._db.execute(f"SELECT {', '.join(_HOLDING_COLS)} FROM positions "
                                   "WHERE account = ? AND symbol = ?", (account, symbol)).fetchone()
        return Holding(*row) if row else Holding(account, symbol)

    def holdings(self, account: str) -> dict[str, Holding]:
        """Every position of ``account`` in the ledger, by symbol."""
        with self._lock:
            rows = self._db.execute(f"SELECT {', '.join(_HOLDING_COLS)} FROM positions "
                                    "WHERE account = ?", (account,)).fetchall()
        return {r[1]: Holding(*r) for r in rows}

    def adopt(self, account: str, symbol: str, size: float, price: float, now_ms: int) -> Holding:
        """Raise the bot's position in ``symbol`` to ``size`` (``broker.adopt_holdings``): the
        part above what it held is adopted at ``price`` and recorded in ``adopted``."""
        with self._lock:
            old = self.holding(account, symbol)
            extra = max(0.0, size - old.size)
            held = replace(old.moved(extra, price, now_ms), adopted=old.adopted + extra)
            self._put_holding(held)
            return held

    def set_outside(self, account: str, symbol: str, size: float, price: float, reason: str,
                    now_ms: int) -> Holding:
        """Lower the bot's swap position in ``symbol`` to ``size`` because the exchange closed
        it outside the bot's orders (a liquidation), and record why (``outside``)."""
        with self._lock:
            old = self.holding(account, symbol)
            held = replace(old, size=size, price=old.price if size else 0.0, updated_ms=now_ms)
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._put_holding(held)
                self._db.execute("INSERT INTO outside VALUES (?, ?, ?, ?, ?, ?, ?)",
                                 (account, symbol, old.size, size, price, reason, now_ms))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return held

    def adopt_signed(self, account: str, symbol: str, size: float, price: float,
                     now_ms: int) -> Holding | None:
        """Swaps, ``broker.adopt_holdings``: the bot's position becomes the account's (long or
        short) once: only when the ledger is flat and nothing was adopted before."""
        with self._lock:
            old = self.holding(account, symbol)
            if old.size or old.adopted or not size:
                return None
            held = replace(old, size=size, price=price, adopted=abs(size), updated_ms=now_ms)
            self._put_holding(held)
            return held

    def add_funding(self, account: str, pay_id: str, symbol: str, amount: float,
                    time_ms: int) -> bool:
        """Store one funding payment; False if it was stored before."""
        with self._lock:
            cur = self._db.execute("INSERT OR IGNORE INTO funding VALUES (?, ?, ?, ?, ?)",
                                   (account, pay_id, symbol, amount, time_ms))
            return cur.rowcount == 1

    def last_funding_ms(self, account: str) -> int | None:
        with self._lock:
            row = self._db.execute("SELECT MAX(time_ms) FROM funding WHERE account = ?",
                                   (account,)).fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def _put_holding(self, h: Holding) -> None:
        self._db.execute(f"INSERT OR REPLACE INTO positions ({', '.join(_HOLDING_COLS)}) VALUES "
                         f"({', '.join('?' for _ in _HOLDING_COLS)})", [getattr(h, c) for c in _HOLDING_COLS])

    def undelivered_fills(self, account: str, scope: str = "") -> list[FillRecord]:
        """Fills of ``account``'s orders of run ``scope`` the strategy was never told of,
        whatever their order's status."""
        cols = ", ".join(f"f.{c}" for c in _FILL_COLS)
        with self._lock:
            rows = self._db.execute(f"SELECT {cols} FROM fills f JOIN orders o ON o.client_id = "
                                    "f.client_id WHERE f.account = ? AND o.scope = ? AND "
                                    "f.delivered = 0 ORDER BY f.time_ms, f.trade_id",
                                    (account, scope)).fetchall()
        return [FillRecord(*r[:-1], delivered=bool(r[-1])) for r in rows]

    def fills(self, client_id: str, *, undelivered_only: bool = False) -> list[FillRecord]:
        sql = f"SELECT {', '.join(_FILL_COLS)} FROM fills WHERE client_id = ?"
        if undelivered_only:
            sql += " AND delivered = 0"
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY time_ms, trade_id", (client_id,)).fetchall()
        return [FillRecord(*r[:-1], delivered=bool(r[-1])) for r in rows]

    def mark_delivered(self, account: str, trade_ids: Iterable[str],
                       client_id: str | None = None) -> None:
        """The strategy was told of these fills (of order ``client_id``; None: of any order)."""
        with self._lock:
            if client_id is None:
                self._db.executemany("UPDATE fills SET delivered = 1 WHERE account = ? AND "
                                     "trade_id = ?", [(account, t) for t in trade_ids])
            else:
                self._db.executemany("UPDATE fills SET delivered = 1 WHERE account = ? AND "
                                     "client_id = ? AND trade_id = ?",
                                     [(account, client_id, t) for t in trade_ids])

    def dump(self) -> dict[str, list[dict[str, Any]]]:
        """Every order and fill (for tests and debugging)."""
        with self._lock:
            fills = self._db.execute(f"SELECT {', '.join(_FILL_COLS)} FROM fills").fetchall()
            held = self._db.execute(f"SELECT {', '.join(_HOLDING_COLS)} FROM positions").fetchall()
        return {"orders": [asdict(o) for o in self.orders()],
                "fills": [dict(zip(_FILL_COLS, r, strict=True)) for r in fills],
                "positions": [dict(zip(_HOLDING_COLS, r, strict=True)) for r in held]}
