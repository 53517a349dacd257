"""The storage contract test kit (:mod:`flask_acp.testing.storage_contract`)
run over every shipped implementation: SQLite, Redis on a single server and
Redis on a real 3-master Redis Cluster (``CI=true`` or not: nothing is skipped
under CI; elsewhere the Redis runs skip when ``redis-server`` is missing)."""

from __future__ import annotations

import functools
import pathlib

import pytest

from flask_acp.store import open_storage
from flask_acp.testing.storage_contract import StorageContract
from flask_acp.testing.storage_contract import StorageOpener
from tests.redis_servers import RedisClusterServers
from tests.redis_servers import RedisServer
from tests.redis_servers import unique_prefix

IMPLEMENTATIONS = ("sqlite", "redis", "redis-cluster")


@pytest.fixture(params=IMPLEMENTATIONS)
def storage_opener(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> StorageOpener:
    """A fresh store per test: a new SQLite file, or a new key prefix on the
    session's Redis server or Redis Cluster."""
    if request.param == "sqlite":
        url = f"sqlite://{tmp_path / 'contract.sqlite3'}"
    elif request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_single")
        url = f"{server.url}?key_prefix={unique_prefix()}"
    else:
        cluster: RedisClusterServers = request.getfixturevalue("redis_cluster")
        url = f"{cluster.url}?key_prefix={unique_prefix()}"
    return functools.partial(open_storage, url)


class TestStorage(StorageContract):
    """Every port's contract, per implementation."""
