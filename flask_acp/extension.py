"""The ``ACP`` Flask extension.

Life cycle: ``ACP(app)`` or ``ACP()`` + ``init_app(app)`` resolves the platform
adapter class, reads and validates every key once (the core's, Stripe's and
the adapter's sections, :mod:`flask_acp.config`), builds the store, the
platform adapter and the checkout service, keeps them in
``app.extensions["acp"]`` (an :class:`ACPState`), and registers the
blueprints. The extension object keeps no app, so one instance can serve
several apps.
"""

from __future__ import annotations

import collections.abc as cabc
import dataclasses
import importlib.metadata
import logging
import typing as t

from flask import Flask
from werkzeug.utils import import_string

from . import inbound
from . import logs
from .adapter import PlatformAdapter
from .api.limits import LimitSettings
from .api.limits import RateLimits
from .api.limits import storage_url
from .api.pipeline import Pipeline
from .api.signatures import SignatureChecker
from .blueprint import install_routing_errors
from .blueprint import make_blueprints
from .carts import CartService
from .checkout import CheckoutService
from .config import CORE_SETTINGS
from .config import DEFAULT_ADAPTER
from .config import Problem
from .config import Section
from .config import Settings
from .config import config_error
from .config import load_settings
from .config import unknown_keys
from .config import warn_unknown_keys
from .feed.push import FeedState
from .feed.push import feed_state_path
from .feed.sync import FeedSender
from .inbound import takes_webhooks
from .mcp import SDK_MISSING
from .mcp import cli as mcp_cli
from .mcp import sdk_available
from .ops import METRICS_MISSING
from .ops import metrics_available
from .ops import routes as health_routes
from .orders import OrderService
from .payments.base import PaymentProcessor
from .payments.stripe import STRIPE_SETTINGS
from .payments.stripe import StripePaymentProcessor
from .products import FEED_PRODUCTS_EVENT
from .state import ACPState
from .store import open_storage
from .store.base import Storage
from .versions import ALIASES
from .versions import VERSIONS
from .webhooks.service import WebhookService
from .webhooks.service import check_agents

if t.TYPE_CHECKING:
    from .ops.metrics import Metrics

ENTRY_POINT_GROUP = "flask_acp.adapters"

log = logging.getLogger("flask_acp")


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
        self._adapter = adapter
        self._payment_processor = payment_processor
        if store is not None and not isinstance(store, Storage):
            raise TypeError(
                "ACP(store=...) takes a flask_acp.store.Storage (one object per storage port), "
                f"not {type(store).__name__}; build one with flask_acp.store.open_storage(url) or "
                "flask_acp.store.sqlite.sqlite_storage(path)")
        self._store = store
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Validate config and register the ACP routes on ``app``.

        Reads every key of the README's configuration tables: the core's
        (``ACP_URL_PREFIX``, ``ACP_AGENTS``, ``ACP_API_VERSIONS``, ``ACP_ADAPTER``,
        ``ACP_SQLITE_PATH``, ``ACP_SESSION_TTL``, ...), Stripe's (``ACP_STRIPE_*``)
        and the adapter's (:attr:`PlatformAdapter.settings_section`, e.g.
        ``SHOPIFY_*``), applying defaults into ``app.config``, and logs a warning
        for each ``ACP_*`` key no section declares.

        Order webhooks (``ACP_REDIS_URL``, ``ACP_WEBHOOK_*``, each agent's
        ``webhook_url`` / ``webhook_secrets``): with Redis, events are queued
        as RQ jobs after each commit; without, a delivery thread starts in
        each process on its first request or order event (never here).

        The merchant console (``ACP_CONSOLE_*``, :mod:`flask_acp.console`) is
        registered only when ``ACP_CONSOLE_ENABLED``, and never without a protection.

        :raises RuntimeError: registered twice, or keys are missing or invalid
            (one line per key, naming it and what to set), or an agent's
            ``webhook_url`` is not https outside debug/testing or has no secret,
            or the console is enabled with no protection or no ``SECRET_KEY``.
        """
        if "acp" in app.extensions:
            raise RuntimeError("flask-acp is already registered on this app; call init_app once per app.")
        adapter_cls, problems = self._adapter_class(app.config)
        adapter_section = adapter_settings(adapter_cls) if adapter_cls is not None else None
        sections: list[Section[t.Any]] = [STRIPE_SETTINGS]
        if adapter_section is not None and self._adapter is None:  # an instance is built already
            sections.append(adapter_section)
        _warn_unknown_keys(app.config, [CORE_SETTINGS, STRIPE_SETTINGS,
                                        *([adapter_section] if adapter_section else [])])
        loaded = load_settings(app.config, sections, instance_path=app.instance_path, problems=problems)
        settings, stripe_settings = loaded[CORE_SETTINGS], loaded[STRIPE_SETTINGS]
        settings = _resolve_versions(settings)
        _check_exposure(settings, app)
        logs.install()
        logs.configure(settings.log_format, settings.log_level)
        payments = self._payment_processor
        if payments is None and stripe_settings.secret_key:
            payments = StripePaymentProcessor.from_settings(stripe_settings)
        if payments is None:
            raise config_error([("ACP_STRIPE_SECRET_KEY", "flask-acp needs a payment processor: set it "
                                 "(sk_test_... or sk_live_...) and ACP_STRIPE_MERCHANT_ID, or pass "
                                 "ACP(app, payment_processor=...)")])
        storage = self._store
        if storage is None:
            try:
                storage = open_storage(settings.store_url, base_dir=app.instance_path)
            except ValueError as exc:  # (the settings checked the URL's form already)
                raise config_error([("ACP_STORE_URL", str(exc))]) from None
        check_agents(settings, allow_http=app.debug or app.testing)
        # adapter_cls is known here: an ACP_ADAPTER naming none failed load_settings
        adapter = self._adapter or _build_adapter(t.cast("type[PlatformAdapter]", adapter_cls),
                                                  settings.adapter, app.config)
        feed_sender = FeedSender(settings, adapter, FeedState(feed_state_path(settings, app.instance_path)))
        webhooks = WebhookService(settings, storage, senders={FEED_PRODUCTS_EVENT: feed_sender.send})
        metrics = _metrics(settings, storage)
        limits = _rate_limits(settings)
        service = CheckoutService(
            adapter=metrics.adapter(adapter) if metrics else adapter,
            payments=metrics.payment_processor(payments) if metrics else payments,
            storage=storage, settings=settings, on_events=webhooks.on_events, code_guesses=limits)
        budget = service.complete_time_budget()
        if settings.lock_lease <= budget:
            raise config_error([(
                "ACP_LOCK_LEASE", f"{settings.lock_lease:g} s is not above one completion's time budget "
                f"({budget:g} s: the payment processor's retries and timeouts plus the platform's calls); "
                "raise it, or lower ACP_STRIPE_READ_TIMEOUT / ACP_STRIPE_MAX_NETWORK_RETRIES")])
        if settings.console_enabled:
            _check_console_available()
        if settings.mcp_enabled and not sdk_available():
            raise config_error([("ACP_MCP_ENABLED", SDK_MISSING)])
        if settings.carts_enabled and not any(VERSIONS[v].has_carts for v in settings.api_versions):
            raise config_error([("ACP_CARTS_ENABLED", "carts exist in API-Version 2026-04-17 only, which "
                                                      "ACP_API_VERSIONS does not serve")])
        signatures = SignatureChecker(settings.agents, tolerance=settings.signature_tolerance,
                                      seen=storage.inbound)
        # the Cart API (optional): quotes through the checkout's (metered) adapter, holding nothing
        carts = CartService(adapter=service.adapter, carts=storage.carts, settings=settings) \
            if settings.carts_enabled else None
        pipeline = Pipeline(settings=settings, service=service, records=storage.idempotency,
                            payments=payments, versions=VERSIONS, limits=limits,
                            signatures=signatures, observer=metrics, carts=carts)
        app.extensions["acp"] = ACPState(settings=settings, storage=storage, adapter=adapter,
                                         payments=payments, service=service,
                                         orders=OrderService(service.sessions, service.settlement),
                                         webhooks=webhooks, pipeline=pipeline,
                                         stripe_settings=stripe_settings)
        if webhooks.thread is not None:
            app.before_request(webhooks.start)  # lazily, per process (safe after a fork)
        checkout_bp, discovery_bp = make_blueprints(settings.url_prefix, carts=settings.carts_enabled)
        mcp_cli.register(checkout_bp.cli)  # flask acp mcp
        app.register_blueprint(checkout_bp)
        app.register_blueprint(discovery_bp)
        app.register_blueprint(inbound.make_blueprint(settings.url_prefix, adapter.name,
                                                      takes_webhooks=takes_webhooks(adapter)))
        if settings.json_routing_errors:
            own = ((settings.healthz_path, settings.readyz_path) if settings.health_enabled else ()) \
                + ((settings.metrics_path,) if settings.metrics_enabled and settings.metrics_path else ()) \
                + ((settings.mcp_path,) if settings.mcp_enabled else ())
            install_routing_errors(app, settings.url_prefix, paths=own)
        if settings.mcp_enabled:
            from .mcp.routes import make_blueprint as make_mcp_blueprint

            app.register_blueprint(make_mcp_blueprint(settings.mcp_path, pipeline))
        if settings.health_enabled:
            app.register_blueprint(health_routes.make_blueprint(settings.healthz_path, settings.readyz_path))
        if settings.console_enabled:
            from .console import make_blueprint as make_console_blueprint

            counters = storage_url(settings.rate_limit_storage_url, store_url=settings.store_url,
                                   redis_url=settings.redis_url)  # wrong console passwords are counted there
            app.register_blueprint(make_console_blueprint(settings, app, counters_url=counters))
        if metrics is not None:
            from .ops.metrics import make_blueprint as make_metrics_blueprint

            app.register_blueprint(make_metrics_blueprint(settings.metrics_path, metrics,
                                                          settings.metrics_token))

    def _adapter_class(self, config: cabc.Mapping[str, t.Any]
                       ) -> tuple[type[PlatformAdapter] | None, list[Problem]]:
        """The adapter's class (``None`` when ``ACP_ADAPTER`` is not a name: the
        core's validation reports it) and the problem resolving ``ACP_ADAPTER``, if any."""
        if self._adapter is not None:
            return type(self._adapter), []
        name = config.get("ACP_ADAPTER")
        if name is None:
            name = DEFAULT_ADAPTER
        if not isinstance(name, str) or not name:
            return None, []
        try:
            return adapter_class(name), []
        except LookupError as exc:
            return None, [("ACP_ADAPTER", str(exc))]


def _metrics(settings: Settings, storage: Storage) -> Metrics | None:
    """The app's Prometheus metrics when ``ACP_METRICS_ENABLED`` (None otherwise).

    :raises RuntimeError: enabled but ``prometheus_client`` is not installed.
    """
    if not settings.metrics_enabled:
        return None
    if not metrics_available():
        raise config_error([("ACP_METRICS_ENABLED", METRICS_MISSING)])
    from .ops.metrics import Metrics

    return Metrics(storage.outbox)


def _check_console_available() -> None:
    """:raises RuntimeError: Flask-WTF (the console's CSRF tokens) is not installed."""
    try:
        import flask_wtf  # noqa: F401
    except ImportError:
        raise config_error([("ACP_CONSOLE_ENABLED", "the merchant console needs Flask-WTF (its CSRF "
                             "tokens): pip install 'flask-acp[console]'")]) from None


def _rate_limits(settings: Settings) -> RateLimits | None:
    """The ``ACP_RATE_LIMIT_*`` limits on their storage (None when disabled).

    :raises RuntimeError: the storage URL names no ``limits`` storage, or one
        whose client library is not installed.
    """
    if not settings.rate_limits_enabled:
        return None
    url = storage_url(settings.rate_limit_storage_url, store_url=settings.store_url,
                      redis_url=settings.redis_url)
    try:
        return RateLimits(LimitSettings(
            per_ip=settings.rate_limit_per_ip, per_agent=settings.rate_limit_per_agent,
            complete_per_agent=settings.rate_limit_complete_per_agent,
            complete_per_session=settings.rate_limit_complete_per_session,
            discount_rejections_per_agent=settings.rate_limit_discount_rejections_per_agent), url)
    except Exception as exc:  # limits' ConfigurationError and the like
        raise config_error([("ACP_RATE_LIMIT_STORAGE_URL", f"{url}: {exc}")]) from None


def _check_exposure(settings: Settings, app: Flask) -> None:
    """Refuse, outside debug/testing, settings that would expose a production
    app: plain HTTP from loopback without ``ACP_FORCE_INSECURE_LOOPBACK``
    (behind a reverse proxy on the same host every request is from loopback),
    and no ``ACP_API_BASE_URL`` without Flask's ``TRUSTED_HOSTS`` (discovery
    would echo whatever ``Host`` a client sends).

    :raises RuntimeError: naming the setting to change.
    """
    if app.debug or app.testing:
        return
    problems: list[Problem] = []
    if settings.allow_insecure_loopback and not settings.force_insecure_loopback:
        problems.append(("ACP_ALLOW_INSECURE_LOOPBACK",
                         "plain HTTP from loopback is for local demos: a reverse proxy on the same host "
                         "makes every request local. Unset it (terminate TLS in the proxy and set "
                         "ACP_TRUSTED_PROXY_HOPS), or set ACP_FORCE_INSECURE_LOOPBACK=true"))
    if settings.api_base_url is None and not app.config.get("TRUSTED_HOSTS"):
        problems.append(("ACP_API_BASE_URL", "set it to the public URL of the ACP API (discovery's "
                         "api_base_url), or set Flask's TRUSTED_HOSTS so the request's Host can be trusted"))
    if problems:
        raise config_error(problems)


def _resolve_versions(settings: Settings) -> Settings:
    """``ACP_API_VERSIONS`` as canonical versions, newest first (default: every
    implemented one; an alias names its version), and every agent's webhook
    ``api_version`` resolved (default: the newest served).

    :raises RuntimeError: a version that is not implemented, or an agent's
        ``api_version`` that is not served.
    """
    wanted = settings.api_versions or tuple(VERSIONS)
    unknown = [v for v in wanted if v not in ALIASES]
    if unknown:
        raise config_error([("ACP_API_VERSIONS", f"{unknown} are not implemented; use some of "
                                                 f"{sorted(VERSIONS)}")])
    served = tuple(sorted({ALIASES[v] for v in wanted}, reverse=True))
    agents = []
    for agent in settings.agents:
        version = ALIASES.get(agent.api_version or served[0])
        if version not in served:
            raise config_error([(f"ACP_AGENTS[{agent.name!r}].api_version",
                                 f"{agent.api_version!r} is not a served version; "
                                 f"use one of {list(served)}")])
        agents.append(dataclasses.replace(agent, api_version=version))
    return dataclasses.replace(settings, api_versions=served, agents=tuple(agents))


def adapter_class(name: str) -> type[PlatformAdapter]:
    """The adapter class named ``name``: an entry point of the
    ``flask_acp.adapters`` group, or a ``module:Class`` / ``module.Class`` path.

    :raises LookupError: unknown name (the message lists the installed ones),
        not importable, or not a :class:`PlatformAdapter`.
    """
    if ":" in name or "." in name:
        try:
            cls = import_string(name.replace(":", "."))
        except ImportError as exc:
            raise LookupError(f"cannot import {name!r}: {exc}") from None
    else:
        found = {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
        if name not in found:
            raise LookupError(f"unknown adapter {name!r}; installed: {sorted(found)} "
                              "(or give a 'module:Class' path)")
        try:
            cls = found[name].load()
        except ImportError as exc:  # a package the adapter needs is missing
            raise LookupError(f"adapter {name!r} cannot be loaded: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, PlatformAdapter)):
        raise LookupError(f"{name!r} is not a flask_acp.adapter.PlatformAdapter subclass")
    return cls


def adapter_settings(cls: type[PlatformAdapter]) -> Section[t.Any] | None:
    """``cls.settings_section``: the adapter's declared keys (``None``: none).

    :raises TypeError: it is not a :class:`flask_acp.config.Section`.
    """
    section = cls.settings_section
    if section is not None and not isinstance(section, Section):
        raise TypeError(f"{cls.__name__}.settings_section must be a flask_acp.config.Section, "
                        f"not {type(section).__name__}")
    return section


def installed_adapters() -> dict[str, type[PlatformAdapter]]:
    """Every adapter of the ``flask_acp.adapters`` entry-point group, by name
    (one that cannot be loaded is logged and left out)."""
    adapters = {}
    for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name):
        try:
            adapters[ep.name] = adapter_class(ep.name)
        except Exception as exc:  # a broken third-party package must not stop the app
            log.warning("adapter %s cannot be loaded: %s", ep.name, exc)
    return adapters


def _build_adapter(cls: type[PlatformAdapter], name: str, config: t.Mapping[str, t.Any]) -> PlatformAdapter:
    """``cls.from_config(config)``; a ``ValueError`` (e.g. an invalid catalog
    file) becomes a ``RuntimeError`` naming ``ACP_ADAPTER``."""
    try:
        return cls.from_config(config)
    except ValueError as exc:
        raise config_error([("ACP_ADAPTER", f"{name!r}: {exc}")]) from exc


def _warn_unknown_keys(config: cabc.Mapping[str, t.Any], sections: list[Section[t.Any]]) -> None:
    """Warn about ``ACP_*`` keys no section declares: neither those in use nor
    (looked at only when needed) those of the other installed adapters."""
    unknown = unknown_keys(config, sections)
    if unknown:
        others = [s for s in map(adapter_settings, installed_adapters().values()) if s is not None]
        unknown = unknown_keys(config, [*sections, *others])
        warn_unknown_keys(unknown, [*sections, *others])
