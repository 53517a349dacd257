"""Settings declared once (flask_acp.config): one loader for every section, every
problem at once, defaults into app.config, unknown-key warnings, and the README's
tables generated from the declarations (flask_acp.configdoc)."""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
from flask import Flask
from marshmallow import ValidationError
from marshmallow import fields
from marshmallow import validate

from flask_acp import ACP
from flask_acp import configdoc
from flask_acp.catalog import CatalogAdapter
from flask_acp.config import CORE_SETTINGS
from flask_acp.config import Section
from flask_acp.config import Settings
from flask_acp.config import setting
from flask_acp.testing import FakePaymentProcessor
from tests.conftest import AGENT_KEY
from tests.conftest import build_app

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def _problems(exc: pytest.ExceptionInfo[RuntimeError]) -> dict[str, str]:
    """The error's ``KEY: text`` lines (after the first line) by key."""
    first, *lines = str(exc.value).splitlines()
    assert first == "flask-acp configuration is invalid:"
    return dict(line.strip().split(": ", 1) for line in lines)


# --- one loader, every problem at once --------------------------------------------------------


def test_every_problem_is_reported_at_once_one_line_per_key(tmp_path: pathlib.Path) -> None:
    with pytest.raises(RuntimeError) as info:
        build_app(tmp_path, ACP_URL_PREFIX="acp/", ACP_SESSION_TTL=5, ACP_STRIPE_SECRET_KEY="sk_test_x",
                  ACP_CATALOG_FILE=str(tmp_path / "missing.json"))
    problems = _problems(info)
    assert list(problems) == ["ACP_URL_PREFIX", "ACP_SESSION_TTL", "ACP_STRIPE_MERCHANT_ID",
                              "ACP_CATALOG_FILE"]
    assert problems["ACP_SESSION_TTL"] == "Must be greater than or equal to 60."
    assert problems["ACP_STRIPE_MERCHANT_ID"].startswith("set it to your Stripe account id (acct_...)")
    assert problems["ACP_CATALOG_FILE"] == f"no such file: {tmp_path / 'missing.json'}"


@pytest.mark.parametrize("limit", ["0/minute", "10/second;0/hour"])
def test_a_rate_limit_of_zero_is_refused(tmp_path: pathlib.Path, limit: str) -> None:
    """``0/minute`` would answer every request 429 "retry after 1 s" for ever; no
    limit is the empty string."""
    with pytest.raises(RuntimeError) as info:
        build_app(tmp_path, ACP_RATE_LIMIT_PER_AGENT=limit)
    assert "ACP_RATE_LIMIT_PER_AGENT" in _problems(info)


def test_the_log_level_is_any_case(tmp_path: pathlib.Path) -> None:
    app = build_app(tmp_path, ACP_LOG_LEVEL="warning")
    assert app.extensions["acp"].settings.log_level == "WARNING"
    with pytest.raises(RuntimeError) as info:
        build_app(tmp_path, ACP_LOG_LEVEL="loud")
    assert _problems(info)["ACP_LOG_LEVEL"] == \
        "Must be one of: DEBUG, INFO, WARNING, ERROR, CRITICAL (any case)."


def test_the_adapters_keys_are_validated_with_the_core_keys(tmp_path: pathlib.Path) -> None:
    with pytest.raises(RuntimeError) as info:
        build_app(tmp_path / "a", ACP_ADAPTER="shopify", ACP_SESSION_TTL=5, SHOPIFY_TIMEOUT="soon")
    assert _problems(info) == {
        "ACP_SESSION_TTL": "Must be greater than or equal to 60.",
        "SHOPIFY_SHOP_URL": 'required; e.g. SHOPIFY_SHOP_URL = "https://{shop}.myshopify.com"',
        "SHOPIFY_TIMEOUT": "Not a valid number.",
    }
    with pytest.raises(RuntimeError) as info:  # an unknown adapter is one more line
        build_app(tmp_path / "b", ACP_ADAPTER="nope", ACP_SESSION_TTL=5)
    problems = _problems(info)
    assert list(problems) == ["ACP_ADAPTER", "ACP_SESSION_TTL"]
    assert problems["ACP_ADAPTER"].startswith("unknown adapter 'nope'; installed: ['catalog', ")


def test_a_missing_required_key_says_what_to_set(tmp_path: pathlib.Path) -> None:
    with pytest.raises(RuntimeError) as info:
        build_app(tmp_path, ACP_AGENTS=None)
    assert _problems(info)["ACP_AGENTS"].startswith('required; e.g. ACP_AGENTS = {"agent-name": {"api_keys"')


def test_an_adapter_instance_needs_none_of_its_keys(tmp_path: pathlib.Path) -> None:
    adapter = CatalogAdapter.from_config({"ACP_SQLITE_PATH": str(tmp_path / "stock.sqlite3")})
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(TESTING=True, ACP_AGENTS={"agent-one": {"api_keys": [AGENT_KEY]}},
                      ACP_ADAPTER="shopify")  # and no SHOPIFY_* key
    ACP(app, adapter=adapter, payment_processor=FakePaymentProcessor())
    assert app.extensions["acp"].adapter is adapter


# --- defaults -------------------------------------------------------------------------------------


def test_defaults_are_written_into_app_config_and_none_takes_the_default(tmp_path: pathlib.Path) -> None:
    first = build_app(tmp_path / "a", ACP_SESSION_TTL=None)
    settings = first.extensions["acp"].settings
    assert settings.session_ttl == first.config["ACP_SESSION_TTL"] == 3600
    assert settings.webhook_retry_intervals == (10, 30, 120, 600, 1800, 3600, 7200, 14400)
    assert first.config["ACP_STRIPE_HANDLER_ID"] == "card_tokenized"
    assert first.config["ACP_SQLITE_PATH"] == str(tmp_path / "a" / "acp.sqlite3")
    first.config["ACP_WEBHOOK_RETRY_INTERVALS"].append(1)  # each app gets its own copy
    second = build_app(tmp_path / "b")
    assert second.config["ACP_WEBHOOK_RETRY_INTERVALS"] == [10, 30, 120, 600, 1800, 3600, 7200, 14400]


# --- unknown keys ---------------------------------------------------------------------------------


def test_unknown_acp_keys_warn_with_the_nearest_declared_key(
        tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="flask_acp"):
        build_app(tmp_path, ACP_SESION_TTL=600, ACP_STRIPE_SECRET="x")
    warnings = [r.getMessage() for r in caplog.records if "unknown configuration key" in r.getMessage()]
    assert warnings == [
        "unknown configuration key ACP_SESION_TTL ignored (did you mean ACP_SESSION_TTL?)",
        "unknown configuration key ACP_STRIPE_SECRET ignored (did you mean ACP_STRIPE_SECRET_KEY?)",
    ]


def test_keys_of_another_installed_adapter_are_not_unknown(
        tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="flask_acp"):  # build_app sets ACP_CATALOG_FILE too
        app = build_app(tmp_path, ACP_ADAPTER="shopify", SHOPIFY_SHOP_URL="https://s.myshopify.com",
                        SHOPIFY_ACCESS_TOKEN="shpat_x")
    app.extensions["acp"].adapter.close()
    assert not [r for r in caplog.records if "unknown configuration key" in r.getMessage()]


# --- the declarations -----------------------------------------------------------------------------


def test_every_key_is_declared_once_across_sections() -> None:
    sections = configdoc.sections()
    assert [s.name for s in sections] == ["core", "stripe", "catalog", "shopify", "woocommerce"]
    keys = [declared.key for section in sections for declared in section.settings()]
    assert len(keys) == len(set(keys))
    assert [f.name for f in dataclasses.fields(Settings)] == [name for name, _ in CORE_SETTINGS._declared]


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Example:
    url: str = setting("EX_URL", fields.String(validate=validate.Length(min=3)), example='"abc"', doc="d")
    tries: tuple[int, ...] = setting("EX_TRIES", fields.List(fields.Integer(strict=True)), [1, 2],
                                     convert=tuple, doc="d")
    note: str | None = setting("EX_NOTE", fields.String(allow_none=True), None, convert=str.upper, doc="d")


def _url_not_tries(values: _Example) -> None:
    if values.url == "abcd" and values.tries:
        raise ValidationError("not with EX_TRIES", "EX_URL")


EXAMPLE = Section("example", _Example, checks=(_url_not_tries,))


def test_a_section_loads_typed_values_or_names_every_bad_key() -> None:
    assert EXAMPLE.load({"EX_URL": "abc", "EX_TRIES": None}) == _Example(url="abc", tries=(1, 2), note=None)
    assert EXAMPLE.load({"EX_URL": "abc", "EX_NOTE": "x"}).note == "X"
    with pytest.raises(ValueError, match=r'^EX_URL: required; e\.g\. EX_URL = "abc"; '
                                         r"EX_TRIES: 0: Not a valid integer\.$"):
        EXAMPLE.load({"EX_TRIES": ["1"]})
    with pytest.raises(ValueError, match="^EX_URL: not with EX_TRIES$"):
        EXAMPLE.load({"EX_URL": "abcd"})
    assert EXAMPLE.load({"EX_URL": "abcd", "EX_TRIES": []}).tries == ()


def test_a_settings_field_without_a_declaration_is_refused() -> None:
    @dataclasses.dataclass(frozen=True)
    class Undeclared:
        plain: int = 1

    with pytest.raises(TypeError, match=r"Undeclared\.plain is not declared with setting\(\)"):
        Section("undeclared", Undeclared)


# --- README tables --------------------------------------------------------------------------------


def test_readme_tables_are_the_generated_ones() -> None:
    text = README.read_text(encoding="utf-8")
    assert configdoc.update_readme(text, configdoc.sections()) == text, (
        "README.md's configuration tables differ from the declarations: run "
        "python -m flask_acp.configdoc --write README.md")


def test_configdoc_check_and_write(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "README.md"
    shutil.copy(README, copy)
    assert configdoc.main(["--check", str(copy)]) == 0
    copy.write_text(README.read_text(encoding="utf-8").replace("| `3600` |", "| `60` |", 1), encoding="utf-8")
    assert configdoc.main(["--check", str(copy)]) == 1
    assert "stale" in capsys.readouterr().err
    assert configdoc.main(["--write", str(copy)]) == 0
    assert copy.read_text(encoding="utf-8") == README.read_text(encoding="utf-8")
    copy.write_text("no tables here\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"no table for the section\(s\) \['core', "):
        configdoc.main(["--check", str(copy)])
    assert configdoc.main([]) == 0
    printed = capsys.readouterr().out
    assert "<!-- settings: woocommerce -->\n| Key | Type, unit | Default | Meaning |" in printed


def test_served_versions_default_to_every_plug_in_and_unknown_ones_are_refused(
        tmp_path: pathlib.Path) -> None:
    """``ACP_API_VERSIONS`` empty (the default) serves every version plug-in
    registered in ``flask_acp.versions``; a version no plug-in implements, or
    a string that is no version, is a configuration error naming the key."""
    from flask_acp.versions import VERSIONS

    app = build_app(tmp_path / "all")
    assert app.extensions["acp"].settings.api_versions == tuple(sorted(VERSIONS, reverse=True))
    with pytest.raises(RuntimeError, match=r"ACP_API_VERSIONS: \['2099-01-01'\] are not implemented"):
        build_app(tmp_path / "future", ACP_API_VERSIONS=["2099-01-01"])
    with pytest.raises(RuntimeError, match="ACP_API_VERSIONS"):
        build_app(tmp_path / "word", ACP_API_VERSIONS=["latest"])


def test_the_flask_command_line_prints_configuration_errors_without_a_traceback(
        tmp_path: pathlib.Path) -> None:
    """Any app (not only the example): ``flask --app yourapp acp ...`` prints one line per
    problem, each naming the variable set (``FLASK_ACP_*`` through ``from_prefixed_env``), exit 1."""
    (tmp_path / "shop.py").write_text(
        "from flask import Flask\nfrom flask_acp import ACP\n"
        "app = Flask(__name__)\napp.config.from_prefixed_env()\nACP(app)\n", encoding="utf-8")
    root = pathlib.Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "ACP_"))}
    env.update(FLASK_ACP_IDEMPOTENCY_TTL="-5", FLASK_ACP_STRIPE_SECRET_KEY="sk_test_x",
               PYTHONPATH=os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "shop", "acp", "sweep"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0] == "Error: flask-acp configuration is invalid:"
    named = {line.split(":")[0].strip() for line in lines[1:]}
    assert {"ACP_AGENTS", "FLASK_ACP_IDEMPOTENCY_TTL", "ACP_STRIPE_MERCHANT_ID"} <= named, done.stderr
