"""Who holds a lock or a claim: ``host|pid|process start|token`` owner strings.

A holder string names the process that took a lock or an in-flight claim, so
that another process of the same machine can tell that the holder has died
(its pid is gone, or now belongs to a process started at another time) and
take the lock over at once instead of waiting out its lease. Holders on other
machines, and any doubt, count as alive: their lease frees the lock. Shared by
every storage implementation (SQLite, Redis).
"""

from __future__ import annotations

import os
import socket
import uuid

__all__ = ["holder_is_dead", "new_owner"]


def _process_start(pid: int) -> str:
    """The start time of process ``pid`` in clock ticks since boot (Linux
    ``/proc/<pid>/stat`` field 22), which tells a reused pid apart; ``""``
    where ``/proc`` is not available, ``"-"`` when the process does not exist."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rpartition(")")[2].split()[19]
    except FileNotFoundError:
        return "-" if os.path.isdir("/proc/self") else ""
    except (OSError, IndexError):
        return ""


def _holder() -> str:
    return f"{socket.gethostname()}|{os.getpid()}|{_process_start(os.getpid())}"


#: this process's holder prefix (recomputed after a fork: see ``os.register_at_fork``)
_HOLDER = _holder()


def _after_fork() -> None:
    global _HOLDER
    _HOLDER = _holder()


os.register_at_fork(after_in_child=_after_fork)


def new_owner() -> str:
    """A fresh owner string of this process: ``host|pid|start|<random hex>``."""
    return f"{_HOLDER}|{uuid.uuid4().hex}"


def holder_is_dead(owner: str) -> bool:
    """Whether an owner string (:func:`new_owner`) names a process of this
    host that has ended (or whose pid now belongs to another process). Owners
    on other hosts, and any doubt, count as alive: their lease frees the lock."""
    parts = owner.split("|")
    if len(parts) != 4 or parts[0] != socket.gethostname():
        return False
    try:
        pid = int(parts[1])
    except ValueError:
        return False
    if pid == os.getpid():
        return False
    started = _process_start(pid)
    if started == "":  # no /proc: ask the kernel whether the pid exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return False
    return started == "-" or (parts[2] != "" and started != parts[2])
