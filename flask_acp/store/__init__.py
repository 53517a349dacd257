"""Session stores (the store port) and the embedded SQLite implementation."""

from __future__ import annotations

from .base import IdempotencyOutcome as IdempotencyOutcome
from .base import LockTimeoutError as LockTimeoutError
from .base import SessionStore as SessionStore
from .base import StaleSessionError as StaleSessionError
from .sqlite import SQLiteSessionStore as SQLiteSessionStore
