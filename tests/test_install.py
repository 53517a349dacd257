"""What ``pip install flask-acp`` brings: Redis and RQ are core dependencies
(a Redis store or ``ACP_REDIS_URL`` works without an extra), and an optional
package that is missing is named in one line with what to install."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import pytest
from packaging.requirements import Requirement


def test_redis_and_rq_are_core_dependencies() -> None:
    core = {Requirement(r).name for r in importlib.metadata.requires("flask-acp") or []
            if "extra ==" not in r}
    assert {"redis", "rq"} <= core


@pytest.mark.parametrize(("module", "hidden", "message"), [
    ("flask_acp.testing.fake_shopify", "graphql",
     "ModuleNotFoundError: FakeShopify needs graphql-core: pip install 'flask-acp[testing]'"),
    ("flask_acp.testing.storage_contract", "pytest",
     "ModuleNotFoundError: the storage contract kit is a pytest suite: pip install pytest"),
])
def test_a_missing_optional_package_is_named_in_one_line(module: str, hidden: str, message: str) -> None:
    code = f"import sys; sys.modules[{hidden!r}] = None; import {module}"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         check=False)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1] == message
