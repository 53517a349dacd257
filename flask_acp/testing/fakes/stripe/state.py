"""The fake Stripe's state (its objects and logs) and its constructor: the
bottom layer of :class:`~flask_acp.testing.fakes.stripe.FakeStripe`."""

from __future__ import annotations

import copy
import typing as t

from ..base import FakeClock
from ..base import FakeServer
from .wire import DEFAULT_API_KEY
from .wire import DEFAULT_SPT_API_VERSION
from .wire import IdempotencyEntry
from .wire import JSONDict
from .wire import RecordedRequest
from .wire import WebhookDelivery
from .wire import WireRequest

#: the key webhooks are signed with unless told otherwise (a ``whsec_…`` string).
DEFAULT_WEBHOOK_SECRET = "whsec_fake_0123456789abcdef"  # noqa: S105


class WebhookTarget(t.NamedTuple):
    """Where :meth:`~flask_acp.testing.fakes.stripe.FakeStripe.subscribe_webhooks`
    sends events (``topics``: ``None`` for all)."""

    url: str
    secret: str
    topics: frozenset[str] | None


class StripeState(FakeServer[WebhookDelivery]):
    """The objects, the logs and the constructor of the fake Stripe."""

    name = "FakeStripe"

    def __init__(self, *, api_key: str = DEFAULT_API_KEY, spt_api_version: str = DEFAULT_SPT_API_VERSION,
                 host: str = "127.0.0.1", port: int = 0, quiet: bool = True,
                 clock: FakeClock | None = None, account_id: str = "acct_fake") -> None:
        super().__init__(host=host, port=port, quiet=quiet, clock=clock)
        self.api_key = api_key
        #: the id ``GET /v1/account`` answers (the account of the key)
        self.account_id = account_id
        self.spt_api_version = spt_api_version
        self.webhook_secret = DEFAULT_WEBHOOK_SECRET
        self._webhook_target: WebhookTarget | None = None
        self.reset()

    def reset(self) -> None:
        """Forget all objects, saved idempotent results, faults and logs."""
        with self._lock:
            super().reset()
            self._payment_intents: dict[str, JSONDict] = {}
            self._charges: dict[str, JSONDict] = {}
            self._payment_methods: dict[str, JSONDict] = {}
            self._refunds: dict[str, JSONDict] = {}
            self._tokens: dict[str, JSONDict] = {}
            self._token_pm: dict[str, str] = {}  # spt id -> pm_card_* name
            self._pi_token: dict[str, str] = {}  # charged PI id -> spt id
            self._charged: set[str] = set()  # PIs that authorized or captured money
            self._idempotency: dict[tuple[str, str], IdempotencyEntry] = {}
            self._requests: list[RecordedRequest] = []
            self._wire: list[WireRequest] = []
            self._webhook_log: list[WebhookDelivery] = []

    def now(self) -> int:
        """The fake's current Unix time in seconds."""
        return int(self.clock.time())

    # ----------------------------------------------------------------- inspection

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, in order: ``(method, path, idempotency_key, params)``."""
        with self._lock:
            return list(self._requests)

    @property
    def wire_requests(self) -> list[WireRequest]:
        """Every request received, undecoded (exact body and headers)."""
        with self._lock:
            return list(self._wire)

    @property
    def payment_intents(self) -> dict[str, JSONDict]:
        """PaymentIntent objects by id (copies)."""
        with self._lock:
            return copy.deepcopy(self._payment_intents)

    @property
    def refunds(self) -> dict[str, JSONDict]:
        """Refund objects by id (copies)."""
        with self._lock:
            return copy.deepcopy(self._refunds)

    @property
    def granted_tokens(self) -> dict[str, JSONDict]:
        """``shared_payment.granted_token`` objects by id (copies)."""
        with self._lock:
            return {k: self._token_view(v) for k, v in self._tokens.items()}

    @property
    def webhook_log(self) -> list[WebhookDelivery]:
        """Every webhook sent by :meth:`send_webhook` or :meth:`subscribe_webhooks`."""
        with self._lock:
            return list(self._webhook_log)

    def charges_count(self) -> int:
        """Number of PaymentIntents that authorized or captured money (a later cancel or
        refund does not lower it). Idempotent replays do not count again."""
        with self._lock:
            return len(self._charged)

    @staticmethod
    def _token_view(token: JSONDict) -> JSONDict:
        return copy.deepcopy(token)
