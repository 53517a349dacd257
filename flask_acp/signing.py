"""Request signatures of the checkout API (agent -> merchant): the signed
bytes, signing and checking one signature, and the keys. Pure functions, no
web framework, no store (the policy, the time window and the replay cache are
:mod:`flask_acp.api.signatures`).

ACP (checkout RFC §2.1, §7; digest §5) has the agent send ``Signature``
(base64url) and ``Timestamp`` (RFC 3339) headers and leaves the algorithm,
the signed bytes and the keys to the agent and the merchant. flask-acp signs::

    Timestamp header value  "\\n"  METHOD  "\\n"  path  "\\n"  the raw body bytes

(``POST\\n/checkout_sessions/cs_1/complete``: the method in upper case, the
request path as the merchant receives it, with ``ACP_URL_PREFIX`` and
without the query string; an empty body for GET), with

- ``hmac-sha256``: HMAC-SHA256 keyed with a shared secret (UTF-8 bytes of the
  configured string, at least 32 characters);
- ``ed25519``: an Ed25519 signature (RFC 8032) by the agent's private key,
  checked with its public key (32 bytes in base64/base64url, or a PEM
  ``PUBLIC KEY``).

``Signature`` is the raw MAC or signature in base64url, padding optional.
The README's "Security" section has test vectors.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

#: the algorithms an agent's ``signature_algorithm`` may name
ALGORITHMS = ("hmac-sha256", "ed25519")
#: the shortest HMAC secret accepted (characters)
MIN_HMAC_SECRET = 32


def signing_input(timestamp: str, method: str, path: str, body: bytes) -> bytes:
    """The bytes a request signature covers: ``timestamp \\n METHOD \\n path \\n body``."""
    return f"{timestamp}\n{method.upper()}\n{path}\n".encode() + body


def b64url(raw: bytes) -> str:
    """base64url without padding."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def unb64(text: str) -> bytes:
    """base64url or standard base64, padding optional.

    :raises ValueError: not base64.
    """
    value = text.strip().replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None


def ed25519_public_key(text: str) -> Ed25519PublicKey:
    """An agent's Ed25519 public key: 32 raw bytes in base64/base64url, or a
    PEM ``-----BEGIN PUBLIC KEY-----`` block.

    :raises ValueError: neither.
    """
    if "BEGIN PUBLIC KEY" in text:
        try:
            key = load_pem_public_key(text.encode())
        except (ValueError, TypeError):
            raise ValueError("not a PEM public key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("the PEM public key is not an Ed25519 key")
        return key
    raw = unb64(text)
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, this one {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def check_key(algorithm: str, key: str) -> None:
    """:raises ValueError: ``key`` is no usable key of ``algorithm`` (the message says why)."""
    if algorithm == "hmac-sha256":
        if len(key) < MIN_HMAC_SECRET:
            raise ValueError(f"an hmac-sha256 secret has at least {MIN_HMAC_SECRET} characters")
    elif algorithm == "ed25519":
        ed25519_public_key(key)
    else:
        raise ValueError(f"unknown algorithm {algorithm!r}; use one of {', '.join(ALGORITHMS)}")


def sign(algorithm: str, key: str | bytes, message: bytes) -> str:
    """The ``Signature`` header value of ``message`` (see :func:`signing_input`).

    :param key: the HMAC secret, or the Ed25519 private key (32 raw bytes of
        its seed, or that in base64/base64url). For agents and tests.
    """
    if algorithm == "hmac-sha256":
        secret = key.encode() if isinstance(key, str) else key
        return b64url(hmac.new(secret, message, hashlib.sha256).digest())
    if algorithm == "ed25519":
        seed = unb64(key) if isinstance(key, str) else key
        return b64url(Ed25519PrivateKey.from_private_bytes(seed).sign(message))
    raise ValueError(f"unknown algorithm {algorithm!r}")


def verify(algorithm: str, keys: tuple[str, ...], message: bytes, signature: str) -> bool:
    """Whether ``signature`` (base64url) signs ``message`` with one of ``keys``
    (two during a rotation); HMACs are compared in constant time."""
    try:
        raw = unb64(signature)
    except ValueError:
        return False
    found = False
    for key in keys:
        if algorithm == "hmac-sha256":
            expected = hmac.new(key.encode(), message, hashlib.sha256).digest()
            found |= hmac.compare_digest(expected, raw)
        elif algorithm == "ed25519":
            try:
                ed25519_public_key(key).verify(raw, message)
                found = True
            except (InvalidSignature, ValueError):
                pass
    return found
