"""Checking the ``Signature`` and ``Timestamp`` of a request, per agent policy.

Each agent of ``ACP_AGENTS`` has a ``signature_policy``:

- ``off`` (the default): the headers are not looked at;
- ``log``: checked; a request that fails is served, and a warning names the
  agent and the reason (for a rollout: see what would be refused);
- ``strict``: a request that fails gets 401 ``invalid_signature``.

A request passes when ``Timestamp`` is an RFC 3339 date-time with a UTC
offset, at most ``ACP_SIGNATURE_TOLERANCE`` seconds from the server's clock
either way; ``Signature`` verifies over the exact request
(:func:`flask_acp.signing.signing_input`: timestamp, method, path, raw body)
with one of the agent's ``signature_keys`` (two during a rotation); and that
signature was not seen before: each accepted signature is recorded in the
store's inbound log (``InboundLog.record``, shared by every process), so a
captured request cannot be replayed, even within the window. An agent signs
every attempt anew, retries included (a retry with a fresh timestamp is a
new signature; the ``Idempotency-Key`` makes it the same request).
"""

from __future__ import annotations

import collections.abc as cabc
import datetime as dt
import hashlib
import logging
import re
import time

from .. import signing
from ..config import Agent
from ..errors import SignatureError
from ..store.base import InboundLog

log = logging.getLogger("flask_acp")

#: the inbound log's source for seen request signatures
REPLAY_SOURCE = "acp-request-signature"
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")


def parse_timestamp(value: str) -> float:
    """An RFC 3339 ``date-time`` (with ``Z`` or an offset) as Unix seconds.

    :raises ValueError: anything else (a local time without offset included).
    """
    text = value.strip()
    if not _RFC3339.match(text):
        raise ValueError("not an RFC 3339 date-time with a UTC offset")
    text = text[:-1] + "+00:00" if text[-1] in "Zz" else text
    main, _, rest = text.partition(".")
    if rest:  # Python 3.10 reads at most 6 fraction digits
        digits = re.match(r"\d+", rest)
        fraction = digits.group(0) if digits else ""
        text = f"{main}.{fraction[:6].ljust(6, '0')}{rest[len(fraction):]}"
    return dt.datetime.fromisoformat(text).timestamp()


class SignatureChecker:
    """Applies each agent's signature policy.

    :param agents: the configured agents (policy, algorithm, keys).
    :param tolerance: seconds a ``Timestamp`` may be off, either way.
    :param seen: the store's inbound log (replay cache, shared by every process).
    :param clock: returns Unix seconds (tests inject their own).
    """

    def __init__(self, agents: cabc.Iterable[Agent], *, tolerance: float, seen: InboundLog,
                 clock: cabc.Callable[[], float] = time.time) -> None:
        self.agents = {agent.name: agent for agent in agents}
        self.tolerance = tolerance
        self.seen = seen
        self.clock = clock

    def applies(self, agent_name: str) -> bool:
        """Whether ``agent_name``'s requests are checked (policy ``log`` or ``strict``)."""
        agent = self.agents.get(agent_name)
        return agent is not None and agent.signature_policy != "off"

    def check(self, agent_name: str, *, method: str, path: str, body: bytes,
              signature: str | None, timestamp: str | None) -> None:
        """Apply ``agent_name``'s policy to one request.

        :raises SignatureError: (401) policy ``strict`` and the request fails.
        """
        agent = self.agents.get(agent_name)
        if agent is None or agent.signature_policy == "off":
            return
        problem = self.problem(agent, method=method, path=path, body=body, signature=signature,
                               timestamp=timestamp)
        if problem is None:
            return
        if agent.signature_policy == "strict":
            raise SignatureError(problem, challenge='Bearer realm="acp", error="invalid_request"')
        log.warning("agent %s: request %s %s would be refused: %s", agent.name, method, path, problem)

    def problem(self, agent: Agent, *, method: str, path: str, body: bytes, signature: str | None,
                timestamp: str | None) -> str | None:
        """Why the request fails ``agent``'s signature check (None: it passes,
        and its signature is now recorded as seen)."""
        if not signature or not timestamp:
            return "Sign the request: send the Signature and Timestamp headers."
        try:
            signed_at = parse_timestamp(timestamp)
        except ValueError:
            return "The Timestamp header must be an RFC 3339 date-time with a UTC offset."
        skew = signed_at - self.clock()
        if abs(skew) > self.tolerance:
            return (f"The Timestamp is {abs(skew):.0f} s {'ahead of' if skew > 0 else 'behind'} the "
                    f"server's clock (at most {self.tolerance:g} s either way).")
        message = signing.signing_input(timestamp, method, path, body)
        if not signing.verify(agent.signature_algorithm, agent.signature_keys, message, signature):
            return "The Signature does not verify with this agent's keys."
        replay_id = f"{agent.name}:{hashlib.sha256(signing.unb64(signature)).hexdigest()}"  # padding aside
        if not self.seen.record(REPLAY_SOURCE, replay_id):
            return "This Signature was used before: sign every request anew."
        return None
