"""What the MCP binding costs per call, against the same call over REST.

    python benchmarks/bench_mcp.py [--calls 300] [--rounds 3]

One app (embedded catalog, SQLite, fake processor) with ``ACP_MCP_ENABLED``,
served by werkzeug's threaded server on loopback; one keep-alive
``requests.Session`` sends ``get_checkout_session`` as a raw JSON-RPC POST to
``/mcp`` and ``GET /checkout_sessions/{id}`` to the REST route, alternately
per round. Prints the mean milliseconds per call of each and their ratio
(MCP / REST): the price of the per-request event loop and the SDK's stateless
transport around the same pipeline call.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile
import time

import requests

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flask_acp.testing import acp_headers  # noqa: E402
from tests.conftest import AGENT_KEY  # noqa: E402
from tests.conftest import Agent  # noqa: E402
from tests.conftest import build_app  # noqa: E402
from tests.conftest import serve_app  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    app = build_app(pathlib.Path(tempfile.mkdtemp(prefix="acp-bench-mcp-")), ACP_MCP_ENABLED=True,
                    # counted, never reached (one agent, one address, many calls)
                    ACP_RATE_LIMIT_PER_IP="1000000/minute", ACP_RATE_LIMIT_PER_AGENT="1000000/minute")
    sid = Agent(app.test_client()).create().get_json()["id"]
    mcp_headers = {"Authorization": f"Bearer {AGENT_KEY}", "Content-Type": "application/json",
                   "Accept": "application/json, text/event-stream"}
    call = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "get_checkout_session", "arguments": {"meta": {"api_version": "2026-04-17"}, "id": sid}}})
    with serve_app(app) as url, requests.Session() as http:
        for round_ in range(1, args.rounds + 1):
            start = time.perf_counter()
            for _ in range(args.calls):
                response = http.get(f"{url}/checkout_sessions/{sid}", headers=acp_headers(AGENT_KEY))
                assert response.status_code == 200
            rest = (time.perf_counter() - start) / args.calls
            start = time.perf_counter()
            for _ in range(args.calls):
                response = http.post(f"{url}/mcp", data=call, headers=mcp_headers)
                assert "result" in response.json()
            mcp = (time.perf_counter() - start) / args.calls
            print(f"round {round_}: REST {rest * 1000:.2f} ms/call, MCP {mcp * 1000:.2f} ms/call, "
                  f"ratio {mcp / rest:.2f}")


if __name__ == "__main__":
    main()
