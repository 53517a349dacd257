"""Configuration: every config key, declared once.

A key is declared by one field of a frozen dataclass, with :func:`setting`:
the key, a marshmallow field (type and validation), the default, the unit and
a one-line doc. A :class:`Section` bundles such a dataclass with cross-field
checks. From the declarations come the loaded values (an instance of the
dataclass: typed attributes), the validation errors, the unknown-key warnings
and the README's tables (:mod:`flask_acp.configdoc`).

The core's section is :data:`CORE_SETTINGS` (:class:`Settings`, here); the
Stripe processor declares ``STRIPE_SETTINGS`` and every platform adapter its
``settings_section``. :meth:`flask_acp.ACP.init_app` validates them all at once
with :func:`load_settings`, and reports every problem in one error.
"""

from __future__ import annotations

import collections.abc as cabc
import copy
import dataclasses
import difflib
import functools
import ipaddress
import logging
import os
import re
import typing as t

import click
from limits import parse_many
from marshmallow import EXCLUDE
from marshmallow import Schema
from marshmallow import ValidationError
from marshmallow import fields
from marshmallow import validate
from marshmallow import validates_schema

from . import signing
from .store import is_redis
from .store import parse_store_url
from .store import sqlite_url
from .store._redis import parse_redis_url

if t.TYPE_CHECKING:
    from _typeshed import DataclassInstance

log = logging.getLogger("flask_acp")



LINK_TYPES = (
    "terms_of_use", "privacy_policy", "return_policy", "shipping_policy",
    "contact_us", "about_us", "faq", "support",
)

#: the platform adapter used when ``ACP_ADAPTER`` is not set.
DEFAULT_ADAPTER = "catalog"


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: the default of a key that must be set.
REQUIRED: t.Any = _Required()

#: a validator refusing empty and whitespace-only strings.
NOT_BLANK = validate.Regexp(r"\s*\S", error="must not be blank")


@dataclasses.dataclass(frozen=True, slots=True)
class Setting:
    """The declaration of one config key (see :func:`setting`)."""

    key: str
    field: fields.Field[t.Any]
    default: t.Any
    doc: str
    unit: str = ""
    default_doc: str | None = None
    example: str | None = None
    convert: cabc.Callable[[t.Any], t.Any] | None = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


def setting(key: str, field: fields.Field[t.Any], default: t.Any = REQUIRED, *, doc: str, unit: str = "",
            default_doc: str | None = None, example: str | None = None,
            convert: cabc.Callable[[t.Any], t.Any] | None = None) -> t.Any:
    """Declare a settings dataclass field read from the config key ``key``.

    :param field: the marshmallow field that validates and deserializes the
        config value (its type is the README's "type").
    :param default: the value used when the key is unset or ``None`` (in
        config form: a list, not a tuple); :data:`REQUIRED` when it must be set.
    :param doc: one line (Markdown) for the README table.
    :param unit: e.g. ``"seconds"``, ``"bytes"``.
    :param default_doc: how the README shows the default, when the value
        alone says too little (a default computed at load time).
    :param example: a value to suggest when a required key is missing.
    :param convert: applied to the validated value unless it is ``None`` (e.g. ``tuple``).
    """
    declared = Setting(key, field, default, doc, unit, default_doc, example, convert)
    return dataclasses.field(metadata={"setting": declared})


#: one problem: the key and what is wrong with it / what to set.
Problem = tuple[str, str]

V = t.TypeVar("V", bound="DataclassInstance")


@dataclasses.dataclass(frozen=True)
class Section(t.Generic[V]):
    """A group of config keys: the fields of ``values`` declared with :func:`setting`.

    :param name: short id (``"core"``, ``"stripe"``, ``"shopify"``), also the
        README block's marker ``<!-- settings: name -->``.
    :param values: the frozen dataclass the keys load into.
    :param checks: cross-field checks, run on the loaded values when every
        key is valid; each raises :class:`marshmallow.ValidationError` with the
        offending key as ``field_name``.
    """

    name: str
    values: type[V]
    checks: tuple[cabc.Callable[[V], None], ...] = ()

    def __post_init__(self) -> None:
        keys = [s.key for s in self.settings()]
        if len(set(keys)) != len(keys):
            raise TypeError(f"section {self.name!r} declares a key twice: {keys}")

    def settings(self) -> tuple[Setting, ...]:
        """The declarations, in order."""
        return tuple(s for _, s in self._declared)

    @functools.cached_property
    def _declared(self) -> tuple[tuple[str, Setting], ...]:
        """(attribute name, declaration) of every declared field."""
        found = []
        for f in dataclasses.fields(self.values):
            if "setting" not in f.metadata:
                raise TypeError(f"{self.values.__name__}.{f.name} is not declared with setting()")
            found.append((f.name, f.metadata["setting"]))
        return tuple(found)

    @functools.cached_property
    def _schema(self) -> type[Schema]:
        return Schema.from_dict({s.key: s.field for s in self.settings()}, name=f"{self.name}Settings")

    def load(self, config: cabc.Mapping[str, t.Any]) -> V:
        """Validate this section's keys of ``config`` (not modified) and
        return their values. An unset or ``None`` key takes its default.

        :raises ValueError: naming every bad key (``KEY: problem; KEY: problem``).
        """
        values, problems = self.validate(config)
        if values is None:
            raise ValueError("; ".join(f"{key}: {text}" for key, text in problems))
        return values

    def validate(self, config: cabc.Mapping[str, t.Any]) -> tuple[V | None, list[Problem]]:
        """The values (``None`` when a key is invalid) and every problem found."""
        raw: dict[str, t.Any] = {}
        problems: list[Problem] = []
        for s in self.settings():
            value = config.get(s.key)
            if value is None:
                value = s.default
            if value is REQUIRED:
                example = f"; e.g. {s.key} = {s.example}" if s.example else ""
                problems.append((s.key, f"required{example}"))
            else:
                raw[s.key] = value
        try:
            data = self._schema().load(raw)
        except ValidationError as exc:
            problems += [(key, _flatten(text)) for key, text in exc.messages_dict.items()]
        if problems:
            order = {s.key: i for i, s in enumerate(self.settings())}
            return None, sorted(problems, key=lambda p: order.get(p[0], len(order)))
        values = self.values(**{name: _converted(s, data[s.key]) for name, s in self._declared})
        for check in self.checks:
            try:
                check(values)
            except ValidationError as exc:
                problems.append((str(exc.field_name), _flatten(exc.messages)))
        return (None if problems else values), problems

    def apply_defaults(self, config: cabc.MutableMapping[str, t.Any]) -> None:
        """Write the default of every unset (or ``None``) key into ``config``."""
        for s in self.settings():
            if config.get(s.key) is None and not s.required:
                config[s.key] = copy.deepcopy(s.default)


class Loaded:
    """The values of several sections, by section: ``loaded[CORE_SETTINGS]``."""

    def __init__(self, values: cabc.Mapping[str, object]) -> None:
        self._values = dict(values)

    def __getitem__(self, section: Section[V]) -> V:
        return t.cast(V, self._values[section.name])


# --- the core's keys ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Agent:
    """An agent allowed to call the API.

    :ivar api_keys: bearer tokens; two may be active during rotation.
    :ivar webhook_url: where order events go (https unless debug/testing).
    :ivar webhook_secrets: HMAC secrets for ``Merchant-Signature``; the first signs.
    :ivar api_version: the ACP version its order webhooks are written in (and
        signed as); None until ``init_app`` resolves it (default: the newest served).
    :ivar signature_policy: what an invalid request ``Signature`` does: ``off``
        (not checked), ``log`` (checked, a warning logged), ``strict`` (401).
    :ivar signature_algorithm: ``hmac-sha256`` or ``ed25519`` (:mod:`flask_acp.signing`).
    :ivar signature_keys: the HMAC secrets or Ed25519 public keys; two during a rotation.
    """

    name: str
    api_keys: tuple[str, ...]
    webhook_url: str | None = None
    webhook_secrets: tuple[str, ...] = ()
    api_version: str | None = None
    signature_policy: str = "off"
    signature_algorithm: str = "hmac-sha256"
    signature_keys: tuple[str, ...] = ()
    #: the agent's Feed API base URL (``POST {feed_url}/feeds``, ``PATCH
    #: {feed_url}/feeds/{id}/products``); None: no product feed for this agent.
    feed_url: str | None = None
    #: bearer token sent to the Feed API (``Authorization: Bearer ...``), if it wants one.
    feed_token: str | None = None
    #: an existing feed to update; None: ``flask acp feed push`` creates one and
    #: remembers its id in ``ACP_FEED_STATE_FILE``.
    feed_id: str | None = None
    #: ``CreateFeedRequest.target_country`` (ISO 3166-1 alpha-2) of a feed created here.
    feed_target_country: str | None = None


#: what an agent's ``signature_policy`` may say
SIGNATURE_POLICIES = ("off", "log", "strict")


class _AgentSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    api_keys = fields.List(fields.String(validate=validate.Length(min=16)),
                           required=True, validate=validate.Length(min=1, max=2))
    webhook_url = fields.Url(load_default=None, require_tld=False)
    webhook_secrets = fields.List(fields.String(validate=validate.Length(min=16)),
                                  load_default=list, validate=validate.Length(max=2))
    api_version = fields.String(load_default=None, validate=validate.Regexp(
        r"^\d{4}-\d{2}-\d{2}$", error="must be an API-Version date, YYYY-MM-DD"))
    signature_policy = fields.String(load_default="off", validate=validate.OneOf(SIGNATURE_POLICIES))
    signature_algorithm = fields.String(load_default="hmac-sha256",
                                        validate=validate.OneOf(signing.ALGORITHMS))
    signature_keys = fields.List(fields.String(validate=NOT_BLANK), load_default=list,
                                 validate=validate.Length(max=2))
    feed_url = fields.Url(load_default=None, require_tld=False)
    feed_token = fields.String(load_default=None, validate=NOT_BLANK)
    feed_id = fields.String(load_default=None, validate=NOT_BLANK)
    feed_target_country = fields.String(load_default=None, validate=validate.Regexp(
        r"^[A-Z]{2}$", error="must be an ISO 3166-1 alpha-2 code like \"US\""))

    @validates_schema
    def _signature_keys(self, data: dict[str, t.Any], **kwargs: t.Any) -> None:
        keys = data.get("signature_keys") or []
        if data.get("signature_policy", "off") != "off" and not keys:
            raise ValidationError("a signature_policy other than 'off' needs signature_keys",
                                  "signature_keys")
        for i, key in enumerate(keys):
            try:
                signing.check_key(data.get("signature_algorithm", "hmac-sha256"), key)
            except ValueError as exc:
                raise ValidationError(f"key {i}: {exc}", "signature_keys") from None


class _LinkSchema(Schema):
    type = fields.String(required=True, validate=validate.OneOf(LINK_TYPES))
    url = fields.Url(required=True, require_tld=False)
    title = fields.String()


class _ConsentOptionSchema(Schema):
    channel = fields.String(required=True, validate=validate.Regexp(
        r"^[a-z][a-z0-9_]{0,31}$", error="must be a channel name such as email, sms or whatsapp"))
    display_text = fields.String(required=True, validate=validate.Length(min=1, max=500))
    privacy_policy_url = fields.Url(required=True, require_tld=False)


def _agents(value: dict[str, dict[str, t.Any]]) -> tuple[Agent, ...]:
    return tuple(Agent(name=name, api_keys=tuple(a["api_keys"]), webhook_url=a["webhook_url"],
                       webhook_secrets=tuple(a["webhook_secrets"]), api_version=a["api_version"],
                       signature_policy=a["signature_policy"], signature_algorithm=a["signature_algorithm"],
                       signature_keys=tuple(a["signature_keys"]), feed_url=a["feed_url"],
                       feed_token=a["feed_token"], feed_id=a["feed_id"],
                       feed_target_country=a["feed_target_country"])
                 for name, a in value.items())


def _check_limits(value: str) -> None:
    """A rate limit string in the ``limits`` notation (``"10/second;600/minute"``), or empty."""
    if not value.strip():
        return
    try:
        items = parse_many(value)
    except ValueError as exc:
        raise ValidationError(f"not a rate limit such as '600/minute' or '10/second;600/minute': {exc}") \
            from None
    if any(item.amount < 1 for item in items):
        raise ValidationError("a limit of 0 allows nothing at all; leave it empty for no limit")


def _rate_limit(key: str, default: str, doc: str) -> t.Any:
    return setting(key, fields.String(validate=_check_limits), default, unit="requests/window",
                   doc=doc + " `limits` notation (`\"20/second;600/minute\"`: every one applies); "
                             "empty: none.")


def _newest_first(value: list[str]) -> tuple[str, ...]:
    return tuple(sorted(set(value), reverse=True))


def _check_store_url(url: str) -> None:
    try:
        parse_store_url(url)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


def _check_queue_url(url: str | None) -> None:
    if not url:
        return
    try:
        parsed = parse_redis_url(url)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None
    if parsed.topology == "cluster":
        raise ValidationError("RQ cannot use a Redis Cluster: name a single Redis or a Sentinel "
                              "(redis://, rediss://, unix://, redis+sentinel://), or set it to \"\" for the "
                              "delivery thread")


def _retention(value: int) -> None:
    if value != 0 and value < 86400:
        raise ValidationError("must be 0 (keep) or at least 86400 seconds (the spec keeps idempotent "
                              "responses 24 h)")


def _check_continue_url(value: str | None) -> None:
    """A URL template with one ``{cart_id}`` field."""
    if value is None:
        return
    try:
        url = value.format(cart_id="cart_0")
    except (KeyError, IndexError, ValueError):
        raise ValidationError("must be a URL whose only {field} is {cart_id}") from None
    fields.Url(require_tld=False).deserialize(url)


class _AuthHook(fields.Field):  # type: ignore[type-arg]
    """A callable, or the ``module:function`` (or ``module.function``) path of one."""

    #: how the README names the type.
    type_name = "callable or str"
    default_error_messages = {"invalid": "Not a callable or a 'module:function' path."}

    def _deserialize(self, value: t.Any, attr: str | None, data: cabc.Mapping[str, t.Any] | None,
                     **kwargs: t.Any) -> t.Any:
        if callable(value) or (isinstance(value, str) and re.fullmatch(r"[\w.]+[:.]\w+", value)):
            return value
        raise self.make_error("invalid")


class _LogLevel(fields.String):
    """A ``logging`` level name, any case (``info`` is ``INFO``)."""

    LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

    def _deserialize(self, value: t.Any, attr: str | None, data: cabc.Mapping[str, t.Any] | None,
                     **kwargs: t.Any) -> str:
        level = str(super()._deserialize(value, attr, data, **kwargs)).upper()
        if level not in self.LEVELS:
            raise ValidationError(f"Must be one of: {', '.join(self.LEVELS)} (any case).")
        return level


def _check_network(value: str) -> None:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError as exc:
        raise ValidationError(f"not an IP address or network: {exc}") from None


def _seconds(minimum: float) -> validate.Range:
    return validate.Range(min=minimum)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """The validated, frozen ``ACP_*`` configuration of one app (the core's keys)."""

    agents: tuple[Agent, ...] = setting(
        "ACP_AGENTS",
        fields.Dict(keys=fields.String(validate=validate.Length(min=1)), values=fields.Nested(_AgentSchema),
                    validate=validate.Length(min=1, error="name at least one agent")),
        example='{"agent-name": {"api_keys": ["<at least 16 chars>"], "webhook_url": ..., '
                '"webhook_secrets": [...], "api_version": "2026-04-17", "signature_policy": "strict", '
                '"signature_keys": [...]}}',
        convert=_agents,
        doc='Agent name → `{"api_keys": [1 or 2 tokens, ≥16 chars], "webhook_url": str, '
            '"webhook_secrets": [≤2], "api_version": str}`. `api_version` (a served version; default the '
            "newest served) is the ACP version that agent's order webhooks are written and signed in. "
            "Two keys per agent are accepted at once during rotation; keys are "
            "compared in constant time. `webhook_url` must be https (http only to loopback hosts or in "
            "debug/testing); the first secret signs (give the agent the new one before moving it first); "
            "no URL: that agent's events are `skipped` when a delivery looks at them. `example_app.py` "
            "takes them from `ACP_WEBHOOK_URL` / `ACP_WEBHOOK_SECRET`. Request signatures (see Security): "
            '`"signature_policy": "off"|"log"|"strict"` (default `off`), `"signature_algorithm": '
            '"hmac-sha256"|"ed25519"` (default `hmac-sha256`), `"signature_keys": [1 or 2 HMAC secrets '
            "(≥32 chars) or Ed25519 public keys (base64url of 32 bytes, or PEM)]`. Product feed (see "
            '"Product feed"): `"feed_url"` (the agent\'s Feed API base URL), `"feed_token"` (bearer), '
            '`"feed_id"` (an existing feed; default: the one `flask acp feed push` creates), '
            '`"feed_target_country"` (`"US"`).')
    url_prefix: str = setting(
        "ACP_URL_PREFIX",
        fields.String(validate=validate.Regexp(
            r"^(/[^/]+)*$", error="must be empty or start with '/' and not end with '/'")),
        "",
        doc="Mount point of the checkout routes (`/acp`); discovery stays at `/.well-known/acp.json`.")
    api_versions: tuple[str, ...] = setting(
        "ACP_API_VERSIONS",
        fields.List(fields.String(validate=validate.Regexp(
            r"^\d{4}-\d{2}-\d{2}$", error="must be an API-Version date, YYYY-MM-DD"))),
        [], convert=_newest_first, default_doc="every implemented version",
        doc="Accepted `API-Version` values: some of the versions this release implements "
            "(`flask_acp.versions.VERSIONS`: 2025-09-29, 2025-12-12, 2026-01-16, 2026-01-30, "
            "2026-04-17); empty: all of them. `2025-09-12` is answered as `2025-09-29` whenever that "
            "is served.")
    adapter: str = setting(
        "ACP_ADAPTER", fields.String(validate=validate.Length(min=1)), DEFAULT_ADAPTER,
        doc="Platform adapter: an entry point of the `flask_acp.adapters` group, or `module:Class`. "
            "`ACP(adapter=...)` overrides it.")
    store_url: str = setting(
        "ACP_STORE_URL", fields.String(validate=_check_store_url), None, unit="URL",
        default_doc="`sqlite://` + the `ACP_SQLITE_PATH` file",
        doc="Where sessions, locks, idempotency records, the order-event outbox and the inbound-webhook "
            "log live: `sqlite:///abs/path.sqlite3`, or `sqlite:rel/path.sqlite3` relative to the "
            "instance folder; or a Redis shared by several app servers: `redis://[:pw@]host:6379/0`, "
            "`rediss://…` (TLS), `unix:///path/redis.sock`, `redis+sentinel://host:26379,host2:26379/"
            "<master name>/0`, `redis+cluster://host:7000,host2:7001`, with options `?key_prefix=acp:` "
            "(default), `wait_replicas=N` (`WAIT` for N replicas after each write), `wait_timeout`, "
            "`socket_timeout`, `connect_timeout` (seconds), `sentinel_password` (see \"Scaling out\"). "
            "It wins over `ACP_SQLITE_PATH` (a warning says the latter is ignored); the catalog's stock "
            "goes to the same file or Redis. `ACP(store=...)` takes a ready `flask_acp.store.Storage` "
            "instead.")
    sqlite_path: str = setting(
        "ACP_SQLITE_PATH", fields.String(allow_none=True, validate=validate.Length(min=1)), None, unit="path",
        default_doc="`<instance_path>/acp.sqlite3`",
        doc="SQLite file (relative: to the working directory) for sessions, idempotency records, "
            "locks, the outbox and the catalog's stock, when `ACP_STORE_URL` is unset.")
    session_ttl: int = setting(
        "ACP_SESSION_TTL", fields.Integer(strict=True, validate=_seconds(60)), 3600, unit="seconds",
        doc="A session expires this long after its creation or last update; its stock is released.")
    stock_hold_ttl: int = setting(
        "ACP_STOCK_HOLD_TTL", fields.Integer(strict=True, validate=_seconds(60)), 900, unit="seconds",
        doc="The longest a session holds stock before `complete`: the hold starts when the session first "
            "becomes `ready_for_payment` (nothing is held before) and ends this long after, however often "
            "the session is updated; afterwards an update only checks availability, and `complete` holds "
            "the stock again for the charge if it is still there (README \"Stock holds\").")
    pii_retention: int = setting(
        "ACP_PII_RETENTION", fields.Integer(strict=True, validate=_retention), 2592000,
        unit="seconds",
        doc="`flask acp sweep` erases the buyer, addresses, order notes and every other personal field of "
            "`completed`, `canceled` and `expired` sessions last changed longer ago than this, and the "
            "stored idempotent responses of that age (README \"Personal data\"); `0`: kept for ever; else at "
            "least 86400. The order, totals and payment record stay (webhooks carry the order only).")
    idempotency_ttl: int = setting(
        "ACP_IDEMPOTENCY_TTL",
        fields.Integer(strict=True, validate=validate.Range(
            min=86400, error="must be at least 86400 seconds (the spec keeps keys 24 h)")),
        86400, unit="seconds",
        doc="How long a response is kept for replay. The spec requires at least 24 h.")
    idempotency_lease: int = setting(
        "ACP_IDEMPOTENCY_LEASE", fields.Integer(strict=True, validate=_seconds(1)), 120, unit="seconds",
        doc="A claimed key whose request never finished (worker died) is taken over after this.")
    lock_wait: float = setting(
        "ACP_LOCK_WAIT", fields.Float(validate=_seconds(0)), 10.0, unit="seconds",
        doc="How long a request waits for another request on the same session before 409 "
            "`checkout_session_busy`.")
    lock_lease: float = setting(
        "ACP_LOCK_LEASE", fields.Float(validate=_seconds(1)), 600.0, unit="seconds",
        doc="A session lock held by a dead worker on another machine frees itself after this (one on the "
            "same machine is taken over at once); also when `flask acp sweep` treats a completion as "
            "interrupted. Must exceed one completion's time budget (checked at start-up: 421.2 s with "
            "the default Stripe settings: `CheckoutService.complete_time_budget()`).")
    require_https: bool = setting(
        "ACP_REQUIRE_HTTPS", fields.Boolean(), True,
        doc="Refuse plain-HTTP requests (403 `https_required`) unless the app is in debug or testing mode.")
    allow_insecure_loopback: bool = setting(
        "ACP_ALLOW_INSECURE_LOOPBACK", fields.Boolean(), False,
        doc="Accept plain HTTP from 127.0.0.1/::1 (local demos). Refused at start-up outside debug/testing "
            "unless `ACP_FORCE_INSECURE_LOOPBACK` is also set: behind a reverse proxy on the same host every "
            "request comes from loopback, and the HTTPS rule would be void.")
    force_insecure_loopback: bool = setting(
        "ACP_FORCE_INSECURE_LOOPBACK", fields.Boolean(), False,
        doc="Keep `ACP_ALLOW_INSECURE_LOOPBACK` outside debug/testing (a local demo such as "
            "`example_app.py`; never in production).")
    trusted_proxy_hops: int = setting(
        "ACP_TRUSTED_PROXY_HOPS", fields.Integer(strict=True, validate=validate.Range(min=0)), 0,
        doc="Number of reverse proxies in front of the app; only then are `X-Forwarded-Proto`/`-For` "
            "trusted (the value that many hops from the right).")
    max_body_bytes: int = setting(
        "ACP_MAX_BODY_BYTES", fields.Integer(strict=True, validate=validate.Range(min=1024)), 65536,
        unit="bytes", doc="Larger request bodies get 413.")
    max_webhook_bytes: int = setting(
        "ACP_MAX_WEBHOOK_BYTES", fields.Integer(strict=True, validate=validate.Range(min=1024)), 1048576,
        unit="bytes", doc="Larger inbound webhook bodies (Stripe, the platform) get 413 before the rest "
                          "is read.")
    links: tuple[dict[str, str], ...] = setting(
        "ACP_LINKS", fields.List(fields.Nested(_LinkSchema)), [],
        convert=lambda value: tuple(dict(link) for link in value),
        doc='`Link` objects (`{"type": "terms_of_use", "url": ...}`) returned in every session.')
    marketing_consent_options: tuple[dict[str, str], ...] = setting(
        "ACP_MARKETING_CONSENT_OPTIONS", fields.List(fields.Nested(_ConsentOptionSchema)), [],
        convert=lambda value: tuple(dict(option) for option in value),
        doc='`MarketingConsentOption` objects (`{"channel": "email", "display_text": ..., '
            '"privacy_policy_url": ...}`, one per channel) offered on every 2026-04-17 session; the '
            "buyer's decisions (`marketing_consents` on complete) reach the platform order.")
    api_base_url: str | None = setting(
        "ACP_API_BASE_URL", fields.Url(allow_none=True, require_tld=False), None,
        default_doc="derived from the request",
        doc="`api_base_url` of the discovery document. Required outside debug/testing unless Flask's "
            "`TRUSTED_HOSTS` is set: the discovery document never echoes an untrusted `Host`.")
    discovery_max_age: int = setting(
        "ACP_DISCOVERY_MAX_AGE", fields.Integer(strict=True, validate=_seconds(0)), 3600, unit="seconds",
        doc="`Cache-Control: public, max-age=…` of the discovery document.")
    interventions: tuple[str, ...] = setting(
        "ACP_INTERVENTIONS",
        fields.List(fields.String(validate=validate.OneOf(["3ds", "biometric", "address_verification"]))),
        [], convert=tuple,
        doc="Interventions the merchant supports (`3ds`, `biometric`, `address_verification`); sessions "
            "return their intersection with the agent's.")
    json_routing_errors: bool = setting(
        "ACP_JSON_ROUTING_ERRORS", fields.Boolean(), True,
        doc="JSON 404/405 for unknown paths and wrong methods under the ACP prefix (and its "
            "`/webhooks/`); the host app's other errors are untouched.")
    order_placement_retries: tuple[float, ...] = setting(
        "ACP_ORDER_PLACEMENT_RETRIES",
        fields.List(fields.Float(validate=validate.Range(min=0, max=10)), validate=validate.Length(max=5)),
        [0.2, 1.0], unit="seconds", convert=tuple,
        doc="Pauses between inline retries when the platform is briefly unavailable while placing a paid "
            "order.")
    order_placement_deadline: int = setting(
        "ACP_ORDER_PLACEMENT_DEADLINE", fields.Integer(strict=True, validate=_seconds(0)), 3600,
        unit="seconds", doc="A paid order still unplaceable this long after the charge is refunded "
                            "(unless placing it may have succeeded: then it is logged at error level).")
    payment_reconcile_window: int = setting(
        "ACP_PAYMENT_RECONCILE_WINDOW", fields.Integer(strict=True, validate=_seconds(0)), 300,
        unit="seconds",
        doc="After a charge whose outcome is unknown, how long other tokens are refused (503 "
            "`payment_outcome_pending`) while the processor's search may still be catching up.")
    payment_failure_limit: int = setting(
        "ACP_PAYMENT_FAILURE_LIMIT", fields.Integer(strict=True, validate=validate.Range(min=1)), 5,
        doc="Failed payment attempts (declined, unusable token, 3-D Secure required) a session may have "
            "before it stops calling the payment processor: from then on each failure starts an "
            "`ACP_PAYMENT_COOLDOWN`, during which `complete` answers the session with a `rate_limited` "
            "message and calls neither the processor nor the platform (card testing).")
    payment_cooldown: int = setting(
        "ACP_PAYMENT_COOLDOWN", fields.Integer(strict=True, validate=_seconds(1)), 900, unit="seconds",
        doc="How long a session that reached `ACP_PAYMENT_FAILURE_LIMIT` refuses payment attempts after its "
            "last failure.")
    discount_code_rejection_limit: int = setting(
        "ACP_DISCOUNT_CODE_REJECTION_LIMIT", fields.Integer(strict=True, validate=validate.Range(min=1)),
        5, doc="Discount codes of one session (one agent's) the platform may reject before the session "
               "stops trying new ones: from then on each rejection starts an "
               "`ACP_DISCOUNT_CODE_COOLDOWN`, during which a code not sent before is rejected "
               "(`discount_code_invalid`, saying why) without asking the platform (code guessing).")
    discount_code_cooldown: int = setting(
        "ACP_DISCOUNT_CODE_COOLDOWN", fields.Integer(strict=True, validate=_seconds(1)), 600,
        unit="seconds", doc="How long a session that reached `ACP_DISCOUNT_CODE_REJECTION_LIMIT` tries no "
                            "new discount code after its last rejection.")
    rate_limits_enabled: bool = setting(
        "ACP_RATE_LIMITS_ENABLED", fields.Boolean(), True,
        doc="Apply the `ACP_RATE_LIMIT_*` limits (429 `rate_limit_exceeded` with `Retry-After`; "
            "`False` also turns off the per-agent discount-code limit).")
    rate_limit_storage_url: str | None = setting(
        "ACP_RATE_LIMIT_STORAGE_URL", fields.String(allow_none=True, validate=validate.Regexp(
            r"^[a-z+]+://", error="must be a `limits` storage URL such as redis://host:6379/1 or memory://")),
        None, unit="URL", default_doc="the Redis of `ACP_STORE_URL` or `ACP_REDIS_URL`, else `memory://`",
        doc="Where the rate-limit counters live (a `limits` storage URL: `redis://`, `rediss://`, "
            "`redis+unix://`, `redis+sentinel://`, `redis+cluster://`, `memcached://`, `memory://`). "
            "`memory://` counts per process: with N worker processes a limit allows up to N times its "
            "value — use Redis in production.")
    rate_limit_per_ip: str = _rate_limit(
        "ACP_RATE_LIMIT_PER_IP", "1200/minute",
        "Requests per client address (through `ACP_TRUSTED_PROXY_HOPS`), counted before authentication, "
        "on the checkout and cart routes and the MCP endpoint.")
    rate_limit_per_agent: str = _rate_limit(
        "ACP_RATE_LIMIT_PER_AGENT", "600/minute",
        "Checkout requests per authenticated agent (REST and MCP tool calls).")
    rate_limit_complete_per_agent: str = _rate_limit(
        "ACP_RATE_LIMIT_COMPLETE_PER_AGENT", "60/minute",
        "`complete` requests per agent (on top of the above).")
    rate_limit_complete_per_session: str = _rate_limit(
        "ACP_RATE_LIMIT_COMPLETE_PER_SESSION", "10/minute", "`complete` requests per agent and session.")
    rate_limit_discount_rejections_per_agent: str = _rate_limit(
        "ACP_RATE_LIMIT_DISCOUNT_REJECTIONS_PER_AGENT", "100/hour",
        "Discount codes of one agent the platform may reject, over all its sessions (code guessing): "
        "past it, a code a session has not had checked before is rejected `discount_code_invalid` "
        "without asking the platform until the window lets one more through (an agent serves many "
        "buyers: size it above their honest typos).")
    signature_tolerance: int = setting(
        "ACP_SIGNATURE_TOLERANCE", fields.Integer(strict=True, validate=validate.Range(min=1, max=3600)), 300,
        unit="seconds",
        doc="A signed request's `Timestamp` may be this far from the server's clock, either way; a "
            "signature is accepted once (seen signatures are kept in the store's inbound log).")
    inbound_log_ttl: int = setting(
        "ACP_INBOUND_LOG_TTL", fields.Integer(strict=True, validate=validate.Range(
            min=259200, error="must be at least 259200 seconds (Stripe retries an event for 3 days)")),
        604800, unit="seconds",
        doc="`flask acp sweep` forgets inbound webhook ids and seen request signatures older than this.")
    redis_url: str | None = setting(
        "ACP_REDIS_URL", fields.String(allow_none=True, validate=_check_queue_url), None,
        default_doc="the store's Redis, if any",
        doc="`redis://`, `rediss://`, `unix://` or `redis+sentinel://`: order webhooks are delivered by "
            "RQ workers (`flask acp worker`). Unset: the Redis of `ACP_STORE_URL` when it names a single "
            "server or a Sentinel (RQ cannot use a Cluster); with a SQLite store, or set to `\"\"`: by a "
            "thread in each app process.")
    webhook_queue: str = setting(
        "ACP_WEBHOOK_QUEUE", fields.String(validate=validate.Length(min=1)), "acp-webhooks",
        doc="RQ queue name.")
    webhook_retry_intervals: tuple[int, ...] = setting(
        "ACP_WEBHOOK_RETRY_INTERVALS",
        fields.List(fields.Integer(strict=True, validate=validate.Range(min=1)),
                    validate=validate.Length(min=1)),
        [10, 30, 120, 600, 1800, 3600, 7200, 14400], unit="seconds", convert=tuple,
        doc="Wait before retry *k*; N intervals = N+1 attempts, then `failed`.")
    webhook_timeout: float = setting(
        "ACP_WEBHOOK_TIMEOUT", fields.Float(validate=_seconds(0.1)), 10.0, unit="seconds",
        doc="Per delivery attempt.")
    feed_state_file: str = setting(
        "ACP_FEED_STATE_FILE", fields.String(validate=NOT_BLANK), "acp-feed-state.json", unit="path",
        doc="Where `flask acp feed push` keeps each agent's feed id and what it pushed (resume, "
            "incremental pushes); a relative path is under the app's instance folder. Webhook workers "
            "read the feed id here unless the agent's `feed_id` is set.")
    feed_batch_size: int = setting(
        "ACP_FEED_BATCH_SIZE", fields.Integer(strict=True, validate=validate.Range(min=1, max=1000)), 100,
        unit="products", doc="Products per `PATCH /feeds/{id}/products` of `flask acp feed push`.")
    webhook_delivery_thread: bool = setting(
        "ACP_WEBHOOK_DELIVERY_THREAD", fields.Boolean(), True,
        doc="Without Redis, deliver from a daemon thread (started on the first request or event); "
            "`False`: run `flask acp worker` instead.")
    mcp_enabled: bool = setting(
        "ACP_MCP_ENABLED", fields.Boolean(), False,
        doc="Serve the checkout API as MCP tools (ACP's MCP binding, Streamable HTTP) at `ACP_MCP_PATH` "
            "of this app, and list the `mcp` transport in discovery. Needs `pip install "
            "'flask-acp[mcp]'`. `flask acp mcp --port N` serves the same tools standalone.")
    mcp_path: str = setting(
        "ACP_MCP_PATH", fields.String(validate=validate.Regexp(
            r"^/[^?#]*[^/?#]$", error="must be an absolute path such as /mcp, without a trailing slash")),
        "/mcp", doc="Where the MCP endpoint is served when `ACP_MCP_ENABLED` (not under `ACP_URL_PREFIX`).")
    carts_enabled: bool = setting(
        "ACP_CARTS_ENABLED", fields.Boolean(), False,
        doc="Serve the Cart API (`/carts`, ACP 2026-04-17's optional service: estimates without a stock "
            "hold) and list `carts` in discovery's `services`.")
    cart_ttl: int = setting(
        "ACP_CART_TTL", fields.Integer(strict=True, validate=_seconds(60)), 604800, unit="seconds",
        doc="A cart is gone (404) this long after its creation or last update.")
    cart_continue_url: str | None = setting(
        "ACP_CART_CONTINUE_URL", fields.String(allow_none=True, validate=_check_continue_url), None,
        doc="`continue_url` of every cart: a URL template where `{cart_id}` is the cart's id "
            "(`https://shop.example/cart/{cart_id}`); unset: no `continue_url`.")
    health_enabled: bool = setting(
        "ACP_HEALTH_ENABLED", fields.Boolean(), True,
        doc="Serve `ACP_HEALTHZ_PATH` (the process is up) and `ACP_READYZ_PATH` (store, queue and "
            "processor reachable; 503 with `Retry-After` when one is not) for load balancers: JSON, "
            "no authentication, dependencies named but never described.")
    healthz_path: str = setting(
        "ACP_HEALTHZ_PATH", fields.String(validate=validate.Regexp(
            r"^/[^?#]*[^/?#]$", error="must be an absolute path such as /healthz, without a trailing slash")),
        "/healthz", doc="The liveness probe's path (not under `ACP_URL_PREFIX`).")
    readyz_path: str = setting(
        "ACP_READYZ_PATH", fields.String(validate=validate.Regexp(
            r"^/[^?#]*[^/?#]$", error="must be an absolute path such as /healthz, without a trailing slash")),
        "/readyz", doc="The readiness probe's path (not under `ACP_URL_PREFIX`).")
    readyz_timeout: float = setting(
        "ACP_READYZ_TIMEOUT", fields.Float(validate=_seconds(0.1)), 2.0, unit="seconds",
        doc="Each readiness check's time limit: a dependency slower than this counts as down.")
    metrics_enabled: bool = setting(
        "ACP_METRICS_ENABLED", fields.Boolean(), False,
        doc="Serve Prometheus metrics at `ACP_METRICS_PATH`. Needs `pip install 'flask-acp[metrics]'`.")
    metrics_path: str = setting(
        "ACP_METRICS_PATH", fields.String(validate=validate.Regexp(
            r"^/[^?#]*[^/?#]$", error="must be an absolute path such as /healthz, without a trailing slash")),
        "/metrics",
        doc="Where the metrics are served when `ACP_METRICS_ENABLED` (not under `ACP_URL_PREFIX`).")
    metrics_token: str | None = setting(
        "ACP_METRICS_TOKEN", fields.String(allow_none=True, validate=NOT_BLANK), None,
        doc="When set, a scrape must send `Authorization: Bearer <token>` (else 401). Unset: the "
            "metrics are public; restrict the path at your proxy.")

    log_format: str = setting(
        "ACP_LOG_FORMAT", fields.String(validate=validate.OneOf(["text", "json"])), "text",
        doc='`"json"`: flask-acp\'s and Stripe\'s loggers write one JSON object per line to stderr '
            "(`time`, `level`, `logger`, `message`, and `request_id`, `agent`, `checkout_session_id`, "
            "`order_id`, `event_id` when known; secrets masked, no address or e-mail) and do not "
            'propagate to the root logger. `"text"`: your logging configuration decides.')
    log_level: str = setting(
        "ACP_LOG_LEVEL", _LogLevel(), "INFO",
        doc="Level of those loggers when `ACP_LOG_FORMAT` is `json`.")

    console_enabled: bool = setting(
        "ACP_CONSOLE_ENABLED", fields.Boolean(), False,
        doc="Serve the merchant console (README \"Merchant console\") at `ACP_CONSOLE_PREFIX`. Needs at "
            "least one of `ACP_CONSOLE_AUTH`, `ACP_CONSOLE_PASSWORD_HASH`, `ACP_CONSOLE_ALLOWED_IPS` "
            "(start-up error otherwise: never open), and the app's `SECRET_KEY` (the login cookie, the CSRF "
            "tokens).")
    console_prefix: str = setting(
        "ACP_CONSOLE_PREFIX", fields.String(validate=validate.Regexp(
            r"^/[^?#]*[^/?#]$", error="must be an absolute path such as /acp-console, without a trailing "
                                      "slash")),
        "/acp-console", doc="Where the console is mounted (not under `ACP_URL_PREFIX`).")
    console_auth: t.Any = setting(
        "ACP_CONSOLE_AUTH", _AuthHook(allow_none=True), None,
        doc="The host app's own check: a callable (or its `module:function` path) called with no "
            "argument in the request context of every console request; it returns `True` to let the "
            "request in, `False`/`None` for a 403, or a Flask response to send instead (e.g. a redirect "
            "to the host's login page). Every protection that is set applies.")
    console_password_hash: str | None = setting(
        "ACP_CONSOLE_PASSWORD_HASH", fields.String(allow_none=True, validate=validate.Regexp(
            r"^(scrypt|pbkdf2)(:[\w:]+)?\$[^$]+\$[0-9a-f]+$",
            error="must be a Werkzeug password hash: python -c \"from werkzeug.security import "
                  "generate_password_hash as g; print(g(input()))\"")), None,
        doc="A console password, as a Werkzeug hash (`werkzeug.security.generate_password_hash`, scrypt "
            "or pbkdf2), never the password: the console asks for it and keeps the login in a signed "
            "`HttpOnly`, `SameSite=Strict` cookie (`Secure` over HTTPS) for `ACP_CONSOLE_LOGIN_TTL`.")
    console_allowed_ips: tuple[str, ...] = setting(
        "ACP_CONSOLE_ALLOWED_IPS", fields.List(fields.String(validate=_check_network)), [], convert=tuple,
        doc="Client addresses or networks (`\"10.0.0.0/8\"`, `\"::1\"`) allowed to reach the console "
            "(through `ACP_TRUSTED_PROXY_HOPS`); empty: any address (then another protection must be set).")
    console_login_ttl: int = setting(
        "ACP_CONSOLE_LOGIN_TTL", fields.Integer(strict=True, validate=_seconds(60)), 28800, unit="seconds",
        doc="How long a console password login lasts.")
    console_funnel_days: int = setting(
        "ACP_CONSOLE_FUNNEL_DAYS", fields.Integer(strict=True, validate=validate.Range(min=1, max=366)), 14,
        unit="days", doc="Days of the console's conversion funnel and declines (today included).")

    def agent(self, name: str) -> Agent:
        """The configured agent called ``name``.

        :raises KeyError: no such agent.
        """
        for agent in self.agents:
            if agent.name == name:
                return agent
        raise KeyError(name)


def _no_shared_api_key(settings: Settings) -> None:
    seen: dict[str, str] = {}
    for agent in settings.agents:
        for key in agent.api_keys:
            if key in seen and seen[key] != agent.name:
                raise ValidationError(f"agents {seen[key]!r} and {agent.name!r} share an API key",
                                      "ACP_AGENTS")
            seen[key] = agent.name


def _console_protected(settings: Settings) -> None:
    if settings.console_enabled and not (settings.console_auth or settings.console_password_hash
                                         or settings.console_allowed_ips):
        raise ValidationError("the console is never open: set ACP_CONSOLE_AUTH (the host app's check), "
                              "ACP_CONSOLE_PASSWORD_HASH or ACP_CONSOLE_ALLOWED_IPS", "ACP_CONSOLE_ENABLED")


#: the core's keys.
CORE_SETTINGS = Section("core", Settings, checks=(_no_shared_api_key, _console_protected))


# --- loading -------------------------------------------------------------------------------


def load_settings(config: cabc.MutableMapping[str, t.Any], sections: cabc.Sequence[Section[t.Any]] = (), *,
                  instance_path: str, problems: cabc.Iterable[Problem] = ()) -> Loaded:
    """Apply the defaults of the core's and ``sections``' keys to ``config``
    (visible afterwards in ``app.config``) and validate them all.

    :param problems: found by the caller already (e.g. an unknown adapter):
        reported with the others.
    :raises RuntimeError: listing every problem, one line per key, naming the
        key and what to set (:func:`config_error`).
    """
    _resolve_storage(config, instance_path)
    found = list(problems)
    values: dict[str, object] = {}
    for section in (CORE_SETTINGS, *sections):
        section.apply_defaults(config)
        values[section.name], section_problems = section.validate(config)
        found += section_problems
    if found:
        raise config_error(found)
    return Loaded(values)


def _resolve_storage(config: cabc.MutableMapping[str, t.Any], instance_path: str) -> None:
    """``ACP_STORE_URL`` wins over ``ACP_SQLITE_PATH``; a relative ``sqlite:``
    URL starts at the instance folder, a relative ``ACP_SQLITE_PATH`` at the
    working directory. Afterwards both keys name the same SQLite file (the
    catalog's stock lives there too). A Redis store URL (single server or
    Sentinel) is also the RQ queue's unless ``ACP_REDIS_URL`` is set."""
    url = config.get("ACP_STORE_URL")
    if url is not None:
        if config.get("ACP_SQLITE_PATH") is not None:
            log.warning("ACP_SQLITE_PATH is ignored: ACP_STORE_URL is set")
        try:
            scheme, target = parse_store_url(str(url), base_dir=instance_path)
        except ValueError:
            return  # reported by the section's validation, with the other bad keys
        if scheme == "sqlite":
            config["ACP_STORE_URL"] = sqlite_url(target)
            config["ACP_SQLITE_PATH"] = target
        elif is_redis(target) and config.get("ACP_REDIS_URL") is None:
            if parse_redis_url(target).topology == "cluster":
                log.info("order webhooks: RQ cannot use the Redis Cluster of ACP_STORE_URL; they are "
                         "delivered by a thread in each app process unless ACP_REDIS_URL names a Redis")
            else:
                config["ACP_REDIS_URL"] = target
        return
    if config.get("ACP_SQLITE_PATH") is None:
        config["ACP_SQLITE_PATH"] = os.path.join(instance_path, "acp.sqlite3")
    config["ACP_STORE_URL"] = sqlite_url(str(config["ACP_SQLITE_PATH"]))


class ConfigurationError(RuntimeError, click.ClickException):
    """flask-acp's configuration is invalid: ``str(exc)`` is ``flask-acp
    configuration is invalid:`` and one line per problem, each naming the
    variable the user set (``FLASK_ACP_X`` when only that one is in the
    environment, for apps that call ``app.config.from_prefixed_env()``).

    Also a :class:`click.ClickException`: ``flask --app yourapp acp ...`` prints
    ``Error:`` and those lines, without a traceback, and exits 1.

    :ivar problems: ``[(key, what to set)]``, keys as in ``app.config``.
    """

    def __init__(self, problems: cabc.Iterable[Problem], *,
                 names: cabc.Mapping[str, str] | None = None) -> None:
        self.problems = list(problems)
        self.names = dict(names or {})
        click.ClickException.__init__(self, self._text())

    def _text(self) -> str:
        lines = "".join(f"\n  {self.name(key)}: {text}" for key, text in self.problems)
        return f"flask-acp configuration is invalid:{lines}"

    def name(self, key: str) -> str:
        """How the user spelled ``key`` (``ACP_X[...]`` keeps its suffix): a name of
        :attr:`names`, else ``FLASK_ACP_X`` when only that one is in the
        environment, else ``key``."""
        base, bracket, rest = key.partition("[")
        if base in self.names:
            return self.names[base] + bracket + rest
        if base not in os.environ and f"FLASK_{base}" in os.environ:
            return f"FLASK_{base}" + bracket + rest
        return key

    def renamed(self, names: cabc.Mapping[str, str]) -> ConfigurationError:
        """The same problems, naming keys as the user set them (``{"ACP_AGENTS":
        "ACP_API_KEYS"}`` for an app that builds ``ACP_AGENTS`` from ``ACP_API_KEYS``)."""
        return ConfigurationError(self.problems, names={**self.names, **names})


def config_error(problems: cabc.Iterable[Problem]) -> ConfigurationError:
    """``flask-acp configuration is invalid:`` and one line per problem (``KEY: text``)."""
    return ConfigurationError(problems)


def unknown_keys(config: cabc.Mapping[str, t.Any], sections: cabc.Iterable[Section[t.Any]]) -> list[str]:
    """The ``ACP_*`` keys of ``config`` that no section of ``sections`` declares, sorted."""
    known = {s.key for section in sections for s in section.settings()}
    return sorted(k for k in config if k.startswith("ACP_") and k not in known)


def warn_unknown_keys(keys: cabc.Iterable[str], sections: cabc.Iterable[Section[t.Any]]) -> None:
    """Log a warning for each key, with the nearest declared key as a hint."""
    known = [s.key for section in sections for s in section.settings()]
    for key in keys:
        near = difflib.get_close_matches(key, known, n=1)
        hint = f" (did you mean {near[0]}?)" if near else ""
        log.warning("unknown configuration key %s ignored%s", key, hint)


def from_value_error(check: cabc.Callable[[t.Any], object]) -> cabc.Callable[[t.Any], None]:
    """A marshmallow validator from a function that raises :class:`ValueError`
    (its message becomes the validation error)."""

    def validator(value: t.Any) -> None:
        try:
            check(value)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None

    return validator


class OneOrMany(fields.List):  # type: ignore[type-arg]
    """A string or a list of them (e.g. secrets while rotating), loaded as a
    list; an empty string is an empty list."""

    #: how the README names the type.
    type_name = "str or list[str]"
    default_error_messages = {"invalid": "Not a string or a list of them."}

    def _deserialize(self, value: t.Any, attr: str | None, data: cabc.Mapping[str, t.Any] | None,
                     **kwargs: t.Any) -> list[t.Any]:
        if isinstance(value, str):
            value = [value] if value else []
        return super()._deserialize(value, attr, data, **kwargs)


def _converted(declared: Setting, value: t.Any) -> t.Any:
    return declared.convert(value) if declared.convert and value is not None else value


def _flatten(message: t.Any) -> str:
    if isinstance(message, dict):
        return "; ".join(f"{k}: {_flatten(v)}" for k, v in message.items())
    if isinstance(message, list):
        return " ".join(_flatten(m) for m in message)
    return str(message)
