"""Storage: the ports (:mod:`.base`), the SQLite implementation (:mod:`.sqlite`)
and :func:`open_storage`, which picks an implementation from a URL
(``ACP_STORE_URL``)."""

from __future__ import annotations

import os

from .base import Fence as Fence
from .base import IdempotencyOutcome as IdempotencyOutcome
from .base import IdempotencyRecords as IdempotencyRecords
from .base import InboundLog as InboundLog
from .base import LockLostError as LockLostError
from .base import Locks as Locks
from .base import LockTimeoutError as LockTimeoutError
from .base import Outbox as Outbox
from .base import OutboxEntry as OutboxEntry
from .base import Sessions as Sessions
from .base import StaleSessionError as StaleSessionError
from .base import Storage as Storage

#: URL schemes :func:`open_storage` knows, with what they need.
SCHEMES = ("sqlite",)
#: schemes reserved for implementations that are not there yet
PLANNED_SCHEMES = ("redis", "rediss")


def sqlite_url(path: str) -> str:
    """The ``ACP_STORE_URL`` of the SQLite file ``path``: ``sqlite:///<absolute path>``."""
    return "sqlite://" + os.path.abspath(path)


def parse_store_url(url: str, *, base_dir: str | None = None) -> tuple[str, str]:
    """Split a storage URL into its scheme and target, checking the form.

    - ``sqlite:///abs/path.sqlite3``: the SQLite file at an absolute path;
    - ``sqlite:relative/path.sqlite3``: relative to ``base_dir`` (the app's
      instance folder) or, without one, to the working directory.

    :returns: ``(scheme, target)``; for ``sqlite`` the target is an absolute path.
    :raises ValueError: the message says what is wrong and what to write instead:
        no or unknown scheme, a scheme not supported yet (``redis://``), or a
        malformed ``sqlite`` URL (a host part, no path, ``:memory:``).
    """
    scheme, sep, rest = url.partition(":")
    scheme = scheme.lower()
    if not sep or not scheme:
        raise ValueError(f"{url!r} is not a storage URL; use sqlite:///<absolute path> or "
                         "sqlite:<path relative to the instance folder>")
    if scheme in PLANNED_SCHEMES:
        raise ValueError(f"{scheme}:// storage is not yet supported (planned); use "
                         "sqlite:///<absolute path> for now")
    if scheme not in SCHEMES:
        raise ValueError(f"unknown storage scheme {scheme!r} in {url!r}; supported: "
                         + ", ".join(f"{s}:" for s in SCHEMES))
    if rest.startswith("///"):
        path = rest[2:]
    elif rest.startswith("//"):
        raise ValueError(f"{url!r} has a host part; use sqlite:///<absolute path> (three slashes) "
                         "or sqlite:<relative path>")
    else:
        path = rest
    if not path.strip() or path == "/":
        raise ValueError(f"{url!r} names no file; use sqlite:///<absolute path> or sqlite:<relative path>")
    if path == ":memory:" or path.startswith("file:"):
        raise ValueError(f"{url!r}: in-memory and URI databases are not shared between threads and "
                         "processes; use a file, e.g. sqlite:acp.sqlite3")
    if not os.path.isabs(path):
        path = os.path.join(base_dir or os.getcwd(), path)
    return scheme, os.path.abspath(path)


def open_storage(url: str, *, base_dir: str | None = None) -> Storage:
    """Open the storage a URL names (see :func:`parse_store_url` for the forms).

    :param base_dir: the folder relative ``sqlite:`` paths start from (the
        app's instance folder); default: the working directory.
    :raises ValueError: a bad, unknown or not yet supported URL.
    :raises StorageUnavailableError: the database cannot be opened.
    """
    scheme, target = parse_store_url(url, base_dir=base_dir)
    if scheme == "sqlite":
        from .sqlite import sqlite_storage

        return sqlite_storage(target)
    raise AssertionError(scheme)  # pragma: no cover - parse_store_url knows every scheme


__all__ = [
    "Fence",
    "IdempotencyOutcome",
    "IdempotencyRecords",
    "InboundLog",
    "LockLostError",
    "LockTimeoutError",
    "Locks",
    "Outbox",
    "OutboxEntry",
    "Sessions",
    "StaleSessionError",
    "Storage",
    "open_storage",
    "parse_store_url",
    "sqlite_url",
]
