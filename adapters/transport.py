"""What the platform clients share about HTTP failures: whether a request that
failed may have reached the platform (and so been executed).

The answer sets :attr:`flask_acp.errors.AdapterUnavailableError.outcome_unknown`
on the errors of calls that change something (a GraphQL mutation, a ``PUT``):
the core never refunds a paid order whose placement may have happened.
"""

from __future__ import annotations

import requests
from urllib3.exceptions import ConnectTimeoutError
from urllib3.exceptions import MaxRetryError
from urllib3.exceptions import NewConnectionError

__all__ = ["may_have_been_sent"]

#: ``requests`` errors raised before any byte of the request left.
_NOT_SENT: tuple[type[requests.RequestException], ...] = (
    requests.ConnectTimeout,
    requests.exceptions.InvalidHeader,
    requests.exceptions.InvalidJSONError,
    requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidURL,
    requests.exceptions.MissingSchema,
    requests.exceptions.URLRequired,
)


def may_have_been_sent(exc: requests.RequestException) -> bool:
    """Whether the request that failed with ``exc`` may have reached the server.

    ``False`` only when it certainly did not: the connection was refused, timed
    out or its host did not resolve (after urllib3's connect retries, a
    ``MaxRetryError`` whose ``reason`` is a ``NewConnectionError`` or
    ``ConnectTimeoutError``), or the request could not be built. ``True`` for
    everything after the connection was made: a read timeout, a connection
    reset or closed before the answer, a TLS or protocol error.
    """
    if isinstance(exc, _NOT_SENT):
        return False
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return not isinstance(reason, NewConnectionError | ConnectTimeoutError)
