"""Example merchant app: flask-acp on the embedded default.

    python example_app.py              # serves http://127.0.0.1:8000
    gunicorn -w 4 --timeout 600 example_app:app      # the same WSGI app, several workers

Embedded default: SQLite for sessions, the catalog adapter reading the demo
product feed and store file shipped in the package (``ACP_CATALOG_FILE`` and
``ACP_STORE_FILE`` point it elsewhere), and Stripe: the real one with
``STRIPE_SECRET_KEY`` (test keys, ``sk_test_...``), else a fake Stripe served
in-process on a free loopback port (``FAKE_STRIPE_PORT`` pins it), said at
start-up. ``python example_app.py`` always starts its own; ``flask --app
example_app acp ...`` commands and gunicorn workers use the one a live process
of the same demo recorded next to its SQLite file (``demo.json``), or
start their own. ``FAKE_STRIPE_URL`` names one explicitly (its key is
``sk_test_fake``). The payment handler advertises it (``ACP_STRIPE_DEMO``), so
``demo-purchase`` mints its tokens where the server charges.

Buy from it as an agent would::

    flask --app example_app acp demo-purchase --base-url http://127.0.0.1:8000 --api-key KEY

Environment:

- ``ACP_API_KEYS``: ``name:token`` pairs, comma-separated (a name may appear
  twice during key rotation). Unset: a demo key is printed at start-up.
- ``ACP_STORE_URL`` (``sqlite:///abs/path``, ``sqlite:relative/to/instance``) or
  ``ACP_SQLITE_PATH``: the SQLite file (default ``instance/acp.sqlite3``). Or a
  Redis shared by several app servers (``redis://host:6379/0``, ``rediss://``,
  ``unix://``, ``redis+sentinel://``, ``redis+cluster://``): sessions, idempotency
  keys, locks, stock holds and the order-event outbox then live there, and the
  order webhooks go through RQ on the same Redis (run ``flask --app example_app
  acp worker``) unless ``ACP_REDIS_URL`` names another one (``""``: a delivery
  thread in each app process). ``flask --app example_app acp doctor`` checks it.
- ``ACP_CATALOG_FILE``, ``ACP_STORE_FILE``: catalog adapter data.
- ``ACP_ADAPTER=shopify`` with ``SHOPIFY_SHOP_URL`` and ``SHOPIFY_ACCESS_TOKEN`` (or
  ``SHOPIFY_CLIENT_ID``/``SHOPIFY_CLIENT_SECRET``); ``ACP_ADAPTER=woocommerce`` with
  ``WOOCOMMERCE_URL``, ``WOOCOMMERCE_CONSUMER_KEY`` and ``WOOCOMMERCE_CONSUMER_SECRET``.
  The fake servers run standalone for a local try:
  ``python -m flask_acp.testing.fake_shopify --port 9001 --seed flask_acp/testing/shopify_demo_seed.json``.
- ``HOST`` / ``PORT``: where ``python example_app.py`` listens (127.0.0.1:8000).
- ``STRIPE_SECRET_KEY`` and ``STRIPE_ACCOUNT_ID`` (``acct_...``): use Stripe itself.
- ``ACP_WEBHOOK_URL`` and ``ACP_WEBHOOK_SECRET`` (16+ chars): where every
  agent receives its signed order webhooks (https; plain http only to loopback
  or with ``FLASK_DEBUG=1``). Delivered by a thread of the app, or, with
  ``FLASK_ACP_REDIS_URL=redis://...``, by ``flask --app example_app acp worker``.
  Unset: a demo receiver of this app (``POST /demo/agent-webhooks``) checks
  each webhook's signature and prints it on the server's stderr.

Being a local demo, it accepts plain HTTP from loopback clients; anything else
must come over HTTPS.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import secrets
import socket
import sys
import typing as t

import requests
from flask import Flask
from flask import jsonify
from flask import request

from flask_acp import ACP
from flask_acp.config import ConfigurationError
from flask_acp.store import is_redis
from flask_acp.store import safe_store_url

DEMO_KEY = "demo-agent-key-0123456789"
#: the demo receiver's secret (agents' webhooks when ACP_WEBHOOK_URL is unset)
DEMO_WEBHOOK_SECRET = "demo-webhook-secret-0123456789"  # noqa: S105 - a local demo's
DEMO_WEBHOOK_PATH = "/demo/agent-webhooks"
#: the secret key of the demo's fake Stripe (``FakeStripe(api_key=...)``)
FAKE_STRIPE_KEY = "sk_test_fake"
#: platform settings taken from the environment (ACP_ADAPTER=shopify | woocommerce)
PLATFORM_KEYS = (
    "SHOPIFY_SHOP_URL", "SHOPIFY_ACCESS_TOKEN", "SHOPIFY_CLIENT_ID", "SHOPIFY_CLIENT_SECRET",
    "SHOPIFY_API_VERSION", "SHOPIFY_WEBHOOK_SECRET", "WOOCOMMERCE_URL", "WOOCOMMERCE_CONSUMER_KEY",
    "WOOCOMMERCE_CONSUMER_SECRET", "WOOCOMMERCE_WEBHOOK_SECRET",
)
#: configuration keys this app builds from other environment variables: errors name those
SOURCES = {"ACP_AGENTS": "ACP_API_KEYS", "ACP_STRIPE_SECRET_KEY": "STRIPE_SECRET_KEY",
           "ACP_STRIPE_MERCHANT_ID": "STRIPE_ACCOUNT_ID"}
#: ``python example_app.py``: this process serves, and starts its own fake Stripe
SERVING = __name__ == "__main__"


def _agents(spec: str | None, base_url: str) -> dict[str, dict[str, object]]:
    agents: dict[str, dict[str, object]] = {}
    if not spec:
        agents["demo-agent"] = {"api_keys": [DEMO_KEY]}
    else:
        for pair in filter(None, (p.strip() for p in spec.split(","))):
            name, sep, token = pair.partition(":")
            if not sep or not name or not token:
                raise SystemExit(f"flask-acp configuration is invalid:\n  ACP_API_KEYS: expected "
                                 f"name:token pairs separated by commas, got {pair!r}")
            keys = agents.setdefault(name, {"api_keys": []})["api_keys"]
            t.cast("list[str]", keys).append(token)
    url, secret = os.environ.get("ACP_WEBHOOK_URL"), os.environ.get("ACP_WEBHOOK_SECRET")
    if url and not secret:
        raise SystemExit("flask-acp configuration is invalid:\n  ACP_WEBHOOK_SECRET: set it (16+ characters) "
                         "with ACP_WEBHOOK_URL: it signs the order webhooks")
    if not url:  # the demo receiver of this app
        url, secret = base_url.rstrip("/") + DEMO_WEBHOOK_PATH, DEMO_WEBHOOK_SECRET
    for agent in agents.values():
        agent["webhook_url"] = url
        if secret:
            agent["webhook_secrets"] = [secret]
    return agents


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _record(record: pathlib.Path) -> dict[str, t.Any]:
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _recorded_fake(record: pathlib.Path) -> tuple[str, str] | None:
    """``(url, account)`` of the fake Stripe a live process of this demo recorded,
    when it answers as that account; None otherwise."""
    data = _record(record)
    try:
        url, account, pid = str(data["url"]), str(data["account"]), int(data["pid"])
    except (KeyError, TypeError, ValueError):
        return None
    if not _alive(pid):
        return None
    try:
        answer = requests.get(f"{url}/v1/account", timeout=2,
                              headers={"Authorization": f"Bearer {FAKE_STRIPE_KEY}"}).json()
    except (requests.RequestException, ValueError):
        return None
    return (url, account) if isinstance(answer, dict) and answer.get("id") == account else None


_started: tuple[str, str] | None = None
#: the record a serving process writes once it knows it serves (see ``__main__``): a second
#: server that fails to start (port in use, bad configuration) must not take over demo.json
_unrecorded: tuple[pathlib.Path, str] | None = None


def demo_stripe(record: pathlib.Path, *, own: bool, base_url: str | None = None) -> tuple[str, str]:
    """``(url, account id)`` of this demo's fake Stripe: the one a live process
    recorded in ``record`` (unless ``own``), else a new one on a free loopback
    port (``FAKE_STRIPE_PORT`` pins it), recorded there with ``base_url`` (the
    serving process's, where CLI commands send the demo receiver's webhooks).
    Never whatever else answers on some port."""
    global _started, _unrecorded
    if _started is not None:
        return _started
    record.parent.mkdir(parents=True, exist_ok=True)
    with open(record.with_suffix(".lock"), "a+") as lock:
        with contextlib.suppress(ImportError):
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)  # gunicorn workers: one starts it, the others use it
        found = None if own else _recorded_fake(record)
        if found is not None:
            return found
        from flask_acp.testing.fake_stripe import FakeStripe  # the test extra: only for the demo

        account = f"acct_demo{secrets.token_hex(4)}"
        fake = FakeStripe(api_key=FAKE_STRIPE_KEY, account_id=account).start(
            int(os.environ.get("FAKE_STRIPE_PORT") or 0))
        text = json.dumps({"url": fake.url, "account": account, "pid": os.getpid(), "api_base_url": base_url})
        if own:
            _unrecorded = (record, text)
        else:
            record.write_text(text, encoding="utf-8")
        _started = (fake.url, account)
        return _started


def _demo_receiver(app: Flask) -> None:
    """``POST /demo/agent-webhooks``: the demo agent's webhook endpoint; prints each
    order webhook with its signature check on stderr."""
    from flask_acp.webhooks.signing import SignatureError
    from flask_acp.webhooks.signing import verify_header

    @app.post(DEMO_WEBHOOK_PATH)
    def demo_agent_webhook() -> t.Any:
        body = request.get_data()
        try:
            verify_header(request.headers.get("Merchant-Signature"), body, [DEMO_WEBHOOK_SECRET])
            verdict = "signature valid"
        except SignatureError as exc:
            verdict = f"signature REFUSED: {exc}"
        try:
            event = json.loads(body)
            data = event.get("data") or {}
            what = f"{event.get('type')} {data.get('id')} status={data.get('status')}"
        except (ValueError, AttributeError):
            what = f"{len(body)} bytes, not JSON"
        print(f"[demo agent] webhook received: {what} ({verdict})", file=sys.stderr, flush=True)
        return ("", 204) if verdict == "signature valid" else ({"error": verdict}, 401)


def create_app(config: dict[str, object] | None = None) -> Flask:
    """Build the example app; ``config`` overrides (tests pass their own).

    :raises SystemExit: the configuration is invalid: one line per problem,
        naming the environment variable to fix.
    """
    app = Flask(__name__)
    app.config.from_prefixed_env()  # FLASK_ACP_* -> ACP_*
    for key in ("ACP_ADAPTER", "ACP_STORE_URL", "ACP_SQLITE_PATH", "ACP_CATALOG_FILE", "ACP_STORE_FILE",
                "ACP_REDIS_URL", *PLATFORM_KEYS):
        if os.environ.get(key):
            app.config[key] = os.environ[key]
    if os.environ.get("ACP_REDIS_URL") == "":  # "" says: the delivery thread, not RQ on the store's Redis
        app.config["ACP_REDIS_URL"] = ""
    sqlite = os.environ.get("ACP_SQLITE_PATH")
    folder = pathlib.Path(sqlite).resolve().parent if sqlite else pathlib.Path(app.instance_path)
    record = folder / "demo.json"
    served = None if SERVING else _record(record).get("api_base_url")  # a CLI command: the server's
    app.config.setdefault("ACP_API_BASE_URL", os.environ.get("ACP_API_BASE_URL") or (
        served if isinstance(served, str) and _recorded_fake(record) else
        f"http://{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"))
    app.config.setdefault("ACP_AGENTS", _agents(os.environ.get("ACP_API_KEYS"),
                                                app.config["ACP_API_BASE_URL"]))
    app.config.setdefault("ACP_ALLOW_INSECURE_LOOPBACK", True)
    app.config.setdefault("ACP_FORCE_INSECURE_LOOPBACK", True)  # a local demo, never production
    app.config.setdefault("ACP_LINKS", [
        {"type": "terms_of_use", "url": "https://shop.example/terms"},
        {"type": "privacy_policy", "url": "https://shop.example/privacy"},
        {"type": "return_policy", "url": "https://shop.example/returns"},
    ])
    if os.environ.get("STRIPE_SECRET_KEY"):
        app.config.setdefault("ACP_STRIPE_SECRET_KEY", os.environ["STRIPE_SECRET_KEY"])
        app.config.setdefault("ACP_STRIPE_MERCHANT_ID", os.environ.get("STRIPE_ACCOUNT_ID"))
    app.config.update(config or {})
    if not app.config.get("ACP_STRIPE_SECRET_KEY"):
        if os.environ.get("FAKE_STRIPE_URL"):
            url = os.environ["FAKE_STRIPE_URL"]
            account = requests.get(f"{url}/v1/account", timeout=5,
                                   headers={"Authorization": f"Bearer {FAKE_STRIPE_KEY}"}).json()["id"]
        else:
            url, account = demo_stripe(record, own=SERVING,
                                       base_url=app.config["ACP_API_BASE_URL"] if SERVING else None)
        app.config.update(ACP_STRIPE_SECRET_KEY=FAKE_STRIPE_KEY, ACP_STRIPE_MERCHANT_ID=account,
                          ACP_STRIPE_API_BASE=url)
        app.config.setdefault("ACP_STRIPE_DEMO", True)

    @app.get("/")
    def index() -> t.Any:
        return jsonify(service="flask-acp example merchant", discovery="/.well-known/acp.json",
                       checkout_sessions=app.config.get("ACP_URL_PREFIX", "") + "/checkout_sessions")

    @app.errorhandler(404)
    def not_found(exc: t.Any) -> t.Any:
        return jsonify(type="invalid_request", code="not_found", message=f"No route {request.path}; "
                       "the API is under /checkout_sessions, discovery at /.well-known/acp.json"), 404

    _demo_receiver(app)
    try:
        ACP(app)
    except ConfigurationError as exc:
        raise SystemExit(str(_as_set(exc))) from None
    return app


def _as_set(exc: ConfigurationError) -> ConfigurationError:
    """The problems named by the environment variables this app reads: ``ACP_AGENTS``
    is built from ACP_API_KEYS, ACP_WEBHOOK_URL and ACP_WEBHOOK_SECRET."""
    problems = []
    for key, text in exc.problems:
        if key.startswith("ACP_AGENTS") and "webhook_secrets" in key + text:
            key = "ACP_WEBHOOK_SECRET"
        elif key.startswith("ACP_AGENTS") and "webhook_url" in key + text:
            key = "ACP_WEBHOOK_URL"
        problems.append((key, text))
    return ConfigurationError(problems).renamed(SOURCES)


app = create_app()

if __name__ == "__main__":
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8000"))
    stripe = app.config["ACP_STRIPE_API_BASE"] or "Stripe (api.stripe.com)"
    if app.config["ACP_STRIPE_SECRET_KEY"] == FAKE_STRIPE_KEY:
        stripe = f"a FAKE Stripe at {stripe} (key {FAKE_STRIPE_KEY}): no real money moves"
    store = app.extensions["acp"].adapter.name
    store = "embedded catalog" if store == "catalog" else f"the {store} adapter"
    url = app.config["ACP_STORE_URL"]
    where = (f"Redis at {safe_store_url(url)}" if is_redis(url)
             else f"SQLite at {app.config['ACP_SQLITE_PATH']}")
    print(f"flask-acp demo on http://{host}:{port}: {store}, state in {where}, payments through {stripe}",
          file=sys.stderr)
    print("Plain HTTP is accepted from loopback clients only: this is a local demo.", file=sys.stderr)
    if not os.environ.get("ACP_API_KEYS"):
        print(f"Demo agent API key: {DEMO_KEY}", file=sys.stderr)
    if not os.environ.get("ACP_WEBHOOK_URL"):
        print(f"Order webhooks go to the demo receiver {app.config['ACP_API_BASE_URL']}{DEMO_WEBHOOK_PATH}, "
              "which prints each one here (set ACP_WEBHOOK_URL and ACP_WEBHOOK_SECRET for your own)",
              file=sys.stderr)
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as werkzeug: TIME_WAIT is no owner
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise SystemExit(f"Cannot listen on {host}:{port} ({exc.strerror}): is the demo already "
                             "running? Stop it, or set PORT") from None
    if _unrecorded is not None:  # now this process serves: CLI commands use its fake Stripe
        _unrecorded[0].write_text(_unrecorded[1], encoding="utf-8")
    app.run(host=host, port=port)
