"""The embedded catalog's held counters (flask_acp.catalog.stock): one row per
variant holding the sum of its holds, kept by SQLite triggers, instead of a
SUM over every open hold on each reserve.

A random mix of reserve / release / place / expiry (hypothesis) must leave the
counters equal to the sum of the holds, every availability the ledger computes
equal to the old query's (on hand - sold - other sessions' unexpired holds),
and never more sold and held than on hand. A database from before the counters
gets them rebuilt from its holds. Real SQLite files, no mocks.
"""

from __future__ import annotations

import pathlib
import sqlite3
import tempfile
import typing as t

import hypothesis.strategies as st
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings

from flask_acp.catalog import stock
from flask_acp.catalog.stock import StockLedger
from flask_acp.errors import AdapterRejectedError
from flask_acp.models import Order
from flask_acp.store._sqlite import SQLiteDatabase

ON_HAND: dict[str, int | None] = {"a": 5, "b": 2, "c": None}
SESSIONS = [f"cs_{n}" for n in range(5)]
#: the query StockLedger._available ran before the counters
OLD_HELD = ("SELECT COALESCE(SUM(quantity), 0) FROM acp_catalog_holds"
            " WHERE item_id = ? AND session_id != ? AND expires_at > ?")


def sums(db: sqlite3.Connection) -> dict[str, int]:
    """item id -> sum of the quantities of every hold row (expired or not)."""
    rows = db.execute("SELECT item_id, SUM(quantity) FROM acp_catalog_holds GROUP BY item_id"
                      " HAVING SUM(quantity) != 0 ORDER BY item_id")
    return dict(rows.fetchall())


def old_available(db: sqlite3.Connection, item_id: str, session_id: str, now: float) -> int | None:
    units = ON_HAND[item_id]
    if units is None:
        return None
    (sold,) = db.execute("SELECT COALESCE(SUM(quantity), 0) FROM acp_catalog_sold WHERE item_id = ?",
                         (item_id,)).fetchone()
    (held,) = db.execute(OLD_HELD, (item_id, session_id, now)).fetchone()
    return max(units - int(sold) - int(held), 0)


def order(session_id: str) -> t.Callable[[int], Order]:
    return lambda number: Order(id=f"ord_{session_id}", checkout_session_id=session_id,
                                permalink_url=f"https://shop.test/{number}", order_number=f"#{number}")


_session = st.sampled_from(SESSIONS)
_ops = st.one_of(
    st.tuples(st.just("reserve"), _session,
              st.fixed_dictionaries({k: st.integers(0, 4) for k in ON_HAND}), st.integers(1, 90)),
    st.tuples(st.just("release"), _session),
    st.tuples(st.just("place"), _session,  # its own hold, or other quantities (the hold may be gone)
              st.none() | st.fixed_dictionaries({k: st.integers(0, 3) for k in ON_HAND})),
    st.tuples(st.just("wait"), st.integers(0, 60)),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_ops, min_size=1, max_size=15))
def test_counters_equal_the_holds_after_any_mix_of_operations(ops: list[tuple[t.Any, ...]]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        ledger = StockLedger(str(pathlib.Path(directory) / "stock.sqlite3"))
        db = ledger._conn()  # this thread's connection: sees the ledger's open transaction
        now = 1000.0
        try:
            for op in ops:
                if op[0] == "reserve":
                    _, session_id, wanted, ttl = op
                    seen: dict[str, int | None] = {}

                    def decide(available: dict[str, int | None], session_id: str = session_id,
                               wanted: dict[str, int] = wanted, now: float = now,
                               seen: dict[str, int | None] = seen) -> dict[str, int]:
                        # inside reserve's transaction, after its purge: the counters
                        # give what the old SUM query gives
                        for item_id, units in available.items():
                            assert units == old_available(db, item_id, session_id, now), item_id
                        seen.update(available)
                        return {i: q if available[i] is None else min(q, t.cast(int, available[i]))
                                for i, q in wanted.items()}

                    ledger.reserve(session_id, ON_HAND, decide, expires_at=now + ttl, now=now)
                    assert set(seen) == set(ON_HAND)
                elif op[0] == "release":
                    ledger.release(op[1])
                elif op[0] == "place":
                    wanted = ledger.held(op[1]) if op[2] is None else {i: q for i, q in op[2].items() if q}
                    if wanted and ledger.order_for(op[1]) is None:
                        # the old query decides whether the units are still there
                        fits = all(ON_HAND[i] is None or q <= t.cast(int, old_available(db, i, op[1], now))
                                   for i, q in wanted.items())
                        try:
                            ledger.place(op[1], wanted, ON_HAND, order(op[1]), now=now)
                            placed = True
                        except AdapterRejectedError:
                            placed = False
                        assert placed == fits, (wanted, now)
                else:
                    now += op[1]
                assert ledger.held_counts() == sums(db)
                for item_id, units in ON_HAND.items():
                    if units is not None:  # never oversold: sold + unexpired holds <= on hand
                        (held_now,) = db.execute(OLD_HELD, (item_id, "", now)).fetchone()
                        assert ledger.sold(item_id) + held_now <= units
        finally:
            ledger.close()


def test_counters_follow_every_write_path(tmp_path: pathlib.Path) -> None:
    ledger = StockLedger(str(tmp_path / "stock.sqlite3"))

    def hold(quantities: dict[str, int]) -> t.Callable[[dict[str, int | None]], dict[str, int]]:
        return lambda available: quantities

    ledger.reserve("cs_1", ON_HAND, hold({"a": 2, "b": 1}), expires_at=100, now=0)
    ledger.reserve("cs_2", ON_HAND, hold({"a": 3}), expires_at=50, now=0)
    assert ledger.held_counts() == {"a": 5, "b": 1}
    ledger.reserve("cs_1", ON_HAND, hold({"a": 1}), expires_at=100, now=0)  # replaced, not added
    assert ledger.held_counts() == {"a": 4}
    ledger.release("cs_1")
    assert ledger.held_counts() == {"a": 3}
    ledger.reserve("cs_3", ON_HAND, hold({"b": 2}), expires_at=100, now=60)  # purges cs_2 (expired)
    assert ledger.held_counts() == {"b": 2}
    ledger.place("cs_3", {"b": 2}, ON_HAND, order("cs_3"), now=60)
    assert ledger.held_counts() == {}
    assert ledger.sold("b") == 2
    ledger.close()


def test_place_ignores_expired_holds_nobody_purged_yet(tmp_path: pathlib.Path) -> None:
    ledger = StockLedger(str(tmp_path / "stock.sqlite3"))
    ledger.reserve("cs_1", ON_HAND, lambda available: {"b": 2}, expires_at=50, now=0)
    ledger.reserve("cs_2", ON_HAND, lambda available: {}, expires_at=500, now=0)
    # at 60 cs_1's hold has expired, and no reserve has purged it: cs_2 gets both units
    ledger.place("cs_2", {"b": 2}, ON_HAND, order("cs_2"), now=60)
    assert (ledger.sold("b"), ledger.held_counts()) == (2, {})
    ledger.close()


def test_an_existing_database_gets_counters_rebuilt_from_its_holds(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "old.sqlite3")
    old = SQLiteDatabase(path, stock._SCHEMA)  # the tables as before the counters
    with old.tx() as db:
        db.executemany("INSERT INTO acp_catalog_holds (session_id, item_id, quantity, expires_at)"
                       " VALUES (?, ?, ?, ?)",
                       [("cs_1", "a", 2, 100), ("cs_2", "a", 1, 100), ("cs_2", "b", 1, 5)])
        db.execute("INSERT INTO acp_catalog_sold (item_id, quantity) VALUES ('a', 1)")
    old.close()

    ledger = StockLedger(path)
    assert ledger.held_counts() == {"a": 3, "b": 1}  # the expired hold counts until purged
    seen: dict[str, int | None] = {}
    ledger.reserve("cs_3", ON_HAND, lambda available: seen.update(available) or {}, expires_at=200,
                   now=10)
    assert seen == {"a": 5 - 1 - 3, "b": 2, "c": None}
    assert ledger.held_counts() == {"a": 3}  # cs_2's expired b purged, and counted off

    # a process still running the old code writes holds with plain SQL: counted too
    with old.tx() as db:
        db.execute("INSERT INTO acp_catalog_holds (session_id, item_id, quantity, expires_at)"
                   " VALUES ('cs_9', 'b', 2, 300)")
        db.execute("DELETE FROM acp_catalog_holds WHERE session_id = 'cs_1'")
    assert ledger.held_counts() == {"a": 1, "b": 2}
    old.close()
    ledger.close()

    # opening an up-to-date database again keeps the counters as they are
    assert StockLedger(path).held_counts() == {"a": 1, "b": 2}


def test_a_missing_trigger_is_recreated_and_the_counters_rebuilt(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "stock.sqlite3")
    ledger = StockLedger(path)
    ledger.reserve("cs_1", ON_HAND, lambda available: {"a": 2}, expires_at=100, now=0)
    ledger.close()
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("DROP TRIGGER acp_catalog_holds_count_insert")
    raw.execute("INSERT INTO acp_catalog_holds VALUES ('cs_2', 'a', 1, 100)")  # not counted
    raw.close()
    assert StockLedger(path).held_counts() == {"a": 3}
