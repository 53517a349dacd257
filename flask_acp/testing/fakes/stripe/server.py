"""FakeStripe: the HTTP plumbing (authentication, ``Stripe-Version``, parameter
validation, idempotency, faults) over the resource layers, and the standalone
server (:func:`ensure_fake_stripe`, ``python -m flask_acp.testing.fake_stripe``)."""

from __future__ import annotations

import argparse
import collections.abc as cabc
import copy
import hmac
import json
import typing as t
import urllib.parse

import requests
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Request
from werkzeug.wrappers import Response

from ..base import DropConnection
from ..base import Fault
from .schemas import GET_SCHEMA
from .schemas import GET_VALIDATOR
from .schemas import PREVIEW_ENDPOINTS
from .schemas import SCHEMAS
from .schemas import URLS
from .schemas import VALIDATORS
from .search import Search
from .wire import ACCOUNT_API_VERSION
from .wire import DEFAULT_API_KEY
from .wire import SPT_PARAM
from .wire import IdempotencyEntry
from .wire import JSONDict
from .wire import RecordedRequest
from .wire import Result
from .wire import StripeError
from .wire import WireRequest
from .wire import coerce
from .wire import decode_form
from .wire import new_id
from .wire import validation_error


class FakeStripe(Search):
    """A stateful, thread-safe fake Stripe API server (see :mod:`flask_acp.testing.fakes.stripe`).

    :param api_key: the only secret key accepted (``Authorization: Bearer <key>`` or Basic
        auth); any other key gets 401, which the SDK raises as ``AuthenticationError``.
    :param spt_api_version: the ``Stripe-Version`` that SPT calls must send.
    :param host: interface :meth:`start` listens on by default.
    :param port: port :meth:`start` uses by default (0: a free one).
    :param quiet: do not log each request.
    :param clock: the clock to follow (:class:`~flask_acp.testing.fakes.FakeClock`);
        ``None``: its own.

    Use as a context manager, or call :meth:`start` / :meth:`stop`. All inspection
    attributes return copies and are safe to read while requests are served.
    """

    #: ``"500"`` is ``"500_before"``; ``"timeout"`` holds the request unanswered.
    fault_kinds = ("500_before", "429", "timeout", "500_after", "drop_after", "slow")
    fault_aliases = {"500": ("500_before", {})}
    fault_seconds = {"slow": 2.0, "timeout": 30.0}
    cli_module = "flask_acp.testing.fake_stripe"
    cli_description = "Serve a fake Stripe API (PaymentIntents, refunds, Shared Payment Tokens)."
    cli_port = 12111

    def fail_next(self, kind: str, *, count: int = 1, after: int = 0, match: str | None = None,
                  seconds: float | None = None, path_prefix: str | None = None, **params: t.Any) -> Fault:
        """Inject a fault into the next ``count`` requests whose path starts with
        ``path_prefix`` (alias ``match``; any request when ``None``) and that pass
        authentication (and, for the ``*_after`` kinds and ``"slow"``, parameter
        validation), once ``after`` of them passed untouched. Faults queue up in order:

        * ``"500_before"`` (alias ``"500"``): 500 ``api_error``; nothing executed, nothing saved.
        * ``"500_after"``: executed, then 500 ``api_error`` (``Stripe-Should-Retry: false``),
          saved under the idempotency key, so the same key replays the 500.
        * ``"429"``: 429 rate limit; nothing executed, nothing saved.
        * ``"timeout"``: held ``seconds`` (default 30), then the connection is closed;
          nothing executed, nothing saved.
        * ``"drop_after"``: executed and saved, then the TCP connection is closed without a
          response (the SDK sees ``APIConnectionError``).
        * ``"slow"``: executed, then the answer waits ``seconds`` (default 2; while the
          idempotency key is still "in flight", so a concurrent duplicate gets 409).
        """
        return super().fail_next(kind, count=count, after=after, seconds=seconds,
                                 match=path_prefix if match is None else match, **params)

    def _fault_matches(self, fault: Fault, key: str) -> bool:
        return fault.match is None or key.startswith(fault.match)

    def _respond(self, request: Request) -> Response:
        result = self._handle(request)
        headers = {"Stripe-Version": request.headers.get("Stripe-Version", ACCOUNT_API_VERSION),
                   **result.headers}
        if request.method == "POST" and "Idempotency-Key" in request.headers:
            headers["Idempotency-Key"] = request.headers["Idempotency-Key"]
        return Response(json.dumps(result.body, indent=2), result.status, headers,
                        mimetype="application/json")

    def _handle(self, request: Request) -> Result:
        method, path = request.method, request.path
        raw = (request.get_data(as_text=True) if method == "POST"
               else request.query_string.decode("latin-1"))
        pairs = urllib.parse.parse_qsl(raw, keep_blank_values=True)
        try:
            endpoint, args = URLS.bind("fake").match(path, method)
        except HTTPException:
            endpoint, args = None, {}
        decode_error: StripeError | None = None
        try:
            params = decode_form(pairs)
        except StripeError as exc:
            params, decode_error = dict(pairs), exc
        schema = None if endpoint is None else SCHEMAS.get(endpoint, GET_SCHEMA)
        if schema is not None and decode_error is None:
            params = coerce(params, schema)
        key = request.headers.get("Idempotency-Key")
        with self._lock:
            self._requests.append(RecordedRequest(method, path, key, params))
            self._wire.append(WireRequest(method, _raw_path(request), request.query_string.decode("latin-1"),
                                          dict(request.headers), raw if method == "POST" else ""))
        request_id = new_id("req")
        try:
            api_key = self._authenticate(request)
            if endpoint is None:
                raise StripeError(404, f"Unrecognized request URL ({method}: {path}). Please see "
                                       "https://stripe.com/docs or we can help at "
                                       "https://support.stripe.com/.", saved=False)
            fault = self._take_fault(path, ("429", "500_before", "timeout"))
            if fault is not None and fault.kind == "429":
                raise StripeError(429, "Request rate limit exceeded. Learn more about rate "
                                       "limits here https://stripe.com/docs/rate-limits.",
                                  code="rate_limit", saved=False)
            if fault is not None and fault.kind == "500_before":
                raise StripeError(500, "An unknown error occurred (FakeStripe fault 500_before).",
                                  type="api_error", saved=False)
            if fault is not None and fault.kind == "timeout":
                self._hold(fault.seconds)
                raise DropConnection("FakeStripe timeout fault")
            if decode_error is not None:
                raise decode_error
            invalid = validation_error(VALIDATORS.get(endpoint, GET_VALIDATOR), params)
            if invalid is not None:
                raise invalid
            self._check_version(endpoint, request, params)
        except StripeError as exc:
            return Result(exc.status, exc.body, {"Request-Id": request_id, **exc.headers}, False)
        fault = self._take_fault(path, ("500_after", "drop_after", "slow"))

        entry: IdempotencyEntry | None = None
        answer: Result | None = None  # replay, 409 or idempotency_error: no execution
        scope = (api_key, key) if method == "POST" and key else None
        if scope is not None:
            fingerprint = json.dumps([method, path, params], sort_keys=True)
            with self._lock:
                found = self._idempotency.get(scope)
                if found is None:
                    entry = self._idempotency[scope] = IdempotencyEntry(fingerprint, request_id)
                elif found.result is None:
                    answer = self._error_result(request_id, StripeError(
                        409, "There is currently another in-progress request using this "
                             f"Idempotent Key (that probably means you submitted twice, and the "
                             f"other request is still going through): {key}. Please try again "
                             "later.", code="idempotency_key_in_use"))
                elif found.fingerprint != fingerprint:
                    answer = self._error_result(request_id, StripeError(
                        400, "Keys for idempotent requests can only be used with the same "
                             "parameters they were first used with. Try using a key other than "
                             f"'{key}' if you meant to execute a different request.",
                        type="idempotency_error"))
                else:
                    stored = found.result
                    answer = Result(stored.status, stored.body, {
                        **stored.headers, "Request-Id": request_id,
                        "Idempotent-Replayed": "true", "Original-Request": found.request_id})
        try:
            if answer is not None:
                result = answer
            else:
                result = self._execute(endpoint, args, params, request, request_id)
            if fault is not None and fault.kind == "500_after":
                result = self._error_result(request_id, StripeError(
                    500, "An unknown error occurred (FakeStripe fault 500_after).",
                    type="api_error", headers={"Stripe-Should-Retry": "false"}))
            if fault is not None and fault.kind == "slow":
                self._hold(fault.seconds)
            if entry is not None and scope is not None:
                with self._lock:
                    if result.saved:
                        entry.result = result
                    else:
                        del self._idempotency[scope]
                entry = None
            if fault is not None and fault.kind == "drop_after":
                raise DropConnection("FakeStripe drop_after fault")
            return result
        finally:
            if entry is not None and scope is not None:  # unexpected failure: forget the key
                with self._lock:
                    self._idempotency.pop(scope, None)

    @staticmethod
    def _error_result(request_id: str, exc: StripeError) -> Result:
        return Result(exc.status, exc.body, {"Request-Id": request_id, **exc.headers}, exc.saved)

    def _authenticate(self, request: Request) -> str:
        auth = request.authorization
        given = None
        if auth is not None:
            given = auth.token if auth.type == "bearer" else auth.username
        if not given:
            raise StripeError(401, "You did not provide an API key. You need to provide your "
                                   "API key in the Authorization header, using Bearer auth "
                                   "(e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
                              saved=False, headers={"WWW-Authenticate": 'Bearer realm="Stripe"'})
        if not hmac.compare_digest(given.encode(), self.api_key.encode()):
            raise StripeError(401, f"Invalid API Key provided: {given[:8]}****{given[-4:]}",
                              saved=False, headers={"WWW-Authenticate": 'Bearer realm="Stripe"'})
        return given

    def _check_version(self, endpoint: str, request: Request, params: JSONDict) -> None:
        if endpoint in PREVIEW_ENDPOINTS:
            what = "Shared payment token endpoints"
        elif endpoint == "pi_create" and "shared_payment_granted_token" in (
                params.get("payment_method_data") or {}):
            what = f"The parameter {SPT_PARAM}"
        else:
            return
        got = request.headers.get("Stripe-Version")
        if got != self.spt_api_version:
            raise StripeError(
                400, f"{what} need the preview API version: send the header 'Stripe-Version: "
                     f"{self.spt_api_version}' (got {got!r}). With stripe-python pass "
                     f"options={{'stripe_version': ...}} (or stripe_version=... to raw_request).",
                saved=False)

    def _execute(self, endpoint: str, args: t.Mapping[str, str], params: JSONDict, request: Request,
                 request_id: str) -> Result:
        handler = getattr(self, "_do_" + endpoint)
        params = copy.deepcopy(params)  # objects must not share dicts with self.requests
        try:
            with self._lock:
                status, body = handler(params, **args)
        except StripeError as exc:
            return self._error_result(request_id, exc)
        except Exception as exc:  # a bug in the fake: answer like Stripe, keep it for tests
            self._record_error(exc)
            return self._error_result(request_id, StripeError(
                500, f"FakeStripe internal error: {exc!r}", type="api_error"))
        return Result(status, body, {"Request-Id": request_id})

    # ----------------------------------------------------------------- command line

    @classmethod
    def _cli_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--api-key", default=DEFAULT_API_KEY,
                            help=f"the secret key accepted (default {DEFAULT_API_KEY})")

    @classmethod
    def _from_cli(cls, args: argparse.Namespace) -> FakeStripe:
        return cls(api_key=args.api_key, quiet=not args.verbose)

    def _cli_banner(self, args: argparse.Namespace) -> cabc.Iterator[str]:
        yield f"FakeStripe on {self.url}"
        yield f"  ACP_STRIPE_API_BASE={self.url} ACP_STRIPE_SECRET_KEY={self.api_key}"


def main(argv: cabc.Sequence[str] | None = None) -> None:
    """``python -m flask_acp.testing.fake_stripe [--host H] [--port N] [--api-key K]
    [--verbose]``: serve a fake Stripe (default port 12111, the example app's)."""
    FakeStripe.main(argv)


_shared: FakeStripe | None = None


def ensure_fake_stripe(port: int, *, api_key: str = DEFAULT_API_KEY, account_id: str = "acct_fake") -> str:
    """Serve one :class:`FakeStripe` on ``127.0.0.1:port`` for this machine and
    return its URL: when a fake Stripe already answers there (e.g. the running
    example app, while a CLI command of the same app runs), use it; otherwise
    start one in this process.

    :raises RuntimeError: the port is taken by something that is not a fake Stripe.
    """
    global _shared
    if _shared is not None:
        return _shared.url
    url = f"http://127.0.0.1:{port}"
    try:
        probe = requests.get(f"{url}/v1/payment_intents/pi_probe", timeout=2,
                             headers={"Authorization": f"Bearer {api_key}"})
        if "error" in probe.json():
            return url
        raise RuntimeError(f"port {port} is taken by something that is not a fake Stripe")
    except requests.ConnectionError:
        pass
    except (requests.RequestException, ValueError):
        raise RuntimeError(f"port {port} is taken by something that is not a fake Stripe") from None
    _shared = FakeStripe(api_key=api_key, account_id=account_id).start(port)
    return _shared.url


def _raw_path(request: Request) -> str:
    """The path as sent, percent-encoding kept (``%2F`` stays ``%2F``)."""
    uri = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    return str(uri).split("?", 1)[0] if uri else request.path
