"""The storage contract test kit (:mod:`flask_acp.testing.storage_contract`)
run over every shipped implementation (``CI=true`` or not: nothing is skipped)."""

from __future__ import annotations

import functools
import pathlib
import typing as t

import pytest

from flask_acp.store import open_storage
from flask_acp.testing.storage_contract import StorageContract
from flask_acp.testing.storage_contract import StorageOpener

#: implementations under contract: name -> URL of a fresh store in a folder
IMPLEMENTATIONS: dict[str, t.Callable[[pathlib.Path], str]] = {
    "sqlite": lambda folder: f"sqlite://{folder / 'contract.sqlite3'}",
}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def storage_opener(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> StorageOpener:
    return functools.partial(open_storage, IMPLEMENTATIONS[request.param](tmp_path))


class TestStorage(StorageContract):
    """Every port's contract, per implementation."""
