"""CPU cost of one stock reservation of the embedded catalog with many open holds:
the old ``SUM`` over every hold vs the per-variant held counter, in one run.

    python benchmarks/bench_stock.py [--holds 100000] [--rounds 40]

One SQLite file in a temporary directory holds ``--holds`` unexpired holds of
one unit each of the same variant (as many open checkout sessions would). Each
round reserves one unit of that variant for a fresh session with
``StockLedger.reserve`` (purge of expired holds, availability, hold insert:
what a session create or update does in the ledger) and releases it again,
alternating between the current ledger (held counter) and a subclass whose
availability is the query the ledger ran before the counters. Both share the
file, so both pay the same writes and triggers; only the availability read
differs. Reported: process CPU time per reserve (``time.process_time``),
median of the rounds, and the ratio old / new.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from flask_acp.catalog.stock import StockLedger  # noqa: E402

ITEM = "item_hot"
ON_HAND = {ITEM: 10_000_000}


class OldQueryLedger(StockLedger):
    """The ledger with the availability query it had before the held counters."""

    @staticmethod
    def _available(db: sqlite3.Connection, item_id: str, on_hand: int | None,
                   session_id: str, now: float) -> int | None:
        if on_hand is None:
            return None
        (sold,) = db.execute(
            "SELECT COALESCE(SUM(quantity), 0) FROM acp_catalog_sold WHERE item_id = ?",
            (item_id,),
        ).fetchone()
        (held,) = db.execute(
            "SELECT COALESCE(SUM(quantity), 0) FROM acp_catalog_holds"
            " WHERE item_id = ? AND session_id != ? AND expires_at > ?",
            (item_id, session_id, now),
        ).fetchone()
        return max(on_hand - int(sold) - int(held), 0)


def one_reserve(ledger: StockLedger, session_id: str, now: float) -> float:
    """CPU seconds of one reserve of one unit (the hold is released afterwards, untimed)."""
    seen: dict[str, int | None] = {}

    def decide(available: dict[str, int | None]) -> dict[str, int]:
        seen.update(available)
        return {ITEM: 1}

    started = time.process_time()
    ledger.reserve(session_id, ON_HAND, decide, expires_at=now + 3600, now=now)
    spent = time.process_time() - started
    ledger.release(session_id)
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--holds", type=int, default=100_000, help="open holds (default 100000)")
    parser.add_argument("--rounds", type=int, default=40, help="reserves timed per variant (default 40)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="acp-bench-stock-") as directory:
        path = os.path.join(directory, "stock.sqlite3")
        new, old = StockLedger(path), OldQueryLedger(path)
        now = time.time()
        with new._tx() as db:
            db.executemany(
                "INSERT INTO acp_catalog_holds (session_id, item_id, quantity, expires_at)"
                " VALUES (?, ?, 1, ?)",
                ((f"cs_open_{n}", ITEM, now + 7200) for n in range(args.holds)))
        assert new.held_counts() == {ITEM: args.holds}
        one_reserve(new, "cs_warm_new", now)  # warm the page cache and statement caches
        one_reserve(old, "cs_warm_old", now)
        timings: dict[str, list[float]] = {"old": [], "new": []}
        for n in range(args.rounds):
            timings["old"].append(one_reserve(old, f"cs_old_{n}", now))
            timings["new"].append(one_reserve(new, f"cs_new_{n}", now))
        assert new.held_counts() == {ITEM: args.holds}
        old_ms = statistics.median(timings["old"]) * 1000
        new_ms = statistics.median(timings["new"]) * 1000
        print(f"open holds: {args.holds} (one unit each, one variant); rounds: {args.rounds} each")
        for label, key, median in (("old SUM query", "old", old_ms), ("held counter ", "new", new_ms)):
            print(f"{label} : {median:9.3f} ms CPU per reserve (median; min {min(timings[key]) * 1000:.3f},"
                  f" max {max(timings[key]) * 1000:.3f})")
        print(f"ratio old/new : {old_ms / new_ms:.0f}x")
        old.close()
        new.close()


if __name__ == "__main__":
    main()
