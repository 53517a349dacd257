"""``GET /v1/payment_intents/search``: only ``query=metadata['key']:'value'``,
immediately consistent (Stripe's search is not)."""

from __future__ import annotations

import re

from .refunds import Refunds
from .wire import JSONDict
from .wire import StripeError

_SEARCH_QUERY = re.compile(r"""^\s*metadata\[(['"])(.+?)\1\]\s*:\s*(['"])(.*)\3\s*$""")


class Search(Refunds):
    """The search endpoint (a layer of :class:`~flask_acp.testing.fakes.stripe.FakeStripe`)."""

    def _do_pi_search(self, params: JSONDict) -> tuple[int, JSONDict]:
        match = _SEARCH_QUERY.match(params["query"])
        if match is None:
            raise StripeError(400, "FakeStripe only supports search queries of the form "
                                   "metadata['key']:'value'.", param="query")
        key, value = match.group(2), match.group(4)
        found = [pi for pi in reversed(list(self._payment_intents.values()))
                 if pi["metadata"].get(key) == value]
        found.sort(key=lambda pi: -pi["created"])
        limit = params.get("limit", 10)
        return 200, {"object": "search_result", "url": "/v1/payment_intents/search",
                     "has_more": len(found) > limit, "next_page": None,
                     "data": [self._expanded(pi, params) for pi in found[:limit]]}

