"""cProfile one checkout operation of the ACP example app, in-process.

    python benchmarks/profile_ops.py [create|update|get|complete] [-n 2000] [--sort tottime] [--top 30]

Same app and catalog as bench_checkout.py (acp_wsgi.py, benchmarks/data/,
temporary SQLite files), driven through the Flask test client so that only
server-side work is profiled. Sessions needed by update/get/complete are
created before profiling starts.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
KEY = "bench-agent-key-0123456789abcdef"
ADDRESS = {"name": "Ada Lovelace", "line_one": "1 Main St", "city": "San Francisco",
           "state": "CA", "country": "US", "postal_code": "94131"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("op", nargs="?", default="create", choices=["create", "update", "get", "complete"])
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="acp-profile-")
    try:
        os.environ.update({
            "BENCH_INSTANCE_PATH": os.path.join(tmp, "instance"),
            "ACP_API_KEYS": "bench:" + KEY,
            "ACP_SQLITE_PATH": os.path.join(tmp, "acp.sqlite3"),
            "ACP_CATALOG_FILE": os.path.join(HERE, "data", "feed.json"),
            "ACP_STORE_FILE": os.path.join(HERE, "data", "store.json"),
        })
        sys.path[:0] = [REPO, HERE]
        import acp_wsgi

        from flask_acp.testing import acp_headers

        client = acp_wsgi.app.test_client()
        items = ["item_123"] + [f"bench_{i:02d}" for i in range(1, 64)]

        def create(i: int, address: bool = False) -> str:
            body: dict[str, object] = {"currency": "usd", "capabilities": {},
                                       "line_items": [{"id": items[i % 64], "quantity": 1}]}
            if address:
                body["fulfillment_details"] = {"address": ADDRESS}
            r = client.post("/checkout_sessions", data=json.dumps(body), headers=acp_headers(KEY))
            assert r.status_code == 201, r.data[:300]
            return str(r.get_json()["id"])

        pool = [create(i, args.op == "complete") for i in range(args.n if args.op == "complete" else 8)]

        def one(i: int) -> None:
            if args.op == "create":
                create(i)
            elif args.op == "update":
                sid = pool[i % len(pool)]
                r = client.post(f"/checkout_sessions/{sid}", headers=acp_headers(KEY), data=json.dumps({
                    "line_items": [{"id": items[pool.index(sid) % 64], "quantity": i % 5 + 1}],
                    "fulfillment_details": {"address": ADDRESS}}))
                assert r.status_code == 200, r.data[:300]
            elif args.op == "get":
                r = client.get(f"/checkout_sessions/{pool[i % len(pool)]}", headers=acp_headers(KEY))
                assert r.status_code == 200
            else:
                r = client.post(f"/checkout_sessions/{pool[i]}/complete", headers=acp_headers(KEY),
                                data=json.dumps({"payment_data": {"handler_id": "card_tokenized",
                                                 "instrument": {"type": "card", "credential": {
                                                     "type": "spt", "token": "spt_bench"}}}}))
                assert r.status_code == 200, r.data[:300]
                assert b'"status":"completed"' in r.data, r.data[:300]

        for i in range(min(50, args.n // 10)):  # warm-up, untimed
            if args.op != "complete":
                one(i)
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.enable()
        for i in range(args.n):
            one(i)
        prof.disable()
        elapsed = time.perf_counter() - t0
        print(f"{args.op}: {args.n} requests in {elapsed:.2f} s under cProfile "
              f"({elapsed / args.n * 1000:.2f} ms/request incl. test-client and profiler overhead)")
        pstats.Stats(prof).sort_stats(args.sort).print_stats(args.top)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
