from __future__ import annotations

import collections.abc as cabc
import contextlib
import hashlib
import json
import os
import pathlib
import threading
import typing as t
import uuid

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import WSGIRequestHandler
from werkzeug.serving import make_server
from werkzeug.test import TestResponse

from flask_acp import ACP
from flask_acp.testing import FakePaymentProcessor
from flask_acp.testing import acp_headers
from tests.redis_servers import redis_cluster  # noqa: F401 - session fixtures shared by every module
from tests.redis_servers import redis_single  # noqa: F401
from tests.spec import validate_cart_response
from tests.spec import validate_response

pytest.register_assert_rewrite("flask_acp.testing.storage_contract")

DATA = pathlib.Path(__file__).parent / "data"
AGENT_KEY = "agent-one-key-0123456789"
AGENT_KEY_ROTATED = "agent-one-key-rotated-99999"
OTHER_KEY = "agent-two-key-0123456789"
#: ``build_app(..., payment_processor=FROM_CONFIG)``: no processor instance; the
#: extension builds the Stripe processor from the ``ACP_STRIPE_*`` keys.
FROM_CONFIG: t.Any = object()
ADDRESS = {"name": "Ada Lovelace", "line_one": "1 Main St", "city": "San Francisco",
           "state": "CA", "country": "US", "postal_code": "94131"}


class ValidatingClient(FlaskClient):
    """A test client that validates every ACP response body against the
    official JSON Schema of the version the request asked for (``API-Version``)
    before the test sees it."""

    def open(self, *args: t.Any, **kwargs: t.Any) -> TestResponse:  # type: ignore[override]
        response = super().open(*args, **kwargs)
        path = response.request.path
        before, found, after = path.partition("/carts")
        if found and before in ("", "/acp") and after[:1] in ("", "/"):
            # the Cart API: a success per openapi.cart.yaml (its status and Cart), an error as Error
            assert response.mimetype == "application/json", (response.status, response.data[:200])
            validate_cart_response(response.request.method, path, response.status_code, response.get_json(),
                                   response.request.headers.get("API-Version"))
        elif path.startswith("/checkout_sessions") or path.startswith("/acp/") or path.endswith("acp.json"):
            assert response.mimetype == "application/json", (response.status, response.data[:200])
            validate_response(path, response.status_code, response.get_json(),
                              response.request.headers.get("API-Version"))
        return response


def build_app(tmp_path: pathlib.Path, **config: t.Any) -> Flask:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.test_client_class = ValidatingClient
    app.config.update(
        TESTING=True,
        ACP_AGENTS={
            "agent-one": {"api_keys": [AGENT_KEY, AGENT_KEY_ROTATED]},
            "agent-two": {"api_keys": [OTHER_KEY]},
        },
        ACP_SQLITE_PATH=str(tmp_path / "acp.sqlite3"),
        ACP_CATALOG_FILE=str(DATA / "feed.json"),
        ACP_STORE_FILE=str(DATA / "store.json"),
        ACP_LINKS=[{"type": "terms_of_use", "url": "https://shop.example/terms"}],
    )
    if config.get("TESTING") is False:  # a production-like app: its public URL is known
        config.setdefault("ACP_API_BASE_URL", "https://shop.example")
    store = config.pop("store", None)
    if os.environ.get("ACP_TEST_REDIS_URL") and store is None and "ACP_STORE_URL" not in config:
        # the suite on a Redis store: ACP_TEST_REDIS_URL=redis://127.0.0.1:6390/0 pytest (one key
        # prefix per test folder, as one SQLite file; tests that read SQLite files fail)
        prefix = hashlib.sha256(str(tmp_path).encode()).hexdigest()[:16]
        config["ACP_STORE_URL"] = f"{os.environ['ACP_TEST_REDIS_URL']}?key_prefix=t{prefix}:"
        config.setdefault("ACP_REDIS_URL", "")
    processor = config.pop("payment_processor", None)
    if processor is None:
        processor = FakePaymentProcessor()
    elif processor is FROM_CONFIG:
        processor = None
    app.config.update(config)
    ACP(app, payment_processor=processor, store=store)
    return app


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@contextlib.contextmanager
def serve_app(app: Flask) -> cabc.Iterator[str]:
    """Serve ``app`` over real HTTP on a free loopback port (threaded) and
    yield its base URL, e.g. ``http://127.0.0.1:54321``."""
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="acp-test-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def app(tmp_path: pathlib.Path) -> Flask:
    return build_app(tmp_path)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


class Agent:
    """Drives the ACP API like an agent would, through a test client."""

    def __init__(self, client: FlaskClient, key: str = AGENT_KEY) -> None:
        self.client = client
        self.key = key

    def headers(self, **extra: str) -> dict[str, str]:
        return acp_headers(self.key, **extra)

    def post(self, path: str, body: t.Any = None, *, key: str | None = None, **headers: str) -> TestResponse:
        h = acp_headers(self.key, idempotency_key=key or str(uuid.uuid4()), **headers)
        data = b"" if body is None else json.dumps(body)
        return self.client.post(path, data=data, headers=h)

    def create(self, items: list[dict[str, t.Any]] | None = None, **fields: t.Any) -> TestResponse:
        body = {"currency": "usd", "line_items": items or [{"id": "item_123"}], "capabilities": {}}
        body.update(fields)
        return self.post("/checkout_sessions", body)

    def ready_session(self, items: list[dict[str, t.Any]] | None = None) -> dict[str, t.Any]:
        response = self.create(items, fulfillment_details={"address": ADDRESS})
        assert response.status_code == 201, response.get_json()
        body = response.get_json()
        assert body["status"] == "ready_for_payment", body["messages"]
        return t.cast(dict[str, t.Any], body)

    def complete(self, session_id: str, token: str | None = None, *, key: str | None = None,
                 handler_id: str = "card_tokenized") -> TestResponse:
        """Complete with ``token`` (default: one of this session's own, as an
        agent gets a fresh delegated token for every checkout)."""
        token = token or f"spt_{session_id}"
        body = {"payment_data": {"handler_id": handler_id, "instrument": {
            "type": "card", "credential": {"type": "spt", "token": token}}}}
        return self.post(f"/checkout_sessions/{session_id}/complete", body, key=key)


@pytest.fixture
def agent(client: FlaskClient) -> Agent:
    return Agent(client)
