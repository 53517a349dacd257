"""WSGI entry point for benchmarking the ACP example app under gunicorn.

    gunicorn --pythonpath <repo>,<repo>/benchmarks acp_wsgi:app

Serves ``example_app.app`` unchanged (embedded catalog, SQLite store,
FakePaymentProcessor), configured through the example app's own environment
variables (``ACP_API_KEYS``, ``ACP_SQLITE_PATH``, ``ACP_CATALOG_FILE``,
``ACP_STORE_FILE``).

The only thing done here: the example app puts the FakePaymentProcessor ledger
in ``app.instance_path`` (``<repo>/instance`` by default). So that a benchmark
run leaves nothing behind in the repository, ``BENCH_INSTANCE_PATH`` (when
set) replaces Flask's automatic instance folder *before* ``example_app`` is
imported. No flask_acp code path is touched.
"""

from __future__ import annotations

import os

import flask

_instance = os.environ.get("BENCH_INSTANCE_PATH")
if _instance:
    def _bench_instance_path(self: flask.Flask) -> str:
        return _instance  # type: ignore[return-value]

    flask.Flask.auto_find_instance_path = _bench_instance_path  # type: ignore[method-assign]

import example_app  # noqa: E402

app = example_app.app
