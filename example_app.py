"""Example merchant app: flask-acp on the embedded default.

    python example_app.py              # serves http://127.0.0.1:8000
    gunicorn -w 4 --timeout 600 example_app:app      # the same WSGI app, several workers

Embedded default: SQLite for sessions, the catalog adapter reading the demo
product feed and store file shipped in the package (``ACP_CATALOG_FILE`` and
``ACP_STORE_FILE`` point it elsewhere), and Stripe: the real one with
``STRIPE_SECRET_KEY`` (test keys, ``sk_test_...``), else a fake Stripe served
in-process on 127.0.0.1:12111 (``FAKE_STRIPE_PORT``), said at start-up.

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
  agent receives its signed order webhooks (https; plain http only with
  ``FLASK_DEBUG=1``). Delivered by a thread of the app, or, with
  ``FLASK_ACP_REDIS_URL=redis://...``, by ``flask --app example_app acp worker``.

Being a local demo, it accepts plain HTTP from loopback clients; anything else
must come over HTTPS.
"""

from __future__ import annotations

import os
import sys
import typing as t

from flask import Flask

from flask_acp import ACP
from flask_acp.store import is_redis
from flask_acp.store import safe_store_url
from flask_acp.testing.fake_stripe import DEFAULT_API_KEY
from flask_acp.testing.fake_stripe import ensure_fake_stripe

DEMO_KEY = "demo-agent-key-0123456789"
#: platform settings taken from the environment (ACP_ADAPTER=shopify | woocommerce)
PLATFORM_KEYS = (
    "SHOPIFY_SHOP_URL", "SHOPIFY_ACCESS_TOKEN", "SHOPIFY_CLIENT_ID", "SHOPIFY_CLIENT_SECRET",
    "SHOPIFY_API_VERSION", "SHOPIFY_WEBHOOK_SECRET", "WOOCOMMERCE_URL", "WOOCOMMERCE_CONSUMER_KEY",
    "WOOCOMMERCE_CONSUMER_SECRET", "WOOCOMMERCE_WEBHOOK_SECRET",
)


def _agents(spec: str | None) -> dict[str, dict[str, object]]:
    agents: dict[str, dict[str, object]] = {}
    if not spec:
        agents["demo-agent"] = {"api_keys": [DEMO_KEY]}
    else:
        for pair in filter(None, (p.strip() for p in spec.split(","))):
            name, sep, token = pair.partition(":")
            if not sep or not name or not token:
                raise SystemExit(f"ACP_API_KEYS: expected name:token pairs, got {pair!r}")
            keys = agents.setdefault(name, {"api_keys": []})["api_keys"]
            t.cast("list[str]", keys).append(token)
    url, secret = os.environ.get("ACP_WEBHOOK_URL"), os.environ.get("ACP_WEBHOOK_SECRET")
    for agent in agents.values():
        if url:
            agent["webhook_url"] = url
        if secret:
            agent["webhook_secrets"] = [secret]
    return agents


def create_app(config: dict[str, object] | None = None) -> Flask:
    """Build the example app; ``config`` overrides (tests pass their own)."""
    app = Flask(__name__)
    app.config.from_prefixed_env()  # FLASK_ACP_* -> ACP_*
    for key in ("ACP_ADAPTER", "ACP_STORE_URL", "ACP_SQLITE_PATH", "ACP_CATALOG_FILE", "ACP_STORE_FILE",
                "ACP_REDIS_URL", *PLATFORM_KEYS):
        if os.environ.get(key):
            app.config[key] = os.environ[key]
    app.config.setdefault("ACP_AGENTS", _agents(os.environ.get("ACP_API_KEYS")))
    app.config.setdefault("ACP_ALLOW_INSECURE_LOOPBACK", True)
    app.config.setdefault("ACP_FORCE_INSECURE_LOOPBACK", True)  # a local demo, never production
    app.config.setdefault("ACP_API_BASE_URL", os.environ.get("ACP_API_BASE_URL") or
                          f"http://{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}")
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
        app.config["ACP_STRIPE_SECRET_KEY"] = DEFAULT_API_KEY
        app.config["ACP_STRIPE_MERCHANT_ID"] = "acct_demo"
        fake_port = int(os.environ.get("FAKE_STRIPE_PORT", "12111"))
        app.config["ACP_STRIPE_API_BASE"] = ensure_fake_stripe(fake_port, account_id="acct_demo")
    ACP(app)
    return app


app = create_app()

if __name__ == "__main__":
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8000"))
    stripe = app.config["ACP_STRIPE_API_BASE"] or "Stripe (api.stripe.com)"
    if app.config["ACP_STRIPE_SECRET_KEY"] == DEFAULT_API_KEY:
        stripe = f"a FAKE Stripe at {stripe}: no real money moves"
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
    app.run(host=host, port=port)
