"""Public test helpers for merchants' own test suites.

- :class:`FakePaymentProcessor`: a payment processor whose outcome is chosen
  by the token, with a ledger (in memory, or in a SQLite file shared by
  several processes) that honours idempotency keys like a real processor.
- :func:`acp_headers`: the headers an agent sends.
- Fake Stripe, Shopify and WooCommerce servers on one base:
  :mod:`flask_acp.testing.fakes` (its docstring lists their shared API), also
  importable as ``flask_acp.testing.fake_stripe``, ``fake_shopify`` and
  ``fake_woocommerce``.

Tokens understood by :class:`FakePaymentProcessor` (prefix match):

=====================  ==================================================
``spt_decline``        declined (``PaymentDeclinedError``)
``spt_expired``        unusable token (``PaymentTokenError``)
``spt_3ds``            needs authentication (``PaymentActionRequiredError``), unless the
                       complete carried an ``authentication_result`` whose outcome
                       is in :data:`AUTHENTICATED`
``spt_unavailable``    processor down, nothing charged (``PaymentUnavailableError``)
``spt_timeout``        no answer, nothing charged, outcome unknown to the caller
``spt_lost``           charged, then the response is lost (``PaymentUnavailableError``);
                       a retry with the same idempotency key gets the stored outcome
anything else          charged
=====================  ==================================================

Amounts: :class:`FakePaymentProcessor` advertises a ``psp: stripe`` handler
and applies Stripe's amount rules (:mod:`flask_acp.payments.stripe_amounts`:
three-decimal step, minimum and maximum charge), so a test with the fake sees
the same ``not_ready_for_payment`` sessions as production on Stripe. Pass
``amount_rules=False`` to charge any positive amount.
"""

from __future__ import annotations

import collections.abc as cabc
import contextlib
import json
import os
import sqlite3
import threading
import typing as t
import uuid

from ..errors import PaymentActionRequiredError
from ..errors import PaymentDeclinedError
from ..errors import PaymentTokenError
from ..errors import PaymentUnavailableError
from ..payments import stripe_amounts
from ..payments.base import AmountProblem
from ..payments.base import ChargeRequest
from ..payments.base import ChargeResult
from ..payments.base import PaymentAmountError
from ..payments.base import PaymentHandler
from ..payments.base import RefundResult
from ..payments.base import tokenized_card_handler

API_VERSION = "2026-04-17"
#: ``authentication_result.outcome`` values after which an ``spt_3ds...``
#: token charges (the agent ran 3-D Secure; 2026-01-16 names it ``attempt``)
AUTHENTICATED = ("authenticated", "attempt_acknowledged", "attempt")


class FakePaymentProcessor:
    """A deterministic stand-in for a payment processor (never moves money).

    :param ledger_path: SQLite file for the ledger, so that several worker
        processes share it; ``None`` keeps it in memory.
    :param handler_id: the ``PaymentHandler.id`` it advertises.
    :param merchant_id: ``config.merchant_id`` of that handler.
    :param amount_rules: apply Stripe's amount rules (see the module docstring);
        ``False``: any amount >= 1 minor unit is chargeable.
    """

    def __init__(self, ledger_path: str | None = None, *, handler_id: str = "card_tokenized",
                 merchant_id: str = "acct_fake", amount_rules: bool = True) -> None:
        self.handler_id = handler_id
        self.merchant_id = merchant_id
        self.amount_rules = amount_rules
        self._path = ledger_path or ":memory:"
        self._lock = threading.RLock()
        self._local = threading.local()
        self._memory = (sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
                        if ledger_path is None else None)
        with self._db() as db:
            db.execute("CREATE TABLE IF NOT EXISTS fake_charges (idempotency_key TEXT PRIMARY KEY,"
                       " request TEXT NOT NULL, result TEXT NOT NULL)")

    @contextlib.contextmanager
    def _db(self) -> cabc.Iterator[sqlite3.Connection]:
        if self._memory is not None:
            with self._lock:
                yield self._memory
            return
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            local.db = sqlite3.connect(self._path, timeout=30, isolation_level=None,
                                       check_same_thread=False)
            local.db.execute("PRAGMA journal_mode=WAL")
            local.pid = os.getpid()
        yield local.db

    def handlers(self) -> list[PaymentHandler]:
        return [tokenized_card_handler(
            id=self.handler_id, psp="stripe", display_name="Card (test mode)",
            config={"merchant_id": self.merchant_id, "psp": "stripe", "environment": "test"})]

    def time_budget(self) -> float:
        """One local SQLite write: a second at the most."""
        return 1.0

    def amount_problem(self, amount: int, currency: str) -> AmountProblem | None:
        """Stripe's rules (:func:`flask_acp.payments.stripe_amounts.amount_problem`),
        or only ``amount >= 1`` with ``amount_rules=False``."""
        if self.amount_rules:
            return stripe_amounts.amount_problem(amount, currency)
        if amount < 1:
            return AmountProblem(code="minimum_not_met", amount=amount, currency=currency.lower(), limit=1)
        return None

    def charge(self, request: ChargeRequest) -> ChargeResult:
        """Charge per the token's prefix (module docstring); an amount
        :meth:`amount_problem` refuses raises :class:`PaymentAmountError`, nothing recorded."""
        problem = self.amount_problem(request.amount, request.currency)
        if problem is not None:
            raise PaymentAmountError("the processor cannot charge this amount", problem=problem)
        token = request.token
        if token.startswith("spt_unavailable"):
            raise PaymentUnavailableError("processor unavailable", retry_after=1, outcome_unknown=False)
        if token.startswith("spt_timeout"):
            raise PaymentUnavailableError("no answer from the processor", retry_after=1)
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT request, result FROM fake_charges WHERE idempotency_key = ?",
                                 (request.idempotency_key,)).fetchone()
                first_attempt = row is None
                if first_attempt:
                    result = self._decide(request)
                    db.execute("INSERT INTO fake_charges VALUES (?, ?, ?)", (
                        request.idempotency_key,
                        json.dumps({"amount": request.amount, "currency": request.currency}),
                        json.dumps(result)))
                else:
                    stored = json.loads(row[0])
                    if stored != {"amount": request.amount, "currency": request.currency}:
                        raise PaymentDeclinedError("idempotency key reused with other parameters")
                    result = json.loads(row[1])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        if token.startswith("spt_lost") and first_attempt:
            # only the first response is lost: a retry with the same idempotency
            # key gets the stored outcome, as from a real processor
            raise PaymentUnavailableError("connection lost after the charge", retry_after=1)
        return self._outcome(result)

    def capture(self, payment_id: str, *, amount: int, idempotency_key: str) -> ChargeResult:
        charge = self._by_payment_id(payment_id)
        self._record(idempotency_key, {"op": "capture", "payment_id": payment_id, "amount": amount})
        return ChargeResult(payment_id=payment_id, amount=amount, currency=charge["currency"])

    def void(self, payment_id: str, *, idempotency_key: str) -> None:
        self._by_payment_id(payment_id)
        self._record(idempotency_key, {"op": "void", "payment_id": payment_id})

    def refund(self, payment_id: str, *, amount: int, idempotency_key: str,
               metadata: dict[str, str]) -> RefundResult:
        charge = self._by_payment_id(payment_id)
        stored = self._record(idempotency_key, {"op": "refund", "payment_id": payment_id, "amount": amount,
                                                "id": "re_fake_" + uuid.uuid4().hex[:20]})
        return RefundResult(id=stored["id"], amount=amount, currency=charge["currency"], status="succeeded")

    def operations(self, op: str) -> list[dict[str, t.Any]]:
        """Captures, voids or refunds made (``op``: capture | void | refund)."""
        with self._db() as db:
            rows = db.execute("SELECT result FROM fake_charges").fetchall()
        return [r for r in (json.loads(row[0]) for row in rows) if r.get("op") == op]

    def _by_payment_id(self, payment_id: str) -> dict[str, t.Any]:
        for charge in self.charges():
            if charge["payment_id"] == payment_id:
                return charge
        raise PaymentDeclinedError(f"no such payment {payment_id}")

    def _record(self, key: str, result: dict[str, t.Any]) -> dict[str, t.Any]:
        """Store ``result`` under ``key`` once; return what is stored (idempotent)."""
        with self._db() as db:
            db.execute("INSERT OR IGNORE INTO fake_charges VALUES (?, ?, ?)",
                       (key, json.dumps({"op": result["op"]}), json.dumps(result)))
            row = db.execute("SELECT result FROM fake_charges WHERE idempotency_key = ?", (key,)).fetchone()
        return t.cast(dict[str, t.Any], json.loads(row[0]))

    def find_charge(self, idempotency_key: str) -> ChargeResult | None:
        with self._db() as db:
            row = db.execute("SELECT result FROM fake_charges WHERE idempotency_key = ?",
                             (idempotency_key,)).fetchone()
        if row is None:
            return None
        result = json.loads(row[0])
        return None if result.get("status") != "succeeded" else self._outcome(result)

    def charges(self) -> list[dict[str, t.Any]]:
        """Every successful charge: ``[{payment_id, amount, currency, idempotency_key, metadata}]``."""
        with self._db() as db:
            rows = db.execute("SELECT idempotency_key, result FROM fake_charges").fetchall()
        out = []
        for key, result in rows:
            data = json.loads(result)
            if data.get("status") == "succeeded":
                out.append({"idempotency_key": key, **data})
        return out

    @staticmethod
    def _decide(request: ChargeRequest) -> dict[str, t.Any]:
        authenticated = (request.authentication_result or {}).get("outcome") in AUTHENTICATED
        for prefix, status in (("spt_decline", "declined"), ("spt_expired", "token_invalid"),
                               ("spt_3ds", "requires_action")):
            if request.token.startswith(prefix) and not (status == "requires_action" and authenticated):
                return {"status": status}
        return {"status": "succeeded", "payment_id": "pi_fake_" + uuid.uuid4().hex[:24],
                "amount": request.amount, "currency": request.currency, "metadata": request.metadata}

    @staticmethod
    def _outcome(result: dict[str, t.Any]) -> ChargeResult:
        status = result["status"]
        if status == "declined":
            raise PaymentDeclinedError("Your card was declined.", decline_code="card_declined")
        if status == "token_invalid":
            raise PaymentTokenError("the token has expired", decline_code="token_expired")
        if status == "requires_action":
            raise PaymentActionRequiredError("authentication required")
        return ChargeResult(payment_id=result["payment_id"], amount=result["amount"],
                            currency=result["currency"])


def acp_headers(api_key: str, *, idempotency_key: str | None = None, version: str = API_VERSION,
                **extra: str) -> dict[str, str]:
    """Headers of an agent request: bearer auth, ``API-Version``, JSON content
    type and a fresh ``Idempotency-Key`` (unless one is given)."""
    headers = {
        "Authorization": f"Bearer {api_key}",
        "API-Version": version,
        "Content-Type": "application/json",
        "Idempotency-Key": idempotency_key or str(uuid.uuid4()),
    }
    headers.update(extra)
    return headers
