"""The README's configuration tables, generated from the settings declarations.

Each table sits in ``README.md`` between ``<!-- settings: NAME -->`` and
``<!-- /settings -->`` (``NAME``: a :class:`~flask_acp.config.Section`'s name);
the prose around the tables is the README's own::

    python -m flask_acp.configdoc                     # print every table
    python -m flask_acp.configdoc --write README.md   # rewrite the tables in place
    python -m flask_acp.configdoc --check README.md   # exit 1 when a table is stale

The sections: the core's, Stripe's and those of every installed adapter
(``flask_acp.adapters`` entry points).
"""

from __future__ import annotations

import argparse
import collections.abc as cabc
import json
import pathlib
import re
import sys
import typing as t

from marshmallow import fields
from marshmallow import validate

from .config import CORE_SETTINGS
from .config import Section
from .config import Setting
from .extension import adapter_settings
from .extension import installed_adapters
from .payments.stripe import STRIPE_SETTINGS

HEADER = "| Key | Type, unit | Default | Meaning |\n|---|---|---|---|\n"
_BLOCK = re.compile(r"(<!-- settings: (?P<name>[\w-]+) -->\n)(.*?)(<!-- /settings -->)", re.DOTALL)
#: README type names of marshmallow fields (the first match wins: subclasses first).
_TYPE_NAMES: tuple[tuple[type[fields.Field[t.Any]], str], ...] = (
    (fields.Url, "str, URL"), (fields.String, "str"), (fields.Boolean, "bool"), (fields.Integer, "int"),
    (fields.Float, "float"), (fields.Dict, "dict"), (fields.Nested, "dict"),
)


def sections() -> list[Section[t.Any]]:
    """Every declared section: the core's, Stripe's, then the installed adapters' by name."""
    adapters = [s for s in map(adapter_settings, installed_adapters().values()) if s is not None]
    return [CORE_SETTINGS, STRIPE_SETTINGS, *adapters]


def markdown_table(section: Section[t.Any]) -> str:
    """The section's table: one row per key, in declaration order."""
    rows = (f"| `{s.key}` | {_cell(_type(s))} | {_cell(_default(s))} | {_cell(s.doc)} |\n"
            for s in section.settings())
    return HEADER + "".join(rows)


def update_readme(text: str, found: cabc.Sequence[Section[t.Any]]) -> str:
    """``text`` with the table of every section block replaced by the generated one.

    :raises ValueError: a block names no section, or a section has no block.
    """
    tables = {section.name: markdown_table(section) for section in found}
    seen: set[str] = set()

    def replace(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in tables:
            raise ValueError(f"<!-- settings: {name} --> names no section; sections: {sorted(tables)}")
        seen.add(name)
        return match[1] + tables[name] + match[4]

    updated = _BLOCK.sub(replace, text)
    missing = [name for name in tables if name not in seen]
    if missing:
        raise ValueError(f"no table for the section(s) {missing}: add '<!-- settings: NAME -->' and "
                         "'<!-- /settings -->' lines where each table goes")
    return updated


def _type(declared: Setting) -> str:
    text = _type_name(declared.field)
    if declared.unit:
        text += f", {declared.unit}"
    for v in declared.field.validators:
        if isinstance(v, validate.Range):
            bounds = [f"{'≥' if v.min_inclusive else '>'}{v.min:g}" if v.min is not None else "",
                      f"{'≤' if v.max_inclusive else '<'}{v.max:g}" if v.max is not None else ""]
            text += f" ({', '.join(filter(None, bounds))})"
    return text


def _type_name(field: fields.Field[t.Any]) -> str:
    name = getattr(field, "type_name", None)
    if isinstance(name, str):
        return name
    if isinstance(field, fields.List):
        return f"list[{_type_name(field.inner)}]"
    for cls, text in _TYPE_NAMES:
        if isinstance(field, cls):
            return text
    raise TypeError(f"no README type name for {type(field).__name__}: give the field a type_name")


def _default(declared: Setting) -> str:
    if declared.default_doc is not None:
        return declared.default_doc
    if declared.required:
        return "required"
    value = declared.default
    if isinstance(value, bool) or value is None:
        return f"`{value!r}`"
    if isinstance(value, float):
        return f"`{value:g}`"
    return f"`{json.dumps(value, ensure_ascii=False)}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def main(argv: cabc.Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flask_acp.configdoc",
                                     description="Print the README's configuration tables.")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", metavar="README", help="rewrite the tables of this file in place")
    mode.add_argument("--check", metavar="README", help="exit 1 when this file's tables are stale")
    args = parser.parse_args(argv)
    found = sections()
    if not (args.write or args.check):
        for section in found:
            print(f"<!-- settings: {section.name} -->\n{markdown_table(section)}<!-- /settings -->\n")
        return 0
    path = pathlib.Path(args.write or args.check)
    text = path.read_text(encoding="utf-8")
    updated = update_readme(text, found)
    if args.check:
        if updated != text:
            print(f"{path}: the configuration tables are stale; run "
                  f"python -m flask_acp.configdoc --write {path}", file=sys.stderr)
            return 1
        return 0
    path.write_text(updated, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
