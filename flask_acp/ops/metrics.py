"""Prometheus metrics (``ACP_METRICS_ENABLED``, ``pip install 'flask-acp[metrics]'``).

The only module of the project that imports ``prometheus_client`` (a contract
in ``.importlinter``). It counts at the edges, never inside the core:

- the request pipeline's :class:`~flask_acp.api.pipeline.Observer` hook
  (REST and MCP alike): requests by operation, negotiated version and HTTP
  status; latency; idempotent replays (``Idempotent-Replayed``) and conflicts
  (the ``idempotency_conflict`` error);
- :class:`MeteredPaymentProcessor`, a decorator around the app's processor
  handed to the checkout core: charges, declines and refunds with their amounts
  (minor units) by currency; each call's latency and errors;
- :class:`MeteredAdapter`, the same around the platform adapter the core calls;
- :class:`OutboxCollector`, read at scrape time from the store: the outbox's
  pending and failed events and the age of the oldest pending one.

Metrics live in one registry per app. Counters are per process; under a
multi-process server set ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's
multiprocess mode) and every worker's counts are summed at each scrape.
"""

from __future__ import annotations

import collections.abc as cabc
import datetime as dt
import json
import os
import time
import typing as t

from flask import Blueprint
from flask import Response
from flask import request
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client import CollectorRegistry
from prometheus_client import Counter
from prometheus_client import Histogram
from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from ..adapter import PlatformAdapter
from ..adapter import PlatformOrderUpdate
from ..adapter import PlatformWebhook
from ..adapter import QuoteRequest
from ..api.pipeline import ApiRequest
from ..api.response import ApiResponse
from ..errors import PaymentDeclinedError
from ..errors import PaymentError
from ..models import CheckoutSession
from ..models import Order
from ..models import PaymentRecord
from ..models import Quote
from ..payments.base import AmountProblem
from ..payments.base import ChargeRequest
from ..payments.base import ChargeResult
from ..payments.base import PaymentHandler
from ..payments.base import PaymentProcessor
from ..payments.base import RefundResult
from ..store.base import Outbox

#: the outbox rows read per scrape for the backlog gauges (the count stops there)
OUTBOX_SCAN = 10_000

R = t.TypeVar("R")


class Metrics:
    """Every metric of one app, in its own registry.

    :param outbox: read at scrape time (:class:`OutboxCollector`).
    :param clock: unix seconds (the oldest pending event's age).
    """

    def __init__(self, outbox: Outbox, *, clock: cabc.Callable[[], float] = time.time) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.outbox_collector = OutboxCollector(outbox, clock=clock)
        self.registry.register(self.outbox_collector)
        r = self.registry
        self.requests = Counter("acp_requests", "Checkout API requests answered, by operation, "
                                "negotiated API version ('none' before negotiation) and HTTP status.",
                                ("operation", "version", "status"), registry=r)
        self.latency = Histogram("acp_request_duration_seconds", "Time to answer a checkout API request.",
                                 ("operation",), registry=r)
        self.replays = Counter("acp_idempotent_replays", "Responses replayed for a repeated Idempotency-Key.",
                               ("operation",), registry=r)
        self.conflicts = Counter("acp_idempotency_conflicts",
                                 "Requests refused: Idempotency-Key reused with another body or version.",
                                 ("operation",), registry=r)
        self.charges = Counter("acp_charges", "Successful charges (or authorizations).", ("currency",),
                               registry=r)
        self.charged = Counter("acp_charged_minor_units", "Amount charged, minor units of the currency.",
                               ("currency",), registry=r)
        self.declines = Counter("acp_payment_declines", "Charges refused by the processor, by reason "
                                "(declined, token, action_required, amount).", ("currency", "reason"),
                                registry=r)
        self.refunds = Counter("acp_refunds", "Refunds accepted by the processor, by status.",
                               ("currency", "status"), registry=r)
        self.refunded = Counter("acp_refunded_minor_units", "Amount refunded (not failed), minor units.",
                                ("currency",), registry=r)
        self.processor_latency = Histogram("acp_processor_call_duration_seconds",
                                           "Payment processor (Stripe) call latency.", ("call",), registry=r)
        self.processor_errors = Counter("acp_processor_call_errors", "Payment processor calls that failed "
                                        "(not declines), by exception.", ("call", "error"), registry=r)
        self.platform_latency = Histogram("acp_platform_call_duration_seconds",
                                          "Platform adapter call latency.", ("call",), registry=r)
        self.platform_errors = Counter("acp_platform_call_errors", "Platform adapter calls that raised, by "
                                       "exception.", ("call", "error"), registry=r)

    # -- the pipeline's observer ---------------------------------------------------------

    def observe(self, request: ApiRequest, version: str | None, response: ApiResponse,
                seconds: float) -> None:
        """Count one answered request (:class:`flask_acp.api.pipeline.Observer`)."""
        operation = request.operation
        self.requests.labels(operation, version or "none", str(response.status)).inc()
        self.latency.labels(operation).observe(seconds)
        if response.headers.get("Idempotent-Replayed") == "true":
            self.replays.labels(operation).inc()
        elif response.status in (409, 422) and _error_code(response) == "idempotency_conflict":
            self.conflicts.labels(operation).inc()

    # -- wrappers ------------------------------------------------------------------------

    def payment_processor(self, inner: PaymentProcessor) -> MeteredPaymentProcessor:
        """``inner``, counted (hand it to the checkout core)."""
        return MeteredPaymentProcessor(inner, self)

    def adapter(self, inner: PlatformAdapter) -> MeteredAdapter:
        """``inner``, timed (hand it to the checkout core)."""
        return MeteredAdapter(inner, self)

    def timed(self, histogram: Histogram, errors: Counter, call: str, fn: cabc.Callable[[], R],
              ignore: tuple[type[BaseException], ...] = ()) -> R:
        started = time.perf_counter()
        try:
            return fn()
        except ignore:
            raise
        except Exception as exc:
            errors.labels(call, type(exc).__name__).inc()
            raise
        finally:
            histogram.labels(call).observe(time.perf_counter() - started)

    # -- scraping ------------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The text exposition format of every metric (all worker processes'
        counters under ``PROMETHEUS_MULTIPROC_DIR``)."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            registry.register(self.outbox_collector)
            return generate_latest(registry)
        return generate_latest(self.registry)


def _error_code(response: ApiResponse) -> str | None:
    try:
        body = json.loads(response.body)
    except ValueError:
        return None
    return body.get("code") if isinstance(body, dict) else None


_DECLINE_REASONS = {"PaymentDeclinedError": "declined", "PaymentTokenError": "token",
                    "PaymentActionRequiredError": "action_required", "PaymentAmountError": "amount"}


class MeteredPaymentProcessor:
    """A :class:`~flask_acp.payments.base.PaymentProcessor` that counts what
    ``inner`` does and times each network call; behaviour unchanged."""

    def __init__(self, inner: PaymentProcessor, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics

    def _call(self, call: str, fn: cabc.Callable[[], R], *,
              ignore: tuple[type[BaseException], ...] = ()) -> R:
        m = self.metrics
        return m.timed(m.processor_latency, m.processor_errors, call, fn, ignore)

    def handlers(self) -> list[PaymentHandler]:
        return self.inner.handlers()

    def time_budget(self) -> float:
        return self.inner.time_budget()

    def amount_problem(self, amount: int, currency: str) -> AmountProblem | None:
        return self.inner.amount_problem(amount, currency)

    def charge(self, request: ChargeRequest) -> ChargeResult:
        currency = request.currency.lower()
        try:
            result = self._call("charge", lambda: self.inner.charge(request), ignore=(PaymentError,))
        except PaymentError as exc:
            reason = _DECLINE_REASONS.get(type(exc).__name__)
            if reason is None and isinstance(exc, PaymentDeclinedError):
                reason = "declined"
            if reason is not None:
                self.metrics.declines.labels(currency, reason).inc()
            else:  # unavailable, provider error: the call failed
                self.metrics.processor_errors.labels("charge", type(exc).__name__).inc()
            raise
        self.metrics.charges.labels(result.currency.lower()).inc()
        self.metrics.charged.labels(result.currency.lower()).inc(result.amount)
        return result

    def capture(self, payment_id: str, *, amount: int, idempotency_key: str) -> ChargeResult:
        return self._call("capture", lambda: self.inner.capture(
            payment_id, amount=amount, idempotency_key=idempotency_key))

    def void(self, payment_id: str, *, idempotency_key: str) -> None:
        self._call("void", lambda: self.inner.void(payment_id, idempotency_key=idempotency_key))

    def refund(self, payment_id: str, *, amount: int, idempotency_key: str,
               metadata: dict[str, str]) -> RefundResult:
        result = self._call("refund", lambda: self.inner.refund(
            payment_id, amount=amount, idempotency_key=idempotency_key, metadata=metadata))
        currency = result.currency.lower()
        self.metrics.refunds.labels(currency, result.status).inc()
        if result.status != "failed":
            self.metrics.refunded.labels(currency).inc(result.amount)
        return result

    def find_charge(self, idempotency_key: str) -> ChargeResult | None:
        return self._call("find_charge", lambda: self.inner.find_charge(idempotency_key))


class MeteredAdapter(PlatformAdapter):
    """A :class:`~flask_acp.adapter.PlatformAdapter` that times each call of
    ``inner`` the checkout core makes; behaviour unchanged."""

    name = "metered"

    def __init__(self, inner: PlatformAdapter, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics

    @classmethod
    def from_config(cls, config: cabc.Mapping[str, t.Any]) -> PlatformAdapter:
        raise TypeError("MeteredAdapter wraps a built adapter")

    def _call(self, call: str, fn: cabc.Callable[[], R]) -> R:
        m = self.metrics
        return m.timed(m.platform_latency, m.platform_errors, call, fn)

    def quote(self, request: QuoteRequest) -> Quote:
        return self._call("quote", lambda: self.inner.quote(request))

    def prepare_order(self, session: CheckoutSession, *, hold_until: dt.datetime) -> Quote:
        return self._call("prepare_order", lambda: self.inner.prepare_order(session, hold_until=hold_until))

    def place_order(self, session: CheckoutSession, payment: PaymentRecord) -> Order:
        return self._call("place_order", lambda: self.inner.place_order(session, payment))

    def release(self, session: CheckoutSession) -> None:
        self._call("release", lambda: self.inner.release(session))

    def supported_currencies(self) -> list[str]:
        return self.inner.supported_currencies()

    def parse_webhook(self, headers: cabc.Mapping[str, str], body: bytes) -> PlatformWebhook:
        return self.inner.parse_webhook(headers, body)

    def reconcile_orders(self, since: dt.datetime | None) -> list[PlatformOrderUpdate]:
        return self._call("reconcile_orders", lambda: self.inner.reconcile_orders(since))

    def cleanup(self, older_than: float) -> list[str]:
        return self.inner.cleanup(older_than)

    def close(self) -> None:
        self.inner.close()


class OutboxCollector(Collector):
    """The outbox backlog, read from the store at each scrape (at most
    :data:`OUTBOX_SCAN` rows per status). A store that cannot answer leaves
    the gauges out of that scrape rather than failing it."""

    def __init__(self, outbox: Outbox, *, clock: cabc.Callable[[], float] = time.time) -> None:
        self.outbox = outbox
        self.clock = clock

    def describe(self) -> list[Metric]:
        return list(self._families())

    def collect(self) -> cabc.Iterator[Metric]:
        try:
            pending = self.outbox.entries(statuses=["pending"], limit=OUTBOX_SCAN)
            failed = self.outbox.entries(statuses=["failed"], limit=OUTBOX_SCAN)
        except Exception:
            return
        oldest = min((e.created_at for e in pending), default=None)
        age = 0.0 if oldest is None else max(0.0, self.clock() - oldest)
        yield from self._families(len(pending), len(failed), age)

    @staticmethod
    def _families(pending: int | None = None, failed: int | None = None,
                  age: float | None = None) -> cabc.Iterator[Metric]:
        for name, doc, value in (
                ("acp_outbox_pending_events", "Order webhook events waiting for delivery "
                 f"(counted up to {OUTBOX_SCAN}).", pending),
                ("acp_outbox_failed_events", f"Order webhook events given up (counted up to {OUTBOX_SCAN}).",
                 failed),
                ("acp_outbox_oldest_pending_age_seconds", "Age of the oldest pending order webhook event "
                 "(0: none pending).", age)):
            family = GaugeMetricFamily(name, doc)
            if value is not None:
                family.add_metric([], value)
            yield family


def make_blueprint(path: str, metrics: Metrics, token: str | None) -> Blueprint:
    """``GET path``: the text exposition format; with ``token``, only for
    ``Authorization: Bearer <token>`` (else 401, JSON)."""
    import hmac

    bp = Blueprint("acp_metrics", __name__)

    @bp.get(path)
    def scrape() -> Response:
        if token is not None:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
                return Response(json.dumps({"type": "invalid_request", "code": "unauthorized",
                                            "message": "Send 'Authorization: Bearer <ACP_METRICS_TOKEN>'."}),
                                status=401, mimetype="application/json",
                                headers={"WWW-Authenticate": 'Bearer realm="metrics"',
                                         "Cache-Control": "no-store"})
        return Response(metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST,
                                                       "Cache-Control": "no-store"})

    return bp
