"""The flask-acp exception tree.

Errors are named by their cause, never by an HTTP status: the core raises
them, and one table at the edge (:mod:`flask_acp.api.errors`) maps each class
to ``(status, type, code, headers)`` and renders the spec's flat ``Error``
body (ACP 2026-04-17, ``schema.agentic_checkout.json#/$defs/Error``)::

    {"type": "invalid_request", "code": "...", "message": "...", "param": "$.x"}

Tree (the status the edge gives each, for orientation)::

    ACPError                          (root; rendered by the edge)
    +-- InvalidRequestError           malformed or ill-typed request      400
    |   +-- APIVersionError           API-Version missing / unsupported   400
    |   +-- UnprocessableError        a cart none of whose items can be bought 422
    +-- AuthenticationError           no or wrong bearer token            401
    |   +-- SignatureError            bad request signature (strict)      401
    +-- InsecureTransportError        plain HTTP where HTTPS is required  403
    +-- NotFoundError                 unknown session, order, endpoint    404
    +-- MethodNotAllowedError         method not served by the endpoint   405
    |   +-- SessionClosedError        change to a terminal session        405
    +-- BusyError                     collides with a request still running 409
    +-- BodyTooLargeError             body above ACP_MAX_BODY_BYTES       413
    +-- UnsupportedMediaTypeError     body that is not JSON               415
    +-- IdempotencyConflictError      same Idempotency-Key, other body    422
    +-- RateLimitedError              too many requests: retry later      429
    +-- ProcessingError               unexpected; the merchant must act   500
    +-- UnavailableError              a dependency is down: retry later   503
        +-- StorageUnavailableError   the session store failed

Each carries ``message``, ``code``, an optional ``param`` (RFC 9535 JSONPath),
``retry_after`` (seconds, when a retry makes sense) and ``extra`` body members
(``supported_versions``).

Internal families raised by ports and translated by the core:

    AdapterError                      platform adapter failures
    +-- AdapterUnavailableError       retryable (timeouts, 5xx, 429)
    +-- AdapterRejectedError          the platform refused the call
    PaymentError                      payment processor failures
    +-- PaymentDeclinedError          decline; ``user_message`` is safe to show the buyer
    +-- PaymentTokenError             the credential itself is unusable
    +-- PaymentActionRequiredError    the charge needs 3DS
    +-- PaymentUnavailableError       outcome unknown or provider down: retry later
    +-- PaymentProviderError          the processor refused our request (configuration)
    +-- PaymentAmountError            the processor refused the amount (min, max, step);
                                      in flask_acp.payments.base, next to its AmountProblem
"""

from __future__ import annotations

import typing as t


class ACPError(Exception):
    """An error the agent sees as the flat ACP ``Error`` object.

    :param message: human-readable text for the agent (``Error.message``).
    :param code: implementation-defined code; defaults to the class's ``code``.
    :param param: RFC 9535 JSONPath of the offending request field, if any.
    :param retry_after: seconds after which a retry may succeed (the edge
        sends it as ``Retry-After``).
    :param extra: extra body members the spec allows (``supported_versions``).
    """

    code: str = "invalid"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        retry_after: int | None = None,
        extra: t.Mapping[str, t.Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.param = param
        self.retry_after = retry_after
        self.extra = dict(extra or {})

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class InvalidRequestError(ACPError):
    """A malformed or ill-typed request, or one the merchant cannot accept."""


class APIVersionError(InvalidRequestError):
    """``API-Version`` missing or not supported (carries ``supported_versions``)."""

    code = "unsupported_api_version"


class AuthenticationError(ACPError):
    """Missing or wrong ``Authorization: Bearer`` token.

    :ivar challenge: the ``WWW-Authenticate`` challenge to send back.
    """

    code = "unauthorized"

    def __init__(self, message: str, *, challenge: str = 'Bearer realm="acp"', **kwargs: t.Any) -> None:
        super().__init__(message, **kwargs)
        self.challenge = challenge


class InsecureTransportError(ACPError):
    """A plain-HTTP request reached an app that requires HTTPS."""

    code = "https_required"

    @classmethod
    def explained(cls, *, trusted_proxy_hops: int, forwarded_protos: int) -> InsecureTransportError:
        """The refusal, saying what to set: ``ACP_TRUSTED_PROXY_HOPS`` behind a TLS
        proxy (or the ``X-Forwarded-Proto`` it must send), ``ACP_ALLOW_INSECURE_LOOPBACK``
        for a local demo.

        :param forwarded_protos: how many ``X-Forwarded-Proto`` values the request carried.
        """
        if not trusted_proxy_hops:
            why = ("this server sees plain HTTP. Behind a proxy that terminates TLS, set "
                   "ACP_TRUSTED_PROXY_HOPS to the number of proxies (it then trusts their "
                   "X-Forwarded-Proto); for a local demo, ACP_ALLOW_INSECURE_LOOPBACK=true accepts "
                   "plain HTTP from 127.0.0.1.")
        elif forwarded_protos < trusted_proxy_hops:
            why = (f"ACP_TRUSTED_PROXY_HOPS is {trusted_proxy_hops} but the request carries "
                   f"{forwarded_protos} X-Forwarded-Proto value(s): make each proxy set it "
                   "(nginx: proxy_set_header X-Forwarded-Proto $scheme;), or lower the setting.")
        else:
            why = "the proxy reports that the client used plain HTTP: call the https:// URL."
        return cls(f"ACP requests must use HTTPS: {why}")


class NotFoundError(ACPError):
    """Unknown session or order (or one of another agent), or endpoint."""

    code = "not_found"


class UnprocessableError(InvalidRequestError):
    """A well-formed request the merchant cannot act on (422): a cart none of
    whose items can be bought (Cart API, code ``out_of_stock``)."""

    code = "unprocessable"


class MethodNotAllowedError(ACPError):
    """The endpoint does not serve this method.

    :ivar allowed: the methods it serves.
    """

    code = "method_not_allowed"

    def __init__(self, message: str, *, allowed: t.Sequence[str] = (), **kwargs: t.Any) -> None:
        super().__init__(message, **kwargs)
        self.allowed = tuple(allowed)


class SessionClosedError(MethodNotAllowedError):
    """A change (update, complete, cancel) to a completed, canceled or expired
    session: only reading it is left."""

    def __init__(self, message: str, **kwargs: t.Any) -> None:
        super().__init__(message, allowed=("GET",), **kwargs)


class BusyError(ACPError):
    """The request collides with another one still running on the same
    session or idempotency key; retry after ``retry_after`` seconds."""

    code = "conflict"

    def __init__(self, message: str, *, retry_after: int = 1, **kwargs: t.Any) -> None:
        super().__init__(message, retry_after=retry_after, **kwargs)


class BodyTooLargeError(ACPError):
    """Request body larger than ``ACP_MAX_BODY_BYTES``."""

    code = "payload_too_large"


class UnsupportedMediaTypeError(ACPError):
    """Request body that is not ``application/json``."""

    code = "unsupported_media_type"


class IdempotencyConflictError(ACPError):
    """An ``Idempotency-Key`` reused with another request body."""

    code = "idempotency_conflict"


class RateLimitedError(ACPError):
    """Too many requests from one client address, agent or session within a
    rate limit's window (``ACP_RATE_LIMIT_*``); retry after ``retry_after``
    seconds. Transient: never stored under an ``Idempotency-Key``."""

    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: int = 1, **kwargs: t.Any) -> None:
        super().__init__(message, retry_after=retry_after, **kwargs)


class SignatureError(AuthenticationError):
    """A request of an agent whose ``signature_policy`` is ``strict`` has no
    valid ``Signature``/``Timestamp`` (missing, wrong, outside the time window,
    or a replay of a signature already seen)."""

    code = "invalid_signature"


class ProcessingError(ACPError):
    """Unexpected failure on the merchant's side; retrying will not help."""

    code = "processing_error"


class UnavailableError(ACPError):
    """A dependency (platform, payment processor, store) is temporarily
    unavailable; retry after ``retry_after`` seconds (default 1)."""

    code = "service_unavailable"

    def __init__(self, message: str, *, retry_after: int = 1, **kwargs: t.Any) -> None:
        super().__init__(message, retry_after=retry_after, **kwargs)


class StorageUnavailableError(UnavailableError):
    """The session store (or the catalog's stock database) failed: locked past
    its busy timeout, disk full, I/O error. Nothing was committed by the failed
    statement; the request may be retried."""

    code = "storage_unavailable"

    def __init__(self, message: str = "The checkout store is temporarily unavailable; retry the request.",
                 **kwargs: t.Any) -> None:
        super().__init__(message, **kwargs)


def is_transient(exc: ACPError) -> bool:
    """Whether the same request may succeed later (busy or unavailable), so a
    sender that retries (Stripe, a platform's webhooks) should be asked to."""
    return isinstance(exc, (BusyError, UnavailableError))


# --- internal families (never rendered directly) ---------------------------------


class AdapterError(Exception):
    """Base class for platform adapter failures."""


class AdapterUnavailableError(AdapterError):
    """The platform is unreachable, slow, throttling or failing (retryable).

    :param retry_after: seconds the platform asked us to wait, if it said so.
    :param outcome_unknown: the call may have taken effect (a timeout or a
        dropped connection after the request was sent, a re-read that failed):
        for ``place_order``, the order may exist, so the core never gives the
        money back on its own; False when the call certainly did not happen.
    """

    def __init__(self, message: str, *, retry_after: int | None = None,
                 outcome_unknown: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.outcome_unknown = outcome_unknown


class AdapterRejectedError(AdapterError):
    """The platform refused the call (a 4xx or a user error)."""


class PaymentError(Exception):
    """Base class for payment processor failures.

    :param user_message: text safe to show the buyer (never a fraud reason).
    :param decline_code: the processor's code, for logs and metadata only.
    """

    def __init__(self, user_message: str, *, decline_code: str | None = None) -> None:
        super().__init__(user_message)
        self.user_message = user_message
        self.decline_code = decline_code


class PaymentDeclinedError(PaymentError):
    """The issuer or processor declined the charge; a new credential may succeed."""


class PaymentTokenError(PaymentError):
    """The payment credential is unusable (expired, revoked, wrong currency, too small)."""


class PaymentActionRequiredError(PaymentError):
    """The charge needs buyer authentication (3DS) that this flow cannot perform."""


class PaymentProviderError(PaymentError):
    """The processor refused the request itself (bad credentials, missing
    permission, a bug on our side). Nothing was charged; the merchant must act."""


class PaymentUnavailableError(PaymentError):
    """The processor could not be reached or failed.

    :param retry_after: seconds to wait before retrying.
    :param outcome_unknown: the request may have been executed (a dropped
        connection, a 5xx); False when it certainly was not (a 429, a refused
        connection), so nothing needs reconciling.
    """

    def __init__(self, user_message: str, *, retry_after: int = 1, outcome_unknown: bool = True) -> None:
        super().__init__(user_message)
        self.retry_after = retry_after
        self.outcome_unknown = outcome_unknown


__all__ = [
    "ACPError",
    "APIVersionError",
    "AdapterError",
    "AdapterRejectedError",
    "AdapterUnavailableError",
    "AuthenticationError",
    "BodyTooLargeError",
    "BusyError",
    "IdempotencyConflictError",
    "InsecureTransportError",
    "InvalidRequestError",
    "MethodNotAllowedError",
    "NotFoundError",
    "PaymentActionRequiredError",
    "PaymentDeclinedError",
    "PaymentError",
    "PaymentProviderError",
    "PaymentTokenError",
    "PaymentUnavailableError",
    "ProcessingError",
    "RateLimitedError",
    "SessionClosedError",
    "SignatureError",
    "StorageUnavailableError",
    "UnavailableError",
    "UnsupportedMediaTypeError",
    "is_transient",
]
