"""Count the SQLite work of each checkout operation, flask-acp vs the baseline.

    python benchmarks/count_store_ops.py [-v]

Runs both apps in-process (Flask test client, temporary files, the benchmark
catalog in benchmarks/data/) with ``set_trace_callback`` on every SQLite
connection, and prints per operation: write transactions (``BEGIN
IMMEDIATE``), statements inside them, autocommit statements, new connections
and PRAGMAs. ``-v`` prints every statement. This is how the counts in
baseline_app.py's docstring were obtained.
"""

from __future__ import annotations

import collections
import os
import sqlite3
import sys
import tempfile
import typing as t
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
KEY = "bench-key-0123456789abcdef"
ADDRESS = {"name": "Ada Lovelace", "line_one": "1 Main St", "city": "San Francisco",
           "state": "CA", "country": "US", "postal_code": "94131"}
PAYMENT = {"payment_data": {"handler_id": "card_tokenized", "instrument": {
    "type": "card", "credential": {"type": "spt", "token": "spt_bench"}}}}

_LOG: list[tuple[int, str, str]] = []
_real_connect = sqlite3.connect


def _connect(*args: t.Any, **kwargs: t.Any) -> sqlite3.Connection:
    conn = _real_connect(*args, **kwargs)
    name = os.path.basename(str(args[0] if args else kwargs.get("database")))
    cid = id(conn)
    _LOG.append((cid, name, "<connect>"))
    conn.set_trace_callback(lambda s: _LOG.append((cid, name, " ".join(s.split()))))
    return conn


def summarize(log: list[tuple[int, str, str]]) -> dict[str, int]:
    out: collections.Counter[str] = collections.Counter()
    in_tx: dict[int, bool] = {}
    for cid, _name, stmt in log:
        head = stmt.split(" ", 1)[0].upper()
        if stmt == "<connect>":
            out["connects"] += 1
        elif head == "PRAGMA":
            out["pragmas"] += 1
        elif head == "BEGIN":
            out["tx"] += 1
            in_tx[cid] = True
        elif head in ("COMMIT", "ROLLBACK"):
            in_tx[cid] = False
        elif in_tx.get(cid):
            out["stmts_in_tx"] += 1
        else:
            out["autocommit_stmts"] += 1
    return dict(out)


def scenario(client: t.Any, headers: t.Callable[[], dict[str, str]],
             verbose: bool) -> dict[str, dict[str, int]]:
    results = {}

    def run(label: str, call: t.Callable[[], t.Any], expect: int) -> t.Any:
        call()  # warm: first-use connections are not per-request work
        _LOG.clear()
        response = call()
        assert response.status_code == expect, (label, response.status_code, response.data[:300])
        results[label] = summarize(_LOG) | {"body_bytes": len(response.data)}
        if verbose:
            print(f"-- {label}")
            for _cid, name, stmt in _LOG:
                print(f"   {name}: {stmt[:120]}")
        return response

    def create(address: bool = False) -> t.Any:
        body: dict[str, t.Any] = {"currency": "usd", "line_items": [{"id": "item_123", "quantity": 1}],
                                  "capabilities": {}}
        if address:
            body["fulfillment_details"] = {"address": ADDRESS}
        return client.post("/checkout_sessions", json=body, headers=headers())

    sid = run("create", create, 201).get_json()["id"]
    qty = iter(range(2, 100))
    run("update", lambda: client.post(f"/checkout_sessions/{sid}", json={
        "line_items": [{"id": "item_123", "quantity": next(qty) % 9 + 1}],
        "fulfillment_details": {"address": ADDRESS}}, headers=headers()), 200)
    run("get", lambda: client.get(f"/checkout_sessions/{sid}", headers=headers()), 200)
    ready = [create(address=True).get_json()["id"] for _ in range(2)]
    run("complete", lambda: client.post(f"/checkout_sessions/{ready.pop()}/complete", json=PAYMENT,
                                        headers=headers()), 200)
    return results


def main() -> None:
    verbose = "-v" in sys.argv
    sqlite3.connect = _connect  # type: ignore[assignment]
    sys.path[:0] = [REPO, HERE]
    tmp = tempfile.mkdtemp(prefix="acp-count-")
    os.environ.update({
        "BENCH_INSTANCE_PATH": os.path.join(tmp, "instance"),
        "ACP_API_KEYS": "bench:" + KEY,
        "ACP_SQLITE_PATH": os.path.join(tmp, "acp.sqlite3"),
        "ACP_CATALOG_FILE": os.path.join(HERE, "data", "feed.json"),
        "ACP_STORE_FILE": os.path.join(HERE, "data", "store.json"),
        "BASELINE_SQLITE_PATH": os.path.join(tmp, "baseline.sqlite3"),
    })
    import acp_wsgi
    import baseline_app

    from flask_acp.testing import acp_headers

    print("== flask-acp")
    acp = scenario(acp_wsgi.app.test_client(), lambda: acp_headers(KEY), verbose)
    print("== baseline")
    base = scenario(baseline_app.app.test_client(),
                    lambda: {"Idempotency-Key": str(uuid.uuid4())}, verbose)
    keys = ("tx", "stmts_in_tx", "autocommit_stmts", "connects", "pragmas", "body_bytes")
    print(f"{'op':9} {'side':9} " + " ".join(f"{k:>16}" for k in keys))
    for op in acp:
        for side, res in (("acp", acp), ("baseline", base)):
            print(f"{op:9} {side:9} " + " ".join(f"{res[op].get(k, 0):>16}" for k in keys))
    import shutil
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
