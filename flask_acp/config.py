"""Configuration: every ``ACP_*`` key, its default, and validation.

Config is read once, in :meth:`flask_acp.ACP.init_app`, validated with a
marshmallow schema, and frozen into :class:`Settings`. The README's
"Configuration" section documents every key (type, default, unit).
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import typing as t

from marshmallow import EXCLUDE
from marshmallow import Schema
from marshmallow import ValidationError
from marshmallow import fields
from marshmallow import validate
from marshmallow import validates_schema

from .store import parse_store_url
from .store import sqlite_url

log = logging.getLogger("flask_acp")

#: ``ACP_*`` keys that belong to adapters (read by them, not here).
ADAPTER_KEYS = frozenset({"ACP_CATALOG_FILE", "ACP_STORE_FILE"})

#: ACP versions this release implements, newest first.
IMPLEMENTED_VERSIONS: tuple[str, ...] = ("2026-04-17",)

LINK_TYPES = (
    "terms_of_use", "privacy_policy", "return_policy", "shipping_policy",
    "contact_us", "about_us", "faq", "support",
)

#: Defaults, one per key (units in the comments).
DEFAULTS: dict[str, t.Any] = {
    "ACP_URL_PREFIX": "",  #: mount point of the checkout routes
    "ACP_API_VERSIONS": list(IMPLEMENTED_VERSIONS),  #: accepted API-Version values
    "ACP_AGENTS": {},  #: agent name -> {"api_keys": [...], "webhook_url", "webhook_secrets"}
    "ACP_ADAPTER": "catalog",  #: entry-point name or "module:Class"
    "ACP_STORE_URL": None,  #: storage URL (sqlite:///abs/path, sqlite:rel/path); default: ACP_SQLITE_PATH
    "ACP_SQLITE_PATH": None,  #: SQLite file when ACP_STORE_URL is unset; default <instance_path>/acp.sqlite3
    "ACP_SESSION_TTL": 3600,  #: seconds a session lives after its last change
    "ACP_IDEMPOTENCY_TTL": 86400,  #: seconds idempotent responses are kept (>= 24 h)
    "ACP_IDEMPOTENCY_LEASE": 120,  #: seconds before an unfinished claim counts as abandoned
    "ACP_LOCK_WAIT": 10.0,  #: seconds a request waits for another one on the same session
    "ACP_LOCK_LEASE": 600.0,  #: seconds a session lock lasts if its holder dies (> a charge's budget)
    "ACP_REQUIRE_HTTPS": True,  #: refuse plain HTTP outside debug/testing
    "ACP_ALLOW_INSECURE_LOOPBACK": False,  #: accept plain HTTP from 127.0.0.1/::1
    "ACP_TRUSTED_PROXY_HOPS": 0,  #: proxies whose X-Forwarded-Proto/For is trusted
    "ACP_MAX_BODY_BYTES": 65536,  #: bytes; larger bodies get 413
    "ACP_LINKS": [],  #: [{"type", "url", "title"?}] returned in every session
    "ACP_API_BASE_URL": None,  #: discovery api_base_url; default: derived from the request
    "ACP_DISCOVERY_MAX_AGE": 3600,  #: seconds, Cache-Control max-age of /.well-known/acp.json
    "ACP_INTERVENTIONS": [],  #: interventions the merchant supports (3ds, ...)
    "ACP_JSON_ROUTING_ERRORS": True,  #: JSON 404/405 for unknown paths under the prefix
    "ACP_ORDER_PLACEMENT_RETRIES": [0.2, 1.0],  #: seconds between inline place_order retries
    "ACP_ORDER_PLACEMENT_DEADLINE": 3600,  #: seconds; after it an unplaceable paid order is refunded
    "ACP_PAYMENT_RECONCILE_WINDOW": 300,  #: seconds an unknown charge outcome blocks a new charge
    # order webhooks
    "ACP_REDIS_URL": None,  #: RQ delivery when set; else an in-app delivery thread
    "ACP_WEBHOOK_QUEUE": "acp-webhooks",  #: RQ queue name
    "ACP_WEBHOOK_RETRY_INTERVALS": [10, 30, 120, 600, 1800, 3600, 7200, 14400],  #: seconds
    "ACP_WEBHOOK_TIMEOUT": 10.0,  #: seconds per delivery attempt
    "ACP_WEBHOOK_DELIVERY_THREAD": True,  #: run the in-app delivery thread without Redis
    # Stripe
    "ACP_STRIPE_SECRET_KEY": None,  #: sk_... ; enables the Stripe payment processor
    "ACP_STRIPE_MERCHANT_ID": None,  #: acct_... advertised in the payment handler config
    "ACP_STRIPE_API_BASE": None,  #: Stripe API base URL (tests point it at the fake)
    "ACP_STRIPE_SPT_API_VERSION": "2026-09-30.preview",  #: Stripe-Version for SPT calls
    "ACP_STRIPE_MAX_NETWORK_RETRIES": 2,  #: SDK retries of connection errors, 409 and 5xx
    "ACP_STRIPE_CONNECT_TIMEOUT": 5.0,  #: seconds
    "ACP_STRIPE_READ_TIMEOUT": 25.0,  #: seconds
    "ACP_STRIPE_CAPTURE_METHOD": "automatic",  #: automatic | manual
    "ACP_STRIPE_TOKEN_PREFLIGHT": True,  #: look the granted token up before charging
    "ACP_STRIPE_TOKEN_EXPIRY_MARGIN": 30,  #: seconds; refuse tokens expiring sooner
    "ACP_STRIPE_WEBHOOK_SECRET": None,  #: whsec_... for inbound Stripe webhooks
    "ACP_STRIPE_HANDLER_ID": "card_tokenized",  #: PaymentHandler.id offered to agents
}


@dataclasses.dataclass(frozen=True, slots=True)
class Agent:
    """An agent allowed to call the API.

    :ivar api_keys: bearer tokens; two may be active during rotation.
    :ivar webhook_url: where order events go (https unless debug/testing).
    :ivar webhook_secrets: HMAC secrets for ``Merchant-Signature``; the first signs.
    """

    name: str
    api_keys: tuple[str, ...]
    webhook_url: str | None = None
    webhook_secrets: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """The validated, frozen ``ACP_*`` configuration of one app."""

    url_prefix: str
    api_versions: tuple[str, ...]
    agents: tuple[Agent, ...]
    adapter: str
    store_url: str
    sqlite_path: str
    session_ttl: int
    idempotency_ttl: int
    idempotency_lease: int
    lock_wait: float
    lock_lease: float
    require_https: bool
    allow_insecure_loopback: bool
    trusted_proxy_hops: int
    max_body_bytes: int
    links: tuple[dict[str, str], ...]
    api_base_url: str | None
    discovery_max_age: int
    interventions: tuple[str, ...]
    json_routing_errors: bool
    order_placement_retries: tuple[float, ...]
    order_placement_deadline: int
    payment_reconcile_window: int
    redis_url: str | None
    webhook_queue: str
    webhook_retry_intervals: tuple[int, ...]
    webhook_timeout: float
    webhook_delivery_thread: bool
    stripe_secret_key: str | None
    stripe_merchant_id: str | None
    stripe_api_base: str | None
    stripe_spt_api_version: str
    stripe_max_network_retries: int
    stripe_connect_timeout: float
    stripe_read_timeout: float
    stripe_capture_method: str
    stripe_token_preflight: bool
    stripe_token_expiry_margin: int
    stripe_webhook_secret: str | None
    stripe_handler_id: str

    def agent(self, name: str) -> Agent:
        """The configured agent called ``name``.

        :raises KeyError: no such agent.
        """
        for agent in self.agents:
            if agent.name == name:
                return agent
        raise KeyError(name)


def _check_store_url(url: str) -> None:
    try:
        parse_store_url(url)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


class _AgentSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    api_keys = fields.List(fields.String(validate=validate.Length(min=16)),
                           required=True, validate=validate.Length(min=1, max=2))
    webhook_url = fields.Url(load_default=None, require_tld=False)
    webhook_secrets = fields.List(fields.String(validate=validate.Length(min=16)),
                                  load_default=list, validate=validate.Length(max=2))


class _LinkSchema(Schema):
    type = fields.String(required=True, validate=validate.OneOf(LINK_TYPES))
    url = fields.Url(required=True, require_tld=False)
    title = fields.String()


class _SettingsSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    ACP_URL_PREFIX = fields.String(validate=validate.Regexp(r"^(/[^/]+)*$",
                                   error="must be empty or start with '/' and not end with '/'"))
    ACP_API_VERSIONS = fields.List(fields.String(validate=validate.OneOf(IMPLEMENTED_VERSIONS)),
                                   validate=validate.Length(min=1))
    ACP_AGENTS = fields.Dict(keys=fields.String(validate=validate.Length(min=1)),
                             values=fields.Nested(_AgentSchema), validate=validate.Length(min=1))
    ACP_ADAPTER = fields.String(validate=validate.Length(min=1))
    ACP_STORE_URL = fields.String(validate=_check_store_url)
    ACP_SQLITE_PATH = fields.String(validate=validate.Length(min=1))
    ACP_SESSION_TTL = fields.Integer(strict=True, validate=validate.Range(min=60))
    ACP_IDEMPOTENCY_TTL = fields.Integer(strict=True, validate=validate.Range(
        min=86400, error="must be at least 86400 seconds (the spec keeps keys 24 h)"))
    ACP_IDEMPOTENCY_LEASE = fields.Integer(strict=True, validate=validate.Range(min=1))
    ACP_LOCK_WAIT = fields.Float(validate=validate.Range(min=0))
    ACP_LOCK_LEASE = fields.Float(validate=validate.Range(min=1))
    ACP_REQUIRE_HTTPS = fields.Boolean()
    ACP_ALLOW_INSECURE_LOOPBACK = fields.Boolean()
    ACP_TRUSTED_PROXY_HOPS = fields.Integer(strict=True, validate=validate.Range(min=0))
    ACP_MAX_BODY_BYTES = fields.Integer(strict=True, validate=validate.Range(min=1024))
    ACP_LINKS = fields.List(fields.Nested(_LinkSchema))
    ACP_API_BASE_URL = fields.Url(allow_none=True, require_tld=False)
    ACP_DISCOVERY_MAX_AGE = fields.Integer(strict=True, validate=validate.Range(min=0))
    ACP_INTERVENTIONS = fields.List(fields.String(
        validate=validate.OneOf(["3ds", "biometric", "address_verification"])))
    ACP_JSON_ROUTING_ERRORS = fields.Boolean()
    ACP_ORDER_PLACEMENT_RETRIES = fields.List(fields.Float(validate=validate.Range(min=0, max=10)),
                                              validate=validate.Length(max=5))
    ACP_ORDER_PLACEMENT_DEADLINE = fields.Integer(strict=True, validate=validate.Range(min=0))
    ACP_PAYMENT_RECONCILE_WINDOW = fields.Integer(strict=True, validate=validate.Range(min=0))
    ACP_REDIS_URL = fields.String(allow_none=True, validate=validate.Regexp(
        r"^(redis|rediss|unix)://", error="must be a redis://, rediss:// or unix:// URL"))
    ACP_WEBHOOK_QUEUE = fields.String(validate=validate.Length(min=1))
    ACP_WEBHOOK_RETRY_INTERVALS = fields.List(
        fields.Integer(strict=True, validate=validate.Range(min=1)), validate=validate.Length(min=1))
    ACP_WEBHOOK_TIMEOUT = fields.Float(validate=validate.Range(min=0.1))
    ACP_WEBHOOK_DELIVERY_THREAD = fields.Boolean()
    ACP_STRIPE_SECRET_KEY = fields.String(allow_none=True, validate=validate.Regexp(
        r"^(sk|rk)_(test|live)_", error="must be a Stripe secret key (sk_test_..., sk_live_...)"))
    ACP_STRIPE_MERCHANT_ID = fields.String(allow_none=True, validate=validate.Length(min=1))
    ACP_STRIPE_API_BASE = fields.Url(allow_none=True, require_tld=False)
    ACP_STRIPE_SPT_API_VERSION = fields.String(validate=validate.Length(min=1))
    ACP_STRIPE_MAX_NETWORK_RETRIES = fields.Integer(strict=True, validate=validate.Range(min=0, max=10))
    ACP_STRIPE_CONNECT_TIMEOUT = fields.Float(validate=validate.Range(min=0.1))
    ACP_STRIPE_READ_TIMEOUT = fields.Float(validate=validate.Range(min=0.1))
    ACP_STRIPE_CAPTURE_METHOD = fields.String(validate=validate.OneOf(["automatic", "manual"]))
    ACP_STRIPE_TOKEN_PREFLIGHT = fields.Boolean()
    ACP_STRIPE_TOKEN_EXPIRY_MARGIN = fields.Integer(strict=True, validate=validate.Range(min=0))
    ACP_STRIPE_WEBHOOK_SECRET = fields.String(allow_none=True, validate=validate.Length(min=8))
    ACP_STRIPE_HANDLER_ID = fields.String(validate=validate.Length(min=1))

    @validates_schema
    def _stripe_merchant(self, data: dict[str, t.Any], **kwargs: t.Any) -> None:
        if data.get("ACP_STRIPE_SECRET_KEY") and not data.get("ACP_STRIPE_MERCHANT_ID"):
            raise ValidationError("set it to your Stripe account id (acct_...) when "
                                  "ACP_STRIPE_SECRET_KEY is set", "ACP_STRIPE_MERCHANT_ID")

    @validates_schema
    def _unique_keys(self, data: dict[str, t.Any], **kwargs: t.Any) -> None:
        seen: dict[str, str] = {}
        for name, agent in data.get("ACP_AGENTS", {}).items():
            for key in agent["api_keys"]:
                if key in seen and seen[key] != name:
                    raise ValidationError(f"agents {seen[key]!r} and {name!r} share an API key",
                                          "ACP_AGENTS")
                seen[key] = name


def load_settings(config: t.MutableMapping[str, t.Any], *, instance_path: str) -> Settings:
    """Apply defaults to ``config`` (visible afterwards in ``app.config``) and
    validate every ``ACP_*`` key.

    :raises RuntimeError: listing every bad key with what to set instead.
    """
    for key, value in DEFAULTS.items():
        config.setdefault(key, value)
    # storage: ACP_STORE_URL wins over ACP_SQLITE_PATH; relative sqlite: URLs start
    # at the instance folder, a relative ACP_SQLITE_PATH at the working directory
    if config["ACP_STORE_URL"] is not None:
        if config["ACP_SQLITE_PATH"] is not None:
            log.warning("ACP_SQLITE_PATH is ignored: ACP_STORE_URL is set")
        try:
            scheme, target = parse_store_url(str(config["ACP_STORE_URL"]), base_dir=instance_path)
        except ValueError:
            pass  # reported by the schema below, with the other bad keys
        else:
            if scheme == "sqlite":
                config["ACP_STORE_URL"] = sqlite_url(target)
                config["ACP_SQLITE_PATH"] = target
    if config["ACP_SQLITE_PATH"] is None:
        config["ACP_SQLITE_PATH"] = os.path.join(instance_path, "acp.sqlite3")
    if config["ACP_STORE_URL"] is None:
        config["ACP_STORE_URL"] = sqlite_url(str(config["ACP_SQLITE_PATH"]))
    raw = {k: v for k, v in config.items() if k in DEFAULTS}
    for key in sorted(k for k in config if k.startswith("ACP_") and k not in DEFAULTS
                      and k not in ADAPTER_KEYS):
        near = difflib.get_close_matches(key, DEFAULTS, n=1)
        hint = f" (did you mean {near[0]}?)" if near else ""
        log.warning("unknown configuration key %s ignored%s", key, hint)
    try:
        data = _SettingsSchema().load(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{key}: {_flatten(msg)}" for key, msg in sorted(exc.messages_dict.items()))
        hint = ""
        if "ACP_AGENTS" in exc.messages_dict and not config.get("ACP_AGENTS"):
            hint = (' (set ACP_AGENTS = {"agent-name": {"api_keys": ["<at least 16 chars>"],'
                    ' "webhook_url": ..., "webhook_secrets": [...]}})')
        raise RuntimeError(f"flask-acp configuration is invalid: {problems}{hint}") from None
    agents = tuple(
        Agent(name=name, api_keys=tuple(a["api_keys"]), webhook_url=a["webhook_url"],
              webhook_secrets=tuple(a["webhook_secrets"]))
        for name, a in data["ACP_AGENTS"].items()
    )
    return Settings(
        url_prefix=data["ACP_URL_PREFIX"],
        api_versions=tuple(sorted(set(data["ACP_API_VERSIONS"]), reverse=True)),
        agents=agents,
        adapter=data["ACP_ADAPTER"],
        store_url=data["ACP_STORE_URL"],
        sqlite_path=data["ACP_SQLITE_PATH"],
        session_ttl=data["ACP_SESSION_TTL"],
        idempotency_ttl=data["ACP_IDEMPOTENCY_TTL"],
        idempotency_lease=data["ACP_IDEMPOTENCY_LEASE"],
        lock_wait=data["ACP_LOCK_WAIT"],
        lock_lease=data["ACP_LOCK_LEASE"],
        require_https=data["ACP_REQUIRE_HTTPS"],
        allow_insecure_loopback=data["ACP_ALLOW_INSECURE_LOOPBACK"],
        trusted_proxy_hops=data["ACP_TRUSTED_PROXY_HOPS"],
        max_body_bytes=data["ACP_MAX_BODY_BYTES"],
        links=tuple(dict(link) for link in data["ACP_LINKS"]),
        api_base_url=data["ACP_API_BASE_URL"],
        discovery_max_age=data["ACP_DISCOVERY_MAX_AGE"],
        interventions=tuple(data["ACP_INTERVENTIONS"]),
        json_routing_errors=data["ACP_JSON_ROUTING_ERRORS"],
        order_placement_retries=tuple(data["ACP_ORDER_PLACEMENT_RETRIES"]),
        order_placement_deadline=data["ACP_ORDER_PLACEMENT_DEADLINE"],
        payment_reconcile_window=data["ACP_PAYMENT_RECONCILE_WINDOW"],
        redis_url=data["ACP_REDIS_URL"],
        webhook_queue=data["ACP_WEBHOOK_QUEUE"],
        webhook_retry_intervals=tuple(data["ACP_WEBHOOK_RETRY_INTERVALS"]),
        webhook_timeout=data["ACP_WEBHOOK_TIMEOUT"],
        webhook_delivery_thread=data["ACP_WEBHOOK_DELIVERY_THREAD"],
        stripe_secret_key=data["ACP_STRIPE_SECRET_KEY"],
        stripe_merchant_id=data["ACP_STRIPE_MERCHANT_ID"],
        stripe_api_base=data["ACP_STRIPE_API_BASE"],
        stripe_spt_api_version=data["ACP_STRIPE_SPT_API_VERSION"],
        stripe_max_network_retries=data["ACP_STRIPE_MAX_NETWORK_RETRIES"],
        stripe_connect_timeout=data["ACP_STRIPE_CONNECT_TIMEOUT"],
        stripe_read_timeout=data["ACP_STRIPE_READ_TIMEOUT"],
        stripe_capture_method=data["ACP_STRIPE_CAPTURE_METHOD"],
        stripe_token_preflight=data["ACP_STRIPE_TOKEN_PREFLIGHT"],
        stripe_token_expiry_margin=data["ACP_STRIPE_TOKEN_EXPIRY_MARGIN"],
        stripe_webhook_secret=data["ACP_STRIPE_WEBHOOK_SECRET"],
        stripe_handler_id=data["ACP_STRIPE_HANDLER_ID"],
    )


def _flatten(message: t.Any) -> str:
    if isinstance(message, dict):
        return "; ".join(f"{k}: {_flatten(v)}" for k, v in message.items())
    if isinstance(message, list):
        return " ".join(_flatten(m) for m in message)
    return str(message)
