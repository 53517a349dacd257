"""The embedded catalog: an ACP product feed file + a store rules file + SQLite.

Usage (Flask config)::

    ACP_ADAPTER = "catalog"
    ACP_CATALOG_FILE = "feed.json"      # default: the shipped demo feed
    ACP_STORE_FILE = "store.json"       # default: the shipped demo store
    ACP_SQLITE_PATH = "acp.sqlite3"     # required (a core key)

The keys are declared in :data:`CATALOG_SETTINGS`.

See :mod:`.feed` for the feed format, :mod:`.store_rules` for the store file
and :mod:`.adapter` for the quoting rules.
"""

from __future__ import annotations

from .adapter import CATALOG_SETTINGS
from .adapter import MESSAGE_KEYS
from .adapter import CatalogAdapter
from .adapter import CatalogSettings
from .feed import CatalogItem
from .feed import load_feed
from .store_rules import StoreRules
from .store_rules import load_store

__all__ = [
    "CATALOG_SETTINGS",
    "MESSAGE_KEYS",
    "CatalogAdapter",
    "CatalogSettings",
    "CatalogItem",
    "StoreRules",
    "load_feed",
    "load_store",
]
