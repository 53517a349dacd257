"""WSGI entry point for benchmarking flask-acp under gunicorn.

    gunicorn --pythonpath <repo>,<repo>/benchmarks acp_wsgi:app

The ACP blueprint on the embedded default (SQLite store, catalog adapter) with
the test-double payment processor (``FakePaymentProcessor``, its ledger in a
SQLite file shared by the workers), configured from the environment:
``ACP_API_KEYS`` (``name:token``), ``ACP_SQLITE_PATH`` or ``ACP_STORE_URL`` (a Redis:
``benchmarks/bench_stores.py``; the order webhooks then stay in the outbox), ``ACP_CATALOG_FILE``,
``ACP_STORE_FILE`` and ``BENCH_INSTANCE_PATH`` (a temp folder for the ledger).
"""

from __future__ import annotations

import os
import tempfile

from flask import Flask

from flask_acp import ACP
from flask_acp.testing import FakePaymentProcessor

_instance = os.environ.get("BENCH_INSTANCE_PATH") or tempfile.mkdtemp(prefix="acp-bench-")
os.makedirs(_instance, exist_ok=True)
name, _, token = os.environ.get("ACP_API_KEYS", "bench:bench-agent-key-0123456789").partition(":")

app = Flask(__name__, instance_path=_instance)
app.config.update(
    ACP_AGENTS={name: {"api_keys": [token]}},
    ACP_ALLOW_INSECURE_LOOPBACK=True,
    ACP_FORCE_INSECURE_LOOPBACK=True,  # plain HTTP from the local benchmark clients
    ACP_API_BASE_URL="https://shop.example",
    ACP_LINKS=[{"type": "terms_of_use", "url": "https://shop.example/terms"}],
    ACP_REDIS_URL="",  # no RQ: with no agent webhook_url the events stay in the outbox
    # the limits are counted (their cost is part of what is measured) but never reached:
    # one benchmark agent on one address sends thousands of requests a minute
    ACP_RATE_LIMIT_PER_IP="1000000/minute", ACP_RATE_LIMIT_PER_AGENT="1000000/minute",
    ACP_RATE_LIMIT_COMPLETE_PER_AGENT="1000000/minute",
)
for key in ("ACP_SQLITE_PATH", "ACP_STORE_URL", "ACP_CATALOG_FILE", "ACP_STORE_FILE"):
    if os.environ.get(key):
        app.config[key] = os.environ[key]
ACP(app, payment_processor=FakePaymentProcessor(os.path.join(_instance, "ledger.sqlite3")))
