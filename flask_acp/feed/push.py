"""Pushing the catalog to agents' Feed APIs: full or incremental, resumable.

One push, per agent with a ``feed_url`` (``ACP_AGENTS``):

1. The feed: the agent's configured ``feed_id``, else the one remembered in
   the state file (checked with ``GET /feeds/{id}``; gone: a new one), else
   ``POST /feeds`` creates one and its id is written to the state file at once.
2. The products, in the adapter's order, rendered as feed ``Product`` JSON;
   ``full`` sends every one, ``incremental`` only those whose JSON differs
   from what the last successful push sent (a SHA-256 fingerprint per product
   is kept).
3. ``PATCH /feeds/{id}/products`` by batches of ``ACP_FEED_BATCH_SIZE``. After
   each accepted batch the state file records its products (the fingerprints,
   and the ids sent by this run), written atomically (temporary file +
   rename).

A push that fails midway (the agent down, the platform down, the process
killed) leaves the run recorded as unfinished; the next push of the same agent
resumes it: the products an accepted batch already carried are not sent again
(an incremental push skips them because their fingerprint matches). A batch
whose answer was lost is sent again: upserts by ``Product.id`` are idempotent,
so the feed ends the same.

Withdrawn products: the Feed API has no delete, so a product this feed received
that the platform no longer lists (deleted, unpublished; read again by id
first, as a paginated listing can skip one) is sent, after the listed ones, as
withdrawn -- its variants as last pushed, each ``discontinued``
and not available (:func:`~flask_acp.versions.v2026_04_17.feed.render_withdrawn`);
an incremental push sends that once.

State file (``ACP_FEED_STATE_FILE``; JSON)::

    {"agents": {"<agent>": {"feed_id": "feed_8f3K2x", "pushed_to": "feed_8f3K2x",
                            "pushed": {"<product id>": "<fingerprint>"},
                            "variants": {"<product id>": [["<variant id>", "<title>"], ...]},
                            "run": {"mode": "full", "feed_id": "...", "started_at": "...",
                                    "sent": ["<product id>", ...]} | null,
                            "last_push": "2026-04-17T10:00:00Z"}}}
"""

from __future__ import annotations

import collections.abc as cabc
import contextlib
import dataclasses
import datetime as dt
import json
import os
import pathlib
import tempfile
import threading
import typing as t

from ..adapter import PlatformAdapter
from ..config import Agent
from ..config import Settings
from ..versions.v2026_04_17.feed import render_product
from ..versions.v2026_04_17.feed import render_withdrawn
from .client import FeedApiError
from .client import FeedClient
from .export import digest
from .export import product_json

#: push modes: every product, or only the changed ones.
MODES = ("full", "incremental")
#: products not listed any more, read again by id per call before they are withdrawn
RECHECK_BATCH = 100


class FeedPushError(Exception):
    """A push that stopped midway; the state file lets the next push resume.

    :ivar result: what was done before the failure.
    """

    def __init__(self, message: str, result: PushResult) -> None:
        super().__init__(message)
        self.result = result


@dataclasses.dataclass(slots=True)
class PushResult:
    """What one push of one agent did.

    :ivar sent: products sent (accepted) by this call.
    :ivar unchanged: products not sent: unchanged since the last push (incremental),
        or already sent by the unfinished run this call resumed.
    :ivar batches: ``PATCH`` calls accepted.
    :ivar created: the feed was created by this call.
    :ivar resumed: an unfinished run was resumed.
    :ivar withdrawn: products this feed had that the platform no longer lists
        (sent as withdrawn, or counted unchanged when they were already).
    """

    agent: str
    feed_id: str | None = None
    mode: str = "full"
    sent: int = 0
    unchanged: int = 0
    batches: int = 0
    created: bool = False
    resumed: bool = False
    withdrawn: int = 0


class FeedState:
    """The state file: per agent its feed id, fingerprints of what was pushed,
    and the unfinished run, if any. Thread-safe within a process; writes are
    atomic (a reader never sees half a file).

    :param path: the JSON file (created on the first write; its folder too).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = pathlib.Path(path)
        self._lock = threading.Lock()

    def load(self) -> dict[str, t.Any]:
        """The whole file (``{"agents": {...}}``; empty when there is none).

        :raises ValueError: the file is not a feed state file.
        """
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"agents": {}}
        except json.JSONDecodeError as exc:
            raise ValueError(f"{self.path}: not a feed state file: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("agents"), dict):
            raise ValueError(f"{self.path}: not a feed state file (no \"agents\" object)")
        return data

    def agent(self, name: str) -> dict[str, t.Any]:
        """The state of one agent (a copy; ``{}`` when none)."""
        return dict(self.load()["agents"].get(name) or {})

    def feed_id(self, name: str) -> str | None:
        """The feed id remembered for agent ``name``."""
        found = self.agent(name).get("feed_id")
        return found if isinstance(found, str) and found else None

    def save_agent(self, name: str, state: cabc.Mapping[str, t.Any]) -> None:
        """Replace one agent's state, atomically."""
        self.update_agent(name, lambda _: dict(state))

    def update_agent(self, name: str, change: cabc.Callable[[dict[str, t.Any]], dict[str, t.Any] | None]
                     ) -> None:
        """Replace one agent's state with ``change(current)`` (None: leave it),
        read and written under this process's lock, atomically."""
        with self._lock:
            data = self.load()
            changed = change(dict(data["agents"].get(name) or {}))
            if changed is None:
                return
            data["agents"][name] = changed
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    json.dump(data, out, separators=(",", ":"), sort_keys=True)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise


def variant_titles(product: cabc.Mapping[str, t.Any]) -> list[list[str]]:
    """``[[variant id, title], ...]`` of a feed ``Product``: what the state
    file keeps of it (``"variants"``), for its withdrawal later."""
    return [[v["id"], v["title"]] for v in product["variants"]]


def withdrawal(state: cabc.Mapping[str, t.Any], product_id: str) -> dict[str, t.Any]:
    """The ``Product`` withdrawing ``product_id``, with its variants as one
    agent's ``state`` last recorded them (:func:`variant_titles`)."""
    known = (state.get("variants") or {}).get(product_id) or []
    return render_withdrawn(product_id, [(v, title) for v, title in known])


def feed_state_path(settings: Settings, instance_path: str) -> pathlib.Path:
    """``ACP_FEED_STATE_FILE``, under the app's instance folder when relative."""
    return pathlib.Path(instance_path) / settings.feed_state_file


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class FeedPush:
    """Push the adapter's catalog to one agent's Feed API (see the module docstring).

    :param adapter: lists the catalog (:meth:`PlatformAdapter.iter_products`).
    :param agent: the agent (its ``feed_url``, ``feed_id``, ``feed_target_country``).
    :param client: that agent's :class:`~.client.FeedClient`.
    :param state: the state file.
    :param batch_size: products per ``PATCH``.
    :param progress: called with each product handled (sent or not), e.g. a progress bar.
    """

    def __init__(self, adapter: PlatformAdapter, agent: Agent, client: FeedClient, state: FeedState, *,
                 batch_size: int = 100, progress: cabc.Callable[[int], None] | None = None) -> None:
        self.adapter = adapter
        self.agent = agent
        self.client = client
        self.state = state
        self.batch_size = max(1, batch_size)
        self.progress = progress or (lambda n: None)

    def run(self, mode: str = "incremental") -> PushResult:
        """Push now (network calls; the state file is written after each batch).

        :param mode: ``full`` (every product) or ``incremental`` (changed ones).
        :returns: what was sent.
        :raises FeedPushError: stopped midway (the Feed API refused or did not
            answer, the platform did not answer); run it again to resume.
        :raises NotImplementedError: the adapter cannot list its catalog.
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        name = self.agent.name
        result = PushResult(agent=name, mode=mode)
        state = self.state.agent(name)
        try:
            feed_id = self._feed(state, result)
        except FeedApiError as exc:
            raise FeedPushError(f"agent {name!r}: no feed to push to: {exc}", result) from None
        result.feed_id = feed_id
        run = state.get("run")
        if isinstance(run, dict) and run.get("feed_id") == feed_id:
            result.resumed = True
            already = set(t.cast(list[str], run.get("sent") or []))
            mode = "full" if run.get("mode") == "full" else mode
            result.mode = mode
        else:
            run = {"mode": mode, "feed_id": feed_id, "started_at": _now(), "sent": []}
            already = set()
            state["run"] = run
            self.state.save_agent(name, state)
        # fingerprints of what another feed received say nothing about this one (a feed_id changed
        # in the config, a feed the agent forgot)
        pushed: dict[str, str] = dict(state.get("pushed") or {}) if state.get("pushed_to") == feed_id else {}
        batch: list[tuple[dict[str, t.Any], str]] = []

        def consider(product: dict[str, t.Any]) -> None:
            nonlocal batch
            fingerprint = digest(product)
            same = pushed.get(product["id"]) == fingerprint
            # a product this run already sent is skipped only if it has not changed since
            if same and (mode == "incremental" or product["id"] in already):
                result.unchanged += 1
                self.progress(1)
                return
            batch.append((product, fingerprint))
            if len(batch) >= self.batch_size:
                self._send(feed_id, batch, state, pushed, result)
                batch = []

        try:
            listed = set()
            for product in product_json(self.adapter):
                listed.add(product["id"])
                consider(product)
            missing = [i for i in pushed if i not in listed]
            # read by id before withdrawing: a paginated listing can skip a product still
            # sold (WooCommerce pages by offset: one deleted on an earlier page meanwhile
            # moves the next one out of the page read after it)
            for start in range(0, len(missing), RECHECK_BATCH):
                for record in self.adapter.read_products(missing[start:start + RECHECK_BATCH]):
                    if record.id in pushed and record.id not in listed:
                        listed.add(record.id)
                        consider(render_product(record))
            for gone in [i for i in missing if i not in listed]:
                consider(withdrawal(state, gone))
                result.withdrawn += 1
            if batch:
                self._send(feed_id, batch, state, pushed, result)
        except NotImplementedError:
            raise
        except Exception as exc:  # the Feed API, the platform, the state file
            where = f"agent {name!r}, feed {feed_id}: stopped after {result.sent} products sent " \
                    f"({result.batches} batches accepted)"
            cause = str(exc) if isinstance(exc, FeedApiError) else f"{type(exc).__name__}: {exc}"
            raise FeedPushError(f"{where}: {cause}; run the push again to resume", result) from exc
        state["run"] = None
        state["last_push"] = _now()
        self.state.save_agent(name, state)
        return result

    def _feed(self, state: dict[str, t.Any], result: PushResult) -> str:
        if self.agent.feed_id:
            return self.agent.feed_id
        remembered = state.get("feed_id")
        if isinstance(remembered, str) and remembered:
            if self.client.get_feed(remembered) is not None:
                return remembered
            state.update(pushed={}, run=None)  # the agent forgot it: start over in a new feed
        created = self.client.create_feed(self.agent.feed_target_country)
        feed_id = str(created.get("id") or "")
        if not feed_id:
            raise FeedApiError("POST /feeds answered a FeedMetadata without id")
        state["feed_id"] = feed_id
        self.state.save_agent(self.agent.name, state)
        result.created = True
        return feed_id

    def _send(self, feed_id: str, batch: list[tuple[dict[str, t.Any], str]], state: dict[str, t.Any],
              pushed: dict[str, str], result: PushResult) -> None:
        self.client.upsert_products(feed_id, [product for product, _ in batch])
        variants = state.setdefault("variants", {})
        for product, fingerprint in batch:
            pushed[product["id"]] = fingerprint
            variants[product["id"]] = variant_titles(product)
        run = t.cast(dict[str, t.Any], state["run"])
        run["sent"] = [*run.get("sent", []), *(product["id"] for product, _ in batch)]
        state["pushed"] = pushed
        state["pushed_to"] = feed_id
        self.state.save_agent(self.agent.name, state)
        result.sent += len(batch)
        result.batches += 1
        self.progress(len(batch))
