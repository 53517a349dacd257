"""``Merchant-Signature`` for order webhooks (ACP 2026-04-17, Stripe's scheme).

The header is ``t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>``.
Versions before 2026-04-17 only say "HMAC signature over the raw request
body": for them :func:`sign_body` / :func:`verify_body` use the hex
HMAC-SHA256 of the raw body alone (the time goes in the ``Timestamp`` header).
Everything here works on the raw body **bytes**, exactly as sent or received,
before any JSON parsing; no function reads the clock unless ``now`` /
``timestamp`` is left out. Pure functions, no Flask.

- :func:`compute_signature` -- the hex HMAC of one body at one timestamp;
- :func:`format_header` / :func:`sign` -- the header value to send;
- :func:`parse_header` -- header value -> ``(timestamp, [v1 signatures])``;
- :func:`verify_header` -- for receivers (our own inbound use and tests):
  accepts any of several secrets (key rotation) and any of several ``v1``
  values, within a time window stated in seconds.
"""

from __future__ import annotations

import collections.abc as cabc
import hashlib
import hmac
import time

__all__ = [
    "DEFAULT_TOLERANCE",
    "SCHEME",
    "SignatureError",
    "compute_signature",
    "format_header",
    "parse_header",
    "sign",
    "sign_body",
    "verify_body",
    "verify_header",
]

#: seconds a signature stays acceptable (the spec recommends 300)
DEFAULT_TOLERANCE = 300
#: the only signature scheme of ACP 2026-04-17
SCHEME = "v1"


class SignatureError(ValueError):
    """A ``Merchant-Signature`` header is missing, malformed, stale or does not
    match the body. Receivers answer 401 ``invalid_signature``.

    :ivar header: the header value checked (``None`` when it was missing).
    """

    def __init__(self, message: str, header: str | None = None) -> None:
        super().__init__(message)
        self.header = header


def _key(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else secret


def compute_signature(secret: str | bytes, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``b"<timestamp>." + body`` under ``secret``.

    :param secret: the shared secret (a ``str`` is UTF-8 encoded).
    :param timestamp: unix time in whole seconds.
    :param body: the raw request body.
    :returns: 64 lowercase hex characters.
    :raises TypeError: ``body`` is not bytes.
    """
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise TypeError(f"body must be the raw bytes sent, not {type(body).__name__}")
    message = str(int(timestamp)).encode("ascii") + b"." + bytes(body)
    return hmac.new(_key(secret), message, hashlib.sha256).hexdigest()


def format_header(timestamp: int, signatures: cabc.Iterable[str]) -> str:
    """``t=<timestamp>,v1=<sig>[,v1=<sig>...]`` (the spec's pattern allows one ``v1``)."""
    parts = [f"t={int(timestamp)}"] + [f"{SCHEME}={s}" for s in signatures]
    return ",".join(parts)


def sign(body: bytes, secret: str | bytes, *, timestamp: int | None = None) -> str:
    """The ``Merchant-Signature`` value for ``body``: one ``v1`` under ``secret``.

    :param timestamp: unix seconds; default: now (sign at send time).
    """
    stamp = int(time.time()) if timestamp is None else int(timestamp)
    return format_header(stamp, [compute_signature(secret, stamp, body)])


def sign_body(body: bytes, secret: str | bytes) -> str:
    """The legacy ``Merchant-Signature`` (2025-09-29 ... 2026-01-30): 64 hex
    characters, HMAC-SHA256 of the raw ``body`` under ``secret``.

    :raises TypeError: ``body`` is not bytes.
    """
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise TypeError(f"body must be the raw bytes sent, not {type(body).__name__}")
    return hmac.new(_key(secret), bytes(body), hashlib.sha256).hexdigest()


def verify_body(header: str | None, body: bytes, secrets: cabc.Sequence[str | bytes]) -> None:
    """Check a legacy ``Merchant-Signature`` (hex HMAC of the raw body) in
    constant time against each of ``secrets``.

    :raises SignatureError: missing or mismatched.
    """
    if not header:
        raise SignatureError("Missing Merchant-Signature header.", header)
    matched = False
    for secret in secrets:
        matched |= hmac.compare_digest(header.strip().lower().encode("ascii", "replace"),
                                       sign_body(body, secret).encode("ascii"))
    if not matched:
        raise SignatureError("Webhook signature verification failed.", header)


def parse_header(header: str) -> tuple[int, list[str]]:
    """Split a header into its timestamp and its ``v1`` signatures (other
    schemes are ignored, as Stripe does).

    :returns: ``(unix seconds, [hex signature, ...])``.
    :raises SignatureError: no ``t=`` integer, or no ``v1=`` value.
    """
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if name == "t":
            if not value.isdigit() or timestamp is not None:
                raise SignatureError("Merchant-Signature must be t=<timestamp>,v1=<64_hex>.", header)
            timestamp = int(value)
        elif name == SCHEME and value:
            signatures.append(value.lower())
    if timestamp is None:
        raise SignatureError("Merchant-Signature has no t=<timestamp>.", header)
    if not signatures:
        raise SignatureError(f"Merchant-Signature has no {SCHEME}= signature.", header)
    return timestamp, signatures


def verify_header(
    header: str | None,
    body: bytes,
    secrets: cabc.Sequence[str | bytes],
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> int:
    """Check a received ``Merchant-Signature`` against the raw ``body``.

    Each ``v1`` value is compared in constant time with the HMAC under each
    of ``secrets`` (two during a rotation); one match suffices. The timestamp
    must then lie within ``tolerance`` seconds of ``now`` (either side, so a
    sender's clock skew counts as much as a replay).

    :param header: the header value (``None`` if the request had none).
    :param body: the raw request body, before any JSON parsing.
    :param secrets: the accepted secrets; at least one.
    :param tolerance: seconds; must be > 0.
    :param now: unix seconds; default: the current time.
    :returns: the signed timestamp (unix seconds).
    :raises SignatureError: missing, malformed, mismatched or outside the window.
    :raises TypeError: ``body`` is not bytes.
    """
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise TypeError(f"body must be the raw bytes received, not {type(body).__name__}")
    if not secrets:
        raise ValueError("verify_header needs at least one secret")
    if tolerance <= 0:
        raise ValueError("tolerance must be a positive number of seconds")
    if not header:
        raise SignatureError("Missing Merchant-Signature header.", header)
    timestamp, signatures = parse_header(header)
    expected = [compute_signature(secret, timestamp, body) for secret in secrets]
    matched = False
    for candidate in signatures:
        for wanted in expected:
            # no short-circuit: every pair is compared
            matched |= hmac.compare_digest(candidate.encode("ascii", "replace"), wanted.encode("ascii"))
    if not matched:
        raise SignatureError("Webhook signature verification failed.", header)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise SignatureError("Timestamp outside allowed window.", header)
    return timestamp
