"""Stock holds, sold counters and orders of the embedded catalog, in SQLite
(:class:`StockLedger`). The Redis ledger, for several app servers, is
:class:`~flask_acp.catalog.stock_redis.RedisStockLedger`; :mod:`.ledger`
picks one.

Tables (in the ``ACP_SQLITE_PATH`` file, next to the session store's)::

    acp_catalog_sold   (item_id PK, quantity)             units sold per variant
    acp_catalog_holds  (session_id, item_id, quantity, expires_at)
                       PK (session_id, item_id); expires_at in Unix seconds
    acp_catalog_held   (item_id PK, quantity)             units in holds per variant
    acp_catalog_orders (number PK, id UNIQUE, session_id UNIQUE, order_number,
                        permalink_url, lines JSON, amount, currency, payment_id,
                        created_at)

Units available to a session = on hand (store file) - sold - unexpired holds
of *other* sessions. Every read-check-write runs in one ``BEGIN IMMEDIATE``
transaction, which SQLite serializes across threads and processes, so two
sessions never both get the last unit. Connections are per thread and per
process (as in :mod:`flask_acp.store.sqlite`), in WAL mode.

The held units are not summed over the holds (one row per open session: with
100k open holds that sum made each reserve cost ~100 times the CPU of the
counter read, ``benchmarks/bench_stock.py``). ``acp_catalog_held``
keeps, per variant, the sum of the quantities of *every* row of
``acp_catalog_holds``; SQLite triggers on that table's INSERT, DELETE and
UPDATE maintain it inside the statement, so in the same transaction as any
change to the holds: reserve, place, release, the purge of expired holds, and
writes by older flask-acp processes sharing the file. Each reserve and place
first purges the holds expired at ``now`` (the triggers take their units off
the counters), after which every remaining hold is unexpired and::

    available = on hand - sold - (held counter - this session's own hold)

is exactly the old sum over other sessions' unexpired holds, read with three
primary-key look-ups. A database created before the counters gets the table
and triggers at start-up, and the counters rebuilt from the holds, in one
``BEGIN IMMEDIATE`` transaction (:meth:`StockLedger.__init__`). (A hold must
never be written with ``INSERT OR REPLACE``: SQLite fires no delete trigger
for the replaced row unless recursive triggers are on.)
"""

from __future__ import annotations

import collections.abc as cabc
import json
import sqlite3

from flask_acp.errors import AdapterRejectedError
from flask_acp.models import Order
from flask_acp.store._sqlite import SQLiteDatabase

_SCHEMA = """
CREATE TABLE IF NOT EXISTS acp_catalog_sold (
    item_id TEXT PRIMARY KEY,
    quantity INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS acp_catalog_holds (
    session_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    quantity INTEGER NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (session_id, item_id)
);
CREATE INDEX IF NOT EXISTS acp_catalog_holds_item ON acp_catalog_holds (item_id, expires_at);
CREATE INDEX IF NOT EXISTS acp_catalog_holds_expiry ON acp_catalog_holds (expires_at);
CREATE TABLE IF NOT EXISTS acp_catalog_orders (
    number INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    session_id TEXT NOT NULL UNIQUE,
    order_number TEXT NOT NULL,
    permalink_url TEXT NOT NULL,
    lines TEXT NOT NULL,
    amount INTEGER,
    currency TEXT,
    payment_id TEXT,
    created_at REAL NOT NULL
);
"""

#: the per-variant held counter and the triggers that keep it equal to the sum
#: of the holds' quantities (see the module docstring)
_COUNTERS: dict[str, str] = {
    "acp_catalog_held": """
        CREATE TABLE acp_catalog_held (
            item_id TEXT PRIMARY KEY,
            quantity INTEGER NOT NULL
        )""",
    "acp_catalog_holds_count_insert": """
        CREATE TRIGGER acp_catalog_holds_count_insert AFTER INSERT ON acp_catalog_holds
        BEGIN
            INSERT OR IGNORE INTO acp_catalog_held (item_id, quantity) VALUES (NEW.item_id, 0);
            UPDATE acp_catalog_held SET quantity = quantity + NEW.quantity WHERE item_id = NEW.item_id;
        END""",
    "acp_catalog_holds_count_delete": """
        CREATE TRIGGER acp_catalog_holds_count_delete AFTER DELETE ON acp_catalog_holds
        BEGIN
            UPDATE acp_catalog_held SET quantity = quantity - OLD.quantity WHERE item_id = OLD.item_id;
        END""",
    "acp_catalog_holds_count_update": """
        CREATE TRIGGER acp_catalog_holds_count_update
        AFTER UPDATE OF item_id, quantity ON acp_catalog_holds
        BEGIN
            UPDATE acp_catalog_held SET quantity = quantity - OLD.quantity WHERE item_id = OLD.item_id;
            INSERT OR IGNORE INTO acp_catalog_held (item_id, quantity) VALUES (NEW.item_id, 0);
            UPDATE acp_catalog_held SET quantity = quantity + NEW.quantity WHERE item_id = NEW.item_id;
        END""",
}

#: ``decide(available)`` -> quantities to hold; ``available`` maps item id to
#: units available to the session (``None`` = unlimited).
Decide = cabc.Callable[[dict[str, int | None]], cabc.Mapping[str, int]]
#: ``make_order(number)`` -> the order to store; ``number`` counts from 1.
MakeOrder = cabc.Callable[[int], Order]


class StockLedger:
    """Holds, sales and orders in one SQLite file.

    :param path: database file; created with its tables if missing.
    :param busy_timeout: seconds a writer waits for SQLite's write lock.
    """

    def __init__(self, path: str, *, busy_timeout: float = 30.0) -> None:
        self.path = path
        self._db = SQLiteDatabase(path, _SCHEMA, busy_timeout=busy_timeout, setup=self._install_counters)
        self._conn = self._db.conn
        self._tx = self._db.tx
        self.close = self._db.close

    @staticmethod
    def _install_counters(db: sqlite3.Connection) -> None:
        """Create the held counter table and its triggers if the database lacks
        any of them (a file from before the counters), and then rebuild every
        counter from the holds, in one ``BEGIN IMMEDIATE`` transaction: no hold
        can change between the rebuild and the triggers taking over. A no-op
        (one read) on an up-to-date database.

        :raises sqlite3.Error: the database failed.
        """
        present = {name for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger')")} & set(_COUNTERS)
        if present == set(_COUNTERS):
            return
        for name, statement in _COUNTERS.items():
            if name not in present:
                db.execute(statement)
        db.execute("DELETE FROM acp_catalog_held")
        db.execute("INSERT INTO acp_catalog_held (item_id, quantity)"
                   " SELECT item_id, SUM(quantity) FROM acp_catalog_holds GROUP BY item_id")

    @staticmethod
    def _purge(db: sqlite3.Connection, now: float) -> None:
        """Delete the holds expired at ``now`` (Unix seconds); the delete trigger
        takes their units off the held counters."""
        db.execute("DELETE FROM acp_catalog_holds WHERE expires_at <= ?", (now,))

    @staticmethod
    def _available(db: sqlite3.Connection, item_id: str, on_hand: int | None,
                   session_id: str, now: float) -> int | None:
        """Units of ``item_id`` available to ``session_id``: on hand - sold -
        (held counter - the session's own hold). Only valid after
        :meth:`_purge` at ``now`` in the same transaction (then every hold left
        is unexpired). ``None`` when ``on_hand`` is (unlimited)."""
        if on_hand is None:
            return None
        sold, held, own = db.execute(
            "SELECT (SELECT quantity FROM acp_catalog_sold WHERE item_id = :item),"
            " (SELECT quantity FROM acp_catalog_held WHERE item_id = :item),"
            " (SELECT quantity FROM acp_catalog_holds WHERE session_id = :session AND item_id = :item)",
            {"item": item_id, "session": session_id},
        ).fetchone()
        return max(on_hand - int(sold or 0) - (int(held or 0) - int(own or 0)), 0)

    def reserve(self, session_id: str, on_hand: cabc.Mapping[str, int | None], decide: Decide,
                *, expires_at: float, now: float) -> tuple[dict[str, int | None], dict[str, int]]:
        """Replace the session's hold, atomically.

        :param on_hand: item id -> units on hand per the store file (``None`` =
            unlimited) for every item to measure.
        :param decide: called inside the transaction with the units available
            to this session per item; returns the quantities to hold.
        :param expires_at: hold expiry, Unix seconds.
        :param now: current time, Unix seconds (holds with ``expires_at <= now``
            are expired, ignored and purged).
        :returns: ``(available, held)``: units available per item before the
            hold (``None`` = unlimited), and the quantities now held.
        :raises sqlite3.Error: the database failed (including lock timeouts).
        """
        with self._tx() as db:
            self._purge(db, now)
            available = {
                item_id: self._available(db, item_id, units, session_id, now)
                for item_id, units in on_hand.items()
            }
            held = {item_id: qty for item_id, qty in decide(dict(available)).items() if qty > 0}
            db.execute("DELETE FROM acp_catalog_holds WHERE session_id = ?", (session_id,))
            db.executemany(
                "INSERT INTO acp_catalog_holds (session_id, item_id, quantity, expires_at)"
                " VALUES (?, ?, ?, ?)",
                [(session_id, item_id, qty, expires_at) for item_id, qty in held.items()],
            )
        return available, held

    def place(self, session_id: str, wanted: cabc.Mapping[str, int],
              on_hand: cabc.Mapping[str, int | None], make_order: MakeOrder, *, now: float,
              amount: int | None = None, currency: str | None = None,
              payment_id: str | None = None) -> Order:
        """Turn the session's hold into sold units and record the order, atomically.

        Idempotent per ``session_id``: when the session already has an order it
        is returned unchanged and nothing else happens. Availability is
        re-checked (on hand - sold - other sessions' unexpired holds; expired
        holds are purged first), so an expired hold still succeeds while the
        stock is there.

        :param wanted: item id -> units to sell.
        :param on_hand: item id -> units on hand per the store file (``None`` = unlimited).
        :param make_order: builds the order from its sequence number (1, 2, ...).
        :param now: current time, Unix seconds.
        :param amount: minor units paid, kept with the order.
        :raises AdapterRejectedError: an item no longer has the units.
        :raises sqlite3.Error: the database failed.
        """
        with self._tx() as db:
            existing = self._order(db, session_id)
            if existing is not None:
                return existing
            self._purge(db, now)
            for item_id, qty in wanted.items():
                available = self._available(db, item_id, on_hand.get(item_id, 0), session_id, now)
                if available is not None and qty > available:
                    raise AdapterRejectedError(
                        f"item {item_id!r} is no longer available: {qty} wanted, {available} left"
                    )
            db.executemany(
                "INSERT INTO acp_catalog_sold (item_id, quantity) VALUES (?, ?)"
                " ON CONFLICT (item_id) DO UPDATE SET quantity = quantity + excluded.quantity",
                list(wanted.items()),
            )
            db.execute("DELETE FROM acp_catalog_holds WHERE session_id = ?", (session_id,))
            (last,) = db.execute(
                "SELECT COALESCE(MAX(number), 0) FROM acp_catalog_orders"
            ).fetchone()
            order = make_order(last + 1)
            db.execute(
                "INSERT INTO acp_catalog_orders (number, id, session_id, order_number,"
                " permalink_url, lines, amount, currency, payment_id, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (last + 1, order.id, session_id, order.order_number, order.permalink_url,
                 json.dumps(dict(wanted)), amount, currency, payment_id, now),
            )
        return order

    def release(self, session_id: str) -> None:
        """Delete the session's hold; a no-op when there is none."""
        with self._tx() as db:
            db.execute("DELETE FROM acp_catalog_holds WHERE session_id = ?", (session_id,))

    # -- inspection ----------------------------------------------------------------

    def order_for(self, session_id: str) -> Order | None:
        """The order placed for the session, if any."""
        with self._db.read() as db:
            return self._order(db, session_id)

    def held(self, session_id: str) -> dict[str, int]:
        """item id -> units held by the session (expired holds included until purged)."""
        with self._db.read() as db:
            return dict(db.execute("SELECT item_id, quantity FROM acp_catalog_holds WHERE session_id = ?",
                                   (session_id,)).fetchall())

    def held_counts(self) -> dict[str, int]:
        """item id -> units in holds per the held counters (expired holds
        included until purged; zero counters left out)."""
        with self._db.read() as db:
            return dict(db.execute("SELECT item_id, quantity FROM acp_catalog_held WHERE quantity != 0"
                                   " ORDER BY item_id").fetchall())

    def sold(self, item_id: str) -> int:
        """Units of the item sold through this ledger."""
        with self._db.read() as db:
            row = db.execute("SELECT quantity FROM acp_catalog_sold WHERE item_id = ?", (item_id,)).fetchone()
        return 0 if row is None else int(row[0])

    @staticmethod
    def _order(db: sqlite3.Connection, session_id: str) -> Order | None:
        row = db.execute(
            "SELECT id, permalink_url, order_number FROM acp_catalog_orders WHERE session_id = ?",
            (session_id,),
        ).fetchone()
        if row is None:
            return None
        return Order(id=row[0], checkout_session_id=session_id, permalink_url=row[1],
                     order_number=row[2])
