"""Real Redis servers for the tests, started on free loopback ports.

- :class:`RedisServer`: one ``redis-server`` (no persistence unless asked),
  startable again on the same port and data folder (restarts);
- :class:`RedisClusterServers`: a 3-master Redis Cluster (``--cluster-enabled
  yes``, ``redis-cli --cluster create``);
- :class:`SentinelGroup`: a master, replicas and sentinels watching them.

Nothing here touches a shared server (127.0.0.1:6379). Without
``redis-server`` the tests that need one skip, except under ``CI=true``
where they fail. Fixtures: ``redis_single`` and ``redis_cluster`` (one per
test session); each test takes a fresh key prefix instead of flushing.
"""

from __future__ import annotations

import collections.abc as cabc
import contextlib
import os
import pathlib
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import typing as t
import uuid

import pytest
import redis

__all__ = ["RedisClusterServers", "RedisServer", "SentinelGroup", "free_port", "need", "redis_cluster",
           "redis_single", "unique_prefix"]


def free_port(*, below: int | None = None) -> int:
    """A free loopback port (``below``: under that number, with the port
    10000 above it free too: a cluster node's bus port)."""
    if below is None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])
    for port in random.sample(range(20000, below), 200):
        with contextlib.ExitStack() as stack:
            try:
                for candidate in (port, port + 10000):
                    sock = stack.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port below {below}")


def need(what: str) -> t.NoReturn:
    """Skip for a missing service, fail under ``CI=true``."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is required under CI=true")
    pytest.skip(f"{what} not available")


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        need(name)
    return found


def unique_prefix() -> str:
    """A key prefix no other test uses (stands for an empty store)."""
    return f"t{uuid.uuid4().hex[:12]}:"


def _wait_ping(port: int, proc: subprocess.Popen[bytes], *, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5)
        try:
            client.ping()
            return
        except redis.exceptions.BusyLoadingError:
            pass
        except redis.ConnectionError:
            if proc.poll() is not None:
                raise RuntimeError(f"redis-server on port {port} exited with {proc.returncode}") from None
        finally:
            client.close()
        if time.monotonic() > deadline:
            raise RuntimeError(f"redis-server on port {port} did not answer")
        time.sleep(0.05)


class RedisServer:
    """A private ``redis-server`` on 127.0.0.1.

    :param persistence: ``None`` (no AOF, no RDB), ``"aof"`` (``appendfsync
        always``: nothing acknowledged is lost on a crash) or ``"rdb"``.
    :param args: more ``redis-server`` arguments.
    :param directory: the data folder (default: a fresh temporary one).
    """

    def __init__(self, *, port: int | None = None, persistence: str | None = None,
                 args: cabc.Sequence[str] = (), directory: pathlib.Path | None = None) -> None:
        self.binary = _binary("redis-server")
        self.port = port or free_port()
        self.persistence = persistence
        self.args = list(args)
        self._own_directory = directory is None
        self.directory = directory or pathlib.Path(tempfile.mkdtemp(prefix="acp-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        persistence = {None: ["--save", "", "--appendonly", "no"],
                       "aof": ["--save", "", "--appendonly", "yes", "--appendfsync", "always"],
                       "rdb": ["--save", "1 1", "--appendonly", "no"]}[self.persistence]
        return [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--daemonize", "no",
                "--dir", str(self.directory), "--protected-mode", "no", *persistence, *self.args]

    def start(self) -> RedisServer:
        log = (self.directory / "redis.log").open("ab")
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.directory)
        log.close()
        try:
            _wait_ping(self.port, self.proc)
        except RuntimeError as exc:
            self.kill()
            need(f"redis-server ({exc})")
        return self

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port)

    def kill(self) -> None:
        """SIGKILL: a crash (only what was persisted survives)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        """SIGTERM: a clean shutdown (saves, if persistence is on)."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def remove(self) -> None:
        """Kill it and delete its data folder (if this object made it)."""
        self.kill()
        if self._own_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.remove()


class RedisClusterServers:
    """A Redis Cluster of ``masters`` masters (no replicas) on loopback ports."""

    def __init__(self, masters: int = 3) -> None:
        args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "2000"]
        self.nodes = [RedisServer(port=free_port(below=55535), args=args) for _ in range(masters)]

    @property
    def url(self) -> str:
        """A ``redis+cluster://`` URL naming every node."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def start(self) -> RedisClusterServers:
        try:
            for node in self.nodes:
                node.start()
        except BaseException:  # (a skip or a failure) no node is left running
            self.stop()
            raise
        cli = _binary("redis-cli")
        created = subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{node.port}" for node in self.nodes),
             "--cluster-replicas", "0", "--cluster-yes"], capture_output=True, timeout=60, check=False)
        if created.returncode != 0:
            self.stop()
            raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout.decode()[-2000:]}"
                               f"{created.stderr.decode()[-2000:]}")
        deadline = time.monotonic() + 30
        while True:
            states = []
            for node in self.nodes:
                client = node.client()
                try:
                    states.append(client.execute_command("CLUSTER INFO"))
                finally:
                    client.close()
            if all((b"cluster_state:ok" in s) if isinstance(s, bytes) else s.get("cluster_state") == "ok"
                   for s in states):
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")
            time.sleep(0.1)

    def stop(self) -> None:
        for node in self.nodes:
            node.remove()


class SentinelGroup:
    """A master, ``replicas`` replicas and ``sentinels`` sentinels (quorum: a
    majority) watching it as ``service``; failover after ``down_after_ms``."""

    def __init__(self, *, replicas: int = 2, sentinels: int = 3, service: str = "acpmaster",
                 down_after_ms: int = 1000, persistence: str | None = "aof") -> None:
        self.service = service
        self.down_after_ms = down_after_ms
        self.master = RedisServer(persistence=persistence)
        self.replicas = [RedisServer(persistence=persistence, args=["--replicaof", "127.0.0.1",
                                                                    str(self.master.port)])
                         for _ in range(replicas)]
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self.sentinel_procs: list[subprocess.Popen[bytes]] = []
        self.directory = pathlib.Path(tempfile.mkdtemp(prefix="acp-sentinel-"))

    @property
    def servers(self) -> list[RedisServer]:
        return [self.master, *self.replicas]

    def url(self, **options: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in options.items())
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.service}/0" + (f"?{query}" if query else "")

    def start(self) -> SentinelGroup:
        try:
            return self._start()
        except BaseException:  # (a skip or a failure) nothing is left running
            self.stop()
            raise

    def _start(self) -> SentinelGroup:
        self.master.start()
        for replica in self.replicas:
            replica.start()
        binary = _binary("redis-server")
        quorum = len(self.sentinel_ports) // 2 + 1
        for port in self.sentinel_ports:
            conf = self.directory / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndaemonize no\nprotected-mode no\n"
                f"dir {self.directory}\n"
                f"sentinel monitor {self.service} 127.0.0.1 {self.master.port} {quorum}\n"
                f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}\n"
                f"sentinel failover-timeout {self.service} 5000\n"
                f"sentinel parallel-syncs {self.service} 1\n")
            log = (self.directory / f"sentinel-{port}.log").open("ab")
            proc = subprocess.Popen([binary, str(conf), "--sentinel"], stdout=log, stderr=subprocess.STDOUT)
            log.close()
            self.sentinel_procs.append(proc)
            _wait_ping(port, proc)
        self.wait_for_replicas(len(self.replicas))
        return self

    def sentinel_client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.sentinel_ports[0], decode_responses=True)

    def current_master_port(self) -> int:
        client = self.sentinel_client()
        try:
            _, port = client.execute_command("SENTINEL GET-MASTER-ADDR-BY-NAME", self.service)
        finally:
            client.close()
        return int(port)

    def wait_for_replicas(self, count: int, timeout: float = 30.0) -> None:
        """Until the current master has ``count`` replicas online and every
        sentinel knows them."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(redis.RedisError):
                port = self.current_master_port()
                client = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)
                try:
                    info = client.info("replication")
                finally:
                    client.close()
                online = sum(1 for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)
                             and v.get("state") == "online")
                if info.get("role") == "master" and online >= count:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the master did not get {count} replicas")
            time.sleep(0.1)

    def server_on(self, port: int) -> RedisServer:
        return next(s for s in self.servers if s.port == port)

    def stop(self) -> None:
        for proc in self.sentinel_procs:
            proc.kill()
            proc.wait()
        self.sentinel_procs = []
        for server in self.servers:
            server.remove()
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_single() -> cabc.Iterator[RedisServer]:
    """One private Redis for the test session (no persistence)."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster() -> cabc.Iterator[RedisClusterServers]:
    """One private 3-master Redis Cluster for the test session."""
    try:
        cluster = RedisClusterServers().start()
    except RuntimeError as exc:
        need(f"a Redis Cluster ({exc})")
    yield cluster
    cluster.stop()
