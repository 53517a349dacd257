"""Count the WooCommerce calls each ACP operation makes through the WooCommerce adapter.

    python benchmarks/bench_woocommerce_calls.py [-v]

Runs FakeWooCommerce (the demo seed) on a loopback port and an in-process ACP
app (``ACP_ADAPTER="woocommerce"``, FakePaymentProcessor, temporary SQLite),
drives one session through create → update (address) → update (shipping
choice) → update (quantities) → complete, and a second one through create →
cancel, and prints the HTTP calls per operation (a ``POST /wc/store/v1/batch``
counts as one; ``-v`` also lists the calls inside it and every call in order).
Targets: create <= 3, update <= 3, complete <= 6. The last line is one JSON
object with the counts; the exit status is 1 when a target is missed.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import typing as t
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from flask import Flask  # noqa: E402

from flask_acp import ACP  # noqa: E402
from flask_acp.testing import FakePaymentProcessor  # noqa: E402
from flask_acp.testing import acp_headers  # noqa: E402
from flask_acp.testing.fake_woocommerce import FakeWooCommerce  # noqa: E402

KEY = "bench-key-0123456789abcdef"
ADDRESS = {"name": "Ada Lovelace", "line_one": "1 Main St", "city": "San Francisco",
           "state": "CA", "country": "US", "postal_code": "94131"}
TARGETS = {"create": 3, "update": 3, "complete": 6}


def main(argv: list[str]) -> int:
    verbose = "-v" in argv
    counts: dict[str, dict[str, t.Any]] = {}
    with FakeWooCommerce() as woo, tempfile.TemporaryDirectory() as tmp:
        app = Flask(__name__, instance_path=tmp)
        app.config.update(TESTING=True, ACP_AGENTS={"bench": {"api_keys": [KEY]}},
                          ACP_SQLITE_PATH=os.path.join(tmp, "acp.sqlite3"), **woo.config())
        ACP(app, payment_processor=FakePaymentProcessor())
        client = app.test_client()

        def call(op: str, path: str, body: t.Any) -> dict[str, t.Any]:
            woo.reset_counts()
            response = client.post(path, data=json.dumps(body),
                                   headers=acp_headers(KEY, idempotency_key=str(uuid.uuid4())))
            if response.status_code >= 300:
                raise SystemExit(f"{op}: HTTP {response.status_code} {response.get_json()}")
            calls = woo.calls
            counts[op] = {"calls": sum(1 for c in calls if not c.batched), "by_route": woo.counts,
                          "batched": woo.batched_counts}
            if verbose:
                print(f"  {op}:")
                for c in calls:
                    print(f"    {'  [batch] ' if c.batched else ''}{c.route} -> {c.status}")
            return t.cast(dict[str, t.Any], response.get_json())

        session = call("create", "/checkout_sessions", {
            "currency": "usd", "capabilities": {},
            "line_items": [{"id": "10", "quantity": 2}, {"id": "12"}]})
        sid = session["id"]
        call("update (address + buyer)", f"/checkout_sessions/{sid}", {
            "fulfillment_details": {"name": "Ada Lovelace", "address": ADDRESS},
            "buyer": {"email": "ada@example.com"}})
        call("update (shipping choice)", f"/checkout_sessions/{sid}", {
            "selected_fulfillment_options": [{"type": "shipping", "option_id": "0:flat_rate:3",
                                              "item_ids": ["10"]}]})
        call("update (quantities)", f"/checkout_sessions/{sid}", {
            "line_items": [{"id": "10", "quantity": 3}, {"id": "11"}]})
        done = call("complete", f"/checkout_sessions/{sid}/complete", {"payment_data": {
            "handler_id": "card_tokenized",
            "instrument": {"type": "card", "credential": {"type": "spt", "token": "spt_bench"}}}})
        if done.get("status") != "completed":
            raise SystemExit(f"complete did not complete: {done.get('messages')}")
        other = call("create (second session)", "/checkout_sessions", {
            "currency": "usd", "capabilities": {}, "line_items": [{"id": "13"}],
            "fulfillment_details": {"name": "Ada Lovelace", "address": ADDRESS}})
        call("cancel", f"/checkout_sessions/{other['id']}/cancel", {})
        app.extensions["acp"].adapter.close()

    width = max(len(op) for op in counts)
    print(f"{'ACP operation':<{width}}  calls  WooCommerce calls (batched cart calls)")
    missed = []
    for op, row in counts.items():
        target = TARGETS.get(op.split(" ")[0])
        flag = ""
        if target is not None:
            flag = f"  (target <= {target})" if row["calls"] <= target else f"  MISSED target {target}"
            if row["calls"] > target:
                missed.append(op)
        routes = ", ".join(f"{n} x {r}" for r, n in row["by_route"].items())
        inner = ", ".join(f"{n} x {r.rsplit('/', 1)[1]}" for r, n in row["batched"].items())
        print(f"{op:<{width}}  {row['calls']:>5}  {routes}{f' [{inner}]' if inner else ''}{flag}")
    print(json.dumps({op: row["calls"] for op, row in counts.items()}))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
