"""Throughput, latency and memory of the ACP checkout API vs a bare Flask baseline.

    python benchmarks/bench_checkout.py [--seconds N] [--workers N] [--concurrency N]

In one run:

1. Starts two gunicorn servers (``--workers`` sync workers each, default 2) on
   127.0.0.1 and free ports, each on its own temporary SQLite file:

   * **acp**: ``example_app.app`` (embedded catalog + SQLite + FakePaymentProcessor)
     through benchmarks/acp_wsgi.py, with the benchmark catalog in
     benchmarks/data/ (64 variants, 10^9 units each: a run never sells out);
   * **baseline**: benchmarks/baseline_app.py, a bare Flask app doing the same
     SQLite transactions and statements per operation (see its docstring and
     benchmarks/count_store_ops.py) and returning a JSON body of the same size.

2. For each operation (create, update, get, complete) and each server,
   ``--concurrency`` client processes (default 2 x workers), each with its own
   ``requests.Session``, send requests back to back for ``--seconds`` (default
   5) in total, cut into ``--rounds`` slices (default 5) that alternate ACP and
   baseline (and who goes first), so that load from anything else on the
   machine falls on both alike. Sessions that update/get/complete need are
   created by the same clients *before* each timed slice (complete: with an
   address, so they are ``ready_for_payment``), plus ``--warmup`` untimed
   requests per client.
   Measured: requests/s, p50/p99 latency, server CPU per request (utime +
   stime of the workers, /proc/<pid>/stat) and the ratios ACP/baseline.
   Targets: create and update throughput ratio >= 0.5.

3. Peak RSS (``VmHWM`` of /proc/<pid>/status) of every ACP gunicorn worker
   (children of the master, from /proc/<master>/task/*/children), target < 100 MB.

4. Servers are always stopped (SIGTERM, then SIGKILL of their process group,
   and ``PR_SET_PDEATHSIG`` should this script die) and the temporary files
   removed. Every phase is bounded in time; only 127.0.0.1 is contacted
   (``trust_env`` off: no proxy).

The last line printed is one JSON object with every number.

Notes: gunicorn sync workers close the connection after each response, so
every request opens a new TCP connection despite the keep-alive session; the
clients run on the same machine and take CPU from the servers (client CPU per
request is printed). Sessions are spread over ``--items`` catalog variants
(default 64) because the catalog's stock check sums the unexpired holds of the
item, a cost that grows with the number of open sessions per item; ``--items 1``
puts every session on item_123 to show that effect.
"""

from __future__ import annotations

import argparse
import array
import ctypes
import itertools
import json
import math
import multiprocessing as mp
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import typing as t

import requests

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

from flask_acp.testing import acp_headers  # noqa: E402

API_KEY = "bench-agent-key-0123456789abcdef"
ADDRESS = {"name": "Ada Lovelace", "line_one": "1 Main St", "city": "San Francisco",
           "state": "CA", "country": "US", "postal_code": "94131"}
OPS = ("create", "update", "get", "complete")
TARGETS = {"create": 0.5, "update": 0.5}  # throughput ratio ACP/baseline >= target
RSS_TARGET_MB = 100.0
HOST = "127.0.0.1"
REQUEST_TIMEOUT = (5.0, 30.0)
POOL_PER_CLIENT = 4  # sessions each client updates / reads in turn

_CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- /proc helpers -------------------------------------------------------------------


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid``: /proc/<pid>/task/*/children, else a /proc scan."""
    found: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found += [int(c) for c in f.read().split()]
        return sorted(set(found))
    except OSError:
        pass
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return sorted(found)


def proc_status_kb(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_seconds(pids: t.Iterable[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except OSError:
            pass
    return total / _CLK_TCK


# --- servers -------------------------------------------------------------------------


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class Server:
    """One gunicorn master with ``workers`` sync workers on 127.0.0.1."""

    def __init__(self, name: str, app: str, env: dict[str, str], workers: int, tmp: str) -> None:
        self.name, self.app, self.env, self.workers, self.tmp = name, app, env, workers, tmp
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.log = os.path.join(tmp, f"{name}-gunicorn.log")
        self.worker_pids_seen: set[int] = set()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, timeout: float) -> None:
        for attempt in range(3):
            self.port = _free_port()
            cmd = [sys.executable, "-m", "gunicorn", "--workers", str(self.workers),
                   "--worker-class", "sync", "--bind", f"{HOST}:{self.port}",
                   "--pythonpath", f"{REPO},{HERE}", "--timeout", "60", "--graceful-timeout", "5",
                   "--log-level", "warning", "--error-logfile", self.log, self.app]
            env = {**os.environ, **self.env}
            with open(self.log, "ab") as log:
                self.proc = subprocess.Popen(cmd, env=env, cwd=self.tmp, stdin=subprocess.DEVNULL,
                                             stdout=log, stderr=log, start_new_session=True,
                                             preexec_fn=_die_with_parent)
            if self._wait_ready(timeout):
                self.worker_pids_seen.update(self.worker_pids())
                return
            self.stop()
            if attempt < 2 and "Address already in use" in self.log_tail():
                continue
            break
        raise RuntimeError(f"{self.name} server did not start; log tail:\n{self.log_tail()}")

    def _wait_ready(self, timeout: float) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        probe = requests.Session()
        probe.trust_env = False
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    return False
                if len(self.worker_pids()) >= self.workers:
                    try:
                        probe.get(f"{self.url}/checkout_sessions/cs_probe", timeout=2,
                                  headers=acp_headers(API_KEY))
                        return True
                    except requests.RequestException:
                        pass
                time.sleep(0.1)
            return False
        finally:
            probe.close()

    def worker_pids(self) -> list[int]:
        return children_of(self.proc.pid) if self.proc and self.proc.poll() is None else []

    def log_tail(self, n: int = 3000) -> str:
        try:
            with open(self.log, errors="replace") as f:
                return f.read()[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=8)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # its own session: master + workers
            except ProcessLookupError:
                pass
            proc.wait(timeout=5)


# --- clients -------------------------------------------------------------------------


def _client(cfg: dict[str, t.Any], ready_q: t.Any, go: t.Any, start: t.Any, out_q: t.Any) -> None:
    """One client process: untimed setup, then requests back to back in the window."""
    idx = cfg["idx"]
    try:
        s = requests.Session()
        s.trust_env = False
        url, op = cfg["url"], cfg["op"]
        items = cfg["items"]
        item_cycle = itertools.cycle(items)
        headers = lambda: acp_headers(API_KEY)  # noqa: E731  fresh Idempotency-Key each call

        def create_body(item: str, address: bool) -> bytes:
            body: dict[str, t.Any] = {"currency": "usd", "capabilities": {},
                                      "line_items": [{"id": item, "quantity": 1}]}
            if address:
                body["fulfillment_details"] = {"address": ADDRESS}
            return json.dumps(body).encode()

        def make_session(address: bool) -> str:
            r = s.post(f"{url}/checkout_sessions", data=create_body(next(item_cycle), address),
                       headers=headers(), timeout=REQUEST_TIMEOUT)
            if r.status_code != 201:
                raise RuntimeError(f"setup create -> {r.status_code}: {r.text[:300]}")
            return str(r.json()["id"])

        pool: list[str] = []
        ready: list[str] = []
        if op in ("update", "get"):
            pool = [make_session(address=False) for _ in range(POOL_PER_CLIENT)]
        if op == "complete":
            ready = [make_session(address=True) for _ in range(cfg["n_ready"] + cfg["warmup"])]
        create_bodies = {i: create_body(i, False) for i in items}
        pool_items = {sid: items[n % len(items)] for n, sid in enumerate(pool)}
        update_bodies = {(sid, q): json.dumps({
            "line_items": [{"id": pool_items[sid], "quantity": q}],
            "fulfillment_details": {"address": ADDRESS}}).encode()
            for sid in pool for q in range(1, 6)}
        def complete_body(session_id: str) -> bytes:
            # a credential is bound to the first session that presents it: one token per session
            token = "spt_bench_" + session_id.removeprefix("cs_")
            return json.dumps({"payment_data": {"handler_id": "card_tokenized", "instrument": {
                "type": "card", "credential": {"type": "spt", "token": token}}}}).encode()

        def one(i: int) -> tuple[bool | None, int, int]:
            """-> (ok, status, body bytes); ok None = nothing left to send."""
            if op == "create":
                r = s.post(f"{url}/checkout_sessions", data=create_bodies[next(item_cycle)],
                           headers=headers(), timeout=REQUEST_TIMEOUT)
                return r.status_code == 201, r.status_code, len(r.content)
            if op == "update":
                sid = pool[i % len(pool)]
                r = s.post(f"{url}/checkout_sessions/{sid}", data=update_bodies[(sid, i % 5 + 1)],
                           headers=headers(), timeout=REQUEST_TIMEOUT)
                return r.status_code == 200, r.status_code, len(r.content)
            if op == "get":
                r = s.get(f"{url}/checkout_sessions/{pool[i % len(pool)]}", headers=headers(),
                          timeout=REQUEST_TIMEOUT)
                return r.status_code == 200, r.status_code, len(r.content)
            if not ready:
                return None, 0, 0
            sid = ready.pop()
            r = s.post(f"{url}/checkout_sessions/{sid}/complete", data=complete_body(sid),
                       headers=headers(), timeout=REQUEST_TIMEOUT)
            ok = r.status_code == 200 and b'"status":"completed"' in r.content
            return ok, r.status_code, len(r.content)

        counter = itertools.count()
        for _ in range(cfg["warmup"]):
            one(next(counter))
        ready_q.put(("ready", idx, None))
        if not go.wait(cfg["go_timeout"]):
            raise RuntimeError("no start signal")
        t0 = start.value
        deadline = t0 + cfg["seconds"]
        while time.monotonic() < t0:
            time.sleep(0.001)
        ends, lats = array.array("d"), array.array("d")
        errors: dict[str, int] = {}
        nbytes = 0
        exhausted_at = None
        consecutive = 0
        cpu0 = sum(os.times()[:2])
        while True:
            ts = time.monotonic()
            if ts >= deadline:
                break
            try:
                ok, status, size = one(next(counter))
            except requests.RequestException as exc:
                ok, status, size = False, type(exc).__name__, 0  # type: ignore[assignment]
            te = time.monotonic()
            if ok is None:
                exhausted_at = ts
                break
            if ok:
                ends.append(te)
                lats.append(te - ts)
                nbytes += size
                consecutive = 0
            else:
                errors[str(status)] = errors.get(str(status), 0) + 1
                consecutive += 1
                if consecutive >= 50:
                    errors["aborted_after_50_consecutive_errors"] = 1
                    break
        out_q.put({"idx": idx, "ends": ends.tobytes(), "lats": lats.tobytes(), "errors": errors,
                   "bytes": nbytes, "exhausted_at": exhausted_at,
                   "client_cpu": sum(os.times()[:2]) - cpu0})
    except BaseException as exc:  # report, never hang the parent
        ready_q.put(("failed", idx, f"{type(exc).__name__}: {exc}"))
        out_q.put({"idx": idx, "fatal": f"{type(exc).__name__}: {exc}"})


def _percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, math.ceil(p / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def run_phase(server: Server, op: str, args: argparse.Namespace, items: list[str], seconds: float,
              n_ready_per_client: int = 0) -> dict[str, t.Any]:
    """Drive ``server`` with ``op`` for ``seconds``; returns raw measurements (see summarize)."""
    ctx = mp.get_context("fork")
    ready_q, out_q = ctx.Queue(), ctx.Queue()
    go, start = ctx.Event(), ctx.Value("d", 0.0)
    setup_budget = args.setup_timeout + (3 * seconds if op == "complete" else 0)
    procs = []
    for idx in range(args.concurrency):
        cfg = {"idx": idx, "url": server.url, "op": op, "seconds": seconds,
               "warmup": args.warmup, "n_ready": n_ready_per_client,
               "items": [items[(idx + k) % len(items)] for k in range(len(items))],
               "go_timeout": setup_budget + 5}
        p = ctx.Process(target=_client, args=(cfg, ready_q, go, start, out_q), daemon=True)
        p.start()
        procs.append(p)
    try:
        deadline = time.monotonic() + setup_budget
        for _ in procs:
            kind, idx, detail = ready_q.get(timeout=max(0.1, deadline - time.monotonic()))
            if kind != "ready":
                raise RuntimeError(f"{server.name} {op}: client {idx} failed in setup: {detail}")
        pids = server.worker_pids()
        server.worker_pids_seen.update(pids)
        t0 = time.monotonic() + 0.05
        start.value = t0
        cpu_before = cpu_seconds(pids)
        go.set()
        results = [out_q.get(timeout=seconds + REQUEST_TIMEOUT[1] + 10) for _ in procs]
        cpu_used = cpu_seconds(pids) - cpu_before
        if server.worker_pids() != pids:
            server.worker_pids_seen.update(server.worker_pids())
    finally:
        for p in procs:
            p.join(timeout=2)
            if p.is_alive():
                p.terminate()
                p.join(timeout=2)
    fatal = [r["fatal"] for r in results if "fatal" in r]
    if fatal:
        raise RuntimeError(f"{server.name} {op}: client failed: {fatal[0]}")
    window_end = t0 + seconds
    exhausted = [r["exhausted_at"] for r in results if r["exhausted_at"] is not None]
    if exhausted:
        window_end = min(window_end, min(exhausted))
    raw: dict[str, t.Any] = {"window": window_end - t0, "lats": [], "total": 0, "bytes": 0,
                             "errors": {}, "server_cpu": cpu_used, "exhausted": bool(exhausted),
                             "client_cpu": sum(r["client_cpu"] for r in results)}
    for r in results:
        ends, lat = array.array("d"), array.array("d")
        ends.frombytes(r["ends"])
        lat.frombytes(r["lats"])
        raw["total"] += len(ends)  # all successes, also those ending after the window
        raw["lats"] += [x for e, x in zip(ends, lat, strict=True) if e <= window_end]
        raw["bytes"] += r["bytes"]
        for k, v in r["errors"].items():
            raw["errors"][k] = raw["errors"].get(k, 0) + v
    return raw


def summarize(slices: list[dict[str, t.Any]]) -> dict[str, t.Any]:
    """Pool the slices of one (operation, server): requests in the windows over
    the summed windows, percentiles of every latency, CPU per request."""
    lats = sorted(x for sl in slices for x in sl["lats"])
    n = len(lats)
    window = sum(sl["window"] for sl in slices)
    total = sum(sl["total"] for sl in slices)
    errors: dict[str, int] = {}
    for sl in slices:
        for k, v in sl["errors"].items():
            errors[k] = errors.get(k, 0) + v
    return {
        "requests": n,
        "window_s": round(window, 3),
        "slices": len(slices),
        "rps": n / window if window > 0 else 0.0,
        "p50_ms": _percentile(lats, 50) * 1000,
        "p99_ms": _percentile(lats, 99) * 1000,
        "mean_ms": (sum(lats) / n * 1000) if n else float("nan"),
        "errors": errors,
        "body_bytes": round(sum(sl["bytes"] for sl in slices) / total) if total else 0,
        "server_cpu_ms_per_req": sum(sl["server_cpu"] for sl in slices) / total * 1000
        if total else float("nan"),
        "client_cpu_ms_per_req": sum(sl["client_cpu"] for sl in slices) / total * 1000
        if total else float("nan"),
        "slice_rps": [round(len(sl["lats"]) / sl["window"], 1) if sl["window"] > 0 else 0.0
                      for sl in slices],
        "ran_out_of_sessions": any(sl["exhausted"] for sl in slices),
    }


# --- main ----------------------------------------------------------------------------


def _loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def _fmt(x: float, digits: int = 2) -> str:
    return "n/a" if x != x else f"{x:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="timed window per operation per server")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers per server")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="client processes (default: 2 x workers)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="the --seconds of each operation are cut into this many slices, "
                             "alternating ACP and baseline")
    parser.add_argument("--warmup", type=int, default=10, help="untimed requests per client per slice")
    parser.add_argument("--items", type=int, default=64,
                        help="catalog variants the sessions are spread over (1-64)")
    parser.add_argument("--setup-timeout", type=float, default=60.0,
                        help="seconds allowed for a server start or a phase's untimed setup")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    args.concurrency = args.concurrency or 2 * args.workers
    if (args.seconds <= 0 or args.workers < 1 or args.concurrency < 1 or args.rounds < 1
            or not 1 <= args.items <= 64):
        parser.error("need --seconds > 0, --workers, --concurrency, --rounds >= 1, 1 <= --items <= 64")
    items = ["item_123"] + [f"bench_{i:02d}" for i in range(1, 64)]
    items = items[:args.items]

    def _terminate(signum: int, frame: t.Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _terminate)
    tmp = tempfile.mkdtemp(prefix="acp-bench-")
    servers: list[Server] = []
    results: dict[str, dict[str, t.Any]] = {op: {} for op in OPS}
    started = time.monotonic()
    try:
        acp = Server("acp", "acp_wsgi:app", {
            "ACP_API_KEYS": f"bench-agent:{API_KEY}",
            "ACP_SQLITE_PATH": os.path.join(tmp, "acp.sqlite3"),
            "ACP_CATALOG_FILE": os.path.join(HERE, "data", "feed.json"),
            "ACP_STORE_FILE": os.path.join(HERE, "data", "store.json"),
            "BENCH_INSTANCE_PATH": os.path.join(tmp, "acp-instance"),
        }, args.workers, tmp)
        base = Server("baseline", "baseline_app:app", {
            "BASELINE_SQLITE_PATH": os.path.join(tmp, "baseline.sqlite3"),
        }, args.workers, tmp)
        for server in (acp, base):
            servers.append(server)
            server.start(args.setup_timeout)
        print(f"# servers: acp {acp.url} (workers {acp.worker_pids()}), "
              f"baseline {base.url} (workers {base.worker_pids()}); {args.workers} sync workers, "
              f"{args.concurrency} client processes, {args.seconds:g} s per op per server "
              f"in {args.rounds} alternating slices, "
              f"{os.cpu_count()} CPUs, loadavg {_loadavg()}", flush=True)
        slice_s = args.seconds / args.rounds
        for op in OPS:
            slices: dict[str, list[dict[str, t.Any]]] = {"acp": [], "baseline": []}
            for rnd in range(args.rounds):
                # alternate who goes first, so drift and outside load hit both alike
                for server in ((acp, base) if rnd % 2 == 0 else (base, acp)):
                    n_ready = 0
                    if op == "complete":
                        # enough ready sessions for the slice: a complete costs more than a create
                        create_rps = results["create"][server.name]["rps"]
                        n_ready = math.ceil(create_rps * slice_s * 1.3 / args.concurrency) + 5
                    slices[server.name].append(run_phase(server, op, args, items, slice_s, n_ready))
            for server in (acp, base):
                res = results[op][server.name] = summarize(slices[server.name])
                print(f"#   {op:8} {server.name:8} {res['rps']:8.1f} req/s  p50 {res['p50_ms']:6.2f} ms"
                      f"  p99 {res['p99_ms']:6.2f} ms  errors {sum(res['errors'].values())}"
                      f"  per slice {res['slice_rps']}", flush=True)
        rss: dict[str, t.Any] = {}
        for server in (acp, base):
            pids = server.worker_pids()
            rss[server.name] = {
                "worker_vmhwm_mb": {str(p): round((proc_status_kb(p, "VmHWM") or 0) / 1024, 1)
                                    for p in pids},
                "worker_vmrss_mb": {str(p): round((proc_status_kb(p, "VmRSS") or 0) / 1024, 1)
                                    for p in pids},
                "master_vmhwm_mb": round((proc_status_kb(server.proc.pid, "VmHWM") or 0) / 1024, 1)
                if server.proc else None,
                "workers_restarted": sorted(server.worker_pids_seen - set(pids)) != [],
            }
    finally:
        for server in reversed(servers):
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    # --- report --------------------------------------------------------------------
    print()
    header = (f"{'op':9}{'server':10}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
              f"{'body B':>8}{'srv CPU ms/req':>16}{'cli CPU ms/req':>16}")
    print(header)
    print("-" * len(header))
    for op in OPS:
        for name in ("acp", "baseline"):
            r = results[op][name]
            print(f"{op:9}{name:10}{r['rps']:9.1f}{r['p50_ms']:9.2f}{r['p99_ms']:9.2f}"
                  f"{sum(r['errors'].values()):8d}{r['body_bytes']:8d}"
                  f"{r['server_cpu_ms_per_req']:16.2f}{r['client_cpu_ms_per_req']:16.2f}")
    print()
    header = (f"{'op':9}{'tput ACP/base':>14}{'p50 ACP/base':>14}{'p99 ACP/base':>14}"
              f"{'CPU ACP/base':>14}{'target':>12}{'result':>8}")
    print(header)
    print("-" * len(header))
    all_ok = True
    summary: dict[str, t.Any] = {}
    for op in OPS:
        a, b = results[op]["acp"], results[op]["baseline"]
        ratio = {"throughput": _ratio(a["rps"], b["rps"]), "p50": _ratio(a["p50_ms"], b["p50_ms"]),
                 "p99": _ratio(a["p99_ms"], b["p99_ms"]),
                 "server_cpu": _ratio(a["server_cpu_ms_per_req"], b["server_cpu_ms_per_req"])}
        target = TARGETS.get(op)
        clean = not a["errors"] and not b["errors"]
        ok = None if target is None else (ratio["throughput"] >= target and clean)
        if ok is False:
            all_ok = False
        summary[op] = {"ratio": ratio, "throughput_ratio_target": target, "pass": ok}
        print(f"{op:9}{_fmt(ratio['throughput']):>14}{_fmt(ratio['p50']):>14}{_fmt(ratio['p99']):>14}"
              f"{_fmt(ratio['server_cpu']):>14}{('>= ' + str(target)) if target else '-':>12}"
              f"{'-' if ok is None else ('PASS' if ok else 'FAIL'):>8}")
    print()
    hwm = rss["acp"]["worker_vmhwm_mb"]
    peak = max(hwm.values(), default=float("nan"))
    rss_ok = bool(hwm) and peak < RSS_TARGET_MB
    all_ok = all_ok and rss_ok
    print("peak RSS per ACP worker (VmHWM): "
          + ", ".join(f"pid {p}: {v:.1f} MB" for p, v in hwm.items())
          + f"  (max {peak:.1f} MB; target < {RSS_TARGET_MB:.0f} MB: {'PASS' if rss_ok else 'FAIL'})")
    print("baseline workers (VmHWM), for reference: "
          + ", ".join(f"pid {p}: {v:.1f} MB" for p, v in rss["baseline"]["worker_vmhwm_mb"].items()))
    if rss["acp"]["workers_restarted"] or rss["baseline"]["workers_restarted"]:
        print("WARNING: gunicorn restarted a worker during the run")
    for op in OPS:
        for name in ("acp", "baseline"):
            if results[op][name]["errors"]:
                print(f"WARNING: {op} on {name}: errors {results[op][name]['errors']}")
            if results[op][name]["ran_out_of_sessions"]:
                print(f"NOTE: {op} on {name}: a client used up its ready sessions; windows "
                      f"shortened to {results[op][name]['window_s']} s in all")
    print(f"targets: {'all met' if all_ok else 'NOT all met'}; total {time.monotonic() - started:.1f} s;"
          f" loadavg {_loadavg()}")
    print(json.dumps(_denan({
        "benchmark": "flask-acp checkout vs bare Flask baseline",
        "config": {"seconds": args.seconds, "workers": args.workers, "concurrency": args.concurrency,
                   "rounds": args.rounds, "warmup": args.warmup, "items": args.items,
                   "cpus": os.cpu_count(), "loadavg_after": _loadavg(),
                   "python": sys.version.split()[0]},
        "results": results, "summary": summary,
        "rss": {**rss, "acp_peak_worker_mb": peak, "target_mb": RSS_TARGET_MB, "pass": rss_ok},
        "targets_met": all_ok,
    }), sort_keys=True))
    return 1 if args.strict and not all_ok else 0


def _denan(obj: t.Any) -> t.Any:
    """NaN (an empty measurement) -> null, so the JSON line is strict JSON."""
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: _denan(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_denan(v) for v in obj]
    return obj


if __name__ == "__main__":
    sys.exit(main())
