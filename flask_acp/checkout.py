"""The checkout service: the session state machine, with no Flask in it.

Behind it sit three ports: the platform adapter (:mod:`flask_acp.adapter`),
the payment processor (:mod:`flask_acp.payments`) and the storage
(:mod:`flask_acp.store`, reached through :class:`~flask_acp.sessions.SessionAccess`).
The request pipeline (:mod:`flask_acp.api`) has a wire version parse a request
into one of the inputs of :mod:`flask_acp.inputs`, calls one method, and has
the version render the session it returns. Errors are named by cause
(:mod:`flask_acp.errors`); the settings it reads are :class:`CheckoutSettings`.

State machine (ACP 2026-04-17 leaves most of it to the merchant, digest §13)::

    create -> not_ready_for_payment <-> ready_for_payment        (update re-quotes)
    (stock is held only while ready_for_payment, until ACP_STOCK_HOLD_TTL after the
    session first became so: see :meth:`CheckoutService._price`)
    ready_for_payment --complete--> complete_in_progress --> completed
                                          |--> ready_for_payment + payment_declined message
    any non-terminal --cancel--> canceled;  --expires_at passed--> expired

``completed``, ``canceled`` and ``expired`` are terminal: update, complete and
cancel on them raise :class:`~flask_acp.errors.SessionClosedError` (405).

Exactly-once completion: every step of ``complete`` is recorded in the
session before the next one starts (the attempt before the charge, the charge
before the order), under a per-session lock, and both the charge (processor
idempotency key derived from session id + token hash) and the order
(``place_order`` idempotent per session) are safe to repeat. A retry after a
crash, with any idempotency key, resumes where the first attempt stopped.
Every save is fenced by the lock, and the lock is checked before the charge
and before placing the order, so a worker frozen past its lease changes
nothing; a decision to give the money back is saved before the refund, and
nothing places an order after it.
"""

from __future__ import annotations

import collections.abc as cabc
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import math
import secrets
import time
import typing as t

from .adapter import PlatformAdapter
from .adapter import QuoteRequest
from .adapter import applied_codes
from .adapter import as_unavailable
from .adapter import quote_payable
from .adapter import store_currency
from .errors import ACPError
from .errors import AdapterError
from .errors import AdapterRejectedError
from .errors import AdapterUnavailableError
from .errors import BusyError
from .errors import InvalidRequestError
from .errors import PaymentActionRequiredError
from .errors import PaymentDeclinedError
from .errors import PaymentProviderError
from .errors import PaymentTokenError
from .errors import PaymentUnavailableError
from .errors import ProcessingError
from .errors import SessionClosedError
from .errors import UnavailableError
from .errors import is_transient
from .inputs import CancelInput
from .inputs import CompleteInput
from .inputs import CreateInput
from .inputs import UpdateInput
from .models import DISCOUNT_EXTENSION
from .models import JSON
from .models import CheckoutSession
from .models import MarketingConsent
from .models import Message
from .models import Order
from .models import OrderEvent
from .models import OrderLine
from .models import PaymentRecord
from .models import Quote
from .models import RejectedDiscount
from .models import Status
from .models import Totals
from .models import extension_requested
from .models import line_item_id
from .models import new_event
from .payments.base import ChargeRequest
from .payments.base import ChargeResult
from .payments.base import PaymentAmountError
from .payments.base import PaymentProcessor
from .sessions import LockSettings
from .sessions import SessionAccess
from .sessions import utcnow
from .settlement import Settlement
from .settlement import unavailable
from .store.base import LockLostError
from .store.base import Storage

log = logging.getLogger("flask_acp")

#: seconds allowed for one platform step of a completion (``prepare_order``
#: before the charge, ``place_order`` after it, with the saves around them)
PLATFORM_CALL_MARGIN = 60.0
#: sessions erased per storage call by :meth:`CheckoutService.sweep`
ERASE_BATCH = 1000


@dataclasses.dataclass(frozen=True, slots=True)
class SweepReport:
    expired: int = 0
    recovered: int = 0
    purged_idempotency: int = 0
    #: terminal sessions whose personal data was erased (``ACP_PII_RETENTION``)
    erased_personal_data: int = 0


class CheckoutSettings(LockSettings, t.Protocol):
    """The settings the checkout core reads (``flask_acp.config.Settings`` has
    them; loading and validating them is the edge's job). All in seconds."""

    @property
    def session_ttl(self) -> int:
        """A session lives this long after its last change."""

    @property
    def idempotency_ttl(self) -> int:
        """Stored idempotent responses are purged after this."""

    @property
    def stock_hold_ttl(self) -> int:
        """A session holds stock at most this long after it first became payable
        (until ``complete`` takes the hold again)."""

    @property
    def pii_retention(self) -> int:
        """Personal data of terminal sessions is erased after this (0: kept)."""

    @property
    def order_placement_retries(self) -> tuple[float, ...]:
        """Pauses between inline ``place_order`` retries."""

    @property
    def order_placement_deadline(self) -> int:
        """After this an unplaceable paid order is refunded."""

    @property
    def payment_reconcile_window(self) -> int:
        """An unknown charge outcome blocks another credential this long."""

    @property
    def payment_failure_limit(self) -> int:
        """Failed payment attempts of a session before each further one pauses its payments."""

    @property
    def payment_cooldown(self) -> int:
        """How long such a pause lasts after the last failure."""

    @property
    def discount_code_rejection_limit(self) -> int:
        """Rejected discount codes of a session before each further rejection pauses new codes."""

    @property
    def discount_code_cooldown(self) -> int:
        """How long such a pause lasts after the last rejection."""

    @property
    def marketing_consent_options(self) -> tuple[dict[str, str], ...]:
        """``MarketingConsentOption`` objects offered on new sessions."""


class CodeGuessLimit(t.Protocol):
    """Discount codes one agent may have rejected over all its sessions
    (``ACP_RATE_LIMIT_DISCOUNT_REJECTIONS_PER_AGENT``; the edge's rate limits
    implement it on their shared counters)."""

    def discount_code_standing(self, agent: str) -> tuple[int, int] | None:
        """``(left, wait)``: rejections ``agent`` has left before its new codes
        pause, and the seconds until one more is allowed when none is left
        (None: unbounded)."""

    def count_discount_rejections(self, agent: str, count: int) -> None:
        """Count ``count`` codes of ``agent`` the platform rejected."""


class CheckoutService:
    """Create, update, read, complete and cancel checkout sessions.

    :param adapter: the platform adapter.
    :param payments: the payment processor.
    :param storage: the storage (sessions, locks, idempotency records).
    :param settings: the app's ACP settings (TTL in seconds, lock timings).
    :param clock: returns the current aware UTC time (tests inject their own).
    :param code_guesses: the per-agent bound on rejected discount codes (None:
        only the per-session one).
    """

    def __init__(
        self,
        *,
        adapter: PlatformAdapter,
        payments: PaymentProcessor,
        storage: Storage,
        settings: CheckoutSettings,
        clock: cabc.Callable[[], dt.datetime] = utcnow,
        on_events: cabc.Callable[[cabc.Sequence[OrderEvent]], None] | None = None,
        code_guesses: CodeGuessLimit | None = None,
    ) -> None:
        self.adapter = adapter
        self.code_guesses = code_guesses
        self.payments = payments
        self.storage = storage
        self.settings = settings
        #: locked, fenced session reads and writes (shared with the order service)
        self.sessions = SessionAccess(storage.sessions, storage.locks, settings, clock=clock,
                                      on_events=on_events)
        #: captures, releases and refunds (shared with the order service)
        self.settlement = Settlement(payments)

    @property
    def clock(self) -> cabc.Callable[[], dt.datetime]:
        """Returns the current aware UTC time (tests set their own)."""
        return self.sessions.clock

    @clock.setter
    def clock(self, clock: cabc.Callable[[], dt.datetime]) -> None:
        self.sessions.clock = clock

    @property
    def on_events(self) -> cabc.Callable[[cabc.Sequence[OrderEvent]], None]:
        """Called with order events after they are committed (hands them to the delivery)."""
        return self.sessions.on_events

    @on_events.setter
    def on_events(self, on_events: cabc.Callable[[cabc.Sequence[OrderEvent]], None]) -> None:
        self.sessions.on_events = on_events

    def locked(self, session_id: str) -> t.ContextManager[None]:
        """Hold the session's lock (see :meth:`SessionAccess.locked`).

        :raises BusyError: held or taken over by another request.
        """
        return self.sessions.locked(session_id)

    def save(self, session: CheckoutSession, events: cabc.Sequence[OrderEvent] = ()) -> CheckoutSession:
        """Store the session (fenced by its lock when held here); see :meth:`SessionAccess.save`."""
        return self.sessions.save(session, events)

    # -- public operations ---------------------------------------------------------

    def create(self, agent: str, api_version: str, data: CreateInput) -> CheckoutSession:
        """Open a session and price it; its stock is held only if it is payable
        at once (see :meth:`_price`). Without a ``currency`` (versions before
        2026-01-30) the store's own currency is used.

        :raises UnavailableError: the platform cannot answer now (503).
        """
        now = self.clock()
        session_id = "cs_" + secrets.token_hex(16)
        expires_at = now + dt.timedelta(seconds=self.settings.session_ttl)
        currency = data.currency or store_currency(self.adapter)
        session = self._price(CheckoutSession(
            id=session_id,
            agent=agent,
            api_version=api_version,
            status=Status.NOT_READY_FOR_PAYMENT,
            currency=currency,
            line_items=data.line_items,
            quote=Quote(lines=()),
            created_at=now,
            updated_at=now,
            expires_at=expires_at,
            buyer=data.buyer,
            fulfillment_details=data.fulfillment_details,
            capabilities=data.capabilities,
            locale=data.locale,
            order_notes=data.order_notes,
            discount_codes=data.discount_codes or (),
            affiliate_attributions=attribute((), data.affiliate_attribution, session_id),
            marketing_consent_options=self.settings.marketing_consent_options,
        ), now, previous_codes=())
        self.storage.sessions.create(session)
        return session

    def get(self, agent: str, session_id: str) -> CheckoutSession:
        """The session as it is now (expired if its time has passed).

        :raises NotFoundError: unknown id, or a session of another agent (404).
        """
        session = self.sessions.find(agent, session_id)
        if self._expiry_due(session):
            with self.locked(session_id):
                return self._expire_if_due(self.sessions.find(agent, session_id))
        return session

    def update(self, agent: str, session_id: str, data: UpdateInput) -> CheckoutSession:
        """Replace the fields sent, re-price, extend the expiry. The stock hold
        follows :meth:`_price`: an update never moves the end of the session's
        hold window (``ACP_STOCK_HOLD_TTL``).

        :raises NotFoundError: (404). :raises SessionClosedError: terminal (405).
        :raises BusyError: a completion is running (409).
        """
        with self.locked(session_id):
            session = self._expire_if_due(self.sessions.find(agent, session_id))
            self._require_open(session, "update")
            now = self.clock()
            changes: dict[str, t.Any] = {
                name: value
                for name, value in (
                    ("line_items", data.line_items),
                    ("buyer", data.buyer),
                    ("fulfillment_details", data.fulfillment_details),
                    ("requested_fulfillment_options", data.selected_fulfillment_options),
                    ("order_notes", data.order_notes),
                    ("discount_codes", data.discount_codes),
                )
                if value is not None
            }
            previous_codes = session.discount_codes
            expires_at = now + dt.timedelta(seconds=self.settings.session_ttl)
            session = self._price(session.replace(**changes, expires_at=expires_at), now,
                                  previous_codes=previous_codes)
            return self.save(session.replace(updated_at=now, extra_messages=()))

    def complete(self, agent: str, session_id: str, data: CompleteInput) -> CheckoutSession:
        """Charge the credential for the session's own total and place the order.

        Returns the completed session (with ``order``), or the session still
        ``ready_for_payment`` with a message when the payment was declined or
        the price changed, or ``not_ready_for_payment`` unchanged.

        Card testing: once a session has had ``payment_failure_limit`` failed
        attempts (declines, unusable credentials, 3-D Secure required), each
        further failure pauses its payments for ``payment_cooldown`` seconds;
        a complete during the pause returns the session unchanged with a
        ``rate_limited`` error message (``param`` ``$.payment_data``,
        ``resolution`` ``recoverable``) and calls neither the processor nor the
        platform, nor binds the credential to the session.

        :raises NotFoundError: (404). :raises SessionClosedError: terminal (405).
        :raises InvalidRequestError: unknown ``handler_id`` or credential type (400).
        :raises UnavailableError: processor or platform unavailable; the
            outcome is recorded and a retry resumes it (503).
        """
        with self.locked(session_id):
            session = self._expire_if_due(self.sessions.find(agent, session_id))
            if session.status is Status.COMPLETED and _retry_of_completion(session, data):
                return session  # a retry of the request that completed it (its answer was lost)
            self._require_open(session, "complete")
            data = self._check_payment_data(data)
            if session.status is Status.COMPLETE_IN_PROGRESS:
                return self._resume(self._note_request_key(session, data), data)
            if session.status is not Status.READY_FOR_PAYMENT:
                return session.replace(extra_messages=session.extra_messages + (
                    Message(type="error", code="invalid", resolution="recoverable",
                            text_key="not_ready"),))
            paused = self._payments_paused(session)
            if paused is not None:
                return paused
            # write-only inputs of this request, kept with the order (the adapter
            # may annotate the platform's pending order with them while preparing it)
            session = session.replace(
                affiliate_attributions=attribute(session.affiliate_attributions, data.affiliate_attribution,
                                                 session.id),
                marketing_consents=consents(session, data))
            # a token another session holds is refused before the platform is asked to
            # hold the stock again (no failure counted: nothing would bound such holds)
            refused = self._claim_token(session, data)
            if refused is not None:
                return refused
            prepared, payable = self._prepare(session)
            if not payable:
                return prepared
            return self._charge_and_place(prepared, data)

    def cancel(self, agent: str, session_id: str, data: CancelInput) -> CheckoutSession:
        """Cancel the session and release its stock. The intent trace is
        write-only: logged, never returned.

        :raises NotFoundError: (404). :raises SessionClosedError: terminal (405).
        :raises BusyError: a completion is running (409).
        """
        with self.locked(session_id):
            session = self._expire_if_due(self.sessions.find(agent, session_id))
            self._require_open(session, "cancel")
            if data.reason_code:
                log.info("checkout %s canceled by agent: reason_code=%s", session.id, data.reason_code)
            self._release(session)
            return self.save(
                session.replace(status=Status.CANCELED, updated_at=self.clock(), extra_messages=())
            )

    def sweep(self, *, stuck_after: float | None = None,
              progress: cabc.Callable[[int, int], None] | None = None) -> SweepReport:
        """Expire due sessions (releasing their stock), finish or roll back
        completions whose worker died, purge old idempotency records (after
        ``ACP_IDEMPOTENCY_TTL``, or ``ACP_PII_RETENTION`` when shorter: a stored
        response carries the buyer's details), and erase the personal data of
        ``completed``, ``canceled`` and ``expired`` sessions last changed before
        ``ACP_PII_RETENTION`` (:meth:`~flask_acp.store.base.Sessions.erase_personal_data`;
        0: kept).

        :param stuck_after: seconds after which a ``complete_in_progress``
            session counts as abandoned (default: the lock lease).
        :param progress: told ``(sessions done, sessions to look at)`` after each one.
        """
        now = self.clock()
        expired = recovered = 0
        open_statuses = (Status.NOT_READY_FOR_PAYMENT.value, Status.READY_FOR_PAYMENT.value)
        due = self.storage.sessions.session_ids(statuses=open_statuses, expires_before=now.timestamp())
        stuck = now.timestamp() - (stuck_after if stuck_after is not None else self.settings.lock_lease)
        stuck_ids = self.storage.sessions.session_ids(statuses=(Status.COMPLETE_IN_PROGRESS.value,),
                                                      updated_before=stuck)
        total, done = len(due) + len(stuck_ids), 0
        for session_id in due:
            done += 1
            try:
                with self.locked(session_id):
                    session = self.storage.sessions.get(session_id)
                    if session is not None and self._expire_if_due(session).status is Status.EXPIRED:
                        expired += 1
            except (BusyError, UnavailableError) as exc:
                log.warning("could not expire checkout %s yet: %s", session_id, exc)
            finally:
                if progress is not None:
                    progress(done, total)
        for session_id in stuck_ids:
            done += 1
            try:
                with self.locked(session_id):
                    session = self.storage.sessions.get(session_id)
                    if session is not None and session.status is Status.COMPLETE_IN_PROGRESS:
                        self.reconcile(session)
                        recovered += 1
            except (BusyError, UnavailableError) as exc:
                log.warning("could not recover checkout %s: %s", session_id, exc)
            finally:
                if progress is not None:
                    progress(done, total)
        retention = self.settings.pii_retention
        keep = min(self.settings.idempotency_ttl, retention) if retention else self.settings.idempotency_ttl
        purged = self.storage.idempotency.purge(before=now.timestamp() - keep)
        erased = 0
        if retention:
            while True:
                batch = self.storage.sessions.erase_personal_data(
                    updated_before=now.timestamp() - retention, now=now.timestamp(), limit=ERASE_BATCH)
                erased += batch
                if batch < ERASE_BATCH:
                    break
        return SweepReport(expired=expired, recovered=recovered, purged_idempotency=purged,
                           erased_personal_data=erased)

    # -- completion steps ----------------------------------------------------------

    def _prepare(self, session: CheckoutSession) -> tuple[CheckoutSession, bool]:
        """Re-price before charging. Returns the session carrying the fresh quote
        (whose ``adapter_state`` may hold what the platform prepared) and whether
        it may be charged; when not (total or payability changed), the session is
        saved with a message and returned to the agent instead."""
        now = self.clock()
        hold_until = now + dt.timedelta(seconds=self.charge_time_budget())
        # the hold outlasts the charge; an open hold window is not cut short by
        # a payment that fails (the window itself is never extended)
        window = _hold_window_end(session, now)
        hold = max(hold_until, window) if window is not None else hold_until
        try:
            fresh = _require_contact(self.adapter.prepare_order(session, hold_until=hold),
                                     session.buyer, session.fulfillment_details)
            fresh = _require_chargeable(fresh, session.currency, self.payments)
        except AdapterError as exc:
            raise as_unavailable(exc) from exc
        if self._discounts_active(session):
            # the platform re-applied the codes it had applied; those it had
            # rejected were not tried again and stay rejected
            earlier = {r.code.casefold(): r for r in session.quote.rejected_discounts}
            kept = {i: earlier[c.casefold()] for i, c in enumerate(session.discount_codes)
                    if c.casefold() in earlier}
            fresh, _ = _settle_discounts(fresh, session.discount_codes, kept, set())
        if fresh.stock_held_until is not None and fresh.stock_held_until < hold_until:
            # the reservation could lapse while the charge runs: another buyer
            # could take the units we are about to be paid for
            fresh = dataclasses.replace(fresh, messages=fresh.messages + (Message(
                type="error", code="out_of_stock", resolution="recoverable", param="$.line_items",
                text_key="stock_hold_short"),))
        old_total, new_total = session.totals.total, _total(fresh)
        if old_total == new_total and _status_of(fresh) is Status.READY_FOR_PAYMENT:
            return session.replace(quote=fresh), True
        warning = Message(
            type="warning", code="price_change", resolution="requires_buyer_review",
            param="$.totals", text_key="price_changed",
            text_args={"old": str(old_total), "new": str(new_total)},
        )
        return self.save(session.replace(
            quote=fresh,
            status=_status_of(fresh),
            updated_at=self.clock(),
            extra_messages=(warning,) if old_total != new_total else (),
        )), False

    def _charge_and_place(self, session: CheckoutSession, data: CompleteInput) -> CheckoutSession:
        token_sha256 = hashlib.sha256(data.token.encode()).hexdigest()
        previous = session.payment
        if previous is not None and previous.token_sha256 == token_sha256 \
                and previous.capture_status in ("refunded", "voided"):
            # this token paid once and the money was given back: never again
            return self._payment_failed(session, PaymentTokenError(
                "this payment token was already used and refunded"))
        refused = self._claim_token(session, data)
        if refused is not None:
            return refused
        handler_id = t.cast(str, data.handler_id)  # filled by _check_payment_data
        record = PaymentRecord(
            idempotency_key=_charge_key(session.id, data),
            token_sha256=token_sha256,
            handler_id=handler_id,
            amount=session.totals.total,
            currency=session.currency,
            attempted_at=self.clock(),
            request_key=data.idempotency_key,
        )
        session = self.save(session.replace(
            status=Status.COMPLETE_IN_PROGRESS,
            payment=record,
            buyer=data.buyer or session.buyer,
            order_notes=data.order_notes or session.order_notes,
            updated_at=self.clock(),
            extra_messages=(),
        ))
        # a worker frozen past its lease must not charge
        self.sessions.keep_lock(session.id, for_seconds=self.charge_time_budget())
        try:
            result = self.payments.charge(ChargeRequest(
                idempotency_key=record.idempotency_key,
                amount=record.amount,
                currency=record.currency,
                token=data.token,
                handler_id=handler_id,
                checkout_session_id=session.id,
                metadata=_charge_metadata(session, data),
                authentication_result=data.authentication_result,
            ))
        except PaymentUnavailableError as exc:
            if not exc.outcome_unknown:  # certainly not executed: nothing to reconcile
                self.save(session.replace(
                    status=Status.READY_FOR_PAYMENT, payment=dataclasses.replace(record, status="failed"),
                    updated_at=self.clock()))
            raise unavailable(exc) from exc
        except (PaymentDeclinedError, PaymentTokenError, PaymentActionRequiredError,
                PaymentAmountError) as exc:
            return self._payment_failed(session, exc)
        except PaymentProviderError as exc:
            self.save(session.replace(
                status=Status.READY_FOR_PAYMENT, payment=dataclasses.replace(record, status="failed"),
                updated_at=self.clock()))
            raise ProcessingError("The payment could not be processed; the merchant has been alerted.",
                                  code="payment_provider_error") from exc
        return self._place(self._charged(session, result))

    def _claim_token(self, session: CheckoutSession, data: CompleteInput) -> CheckoutSession | None:
        """Bind the credential to ``session`` (None), or refuse it: another
        session holds it (the session saved with a message, returned)."""
        token_sha256 = hashlib.sha256(data.token.encode()).hexdigest()
        holder = self.storage.sessions.claim_token(token_sha256, session.id, now=self.clock().timestamp())
        if holder == session.id:
            return None
        # a delegated token is single-use and scoped to one session (Allowance)
        log.warning("checkout %s: refused a payment token already presented to %s", session.id, holder)
        return self.save(session.replace(updated_at=self.clock(), extra_messages=(Message(
            type="error", code="invalid", resolution="requires_buyer_input",
            param="$.payment_data.instrument.credential.token", text_key="payment_token_used"),)))

    def _charged(self, session: CheckoutSession, result: ChargeResult) -> CheckoutSession:
        """Record a successful charge (before anything else can fail). When the
        lock was lost meanwhile (this worker froze past its lease), the charge
        is settled anew under the lock: recorded if the session still waits for
        it, else given back (:meth:`settle_charge`)."""
        record = _payment_of(session)
        try:
            return self.save(session.replace(
                payment=dataclasses.replace(
                    record, status="succeeded", payment_id=result.payment_id,
                    capture_status="authorized" if result.status == "requires_capture" else "captured",
                    charged_at=self.clock()),
                updated_at=self.clock(),
            ))
        except LockLostError:
            log.error("checkout %s: charged (%s) after its lock passed to another request; "
                      "settling the charge anew", session.id, result.payment_id)
            self._settle_after_lost_lock(session.id, lambda: self.settle_charge(
                session.id, result, idempotency_key=record.idempotency_key))
            raise

    def _settle_after_lost_lock(self, session_id: str, settle: cabc.Callable[[], object]) -> None:
        """Run ``settle`` under the session's lock, taken anew (the lost holding
        no longer counts), waiting while the request that took over still runs:
        at most one completion's time budget."""
        deadline = time.monotonic() + self.complete_time_budget()
        pause = 0.5
        with self.sessions.unfenced():
            while True:
                try:
                    settle()
                    return
                except ACPError as exc:
                    if not is_transient(exc) or time.monotonic() + pause > deadline:
                        log.error("checkout %s: could not settle after losing the lock (%s); the "
                                  "processor's payment_intent.succeeded event, or the merchant, must "
                                  "settle it", session_id, exc.message)
                        return
                    time.sleep(pause)
                    pause = min(pause * 2, 10.0)

    def settle_charge(self, session_id: str, charge: ChargeResult, *,
                      idempotency_key: str | None) -> CheckoutSession | None:
        """Account for a successful charge the processor reports (its signed
        event, or a charge whose recording lost the lock), under the session lock.

        - the session's recorded payment: nothing to do;
        - the pending attempt of a ``complete_in_progress`` session (same
          processor idempotency key): recorded and the order placed (:meth:`reconcile`);
        - anything else (an attempt already settled as failed, a second charge
          of a completed session): a stray charge, refunded (an authorization
          released) at once, logged at error level. No order is ever placed for it.

        :param idempotency_key: the processor idempotency key the charge was made
            with (Stripe: ``metadata.acp_idempotency_key``), None if unknown.
        :returns: the session, or None when no session has ``session_id``
            (logged at error level; nothing is refunded, since another
            deployment on the same processor account may own it).
        :raises BusyError: the session is busy (409; retry later).
        :raises UnavailableError: the processor is unavailable (503).
        """
        with self.locked(session_id):
            session = self.storage.sessions.get(session_id)
            if session is None:
                log.error("charge %s (%s %s) names checkout %s, which does not exist here: "
                          "check it in the processor's dashboard", charge.payment_id, charge.amount,
                          charge.currency, session_id)
                return None
            record = session.payment
            if record is not None and record.payment_id == charge.payment_id:
                return session
            if session.status is Status.COMPLETE_IN_PROGRESS and record is not None \
                    and record.status == "pending" and record.idempotency_key == idempotency_key:
                return self.reconcile(session, charge)
            self.settlement.give_back_stray(charge, session_id=session.id)
            return session

    def _place(self, session: CheckoutSession) -> CheckoutSession:
        """Place the paid order (retrying a briefly unavailable platform). If the
        platform refuses it, or stays unavailable past
        ``ACP_ORDER_PLACEMENT_DEADLINE``, the payment is refunded (or its
        authorization released) and the session says why: money never stays
        taken for an order that does not exist."""
        payment = _payment_of(session)
        if payment.give_back_reason is not None:
            # the money is (being) given back: nothing may place an order for it any more
            return self._give_back(session, payment.give_back_reason)
        for delay in (*self.settings.order_placement_retries, None):
            # a worker frozen past its lease must not place it
            self.sessions.keep_lock(session.id, for_seconds=PLATFORM_CALL_MARGIN)
            try:
                order = self.adapter.place_order(session, payment)
                break
            except AdapterUnavailableError as exc:
                if exc.outcome_unknown and not payment.placement_outcome_unknown:
                    # remembered in the session: any later attempt, in any process, knows
                    payment = dataclasses.replace(payment, placement_outcome_unknown=True)
                    session = self.save(session.replace(payment=payment))
                charged_at = payment.charged_at or session.updated_at
                overdue = (self.clock() - charged_at).total_seconds() > self.settings.order_placement_deadline
                if overdue and not payment.placement_outcome_unknown:
                    return self._give_back(session, f"the store was unavailable: {exc}")
                if overdue:
                    log.error("checkout %s: paid (%s) and the store's answer to placing the order is "
                              "unknown (%s): not refunding while the order may exist; check the store",
                              session.id, payment.payment_id, exc)
                if delay is None:
                    raise as_unavailable(exc) from exc
                time.sleep(delay)
            except AdapterRejectedError as exc:
                return self._give_back(session, str(exc))
        try:
            return self._completed(session, order)
        except LockLostError:
            log.error("checkout %s: order %s placed after the lock passed to another request; "
                      "settling it anew", session.id, order.id)
            self._settle_after_lost_lock(session.id, lambda: self._adopt_order(session.id, order))
            raise

    def _completed(self, session: CheckoutSession, order: Order) -> CheckoutSession:
        """Save the session ``completed`` with its order and the ``order_create`` event."""
        payment = _payment_of(session)
        now = self.clock()
        order = dataclasses.replace(
            order,
            line_items=order.line_items or order_lines(session.quote),
            total=payment.amount,
            currency=session.currency,
            payment_id=payment.payment_id,
        )
        event = new_event(order, session, "order_create", now)
        return self.save(
            session.replace(status=Status.COMPLETED, order=order, updated_at=now, extra_messages=()),
            events=(event,),
        )

    def _adopt_order(self, session_id: str, order: Order) -> None:
        """An order placed by a request that lost the lock meanwhile: recorded if
        the session still waits for it, else flagged for the merchant."""
        with self.locked(session_id):
            session = self.storage.sessions.get(session_id)
            if session is None or (session.order is not None and session.order.id == order.id):
                return
            payment = session.payment
            if session.status is Status.COMPLETE_IN_PROGRESS and payment is not None \
                    and payment.status == "succeeded" and payment.give_back_reason is None:
                self._completed(session, order)
                return
            log.error("checkout %s: order %s was placed on the platform for a payment that was given "
                      "back (or for a session now %s): cancel it in the store", session_id, order.id,
                      session.status.value)

    def _give_back(self, session: CheckoutSession, reason: str) -> CheckoutSession:
        """Refund (or release) the payment of an order that cannot be placed.

        The decision is recorded first, in its own transaction
        (``PaymentRecord.give_back_reason``): from then on no retry, sweep or
        event places an order for this payment, they all finish giving it back.
        Then the processor call (idempotent key), then the outcome
        (``not_ready_for_payment`` with a message). Releasing the platform's
        stock and re-pricing come last and are best effort: a platform still
        down leaves them to the session's expiry.

        :raises UnavailableError: the processor cannot give the money
            back now; the decision stands and a retry finishes it (503).
        """
        payment = _payment_of(session)
        if payment.payment_id is None:
            raise ProcessingError(f"checkout {session.id} has a charge without a payment id")
        if payment.give_back_reason is None:
            log.error("checkout %s: paid (%s) but the order cannot be placed (%s): giving the money back",
                      session.id, payment.payment_id, reason)
            payment = dataclasses.replace(payment, give_back_reason=reason)
            session = self.save(session.replace(payment=payment, updated_at=self.clock()))
        given_back = self.settlement.give_back(payment, session_id=session.id, reason="order_not_placed")
        message = Message(type="error", code="unsupported", resolution="requires_buyer_input",
                          text_key="order_failed", text_args={"reason": reason})
        session = self.save(session.replace(
            status=Status.NOT_READY_FOR_PAYMENT,
            payment=dataclasses.replace(payment, status="failed", capture_status=given_back),
            updated_at=self.clock(),
            extra_messages=(message,),
        ))
        try:
            self.adapter.release(session)
            quote = self._quote(self._quote_request(session, hold_until=None), session.buyer,
                                session.fulfillment_details)
        except (AdapterError, UnavailableError) as exc:
            log.warning("checkout %s: money given back; the store could not be updated yet (%s)",
                        session.id, exc)
            return session
        return self.save(session.replace(quote=quote))

    def _payments_paused(self, session: CheckoutSession) -> CheckoutSession | None:
        """The session with a ``rate_limited`` message while its payments are
        paused after repeated failures (None when they are not)."""
        until = session.payments_paused_until
        now = self.clock()
        if until is None or now >= until:
            return None
        seconds = max(1, math.ceil((until - now).total_seconds()))
        log.warning("checkout %s: payment attempt refused, %d failed attempts; paused for %d s more",
                    session.id, session.payment_failures, seconds)
        return session.replace(extra_messages=(Message(
            type="error", code="rate_limited", resolution="recoverable", param="$.payment_data",
            text_key="payments_paused", text_args={"seconds": str(seconds)}),))

    def _payment_failed(self, session: CheckoutSession, exc: Exception) -> CheckoutSession:
        payment = _payment_of(session)
        status = Status.READY_FOR_PAYMENT
        failures, paused_until = session.payment_failures, session.payments_paused_until
        if not isinstance(exc, PaymentAmountError):  # the credential failed: count it (card testing)
            failures += 1
            if failures >= self.settings.payment_failure_limit:
                paused_until = self.clock() + dt.timedelta(seconds=self.settings.payment_cooldown)
                log.warning("checkout %s: %d failed payment attempts; payments paused until %s",
                            session.id, failures, paused_until.isoformat())
        if isinstance(exc, PaymentAmountError):  # the processor refused the total: it must change
            message, status = exc.problem.message(), Status.NOT_READY_FOR_PAYMENT
        elif isinstance(exc, PaymentTokenError):
            message = Message(type="error", code="invalid", resolution="requires_buyer_input",
                              param="$.payment_data.instrument.credential.token",
                              text_key="payment_token_invalid", text_args={"reason": exc.user_message})
        elif isinstance(exc, PaymentActionRequiredError):
            message = Message(type="error", code="requires_3ds", resolution="requires_buyer_input",
                              param="$.payment_data", text_key="payment_requires_3ds")
        else:
            message = Message(type="error", code="payment_declined", resolution="requires_buyer_input",
                              param="$.payment_data", text_key="payment_declined")
        # the failure is recorded before the platform gives the hold back: a save that
        # failed after it would leave the attempt pending, resumed with another credential
        # without re-preparing (WooCommerce: charged for an order cancelled meanwhile)
        return self._hold_after_failure(self.save(session.replace(
            status=status,
            payment=dataclasses.replace(payment, status="failed"),
            updated_at=self.clock(),
            extra_messages=(message,),
            payment_failures=failures,
            payments_paused_until=paused_until,
        )))

    def _hold_after_failure(self, session: CheckoutSession) -> CheckoutSession:
        """Give back what ``_prepare`` held for a charge that failed: the stock
        stays held only until the session's hold window ends (nothing when it
        has ended), so a stream of bad credentials cannot keep re-holding an
        item for the charge's time budget. One quote without (or with the
        window's) hold; the session (saved with the failure) keeps its quote,
        saved again with the adapter state the platform answered. A platform
        that cannot answer keeps the hold until it lapses (logged)."""
        # a worker frozen past its lease must not touch the stock of a session another
        # request now holds (and may have paid and placed meanwhile)
        self.sessions.keep_lock(session.id, for_seconds=PLATFORM_CALL_MARGIN)
        window = _hold_window_end(session, self.clock())
        try:
            answered = self.adapter.quote(self._quote_request(session, hold_until=window))
        except AdapterError as exc:
            log.warning("checkout %s: the stock held for a failed payment stays held until it lapses: %s",
                        session.id, exc)
            return session
        return self.save(session.replace(
            quote=dataclasses.replace(session.quote, adapter_state=answered.adapter_state)))

    def _resume(self, session: CheckoutSession, data: CompleteInput) -> CheckoutSession:
        """Finish a completion that an earlier request left half-done."""
        record = _payment_of(session)
        if record.status == "succeeded":
            return self._place(session)
        found = self._find_charge(record)
        if found is not None:
            return self._place(self._charged(session, found))
        if record.idempotency_key == _charge_key(session.id, data):
            # Same credential (and authentication): re-sending the same charge is safe (same key).
            return self._charge_and_place(session.replace(status=Status.READY_FOR_PAYMENT), data)
        # Another credential: only once the first attempt is known not to have charged.
        return self._charge_and_place(self._settle_unfound(session), data)

    def reconcile(self, session: CheckoutSession, charge: ChargeResult | None = None) -> CheckoutSession:
        """Settle a pending attempt: place the order if it charged (``charge``, as
        a signed processor event reports it, or what the processor finds), else
        return the session to ``ready_for_payment`` — but only once the attempt
        is older than ``ACP_PAYMENT_RECONCILE_WINDOW`` seconds, since a
        processor's search can lag behind its charges. The caller holds the
        session lock.

        :raises UnavailableError: the processor cannot answer now, or the
            outcome is still unknown (503: retry later).
        """
        record = _payment_of(session)
        if record.status == "succeeded":
            return self._place(session)
        found = charge or self._find_charge(record)
        if found is not None:
            return self._place(self._charged(session, found))
        return self._settle_unfound(session)

    def _find_charge(self, record: PaymentRecord) -> ChargeResult | None:
        return self.settlement.find_charge(record.idempotency_key)

    def _settle_unfound(self, session: CheckoutSession) -> CheckoutSession:
        """Mark a pending attempt that no charge was found for as failed, once it
        is old enough for the search to be trusted."""
        record = _payment_of(session)
        started = record.attempted_at or session.updated_at
        age = (self.clock() - started).total_seconds()
        if age < self.settings.payment_reconcile_window:
            wait = int(self.settings.payment_reconcile_window - age) + 1
            raise UnavailableError(
                "The outcome of the previous payment attempt is not known yet; retry later.",
                code="payment_outcome_pending", retry_after=min(wait, 30))
        return self.save(session.replace(
            status=Status.READY_FOR_PAYMENT,
            payment=dataclasses.replace(record, status="failed"),
            updated_at=self.clock(),
        ))

    # -- helpers -------------------------------------------------------------------

    def charge_time_budget(self) -> float:
        """Seconds from the start of a charge until its order is placed, at the
        most: the processor's :meth:`~flask_acp.payments.base.PaymentProcessor.time_budget`
        plus the inline order-placement retries and ``PLATFORM_CALL_MARGIN``."""
        return self.payments.time_budget() + sum(self.settings.order_placement_retries) \
            + PLATFORM_CALL_MARGIN

    def complete_time_budget(self) -> float:
        """Seconds one ``complete`` request can take at the most: the platform's
        re-pricing (``PLATFORM_CALL_MARGIN``) and :meth:`charge_time_budget`.
        The session lock's lease must exceed it (checked at start-up), and so
        must a WSGI server's worker timeout (gunicorn ``--timeout``)."""
        return PLATFORM_CALL_MARGIN + self.charge_time_budget()

    def _note_request_key(self, session: CheckoutSession, data: CompleteInput) -> CheckoutSession:
        record = session.payment
        if record is None or data.idempotency_key is None or record.request_key == data.idempotency_key:
            return session
        noted = dataclasses.replace(record, request_key=data.idempotency_key)
        return self.save(session.replace(payment=noted))

    def _expiry_due(self, session: CheckoutSession) -> bool:
        return (
            session.status in (Status.NOT_READY_FOR_PAYMENT, Status.READY_FOR_PAYMENT)
            and self.clock() >= session.expires_at
        )

    def _expire_if_due(self, session: CheckoutSession) -> CheckoutSession:
        if not self._expiry_due(session):
            return session
        self._release(session)
        return self.save(session.replace(status=Status.EXPIRED, updated_at=self.clock(),
                                               extra_messages=()))

    def _release(self, session: CheckoutSession) -> None:
        try:
            self.adapter.release(session)
        except AdapterError as exc:
            raise as_unavailable(exc) from exc

    def _require_open(self, session: CheckoutSession, action: str) -> None:
        if session.status.is_terminal:
            raise SessionClosedError(
                f"Cannot {action} a checkout session that is {session.status.value}.",
                code=f"checkout_session_{session.status.value}",
            )
        if session.status is Status.COMPLETE_IN_PROGRESS and action != "complete":
            raise BusyError(
                f"Cannot {action} the checkout session while its payment is being processed.",
                code="complete_in_progress",
            )

    def _check_payment_data(self, data: CompleteInput) -> CompleteInput:
        """Check ``payment_data`` against the processor's handlers (described as
        data); a payment naming only a PSP (``data.psp``) gets that PSP's
        delegated-token card handler. Returns ``data`` with the handler, the
        instrument and the credential types filled in.

        :raises InvalidRequestError: unknown handler or PSP, unfit instrument
            or credential type (400).
        """
        handlers = {h.id: h for h in self.payments.handlers()}
        if data.handler_id is None:
            fits = [h for h in handlers.values() if h.psp == data.psp and h.requires_delegate_payment
                    and "card" in h.instrument_types]
            if not fits:
                raise InvalidRequestError(
                    f"This merchant takes no delegated card payments through '{data.psp}'.",
                    code="invalid_payment_provider", param="$.payment_data.provider")
            return dataclasses.replace(data, handler_id=fits[0].id, instrument_type="card",
                                       credential_type=data.credential_type or fits[0].credential_types[0])
        handler = handlers.get(data.handler_id)
        if handler is None:
            raise InvalidRequestError(
                f"Unknown payment handler '{data.handler_id}'; use one of "
                f"{sorted(handlers)} from capabilities.payment.handlers.",
                code="invalid_payment_handler", param="$.payment_data.handler_id",
            )
        if data.instrument_type not in handler.instrument_types:
            raise InvalidRequestError(
                f"Instrument type '{data.instrument_type}' does not fit handler '{data.handler_id}'; "
                f"send {_one_of(handler.instrument_types)}.", code="invalid_instrument_type",
                param="$.payment_data.instrument.type")
        if data.credential_type not in handler.credential_types:
            raise InvalidRequestError(
                f"Credential type '{data.credential_type}' is not accepted; send "
                f"{_one_of(handler.credential_types)}.", code="invalid_credential_type",
                param="$.payment_data.instrument.credential.type",
            )
        return data


    def _discounts_active(self, session: CheckoutSession) -> bool:
        return extension_requested(session.capabilities, DISCOUNT_EXTENSION)

    def _quote_request(self, session: CheckoutSession, *, hold_until: dt.datetime | None,
                       discount_codes: tuple[str, ...] | None = None) -> QuoteRequest:
        """The adapter's request for ``session``; ``discount_codes`` default: the
        codes its current quote applied."""
        return QuoteRequest(
            session_id=session.id,
            currency=session.currency,
            line_items=session.line_items,
            fulfillment_details=session.fulfillment_details,
            selected_fulfillment_options=session.requested_fulfillment_options,
            expires_at=session.expires_at,
            hold_until=hold_until,
            buyer=session.buyer,
            adapter_state=session.quote.adapter_state,
            discount_codes=applied_codes(session.quote) if discount_codes is None else discount_codes,
        )

    def _price(self, session: CheckoutSession, now: dt.datetime, *,
               previous_codes: tuple[str, ...]) -> CheckoutSession:
        """Quote ``session`` (its inputs and ``expires_at`` already set) under the
        stock-hold policy and with its discount codes; returns it with the quote,
        the status, the hold window and the code-guessing counters.

        Stock holds (README "Stock holds"):

        - Not payable: nothing is held (the adapter holds only a payable quote,
          and gives back what the session held).
        - Payable for the first time: the hold window opens, ending
          ``ACP_STOCK_HOLD_TTL`` seconds from now (``stock_hold_deadline``), and
          the stock is held until then (or the session's expiry, if sooner).
        - Payable within the window: held until the same deadline; no update
          moves it, whatever it changes.
        - Past the window: nothing is held any more; the session can still be
          ``ready_for_payment`` (the units were free when it was quoted), and
          ``complete`` holds them for the charge if they are still there.

        One platform call per quote: the adapter is asked to hold (until the
        window's end) whenever the window is open or not opened yet, and holds
        only when its quote is payable. A second call (without a hold) gives
        the hold back when the core's own checks (a contact e-mail, the
        processor's amount limits) find the quote not payable after all.

        Discount codes (ACP 2026-01-30+, digest §18.2), applied only when the
        agent negotiated the discount extension: a code repeated
        (case-insensitively) is rejected ``discount_code_already_applied``; while
        the session's new codes are paused (code guessing) a code not in
        ``previous_codes`` is rejected without asking the platform (and a code so
        rejected stays new). Each code the platform rejects that was not in
        ``previous_codes`` counts towards ``ACP_DISCOUNT_CODE_REJECTION_LIMIT``.
        Without the extension, codes sent are not applied and an info message
        says so.
        """
        active = self._discounts_active(session)
        send: list[str] = []
        decided: dict[int, RejectedDiscount] = {}
        untried = {r.code.casefold() for r in session.quote.rejected_discounts
                   if r.text_key in _PAUSED_TEXT_KEYS}
        known = {c.casefold() for c in previous_codes} - untried
        if active:
            pause, budget = self._new_codes_allowed(session, now, known)
            seen: set[str] = set()
            for index, code in enumerate(session.discount_codes):
                key = code.casefold()
                if key in seen:
                    decided[index] = RejectedDiscount(code=code, reason="discount_code_already_applied",
                                                      text_key="discount_code_repeated",
                                                      text_args={"code": code})
                elif pause is not None and key not in known:
                    text_key, seconds = pause
                    decided[index] = RejectedDiscount(code=code, reason="discount_code_invalid",
                                                      text_key=text_key,
                                                      text_args={"code": code, "seconds": str(seconds)})
                elif key not in known and budget <= 0:
                    decided[index] = RejectedDiscount(code=code, reason="discount_code_invalid",
                                                      text_key="discount_codes_not_tried",
                                                      text_args={"code": code})
                else:
                    if key not in known:
                        budget -= 1
                    send.append(code)
                seen.add(key)
        codes = tuple(send)

        def settle(quote: Quote, changes: dict[str, t.Any]) -> Quote:
            if active:
                quote, counted = _settle_discounts(quote, session.discount_codes, decided, known)
                if counted:
                    rejections = session.discount_code_rejections + counted
                    changes["discount_code_rejections"] = rejections
                    if rejections >= self.settings.discount_code_rejection_limit:
                        until = now + dt.timedelta(seconds=self.settings.discount_code_cooldown)
                        changes["discount_codes_paused_until"] = until
                        log.warning("checkout %s: %d discount codes rejected; new codes paused until %s",
                                    session.id, rejections, until.isoformat())
            elif session.discount_codes:
                quote = dataclasses.replace(quote, messages=quote.messages + (Message(
                    type="info", param="$.discounts.codes", text_key="discount_extension_inactive"),))
            return quote

        deadline = session.stock_hold_deadline
        window = now + dt.timedelta(seconds=self.settings.stock_hold_ttl) if deadline is None else deadline
        hold_until = min(window, session.expires_at) if now < window else None
        raw, quote = self._quote_both(
            self._quote_request(session, hold_until=hold_until, discount_codes=codes),
            session.buyer, session.fulfillment_details)
        changes: dict[str, t.Any] = {}
        quote = settle(quote, changes)
        counted = changes.get("discount_code_rejections", session.discount_code_rejections) \
            - session.discount_code_rejections
        if counted and self.code_guesses is not None:
            self.code_guesses.count_discount_rejections(session.agent, counted)
        status = _status_of(quote)
        if status is Status.READY_FOR_PAYMENT:
            return session.replace(quote=quote, status=status, **changes,
                                   stock_hold_deadline=window if hold_until is not None else deadline)
        if hold_until is not None and quote_payable(raw):  # the adapter held it: give it back
            quote = settle(self._quote(
                self._quote_request(session.replace(quote=quote), hold_until=None, discount_codes=codes),
                session.buyer, session.fulfillment_details), {})
        return session.replace(quote=quote, status=_status_of(quote), **changes)

    def _new_codes_allowed(self, session: CheckoutSession, now: dt.datetime,
                           known: set[str]) -> tuple[tuple[str, int] | None, int]:
        """``(pause, budget)`` for the discount codes of ``session`` not
        checked before (``known``: those that were). ``pause``:
        ``(text_key, seconds)`` while the session's pause
        (``ACP_DISCOUNT_CODE_REJECTION_LIMIT``) or its agent's
        (``ACP_RATE_LIMIT_DISCOUNT_REJECTIONS_PER_AGENT``) lasts, else None.
        ``budget``: how many new codes this request may send, no more than the
        rejections left before either pause (one after a session's pause, as
        each rejection from the limit on pauses again). The agent's counters
        are read only when the session brings a new code."""
        paused_until = session.discount_codes_paused_until
        if paused_until is not None and now < paused_until:
            return ("discount_codes_paused", max(1, math.ceil((paused_until - now).total_seconds()))), 0
        budget = max(1, self.settings.discount_code_rejection_limit - session.discount_code_rejections)
        if self.code_guesses is None or all(c.casefold() in known for c in session.discount_codes):
            return None, budget
        standing = self.code_guesses.discount_code_standing(session.agent)
        if standing is None:
            return None, budget
        left, wait = standing
        if left <= 0:
            return ("discount_codes_paused_agent", wait), 0
        return None, min(budget, left)

    def _quote(self, request: QuoteRequest, buyer: dict[str, JSON] | None,
               fulfillment_details: dict[str, JSON] | None) -> Quote:
        return self._quote_both(request, buyer, fulfillment_details)[1]

    def _quote_both(self, request: QuoteRequest, buyer: dict[str, JSON] | None,
                    fulfillment_details: dict[str, JSON] | None) -> tuple[Quote, Quote]:
        """The adapter's quote, and that quote with the core's own checks' messages."""
        try:
            quote = self.adapter.quote(request)
        except AdapterError as exc:
            raise as_unavailable(exc) from exc
        return quote, _require_chargeable(_require_contact(quote, buyer, fulfillment_details),
                                          request.currency, self.payments)


#: the messages of codes not tried (new codes paused, or too many at once)
_PAUSED_TEXT_KEYS = frozenset({"discount_codes_paused", "discount_codes_paused_agent",
                               "discount_codes_not_tried"})


def order_lines(quote: Quote) -> tuple[OrderLine, ...]:
    """The order's lines from the quote it was paid at (purchasable lines only)."""
    return tuple(
        OrderLine(id=line_item_id(line.item_id), title=line.name or line.item_id,
                  ordered=line.quantity, current=line.quantity, unit_price=line.unit_amount,
                  product_id=line.product_id, image_url=line.images[0] if line.images else None)
        for line in quote.lines if line.purchasable
    )


def _settle_discounts(quote: Quote, codes: tuple[str, ...], decided: dict[int, RejectedDiscount],
                      known: set[str]) -> tuple[Quote, int]:
    """Account for every requested code: applied by the platform, rejected by
    it, rejected here (``decided``, by index), or -- neither applied nor
    rejected, as Shopify skips an ineligible code silently -- rejected as
    ``discount_code_invalid``. Each rejection becomes a ``warning`` message
    with its ``discount_code_*`` code on ``$.discounts.codes[i]`` (discount
    extension: rejected codes are mirrored in ``messages[]``).

    :param known: codes (casefolded) sent before: their rejections are not counted again.
    :returns: the quote (``rejected_discounts`` in request order) and the number
        of platform rejections of codes not in ``known``.
    """
    applied = {d.code.casefold() for d in quote.applied_discounts if d.code is not None}
    by_platform = {r.code.casefold(): r for r in quote.rejected_discounts}
    rejected: list[RejectedDiscount] = []
    messages: list[Message] = []
    counted = 0
    for index, code in enumerate(codes):
        key = code.casefold()
        verdict = decided.get(index)
        if verdict is None:
            if key in applied:
                continue
            verdict = by_platform.get(key) or RejectedDiscount(
                code=code, reason="discount_code_invalid", text_key="discount_code_not_applied")
            verdict = dataclasses.replace(verdict, code=code)
            if key not in known:
                counted += 1
        rejected.append(verdict)
        messages.append(Message(
            type="warning", code=verdict.reason, param=f"$.discounts.codes[{index}]",
            resolution="recoverable", content=verdict.content, text_key=verdict.text_key or verdict.reason,
            text_args={"code": code, **verdict.text_args}))
    kept = tuple(m for m in quote.messages  # an adapter may carry earlier ones over
                 if not (m.type == "warning" and (m.param or "").startswith("$.discounts.codes[")))
    return dataclasses.replace(quote, rejected_discounts=tuple(rejected),
                               messages=kept + tuple(messages)), counted


def attribute(claims: tuple[dict[str, JSON], ...], claim: dict[str, JSON] | None,
              session_id: str) -> tuple[dict[str, JSON], ...]:
    """``claims`` with an affiliate attribution ``claim`` recorded, write-once
    per touchpoint (affiliate attribution RFC §4.3.1): a first claim is kept;
    a later one of the same touchpoint naming another ``provider`` or
    ``publisher_id`` is ignored (never an error: attribution never blocks a
    checkout); one that agrees may add the members the first lacked."""
    if claim is None:
        return claims
    for index, kept in enumerate(claims):
        if kept.get("touchpoint") != claim.get("touchpoint"):
            continue
        if any(name in kept and name in claim and kept[name] != claim[name]
               for name in ("provider", "publisher_id")):
            log.info("checkout %s: a conflicting %s-touch affiliate attribution was ignored "
                     "(the first claim is kept)", session_id, claim.get("touchpoint"))
            return claims
        return claims[:index] + ({**claim, **kept},) + claims[index + 1:]
    return (*claims, claim)


def consents(session: CheckoutSession, data: CompleteInput) -> tuple[MarketingConsent, ...]:
    """The buyer's ``marketing_consents`` decisions for the channels the
    session offered (others are ignored), each with the contact it applies to
    (marketing consent RFC): ``email`` -> ``buyer.email`` else
    ``fulfillment_details.email``; any other channel -> ``buyer.phone_number``
    else ``fulfillment_details.phone_number``. Channels not decided in this
    request keep the decisions of an earlier attempt."""
    if not data.marketing_consents:
        return session.marketing_consents
    offered = {str(option.get("channel")) for option in session.marketing_consent_options}
    buyer = data.buyer or session.buyer or {}
    details = session.fulfillment_details or {}
    decided = {c.channel: c for c in session.marketing_consents}
    for channel, opted_in in data.marketing_consents:
        if channel not in offered:
            continue
        field = "email" if channel == "email" else "phone_number"
        contact = buyer.get(field) or details.get(field)
        decided[channel] = MarketingConsent(channel=channel, opted_in=opted_in,
                                            contact=contact if isinstance(contact, str) else None)
    return tuple(decided.values())


def _retry_of_completion(session: CheckoutSession, data: CompleteInput) -> bool:
    """Whether ``data`` retries the request that completed ``session``: the
    same ``Idempotency-Key``, or — with no key (optional before 2026-04-17) —
    the same payment token. Such a retry gets the completed session back;
    anything else gets 405."""
    payment = session.payment
    if payment is None:
        return False
    if data.idempotency_key is not None:
        return payment.request_key == data.idempotency_key
    return payment.token_sha256 == hashlib.sha256(data.token.encode()).hexdigest()


def _charge_key(session_id: str, data: CompleteInput) -> str:
    """The processor idempotency key of a charge: the session and the token
    (one token charges at most once per session), plus the 3-D Secure result
    when one was sent — after ``requires_3ds`` the agent authenticates and
    sends the same token again, a different request that must not replay the
    processor's stored "action required" answer."""
    key = f"acp-{session_id}-{hashlib.sha256(data.token.encode()).hexdigest()[:32]}"
    if data.authentication_result:
        canonical = json.dumps(data.authentication_result, sort_keys=True, separators=(",", ":"))
        key += "-" + hashlib.sha256(canonical.encode()).hexdigest()[:16]
    return key


def _charge_metadata(session: CheckoutSession, data: CompleteInput) -> dict[str, str]:
    """What the charge carries for reconciliation: the session, the agent and,
    when the agent ran 3-D Secure, its outcome."""
    metadata = {"checkout_session_id": session.id, "acp_agent": session.agent}
    outcome = (data.authentication_result or {}).get("outcome")
    if isinstance(outcome, str):
        metadata["acp_authentication_outcome"] = outcome
    return metadata


def _payment_of(session: CheckoutSession) -> PaymentRecord:
    if session.payment is None:  # a state the service never writes
        raise ProcessingError(f"checkout {session.id} has no payment record")
    return session.payment



def _one_of(values: cabc.Sequence[str]) -> str:
    return " or ".join(f"'{v}'" for v in values)


def _total(quote: Quote) -> int:
    return Totals.of(quote).total


def _require_contact(quote: Quote, buyer: dict[str, JSON] | None,
                     fulfillment_details: dict[str, JSON] | None) -> Quote:
    """Items delivered digitally need an e-mail address to be delivered to
    (``buyer.email`` or ``fulfillment_details.email``): without one, an error
    message on ``$.buyer.email`` keeps the session from being paid."""
    digital = any(line.purchasable and not line.requires_shipping for line in quote.lines)
    email = (buyer or {}).get("email") or (fulfillment_details or {}).get("email")
    if not digital or email:
        return quote
    missing = Message(type="error", code="missing", param="$.buyer.email",
                      resolution="requires_buyer_input", text_key="email_required")
    return dataclasses.replace(quote, messages=quote.messages + (missing,))


def _require_chargeable(quote: Quote, currency: str, payments: PaymentProcessor) -> Quote:
    """A total the processor cannot charge (:meth:`PaymentProcessor.amount_problem
    <flask_acp.payments.base.PaymentProcessor.amount_problem>`: below its
    minimum, above its maximum, a three-decimal amount not ending in 0) gets an
    error message on ``$.totals``, which keeps the session from being paid.
    Not checked while no line is purchasable: nothing would be charged."""
    if not any(line.purchasable for line in quote.lines):
        return quote
    problem = payments.amount_problem(_total(quote), currency)
    if problem is None:
        return quote
    return dataclasses.replace(quote, messages=quote.messages + (problem.message(),))


def _hold_window_end(session: CheckoutSession, now: dt.datetime) -> dt.datetime | None:
    """When the session's stock hold ends, if it still holds (window open)."""
    deadline = session.stock_hold_deadline
    if deadline is None or now >= deadline:
        return None
    return min(deadline, session.expires_at)


def _status_of(quote: Quote) -> Status:
    """``ready_for_payment`` iff :func:`~flask_acp.adapter.quote_payable`."""
    return Status.READY_FOR_PAYMENT if quote_payable(quote) else Status.NOT_READY_FOR_PAYMENT
