"""``Merchant-Signature``: one test per failure mode, and agreement with Stripe's
implementation of the same scheme (ACP 2026-04-17 adopted it byte for byte)."""

from __future__ import annotations

import hashlib
import hmac
import re

import pytest
import stripe

from flask_acp.webhooks import signing
from flask_acp.webhooks.signing import SignatureError
from flask_acp.webhooks.signing import verify_header

SECRET = "whsec_test_secret_0123456789"
OTHER = "whsec_other_secret_9876543210"
BODY = '{"type":"order_create","data":{"type":"order","id":"ord_1","title":"Café"}}'.encode()
NOW = 1_776_400_000
#: the header pattern of the 2026-04-17 webhook OpenAPI file
SPEC_PATTERN = re.compile(r"^t=\d+,v1=[a-fA-F0-9]{64}$")


def generate_header(body: bytes = BODY, secret: str = SECRET, timestamp: int = NOW,
                    scheme: str = "v1") -> str:
    """Like stripe's tests/test_webhook.py helper, with overridable parts."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},{scheme}={mac}"


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), b"%d." % NOW + BODY, hashlib.sha256).hexdigest()
    assert signing.compute_signature(SECRET, NOW, BODY) == expected
    assert signing.sign(BODY, SECRET, timestamp=NOW) == f"t={NOW},v1={expected}"
    assert SPEC_PATTERN.match(signing.sign(BODY, SECRET))


def test_stripe_verifies_our_header_and_we_verify_stripes() -> None:
    header = signing.sign(BODY, SECRET)
    assert stripe.WebhookSignature.verify_header(BODY, header, SECRET, tolerance=300)
    theirs = stripe.WebhookSignature.generate_signature_header(BODY.decode(), SECRET, NOW)
    assert theirs == signing.sign(BODY, SECRET, timestamp=NOW)
    assert verify_header(theirs, BODY, [SECRET], now=NOW) == NOW


def test_valid_header_within_tolerance() -> None:
    header = generate_header()
    assert verify_header(header, BODY, [SECRET], now=NOW + 300) == NOW
    assert verify_header(header, BODY, [SECRET], now=NOW - 300) == NOW
    assert verify_header(header, BODY, [SECRET.encode()], now=NOW) == NOW


@pytest.mark.parametrize("header", [None, ""])
def test_missing_header(header: str | None) -> None:
    with pytest.raises(SignatureError, match="Missing"):
        verify_header(header, BODY, [SECRET], now=NOW)


@pytest.mark.parametrize("header", ["garbage", "v1=abc", "t=abc,v1=" + "a" * 64, "t=1,t=2,v1=" + "a" * 64])
def test_malformed_header(header: str) -> None:
    with pytest.raises(SignatureError) as info:
        verify_header(header, BODY, [SECRET], now=NOW)
    assert info.value.header == header


def test_no_v1_signature() -> None:
    with pytest.raises(SignatureError, match="no v1"):
        verify_header(generate_header(scheme="v0"), BODY, [SECRET], now=NOW)


def test_wrong_secret() -> None:
    with pytest.raises(SignatureError, match="verification failed"):
        verify_header(generate_header(), BODY, [OTHER], now=NOW)


def test_tampered_body() -> None:
    header = generate_header()
    with pytest.raises(SignatureError, match="verification failed"):
        verify_header(header, BODY.replace(b"ord_1", b"ord_2"), [SECRET], now=NOW)
    with pytest.raises(SignatureError):
        verify_header(header, BODY + b" ", [SECRET], now=NOW)  # even whitespace counts


def test_stale_and_future_timestamps() -> None:
    header = generate_header()
    with pytest.raises(SignatureError, match="outside allowed window"):
        verify_header(header, BODY, [SECRET], now=NOW + 301)
    with pytest.raises(SignatureError, match="outside allowed window"):
        verify_header(header, BODY, [SECRET], now=NOW - 301)
    assert verify_header(header, BODY, [SECRET], tolerance=1000, now=NOW + 999) == NOW


def test_rotation_any_secret_any_signature() -> None:
    # the receiver knows the new and the old secret; the sender signs with either
    assert verify_header(generate_header(secret=OTHER), BODY, [SECRET, OTHER], now=NOW) == NOW
    # a header carrying two v1 values (Stripe style) passes when one matches
    both = f"{generate_header(secret=OTHER)},v1={signing.compute_signature(SECRET, NOW, BODY)}"
    assert verify_header(both, BODY, [SECRET], now=NOW) == NOW


def test_body_must_be_bytes() -> None:
    with pytest.raises(TypeError, match="raw bytes"):
        verify_header(generate_header(), BODY.decode(), [SECRET], now=NOW)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        signing.compute_signature(SECRET, NOW, BODY.decode())  # type: ignore[arg-type]


def test_signature_error_is_a_value_error() -> None:
    assert issubclass(SignatureError, ValueError)
    with pytest.raises(ValueError, match="at least one secret"):
        verify_header(generate_header(), BODY, [], now=NOW)


def test_parse_header() -> None:
    assert signing.parse_header(f"t={NOW},v1=AB,v0=cd,v1=ef") == (NOW, ["ab", "ef"])
    assert signing.format_header(NOW, ["ab", "cd"]) == f"t={NOW},v1=ab,v1=cd"
