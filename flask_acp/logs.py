"""Log hygiene for every flask-acp logger, and Stripe's SDK logger.

:func:`install` (called by ``init_app``; idempotent) puts a :class:`Redactor`
on the loggers flask-acp writes to (``flask_acp``, ``flask_acp.stripe``,
``flask_acp.webhooks``, ``flask_acp.shopify``, ``flask_acp.woocommerce``) and
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
"""

from __future__ import annotations

import logging
import re

#: loggers flask-acp writes to, and the Stripe SDK's
LOGGERS = ("flask_acp", "flask_acp.stripe", "flask_acp.webhooks", "flask_acp.shopify",
           "flask_acp.woocommerce", "stripe")

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
