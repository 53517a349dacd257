"""A WSGI app factory for the multi-process tests (``tests/test_concurrency.py``).

    gunicorn -w 4 'tests.gunicorn_app:create_app()'

Configured from the environment so that every worker process builds the same
app over the same files:

- ``ACP_TEST_DIR`` (required): directory of the SQLite session store
  (``acp.sqlite3``) and of the fake processor's shared ledger (``ledger.sqlite3``).
- ``ACP_CATALOG_FILE`` / ``ACP_STORE_FILE``: catalog data (default ``tests/data``).
- ``ACP_TEST_CONFIG``: a JSON object of further settings (``{"ACP_TRUSTED_PROXY_HOPS": 1}``).
"""

from __future__ import annotations

import json
import os
import pathlib

from flask import Flask

from flask_acp import ACP
from flask_acp.testing import FakePaymentProcessor

DATA = pathlib.Path(__file__).parent / "data"
AGENT_KEY = "agent-one-key-0123456789"


def create_app() -> Flask:
    directory = pathlib.Path(os.environ["ACP_TEST_DIR"])
    app = Flask(__name__, instance_path=str(directory / "instance"))
    app.config.update(
        ACP_AGENTS={"agent-one": {"api_keys": [AGENT_KEY]}},
        ACP_SQLITE_PATH=str(directory / "acp.sqlite3"),
        ACP_CATALOG_FILE=os.environ.get("ACP_CATALOG_FILE") or str(DATA / "feed.json"),
        ACP_STORE_FILE=os.environ.get("ACP_STORE_FILE") or str(DATA / "store.json"),
        ACP_ALLOW_INSECURE_LOOPBACK=True,
        ACP_FORCE_INSECURE_LOOPBACK=True,
        ACP_API_BASE_URL="https://shop.example",
        ACP_LINKS=[{"type": "terms_of_use", "url": "https://shop.example/terms"}],
    )
    app.config.update(json.loads(os.environ.get("ACP_TEST_CONFIG") or "{}"))
    ACP(app, payment_processor=FakePaymentProcessor(str(directory / "ledger.sqlite3")))
    return app
