"""The ``ACP`` Flask extension.

Life cycle: ``ACP(app)`` or ``ACP()`` + ``init_app(app)`` reads and validates
every ``ACP_*`` key once, opens the storage, builds the platform adapter and the
checkout service, keeps them in ``app.extensions["acp"]`` (an
:class:`ACPState`), and registers the blueprints. The extension object keeps
no app, so one instance can serve several apps.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import typing as t

from flask import Flask
from werkzeug.utils import import_string

from . import inbound
from .adapter import PlatformAdapter
from .blueprint import install_routing_errors
from .blueprint import make_blueprints
from .checkout import CheckoutService
from .config import Settings
from .config import load_settings
from .orders import OrderService
from .payments.base import PaymentProcessor
from .payments.stripe import StripePaymentProcessor
from .store import open_storage
from .store.base import Storage
from .webhooks.service import WebhookService
from .webhooks.service import check_agents

ENTRY_POINT_GROUP = "flask_acp.adapters"


@dataclasses.dataclass(frozen=True, slots=True)
class ACPState:
    """Per-app state in ``app.extensions["acp"]``."""

    settings: Settings
    storage: Storage
    adapter: PlatformAdapter
    payments: PaymentProcessor
    service: CheckoutService
    orders: OrderService
    webhooks: WebhookService


class ACP:
    """Serve ACP checkout sessions from a Flask app.

    :param app: the app to set up now (or call :meth:`init_app` later).
    :param adapter: a platform adapter instance; overrides ``ACP_ADAPTER``.
    :param payment_processor: the payment processor (required until the
        Stripe processor ships as the default).
    :param store: the storage (a :class:`~flask_acp.store.Storage` bundle of
        every storage port); default: opened from ``ACP_STORE_URL`` (SQLite at
        ``ACP_SQLITE_PATH`` when unset).
    :raises TypeError: ``store`` is not a :class:`~flask_acp.store.Storage`.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        adapter: PlatformAdapter | None = None,
        payment_processor: PaymentProcessor | None = None,
        store: Storage | None = None,
    ) -> None:
        if store is not None and not isinstance(store, Storage):
            raise TypeError(
                "ACP(store=...) takes a flask_acp.store.Storage (one object per storage port), "
                f"not {type(store).__name__}; build one with flask_acp.store.open_storage(url) or "
                "flask_acp.store.sqlite.sqlite_storage(path)")
        self._adapter = adapter
        self._payment_processor = payment_processor
        self._store = store
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Validate config and register the ACP routes on ``app``.

        Reads every key listed in the README's configuration reference
        (``ACP_URL_PREFIX``, ``ACP_AGENTS``, ``ACP_API_VERSIONS``, ``ACP_ADAPTER``,
        ``ACP_STORE_URL``, ``ACP_SQLITE_PATH``, ``ACP_SESSION_TTL``, ...), applying
        defaults into ``app.config``.

        Order webhooks (``ACP_REDIS_URL``, ``ACP_WEBHOOK_*``, each agent's
        ``webhook_url`` / ``webhook_secrets``): with Redis, events are queued
        as RQ jobs after each commit; without, a delivery thread starts in
        each process on its first request or order event (never here).

        :raises RuntimeError: registered twice, or a key is missing or invalid
            (the message names the key and what to set), or an agent's
            ``webhook_url`` is not https outside debug/testing or has no secret.
        """
        if "acp" in app.extensions:
            raise RuntimeError("flask-acp is already registered on this app; call init_app once per app.")
        settings = load_settings(app.config, instance_path=app.instance_path)
        payments = self._payment_processor
        if payments is None and settings.stripe_secret_key:
            payments = StripePaymentProcessor.from_settings(settings)
        if payments is None:
            raise RuntimeError(
                "flask-acp needs a payment processor: set ACP_STRIPE_SECRET_KEY and "
                "ACP_STRIPE_MERCHANT_ID, or pass ACP(app, payment_processor=...).")
        storage = self._store
        if storage is None:
            try:
                storage = open_storage(settings.store_url, base_dir=app.instance_path)
            except ValueError as exc:  # (the settings checked the URL's form already)
                raise RuntimeError(f"flask-acp configuration is invalid: ACP_STORE_URL: {exc}") from None
        check_agents(settings, allow_http=app.debug or app.testing)
        adapter = self._adapter or load_adapter(settings.adapter, app.config)
        webhooks = WebhookService(settings, storage)
        service = CheckoutService(adapter=adapter, payments=payments, storage=storage,
                                  settings=settings, on_events=webhooks.on_events)
        budget = service.complete_time_budget()
        if settings.lock_lease <= budget:
            raise RuntimeError(
                f"flask-acp configuration is invalid: ACP_LOCK_LEASE: {settings.lock_lease:g} s is "
                f"not above one completion's time budget ({budget:g} s: the payment processor's "
                "retries and timeouts plus the platform's calls); raise it, or lower "
                "ACP_STRIPE_READ_TIMEOUT / ACP_STRIPE_MAX_NETWORK_RETRIES")
        app.extensions["acp"] = ACPState(settings=settings, storage=storage, adapter=adapter,
                                         payments=payments, service=service,
                                         orders=OrderService(service), webhooks=webhooks)
        if webhooks.thread is not None:
            app.before_request(webhooks.start)  # lazily, per process (safe after a fork)
        checkout_bp, discovery_bp = make_blueprints(settings.url_prefix)
        app.register_blueprint(checkout_bp)
        app.register_blueprint(discovery_bp)
        app.register_blueprint(inbound.make_blueprint(settings.url_prefix, adapter.name))
        if settings.json_routing_errors:
            install_routing_errors(app, settings.url_prefix)


def load_adapter(name: str, config: t.Mapping[str, t.Any]) -> PlatformAdapter:
    """Build the adapter named ``name``: an entry point of the
    ``flask_acp.adapters`` group, or a ``module:Class`` / ``module.Class`` path.

    :raises RuntimeError: unknown name (the message lists the installed ones),
        not a :class:`PlatformAdapter`, or its config is invalid.
    """
    if ":" in name or "." in name:
        cls = import_string(name.replace(":", "."))
    else:
        found = {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
        if name not in found:
            raise RuntimeError(f"ACP_ADAPTER: unknown adapter {name!r}; installed: {sorted(found)} "
                               "(or give a 'module:Class' path)")
        cls = found[name].load()
    if not (isinstance(cls, type) and issubclass(cls, PlatformAdapter)):
        raise RuntimeError(f"ACP_ADAPTER: {name!r} is not a flask_acp.adapter.PlatformAdapter subclass")
    try:
        return cls.from_config(config)
    except ValueError as exc:
        raise RuntimeError(f"ACP_ADAPTER {name!r}: {exc}") from exc
