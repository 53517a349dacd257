"""Storage: the ports (:mod:`.base`), the SQLite implementation (:mod:`.sqlite`),
the Redis implementation (:mod:`.redis`) and :func:`open_storage`, which picks
an implementation from a URL (``ACP_STORE_URL``)."""

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

#: URL schemes :func:`open_storage` knows
SCHEMES = ("sqlite", "redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel", "redis+cluster",
           "rediss+cluster")
#: the schemes of the Redis storage (:mod:`flask_acp.store._redis` documents their forms)
REDIS_SCHEMES = SCHEMES[1:]


def sqlite_url(path: str) -> str:
    """The ``ACP_STORE_URL`` of the SQLite file ``path``: ``sqlite:///<absolute path>``."""
    return "sqlite://" + os.path.abspath(path)


def parse_store_url(url: str, *, base_dir: str | None = None) -> tuple[str, str]:
    """Split a storage URL into its scheme and target, checking the form.

    - ``sqlite:///abs/path.sqlite3``: the SQLite file at an absolute path;
    - ``sqlite:relative/path.sqlite3``: relative to ``base_dir`` (the app's
      instance folder) or, without one, to the working directory;
    - ``redis://``, ``rediss://``, ``unix://``, ``redis+sentinel://``,
      ``redis+cluster://`` (and their ``rediss+`` forms): a Redis, see
      :mod:`flask_acp.store._redis`.

    :returns: ``(scheme, target)``; for ``sqlite`` the target is an absolute
        path, for Redis the URL itself.
    :raises ValueError: the message says what is wrong and what to write instead:
        no or unknown scheme, a malformed ``sqlite`` URL (a host part, no path,
        ``:memory:``) or a malformed Redis URL.
    """
    scheme, sep, rest = url.partition(":")
    scheme = scheme.lower()
    if not sep or not scheme:
        raise ValueError(f"{url!r} is not a storage URL; use sqlite:///<absolute path>, "
                         "sqlite:<path relative to the instance folder> or redis://host:6379/0")
    if scheme in REDIS_SCHEMES:
        from ._redis import parse_redis_url

        parse_redis_url(url)
        return scheme, url
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
    :raises ValueError: a bad or unknown URL.
    :raises StorageUnavailableError: the SQLite database cannot be opened (a
        Redis is not contacted before its first use).
    """
    scheme, target = parse_store_url(url, base_dir=base_dir)
    if scheme == "sqlite":
        from .sqlite import sqlite_storage

        return sqlite_storage(target)
    from .redis import redis_storage

    return redis_storage(target)


def safe_store_url(url: str) -> str:
    """A storage URL fit for logs and messages: a Redis URL's passwords masked."""
    if is_redis(url):
        from ._redis import parse_redis_url

        try:
            return parse_redis_url(url).safe
        except ValueError:
            return url.partition("://")[0] + "://(malformed)"
    return url


def is_redis(url: str | None) -> bool:
    """Whether a storage URL names a Redis (any of :data:`REDIS_SCHEMES`)."""
    return bool(url) and str(url).partition(":")[0].lower() in REDIS_SCHEMES


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
    "is_redis",
    "open_storage",
    "parse_store_url",
    "safe_store_url",
    "sqlite_url",
]
