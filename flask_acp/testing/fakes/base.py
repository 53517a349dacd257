"""The base every fake server stands on: lifecycle, clock, faults, webhooks, CLI.

A :class:`FakeServer` subclass implements one platform's HTTP surface in
:meth:`FakeServer._respond` and its own state; this module gives it

* **lifecycle**: :meth:`~FakeServer.start` serves on a loopback port (``0``: a
  free one) from a daemon thread, :meth:`~FakeServer.stop` shuts it down, and
  the fake is a context manager;
* **a clock**: :class:`FakeClock` (real time plus an offset, can be frozen),
  injectable so that several fakes can share one;
* **faults**: :meth:`~FakeServer.fail_next` arms a :class:`Fault` for the next
  matching request(s); the subclass asks :meth:`~FakeServer._take_fault` at
  each stage of a request and answers as its platform would;
* **webhooks**: :meth:`~FakeServer._deliver` POSTs a signed body, retrying
  ``webhook_retries`` times, and logs every attempt as a :class:`WebhookAttempt`;
  :meth:`~FakeServer._queue_webhook` runs deliveries in order on one background
  thread, which :meth:`~FakeServer.flush_webhooks` waits for;
* **a command line**: :meth:`FakeServer.main` (``--host``, ``--port``,
  ``--verbose`` and the subclass's own options) serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import base64
import collections
import collections.abc as cabc
import dataclasses
import hashlib
import hmac
import signal
import socket
import sys
import threading
import time
import typing as t

import requests
from werkzeug.serving import BaseWSGIServer
from werkzeug.serving import WSGIRequestHandler
from werkzeug.serving import make_server
from werkzeug.wrappers import Request
from werkzeug.wrappers import Response

if t.TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIEnvironment

__all__ = [
    "COMMON_FAULTS",
    "DropConnection",
    "FakeClock",
    "FakeServer",
    "Fault",
    "WebhookAttempt",
    "drop_connection",
    "hmac_sha256_base64",
]

#: Fault kinds every fake understands, each answered the way its platform would:
#: ``"500"`` (an error before anything is done), ``"429"`` (rate limited, nothing
#: done), ``"500_after"`` (done, then answered 500), ``"drop_after"`` (done, then
#: the connection is closed unanswered), ``"timeout"`` (held ``seconds``, nothing
#: done, the connection closed) and ``"slow"`` (answered ``seconds`` late).
COMMON_FAULTS: tuple[str, ...] = ("500", "429", "500_after", "drop_after", "timeout", "slow")

_D = t.TypeVar("_D")
_F = t.TypeVar("_F", bound="FakeServer[t.Any]")
#: seconds a background webhook thread waits for work before it ends
_IDLE_SECONDS = 5.0


class FakeClock:
    """Real time plus an offset, which can be frozen: the time of a fake.

    Thread-safe. Pass one clock to several fakes (``clock=``) to move them
    together.

    :param start: Unix time (seconds) to start at; ``None``: now.
    :param frozen: start frozen (time moves only by :meth:`advance`).
    """

    def __init__(self, start: float | None = None, *, frozen: bool = False) -> None:
        self._lock = threading.Lock()
        self._offset = 0.0 if start is None else start - time.time()
        self._mono_offset = 0.0
        self._frozen: tuple[float, float] | None = None  # (Unix time, monotonic) when frozen
        if frozen:
            self._frozen = (time.time() if start is None else start, time.monotonic())
            self._offset = 0.0

    def time(self) -> float:
        """The clock's Unix time, in seconds."""
        with self._lock:
            return (time.time() if self._frozen is None else self._frozen[0]) + self._offset

    def monotonic(self) -> float:
        """A monotonic reading in seconds that moves with :meth:`advance` (for rates)."""
        with self._lock:
            return (time.monotonic() if self._frozen is None else self._frozen[1]) + self._mono_offset

    def advance(self, seconds: float) -> None:
        """Move the clock by ``seconds`` (negative: back)."""
        with self._lock:
            self._offset += seconds
            self._mono_offset += seconds

    def freeze(self, frozen: bool = True) -> None:
        """Stop the clock where it is (:meth:`advance` still moves it), or let it
        run again from there."""
        now, mono = self.time(), self.monotonic()
        with self._lock:
            if frozen:
                self._frozen, self._offset, self._mono_offset = (now, mono), 0.0, 0.0
            else:
                self._frozen = None
                self._offset, self._mono_offset = now - time.time(), mono - time.monotonic()

    @property
    def frozen(self) -> bool:
        return self._frozen is not None

    def reset(self) -> None:
        """Back to real time, running."""
        with self._lock:
            self._offset = self._mono_offset = 0.0
            self._frozen = None


@dataclasses.dataclass
class Fault:
    """A fault armed by :meth:`FakeServer.fail_next`.

    :ivar kind: the fake's own name of the fault (aliases resolved).
    :ivar match: which requests it applies to (the fake says what it matches:
        a path prefix, a route name, a GraphQL operation); ``None``: any.
    :ivar count: matching requests still to fail.
    :ivar after: matching requests still to let through first.
    :ivar seconds: how long ``timeout`` holds and ``slow`` delays.
    :ivar params: the kind's own options (e.g. ``status=503``).
    """

    kind: str
    match: str | None = None
    count: int = 1
    after: int = 0
    seconds: float = 1.0
    params: dict[str, t.Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class WebhookAttempt:
    """One POST of a webhook by a fake, as sent and as answered.

    :ivar attempt: 1 for the first try, 2 for the first retry...
    :ivar status: the receiver's HTTP status; ``None``: no answer (see ``error``).
    :ivar response: the receiver's body.
    :ivar at: the fake's clock (Unix seconds) when it was sent.
    """

    url: str
    topic: str
    body: bytes
    headers: dict[str, str]
    attempt: int
    status: int | None
    response: bytes
    error: str | None
    at: float

    @property
    def ok(self) -> bool:
        """A 2xx answer."""
        return self.status is not None and 200 <= self.status < 300


class DropConnection(Exception):
    """Raised by a fake's handler: close the connection without an answer."""


def drop_connection(environ: cabc.Mapping[str, t.Any], reason: str) -> t.NoReturn:
    """Close the client's connection without an answer (a "lost response" fault).

    Shuts the socket down, then raises :class:`ConnectionResetError`, which
    werkzeug treats as "client went away" and answers nothing.
    """
    sock = environ.get("werkzeug.socket")
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    raise ConnectionResetError(reason)


def hmac_sha256_base64(secret: str | bytes, body: bytes) -> str:
    """Base64 of the HMAC-SHA256 of ``body`` keyed with ``secret`` (Shopify's and
    WooCommerce's webhook signature)."""
    key = secret.encode() if isinstance(secret, str) else secret
    return base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode()


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def log_error(self, format: str, *args: t.Any) -> None:
        pass


class _WebhookQueue:
    """Jobs run in order on one background thread, started on demand and ended
    after :data:`_IDLE_SECONDS` without work (or by :meth:`close`)."""

    def __init__(self, name: str, on_error: cabc.Callable[[BaseException], None]) -> None:
        self._name = name
        self._on_error = on_error
        self._cv = threading.Condition()
        self._jobs: collections.deque[cabc.Callable[[], None]] = collections.deque()
        self._busy = 0
        self._thread: threading.Thread | None = None
        self._closing = False
        #: set while :meth:`close` runs: retry waits end at once
        self.closing = threading.Event()

    def put(self, job: cabc.Callable[[], None]) -> None:
        with self._cv:
            self._jobs.append(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"{self._name}-webhooks", daemon=True)
                self._thread.start()
            self._cv.notify_all()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._jobs and not self._closing:
                    if not self._cv.wait(_IDLE_SECONDS) and not self._jobs:
                        break
                if self._closing or not self._jobs:
                    self._thread = None
                    self._cv.notify_all()
                    return
                job = self._jobs.popleft()
                self._busy += 1
            try:
                job()
            except Exception as exc:  # never let the thread die silently
                self._on_error(exc)
            finally:
                with self._cv:
                    self._busy -= 1
                    self._cv.notify_all()

    def pending(self) -> int:
        with self._cv:
            return len(self._jobs) + self._busy

    def flush(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._cv:
            while self._jobs or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    pending = len(self._jobs) + self._busy
                    raise TimeoutError(f"{pending} webhook(s) still queued or being sent")
                self._cv.wait(remaining)

    def clear(self) -> None:
        with self._cv:
            self._jobs.clear()
            self._cv.notify_all()

    def close(self, timeout: float) -> None:
        """Drop the jobs not started and wait (``timeout`` seconds at most) for
        the one being sent."""
        with self._cv:
            self._jobs.clear()
            thread = self._thread
            if thread is None:
                return
            self._closing = True
            self.closing.set()
            self._cv.notify_all()
        thread.join(timeout)
        with self._cv:
            self._jobs.clear()  # queued while closing: dropped too
            self._closing = False
            self.closing.clear()
            if self._thread is thread and not thread.is_alive():
                self._thread = None


def _total_seconds(timeout: float | tuple[float, float]) -> float:
    return float(sum(timeout)) if isinstance(timeout, tuple) else float(timeout)


class FakeServer(t.Generic[_D]):
    """A fake platform served over real HTTP on loopback (see the module docstring).

    ``_D`` is the type of the fake's own webhook records (:attr:`webhook_log`).

    :param host: the interface :meth:`start` listens on by default.
    :param port: the port :meth:`start` uses by default; ``0`` picks a free one.
    :param quiet: do not log each request.
    :param clock: the clock to follow; ``None``: a clock of its own, which
        :meth:`reset` puts back to real time (a given clock is left alone).
    """

    #: used in thread names and messages
    name: t.ClassVar[str] = "FakeServer"
    #: the fault kinds :meth:`fail_next` accepts (after aliases)
    fault_kinds: t.ClassVar[tuple[str, ...]] = COMMON_FAULTS
    #: other names of fault kinds: name -> (kind, default params)
    fault_aliases: t.ClassVar[cabc.Mapping[str, tuple[str, cabc.Mapping[str, t.Any]]]] = {}
    #: ``seconds`` of a fault when :meth:`fail_next` is given none, per kind (else 1.0)
    fault_seconds: t.ClassVar[cabc.Mapping[str, float]] = {}
    #: ``python -m <cli_module>`` runs :meth:`main`
    cli_module: t.ClassVar[str] = ""
    cli_description: t.ClassVar[str] = ""
    cli_port: t.ClassVar[int] = 0
    #: where :meth:`main` prints its banner: ``"stdout"`` or ``"stderr"``
    cli_stream: t.ClassVar[str] = "stdout"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, quiet: bool = True,
                 clock: FakeClock | None = None) -> None:
        #: the interface served (after :meth:`start`: the one in use)
        self.host = host
        #: the port served (after :meth:`start`: the one bound, also after :meth:`stop`)
        self.port = port
        self.quiet = quiet
        self._bind = (host, port)
        #: the fake's clock (:meth:`advance_clock`, :meth:`freeze_clock` move it)
        self.clock = clock if clock is not None else FakeClock()
        self._owns_clock = clock is None
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._faults: list[Fault] = []
        self._server_errors: list[BaseException] = []
        self._webhook_attempts: list[WebhookAttempt] = []
        self._webhook_queue = _WebhookQueue(self.name, self._record_error)
        #: retries of a webhook that got no 2xx answer (or none)
        self.webhook_retries = 0
        #: seconds between two attempts of a webhook
        self.webhook_retry_delay = 0.1
        #: seconds a webhook POST waits (``(connect, read)`` or one number)
        self.webhook_timeout: float | tuple[float, float] = 10.0
        #: the key webhooks are signed with unless told otherwise
        self.webhook_secret = ""

    # ----------------------------------------------------------------- lifecycle

    def start(self: _F, port: int | None = None, host: str | None = None) -> _F:
        """Serve on ``host:port`` (defaults: the constructor's; port ``0``: a free
        one) from a daemon thread; returns ``self``. A running fake is returned as is.

        :raises OSError: the port is taken.
        """
        if self._server is not None:
            return self
        bind_host = self._bind[0] if host is None else host
        bind_port = self._bind[1] if port is None else port
        self._stopping.clear()
        handler = _QuietHandler if self.quiet else WSGIRequestHandler
        server = make_server(bind_host, bind_port, self._wsgi, threaded=True, request_handler=handler)
        self._server = server
        self.host, self.port = bind_host, server.server_port
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket. Interrupts faults' waits; webhooks
        not sent yet are dropped (one being sent is waited for). Safe to call twice."""
        self._stopping.set()
        self._webhook_queue.close(_total_seconds(self.webhook_timeout) + 5)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self: _F) -> _F:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the fake is serving."""
        return self._server is not None

    @property
    def url(self) -> str:
        """The base address, e.g. ``"http://127.0.0.1:54321"``.

        :raises RuntimeError: the fake is not running.
        """
        if self._server is None:
            raise RuntimeError(f"{self.name} is not running; call start()")
        return self._address()

    def _address(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host  # noqa: S104 - comparison only
        return f"http://{host}:{self.port}"

    def reset(self) -> None:
        """Forget armed faults, webhooks not sent yet, the webhook attempts and
        server errors; an own clock goes back to real time. Subclasses forget
        their state too."""
        with self._lock:
            self._faults.clear()
            self._server_errors.clear()
            self._webhook_attempts.clear()
            if self._owns_clock:
                self.clock.reset()
        self._webhook_queue.clear()

    @property
    def server_errors(self) -> list[BaseException]:
        """Unexpected exceptions inside the fake (answered 500, or a webhook not
        sent); should stay empty."""
        with self._lock:
            return list(self._server_errors)

    def _record_error(self, exc: BaseException) -> None:
        with self._lock:
            self._server_errors.append(exc)

    # ----------------------------------------------------------------- clock

    def timestamp(self) -> float:
        """The fake's clock as Unix seconds (``now()`` gives it in the platform's
        own form)."""
        return self.clock.time()

    def advance_clock(self, seconds: float) -> None:
        """Move the fake's clock by ``seconds`` (expiries, created stamps, rates)."""
        self.clock.advance(seconds)

    def freeze_clock(self, frozen: bool = True) -> None:
        """Stop the fake's clock where it is (:meth:`advance_clock` still moves
        it), or let it run again from there."""
        self.clock.freeze(frozen)

    # ----------------------------------------------------------------- faults

    def fail_next(self, kind: str, *, count: int = 1, after: int = 0, match: str | None = None,
                  seconds: float | None = None, **params: t.Any) -> Fault:
        """Make the next ``count`` requests that ``match`` fail as ``kind``, once
        ``after`` matching requests have passed untouched.

        Faults queue up in the order they are armed: a request meets the first
        armed fault that matches it, and no other.

        :param kind: one of :data:`COMMON_FAULTS` or a kind of the fake's own
            (:attr:`fault_kinds`, :attr:`fault_aliases`).
        :param match: which requests (what is matched is the fake's: see its
            ``fail_next``); ``None``: any request.
        :param seconds: how long ``"timeout"`` holds and ``"slow"`` delays;
            ``None``: the fake's default (:attr:`fault_seconds`).
        :param params: options of the fake's own kinds.
        :returns: the armed fault (its ``count`` goes down as it fires).
        :raises ValueError: unknown kind, ``count < 1`` or ``after < 0``.
        """
        canonical, defaults = self.fault_aliases.get(kind, (kind, {}))
        if canonical not in self.fault_kinds:
            known = sorted({*self.fault_kinds, *self.fault_aliases})
            raise ValueError(f"unknown fault kind {kind!r}; one of {', '.join(known)}")
        if count < 1 or after < 0:
            raise ValueError("count must be >= 1 and after >= 0")
        fault = Fault(canonical, match, count, after,
                      self.fault_seconds.get(canonical, 1.0) if seconds is None else float(seconds),
                      {**defaults, **params})
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Disarm every fault."""
        with self._lock:
            self._faults.clear()

    @property
    def faults(self) -> list[Fault]:
        """The armed faults, in order (copies)."""
        with self._lock:
            return [dataclasses.replace(f, params=dict(f.params)) for f in self._faults]

    def _fault_matches(self, fault: Fault, key: str) -> bool:
        """Whether ``fault`` applies to a request known as ``key`` (default: equal)."""
        return fault.match is None or fault.match == key

    def _take_fault(self, key: str, kinds: cabc.Container[str] | None = None) -> Fault | None:
        """The fault a request known as ``key`` meets, consumed; ``None`` if none.

        With ``kinds`` (the faults of one stage of a request), the first
        matching fault is taken only if it is one of them (else it waits for its
        stage, and this stage meets nothing).
        """
        with self._lock:
            fault = next((f for f in self._faults if self._fault_matches(f, key)), None)
            if fault is None or (kinds is not None and fault.kind not in kinds):
                return None
            if fault.after > 0:
                fault.after -= 1
                return None
            fault.count -= 1
            if fault.count <= 0:
                self._faults.remove(fault)
            return fault

    def _hold(self, seconds: float) -> None:
        """Wait ``seconds`` (a fault's delay); :meth:`stop` ends the wait."""
        self._stopping.wait(seconds)

    # ----------------------------------------------------------------- webhooks

    def send_webhook(self, url: str, topic: str, payload: dict[str, t.Any], *,
                     secret: str | None = None) -> _D:
        """POST one webhook of ``topic`` carrying ``payload`` to ``url`` now, with
        the platform's headers and signature (key: ``secret``, default
        :attr:`webhook_secret`), retried as configured; returns its record (also in
        :attr:`webhook_log`). Never raises for HTTP problems."""
        raise NotImplementedError

    def subscribe_webhooks(self, url: str | None, *, secret: str | None = None,
                           topics: cabc.Iterable[str] | None = None) -> None:
        """From now on, send the webhooks of ``topics`` (the fake's default set
        when ``None``) that the fake's events cause to ``url``, signed with
        ``secret`` (default :attr:`webhook_secret`); ``url=None`` stops sending."""
        raise NotImplementedError

    @property
    def webhook_log(self) -> list[_D]:
        """The fake's own record of every webhook, oldest first."""
        raise NotImplementedError

    @property
    def webhook_attempts(self) -> list[WebhookAttempt]:
        """Every webhook POST the fake made, one entry per attempt, oldest first."""
        with self._lock:
            return list(self._webhook_attempts)

    def flush_webhooks(self, timeout: float = 10.0) -> list[_D]:
        """Wait until every queued webhook was sent (its retries included) and
        return :attr:`webhook_log`.

        :raises TimeoutError: still sending after ``timeout`` seconds.
        """
        self._webhook_queue.flush(timeout)
        return self.webhook_log

    def _queue_webhook(self, job: cabc.Callable[[], None]) -> None:
        """Run ``job`` (which sends webhooks) on the webhook thread, after the
        jobs queued before it."""
        self._webhook_queue.put(job)

    def _deliver(self, url: str, body: bytes, headers: cabc.Mapping[str, str], *, topic: str,
                 sign: cabc.Callable[[bytes], cabc.Mapping[str, str]] | None = None,
                 ok: cabc.Callable[[int], bool] | None = None,
                 on_attempt: cabc.Callable[[WebhookAttempt], None] | None = None,
                 retries: int | None = None,
                 timeout: float | tuple[float, float] | None = None) -> list[WebhookAttempt]:
        """POST ``body`` to ``url`` until it is answered ``ok`` (default: 2xx), at
        most ``1 + retries`` times (default :attr:`webhook_retries`), waiting
        :attr:`webhook_retry_delay` seconds in between. ``sign`` adds the signature
        headers at each attempt (a fresh timestamp per attempt). Every attempt is
        logged in :attr:`webhook_attempts` and passed to ``on_attempt``. ``timeout``:
        seconds to wait for an answer (default :attr:`webhook_timeout`). Holds no
        lock while sending."""
        accept = ok or (lambda status: 200 <= status < 300)
        attempts: list[WebhookAttempt] = []
        for number in range(1, 2 + (self.webhook_retries if retries is None else retries)):
            if number > 1 and self._webhook_queue.closing.wait(self.webhook_retry_delay):
                break
            sent = {**headers, **(sign(body) if sign is not None else {})}
            at = self.clock.time()
            try:
                response = requests.post(url, data=body, headers=sent, allow_redirects=False,
                                         timeout=self.webhook_timeout if timeout is None else timeout)
            except requests.RequestException as exc:
                attempt = WebhookAttempt(url, topic, body, sent, number, None, b"",
                                         f"{type(exc).__name__}: {exc}", at)
            else:
                with response:
                    attempt = WebhookAttempt(url, topic, body, sent, number, response.status_code,
                                             response.content, None, at)
            with self._lock:
                self._webhook_attempts.append(attempt)
            attempts.append(attempt)
            if on_attempt is not None:
                on_attempt(attempt)
            if attempt.status is not None and accept(attempt.status):
                break
        return attempts

    # ----------------------------------------------------------------- HTTP

    def _wsgi(self, environ: WSGIEnvironment, start_response: StartResponse) -> cabc.Iterable[bytes]:
        request = Request(environ)
        try:
            response = self._respond(request)
        except DropConnection as exc:
            drop_connection(environ, str(exc) or f"{self.name} dropped the connection")
        except Exception as exc:  # a bug in the fake: werkzeug answers 500, tests see it
            self._record_error(exc)
            raise
        return response(environ, start_response)

    def _respond(self, request: Request) -> Response:
        """Answer one request (raise :class:`DropConnection` to answer nothing)."""
        raise NotImplementedError

    # ----------------------------------------------------------------- command line

    @classmethod
    def main(cls, argv: cabc.Sequence[str] | None = None) -> None:
        """``python -m <cli_module> [--host H] [--port N] [--verbose] ...``: serve
        until SIGINT or SIGTERM, after printing what to configure."""
        parser = argparse.ArgumentParser(prog=f"python -m {cls.cli_module}", description=cls.cli_description)
        parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
        parser.add_argument("--port", type=int, default=cls.cli_port,
                            help=f"TCP port (default {cls.cli_port}; 0 = any free port)")
        parser.add_argument("--verbose", action="store_true", help="log every request")
        cls._cli_arguments(parser)
        args = parser.parse_args(argv)
        fake = cls._from_cli(args)
        stopping = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopping.set())
        fake.start(port=args.port, host=args.host)
        stream = sys.stderr if cls.cli_stream == "stderr" else sys.stdout
        try:
            for line in fake._cli_banner(args):
                print(line, file=stream, flush=True)
            while not stopping.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            fake.stop()

    @classmethod
    def _cli_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Add the fake's own options to :meth:`main`'s parser."""

    @classmethod
    def _from_cli(cls, args: argparse.Namespace) -> FakeServer[t.Any]:
        """The fake :meth:`main` serves, built from its options."""
        return cls(quiet=not args.verbose)

    def _cli_banner(self, args: argparse.Namespace) -> cabc.Iterator[str]:
        """The lines :meth:`main` prints once serving (it may act in between)."""
        yield f"{self.name} on {self.url}"
