"""Log hygiene for every flask-acp logger, and Stripe's SDK logger.

:func:`install` (called by ``init_app``; idempotent) puts a :class:`Redactor`
on the loggers flask-acp writes to (``flask_acp``, ``flask_acp.stripe``,
``flask_acp.webhooks``, ``flask_acp.shopify``, ``flask_acp.woocommerce``, ``flask_acp.feed``) and
on ``stripe`` (whose debug logs carry request bodies). Whatever a log line is
made of — our words, an agent's webhook error body, Stripe's error text — it
leaves with:

- secrets masked: delegated payment tokens (``spt_…``/``vt_…``, last 4 kept),
  Stripe keys (``sk_``/``rk_``/``pk_``), webhook secrets (``whsec_…``), bearer
  tokens, Shopify access tokens (``shpat_…``), WooCommerce keys (``ck_``/``cs_``
  + 40 hex), HMAC signatures (``v1=<hex>``, 64-hex digests), and the value of
  any other ``"token"`` member of a JSON (or repr'd) object (an affiliate
  attribution's opaque token);
- control characters escaped (``\\n`` is written as the two characters
  ``\\n``): text from outside can never forge a log line.

Context: :func:`bind` puts ``request_id``, ``agent``, ``checkout_session_id``,
``order_id`` and ``event_id`` in a :class:`contextvars.ContextVar` (set by the
blueprint, the pipeline and the webhook delivery; this module imports no web
framework); :func:`scope` undoes what was bound inside it. With
``ACP_LOG_FORMAT=json`` (:func:`configure`) every line of those loggers is one
JSON object (:class:`JsonFormatter`) carrying that context; ids only, never an
address, an e-mail or a secret.
"""

from __future__ import annotations

import collections.abc as cabc
import contextlib
import contextvars
import datetime as dt
import json
import logging
import re
import sys
import typing as t

#: loggers flask-acp writes to, and the Stripe SDK's
LOGGERS = ("flask_acp", "flask_acp.stripe", "flask_acp.webhooks", "flask_acp.shopify",
           "flask_acp.woocommerce", "flask_acp.feed", "stripe")

_SECRETS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b(spt|vt)_[A-Za-z0-9_]*?([A-Za-z0-9]{4})\b"), r"\1_…\2"),
    (re.compile(r"\b(sk|rk|pk)_(live|test)_[A-Za-z0-9]+"), r"\1_\2_…"),
    (re.compile(r"\bwhsec_[A-Za-z0-9_]+"), "whsec_…"),
    (re.compile(r"\bshpat_[A-Za-z0-9]+"), "shpat_…"),
    (re.compile(r"\b(ck|cs)_[0-9a-f]{40}\b"), r"\1_…"),
    (re.compile(r"(?i)\b(bearer)\s+[^\s,;\"']+"), r"\1 …"),
    (re.compile(r"\bv1=[0-9a-fA-F]+"), "v1=…"),
    (re.compile(r"\b[0-9a-fA-F]{64}\b"), "…"),
    # any other token member of a JSON or repr'd object (an affiliate attribution's
    # provider-issued token has no fixed prefix): masked whole
    (re.compile(r"""(["']token["']\s*:\s*["'])(?!(?:spt|vt)_…)[^"']+"""), r"\1…"),
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def redact(text: str) -> str:
    """``text`` with secrets masked and control characters escaped."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class Redactor(logging.Filter):
    """Rewrites each record's message (and traceback text) through :func:`redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            # a traceback keeps its line breaks; only secrets go
            record.exc_text = "\n".join(redact(line) for line in record.exc_text.split("\n"))
        return True


_REDACTOR = Redactor()


def install() -> None:
    """Put the redactor on :data:`LOGGERS` (once)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if _REDACTOR not in logger.filters:
            logger.addFilter(_REDACTOR)


# --- context -------------------------------------------------------------------------------

#: the context fields, in the order a JSON line shows them
FIELDS = ("request_id", "agent", "checkout_session_id", "order_id", "event_id")

_CONTEXT: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("flask_acp_log_context",
                                                                                 default=None)


def _current() -> dict[str, str]:
    return _CONTEXT.get() or {}


def bind(**fields: str | None) -> None:
    """Add ``fields`` (of :data:`FIELDS`; ``None`` values are ignored) to the
    current context: every later log line of this context carries them.

    :raises TypeError: a field that is not in :data:`FIELDS`.
    """
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise TypeError(f"unknown log context fields: {sorted(unknown)}")
    _CONTEXT.set({**_current(), **{k: str(v) for k, v in fields.items() if v is not None}})


def start(**fields: str | None) -> contextvars.Token[dict[str, str] | None]:
    """Replace the context by ``fields`` (a new request: nothing of the previous
    one stays); :func:`reset` the returned token when it ends."""
    return _CONTEXT.set({k: str(v) for k, v in fields.items() if v is not None})


def reset(token: contextvars.Token[dict[str, str] | None]) -> None:
    """Back to the context before :func:`start` (``ValueError`` from another context is ignored)."""
    with contextlib.suppress(ValueError, RuntimeError):
        _CONTEXT.reset(token)


@contextlib.contextmanager
def scope(**fields: str | None) -> cabc.Iterator[None]:
    """Within the block, the context plus ``fields``; afterwards, what it was."""
    token = _CONTEXT.set(dict(_current()))
    try:
        bind(**fields)
        yield
    finally:
        reset(token)


def context() -> dict[str, str]:
    """The current context (a copy)."""
    return dict(_current())


# --- JSON lines ----------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC, ISO 8601 with milliseconds),
    ``level``, ``logger``, ``message``, the context (:data:`FIELDS` that are set)
    and ``exception`` (the traceback text) when there is one. Messages and
    tracebacks go through :func:`redact`; control characters are escaped by JSON."""

    def format(self, record: logging.LogRecord) -> str:
        when = dt.datetime.fromtimestamp(record.created, dt.timezone.utc)
        line: dict[str, object] = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(), "logger": record.name,
            "message": redact(record.getMessage()),
        }
        line.update({k: redact(v) for k, v in _current().items()})
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = "\n".join(redact(x) for x in record.exc_text.split("\n"))
        return json.dumps(line, ensure_ascii=False)


#: the loggers a JSON handler goes on (their children propagate to them)
ROOTS = ("flask_acp", "stripe")
_JSON_HANDLER: logging.Handler | None = None


def configure(log_format: str, level: str = "INFO", stream: t.IO[str] | None = None) -> None:
    """``"json"``: one :class:`JsonFormatter` handler on :data:`ROOTS` writing
    to ``stream`` (stderr), those loggers at ``level`` and not propagating to
    the root (each line once); idempotent. ``"text"``: leave logging to the app."""
    global _JSON_HANDLER
    if log_format != "json":
        return
    if _JSON_HANDLER is None:
        _JSON_HANDLER = logging.StreamHandler(stream or sys.stderr)
        _JSON_HANDLER.setFormatter(JsonFormatter())
        _JSON_HANDLER.addFilter(_REDACTOR)
    for name in ROOTS:
        logger = logging.getLogger(name)
        if _JSON_HANDLER not in logger.handlers:
            logger.addHandler(_JSON_HANDLER)
        logger.setLevel(level)
        logger.propagate = False
