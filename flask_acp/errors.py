"""The flask-acp exception tree.

Everything that reaches an agent as a non-2xx response is an :class:`ACPError`
and is rendered as the spec's flat ``Error`` body (ACP 2026-04-17,
``schema.agentic_checkout.json#/$defs/Error``)::

    {"type": "invalid_request", "code": "...", "message": "...", "param": "$.x"}

Tree::

    ACPError                          (root; rendered by the blueprint)
    +-- InvalidRequestError           400 invalid_request / invalid
    |   +-- APIVersionError           400 missing_api_version | unsupported_api_version
    |   +-- AuthenticationError       401 unauthorized
    |   +-- HTTPSRequiredError        403 https_required
    |   +-- NotFoundError             404 not_found
    |   +-- MethodNotAllowedError     405 (also: state changes on terminal sessions)
    |   +-- ConflictError             409 (idempotency_in_flight, complete_in_progress)
    |   +-- PayloadTooLargeError      413 payload_too_large
    |   +-- UnsupportedMediaTypeError 415 unsupported_media_type
    |   +-- UnprocessableError        422 (idempotency_conflict)
    +-- ProcessingError               500 processing_error
    +-- ServiceUnavailableError       503 service_unavailable (+ Retry-After)

Internal families raised by ports and translated by the checkout service:

    AdapterError                      platform adapter failures
    +-- AdapterUnavailableError       retryable (timeouts, 5xx, 429)
    +-- AdapterRejectedError          the platform refused the call
    PaymentError                      payment processor failures
    +-- PaymentDeclinedError          decline; ``user_message`` is safe to show the buyer
    +-- PaymentTokenError             the credential itself is unusable
    +-- PaymentActionRequiredError    the charge needs 3DS
    +-- PaymentUnavailableError       outcome unknown or provider down: retry later
    +-- PaymentProviderError          the processor refused our request (configuration)
    +-- PaymentAmountError            the processor refused the amount (min, max, step)
"""

from __future__ import annotations

import typing as t

if t.TYPE_CHECKING:
    from .payments.base import AmountProblem


class ACPError(Exception):
    """An error rendered to the agent as the flat ACP ``Error`` object.

    :param message: human-readable text for the agent (``Error.message``).
    :param code: implementation-defined code; defaults to the class's ``code``.
    :param param: RFC 9535 JSONPath of the offending request field, if any.
    :param headers: extra response headers, e.g. ``{"Retry-After": "1"}``.
    :param extra: extra body members the spec allows (``supported_versions``).
    """

    status: int = 400
    type: t.ClassVar[str] = "invalid_request"
    code: str = "invalid"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: t.Mapping[str, str] | None = None,
        extra: t.Mapping[str, t.Any] | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.param = param
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def to_dict(self) -> dict[str, t.Any]:
        """The flat ``Error`` body: ``{type, code, message[, param][, supported_versions]}``."""
        body: dict[str, t.Any] = {"type": self.type, "code": self.code, "message": self.message}
        if self.param is not None:
            body["param"] = self.param
        body.update(self.extra)
        return body

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, code={self.code!r}, message={self.message!r})"


class InvalidRequestError(ACPError):
    """Malformed or ill-typed request (400 ``invalid_request``)."""


class APIVersionError(InvalidRequestError):
    """``API-Version`` missing or not supported (400, carries ``supported_versions``)."""

    code = "unsupported_api_version"


class AuthenticationError(InvalidRequestError):
    """Missing or wrong ``Authorization: Bearer`` token (401)."""

    status = 401
    code = "unauthorized"


class HTTPSRequiredError(InvalidRequestError):
    """A plain-HTTP request reached an app that requires HTTPS (403)."""

    status = 403
    code = "https_required"


class NotFoundError(InvalidRequestError):
    """Unknown resource, or a session owned by another agent (404)."""

    status = 404
    code = "not_found"


class MethodNotAllowedError(InvalidRequestError):
    """Wrong method, or a state change on a terminal session (405)."""

    status = 405
    code = "method_not_allowed"


class ConflictError(InvalidRequestError):
    """The request collides with one still running (409, with ``Retry-After``)."""

    status = 409
    code = "conflict"


class PayloadTooLargeError(InvalidRequestError):
    """Request body larger than ``ACP_MAX_BODY_BYTES`` (413)."""

    status = 413
    code = "payload_too_large"


class UnsupportedMediaTypeError(InvalidRequestError):
    """Request body that is not ``application/json`` (415)."""

    status = 415
    code = "unsupported_media_type"


class UnprocessableError(InvalidRequestError):
    """Well-formed but unacceptable request (422)."""

    status = 422
    code = "unprocessable"


class ProcessingError(ACPError):
    """Unexpected server-side failure (500 ``processing_error``)."""

    status = 500
    type = "processing_error"
    code = "processing_error"


class ServiceUnavailableError(ACPError):
    """A dependency is temporarily unavailable (503 ``service_unavailable``)."""

    status = 503
    type = "service_unavailable"
    code = "service_unavailable"


# --- internal families (never rendered directly) ---------------------------------


class AdapterError(Exception):
    """Base class for platform adapter failures."""


class AdapterUnavailableError(AdapterError):
    """The platform is unreachable, slow, throttling or failing (retryable).

    :param retry_after: seconds the platform asked us to wait, if it said so.
    """

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


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


class PaymentAmountError(PaymentError):
    """The processor refused the amount itself: below its minimum, above its
    maximum, or not a multiple of its step (Stripe's three-decimal rule).
    Nothing was charged; the session's total must change before it can be paid.

    :param problem: what was refused, as :meth:`PaymentProcessor.amount_problem
        <flask_acp.payments.base.PaymentProcessor.amount_problem>` would say it.
    """

    def __init__(self, user_message: str, *, problem: AmountProblem) -> None:
        super().__init__(user_message, decline_code=problem.code)
        self.problem = problem


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
    "ConflictError",
    "HTTPSRequiredError",
    "InvalidRequestError",
    "MethodNotAllowedError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PaymentActionRequiredError",
    "PaymentAmountError",
    "PaymentDeclinedError",
    "PaymentError",
    "PaymentProviderError",
    "PaymentTokenError",
    "PaymentUnavailableError",
    "ProcessingError",
    "ServiceUnavailableError",
    "UnprocessableError",
    "UnsupportedMediaTypeError",
]
