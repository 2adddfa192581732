"""The capture functions name everything with its schema (see _QUALIFIED_NOTE in layouts).

They run with the audit owner's rights under the caller's search_path, so an unqualified
function, operator or type would be looked up where the caller says. This reads the SQL
they are created from, as installed, and fails on any name left to the search path;
tests/attacks/test_search_path.py is the same property attacked through a real server.
"""

from __future__ import annotations

import re

import pytest

from partitioned_audit import ADVANCED, SIMPLE
from partitioned_audit.ddl import create_functions
from partitioned_audit.layouts import PREFIX, Layout
from partitioned_audit.sql import render
from tests.engine_db import connect

#: What runs under the caller's search_path: the capture functions, the helpers they inline,
#: the first step of the check without a guard, which has no SET clause to save its cost
#: on every statement, and the types a row reaches, with none so that it is inlined.
INLINED_HELPERS = ("pk_text", "redact", "context_object", "check_type_owners", "types_reached")
#: Names that look like calls but are SQL syntax, resolved without any search (``assign``
#: is what ``:=`` became above: ``_x bigint := (SELECT ...)`` assigns a subquery).
SYNTAX = set(
    "coalesce exists any over values in row when then else select and or not from join assign as lateral".split()
)
#: Type names that are SQL keywords, always pg_catalog's.
KEYWORD_TYPES = {"boolean", "bigint", "integer"}


def bodies(layout: Layout) -> dict[str, str]:
    conn = connect("postgres")  # the driver renders the literals
    try:
        text = render(create_functions(layout, "audit", '"audit"."seq"'), conn.cursor())
    finally:
        conn.close()
    found = {}
    for match in re.finditer(
        r'CREATE OR REPLACE FUNCTION "audit"\."(\w+)"\((.*?)\$fn\$(.*?)\$fn\$;', text, re.S
    ):
        name, body = match[1], match[3]
        if (
            name in (layout.function, layout.key_function, layout.row_function)
            or name.removeprefix(PREFIX) in INLINED_HELPERS
        ):
            found[name] = body
    assert len(found) == 8, sorted(found)
    return found


def unqualified(body: str) -> list[str]:
    body = re.sub(r"--[^\n]*", "", body)  # comments
    body = re.sub(r"'(?:[^']|'')*'", "''", body)  # string literals
    body = re.sub(r'"audit"\."\w+"\s*\(?', "ours ", body)  # our own objects, qualified by render
    body = re.sub(r"\b\w+\.\*", "row", body)  # t.*
    body = re.sub(r"(?i)\bAS\s+\w+\s*\(", "AS alias ", body)  # AS u(k, o)
    body = re.sub(r"(?i)\b(WITH\s+(?:RECURSIVE\s+)?)\w+\s*\(", r"\1cte ", body)  # WITH RECURSIVE t(oid)
    body = re.sub(r"OPERATOR\(pg_catalog\.[^)\s]+\)", " op ", body)
    body = body.replace(":=", " assign ")
    problems = [f"operator {m}" for m in re.findall(r"->>|->|<>|\|\||\?|<=|>=|[=<>+*/-]", body)]
    problems += [
        f"construct {m}" for m in re.findall(r"(?i)\bIS\s+(?:NOT\s+)?DISTINCT\b|\bNULLIF\b|\bUSING\b", body)
    ]
    for name in re.findall(r"(?<![\w.\"])([A-Za-z_]\w*)\s*\(", body):
        if name.lower() not in SYNTAX and not name.startswith("_"):
            problems.append(f"function {name}")
    for name in re.findall(r"::\s*(?!pg_catalog\.)([A-Za-z_]\w*)", body):
        if name.lower() not in KEYWORD_TYPES:
            problems.append(f"type {name}")
    declarations = body.partition("BEGIN")[0]  # an assignment in the body is no declaration
    for declared in re.findall(r"^\s*_\w+\s+([A-Za-z_][\w.]*)", declarations, re.M):
        if not declared.startswith("pg_catalog.") and declared.lower() not in KEYWORD_TYPES:
            problems.append(f"declared type {declared}")
    return problems


@pytest.mark.parametrize("layout", [SIMPLE, ADVANCED], ids=lambda layout: layout.name)
def test_every_name_the_capture_runs_under_the_callers_search_path_is_qualified(layout):
    found = {name: unqualified(body) for name, body in bodies(layout).items()}
    assert {name: problems for name, problems in found.items() if problems} == {}


def test_the_check_finds_what_it_looks_for():
    body = "DECLARE\n    _a text := left(TG_OP, 1);\nBEGIN\n    IF _a = 'x' AND j ->> k IS DISTINCT FROM y::jsonb THEN"
    assert sorted(unqualified(body)) == sorted(
        [
            "operator =",
            "operator ->>",
            "construct IS DISTINCT",
            "function left",
            "type jsonb",
            "declared type text",
        ]
    )
