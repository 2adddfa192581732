"""Install, upgrade, inspect and remove the audit objects, given a DB-API cursor.

Every function runs inside the caller's transaction and never commits, so an upgrade of
tables, functions and triggers is applied whole or not at all. Each object carries a
version in ``COMMENT ON``; work is only done for what is MISSING or OUTDATED, so running
the same install twice issues nothing but the status query.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import hashlib
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from . import catalog, ddl, layouts, privileges, sealing, upgrade104
from .errors import AuditError, ConfigurationError
from .layouts import ADVANCED, LAYOUTS, LEGACY_TRIGGERS, Layout, TableSpec
from .partitioning.maintenance import LockPolicy, run_with_lock_retries
from .sql import SQL, Composable, Composed, Cursor, execute, ident, literal, render
from .upgrade104 import backfill_pending as backfill_pending


class Status(enum.Enum):
    INSTALLED = "installed"
    OUTDATED = "outdated"
    MISSING = "missing"


#: Every trigger name the engine may have put on a table, whatever the layout.
OUR_TRIGGERS = (*ADVANCED.triggers().values(), layouts.KEY_TRIGGER)


@dataclass(frozen=True)
class LayoutStatus:
    layout: Layout
    schema: str
    status: Status
    table: catalog.TableState


@contextlib.contextmanager
def _maintenance(cursor: Cursor) -> Iterator[None]:
    """Let the engine's own DDL past the guard (see ``ddl.create_guard``)."""
    execute(cursor, ddl.set_maintenance(True))
    try:
        yield
    finally:
        execute(cursor, ddl.set_maintenance(False))


def guard_state(cursor: Cursor) -> tuple[bool, bool]:
    """(the current role is a superuser, the event triggers guarding the capture objects are on)."""
    cursor.execute(
        """
        SELECT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user),
               (SELECT count(*) FROM pg_catalog.pg_event_trigger WHERE evtname = ANY (%s) AND evtenabled <> 'D')
        """,
        [list(layouts.EVENT_TRIGGERS)],
    )
    superuser, found = cursor.fetchone()
    return bool(superuser), int(found) == len(layouts.EVENT_TRIGGERS)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _seq_text(cursor: Cursor, layout: Layout, schema: str) -> str:
    return render(ident(schema, layout.sequence), cursor)


def _create_functions(cursor: Cursor, layout: Layout, schema: str) -> Composable:
    """Every function of ``layout``: capture, helpers and sealing; one digest versions them all."""
    return Composed(
        [
            ddl.create_functions(layout, schema, _seq_text(cursor, layout, schema)),
            sealing.create_functions(layout, schema),
        ]
    )


def _function_digest(cursor: Cursor, layout: Layout, schema: str) -> str:
    return _digest(render(_create_functions(cursor, layout, schema), cursor))


# ---------------------------------------------------------------------------------------
# Deployed definitions: what runs, compared with what this version installs
# ---------------------------------------------------------------------------------------

#: One function as the templates write it (``CREATE OR REPLACE FUNCTION ... AS $fn$...$fn$;``).
_CREATE_FUNCTION = re.compile(
    r"CREATE OR REPLACE FUNCTION (?P<name>\S+?)\((?P<arguments>.*?)\)\s+RETURNS .*?\s+"
    r"LANGUAGE (?P<language>\w+)(?P<options>.*?)\sAS \$fn\$(?P<body>.*?)\$fn\$;",
    re.S,
)
_VOLATILITY = {"IMMUTABLE": "i", "STABLE": "s", "VOLATILE": "v"}
_SET = re.compile(r"\bSET\s+(?P<name>\"[^\"]+\"|\w+)\s*=\s*(?P<value>'[^']*'|.+?)(?=\s+SET\s|\s*$)", re.S)


def _expected_definition(match: re.Match[str]) -> dict[str, object]:
    """The attributes PostgreSQL keeps of a function we create, as ``pg_proc`` shows them.

    PostgreSQL keeps the body (``prosrc``) exactly as written, so it is compared exactly;
    it rewrites the header (argument list, options, settings), so those are compared in its
    form: white space collapsed, settings as ``name=value``.
    """
    options = match["options"]
    words = re.split(r"\bSET\b", options, maxsplit=1)[0].split()
    config = tuple(
        f"{m['name'].strip(chr(34))}={m['value'].strip().strip(chr(39))}" for m in _SET.finditer(options)
    )
    return {
        "arguments": " ".join(match["arguments"].split()),
        "language": match["language"],
        "volatility": next((_VOLATILITY[w] for w in words if w in _VOLATILITY), "v"),
        "parallel": "s" if "PARALLEL" in words and "SAFE" in words else "u",
        "security definer": "SECURITY" in words and "DEFINER" in words,
        "configuration": config,
        "body": match["body"],
    }


#: Says how a deployed attribute differs: (deployed value, expected value) -> the words.
Wording = Callable[[Any, Any], str]


def definition_difference(
    expected: Mapping[str, object],
    deployed: Mapping[str, object] | None,
    wording: Mapping[str, Wording] | None = None,
) -> str | None:
    """How a deployed object differs from the definition this version installs, or None.

    The one comparison of deployed definitions (functions, the seal table's triggers, the
    capture triggers): the first attribute of ``expected``, in its order, whose deployed
    value differs, said by ``wording[attribute]`` where given, else "its <attribute>
    differs"; "it is missing" when nothing is deployed.
    """
    if deployed is None:
        return "it is missing"
    for attribute, value in expected.items():
        have = deployed.get(attribute)
        if have != value:
            say = (wording or {}).get(attribute)
            return say(have, value) if say is not None else f"its {attribute} differs"
    return None


def function_problems(cursor: Cursor, layout: Layout, schema: str = "public") -> dict[str, str]:
    """Each function of ``layout`` whose deployed definition is not the one this version
    installs (replaced, altered, missing, owned by another role), with how it differs.

    Reads ``pg_proc`` itself, not a digest kept in a comment, so ``CREATE OR REPLACE
    FUNCTION`` by whoever may run it is noticed.
    """
    text = render(_create_functions(cursor, layout, schema), cursor)
    names = {render(ident(schema, name), cursor): name for name, _ in layouts.functions(layout)}
    expected: dict[tuple[str, str], dict[str, object]] = {}
    for match in _CREATE_FUNCTION.finditer(text):
        attributes = _expected_definition(match)
        expected[(names[match["name"]], str(attributes.pop("arguments")))] = attributes
    cursor.execute(
        """
        SELECT p.proname::text, pg_catalog.pg_get_function_identity_arguments(p.oid), l.lanname::text,
               p.provolatile::text, p.proparallel::text, p.prosecdef, coalesce(p.proconfig, '{}'), p.prosrc,
               p.proowner OPERATOR(pg_catalog.=) (SELECT c.relowner FROM pg_catalog.pg_class c
                                                   WHERE c.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(%s))
          FROM pg_catalog.pg_proc p
          JOIN pg_catalog.pg_language l ON l.oid OPERATOR(pg_catalog.=) p.prolang
          JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace
         WHERE n.nspname OPERATOR(pg_catalog.=) %s AND p.proname OPERATOR(pg_catalog.=) ANY (%s)
        """,
        [render(ident(schema, layout.table), cursor), schema, sorted({name for name, _ in expected})],
    )
    deployed = {
        (name, arguments): {
            "language": language,
            "volatility": volatility,
            "parallel": parallel,
            "security definer": bool(definer),
            "configuration": tuple(config),
            "body": body,
            "owner": bool(same_owner),
        }
        for name, arguments, language, volatility, parallel, definer, config, body, same_owner in cursor.fetchall()
    }
    problems = {}
    for key, attributes in expected.items():
        if attributes["security definer"]:
            # It runs with its owner's rights: those of the audit table's owner, no other role's.
            attributes = {**attributes, "owner": True}
        problem = definition_difference(attributes, deployed.get(key))
        if problem is not None:
            problems[key[0]] = problem
    return problems


def seal_trigger_problems(cursor: Cursor, layout: Layout, schema: str = "public") -> dict[str, str]:
    """Each trigger keeping the seal table append-only that is missing, not always enabled,
    or calls another function or with other arguments than this version installs."""
    table = render(ident(schema, layout.table), cursor)
    chunks = render(ident(schema, layout.seal_function("chunks")), cursor)
    function = render(ident(schema, sealing.APPEND_ONLY_FUNCTION), cursor)
    expected: dict[str, dict[str, object]] = {
        sealing.APPEND_ONLY_TRIGGER: {
            "function": True,
            "enabling": "A",
            "arguments": (table + "\0" + chunks + "\0").encode().hex(),
        },
        sealing.APPEND_ONLY_TRUNCATE_TRIGGER: {"function": True, "enabling": "A", "arguments": ""},
    }
    cursor.execute(
        """
        SELECT t.tgname::text, t.tgfoid OPERATOR(pg_catalog.=) pg_catalog.to_regprocedure(%s),
               t.tgenabled::text, pg_catalog.encode(t.tgargs, 'hex')
          FROM pg_catalog.pg_trigger t
         WHERE t.tgrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(%s)
        """,
        [function + "()", render(ident(schema, layout.seal_table), cursor)],
    )
    deployed = {
        name: {"function": bool(same), "enabling": enabled, "arguments": arguments}
        for name, same, enabled, arguments in cursor.fetchall()
    }
    problems = {}
    for name, attributes in expected.items():
        problem = definition_difference(attributes, deployed.get(name))
        if problem is not None:
            problems[name] = problem
    return problems


def capture_functions(layout: Layout) -> frozenset[str]:
    """The functions audited writes run: a change to one is a capture problem (E021)."""
    return frozenset(
        {layout.function, layout.key_function, layout.row_function, *(name for name, _ in layouts.HELPERS)}
    )


#: ``pg_trigger.tgtype`` of the trigger refusing writes to a read view: FOR EACH ROW (1),
#: INSERT (4), DELETE (8), UPDATE (16), INSTEAD OF (64).
_VIEW_TRIGGER_TYPE = 1 | 4 | 8 | 16 | 64


def _view_digest(create: str, deployed: str) -> str:
    """What a read view's comment holds: the digest of the ``CREATE VIEW`` this version
    runs and of the definition PostgreSQL keeps for it (``pg_get_viewdef``), read back just
    after. A view replaced later (``CREATE OR REPLACE VIEW`` keeps the comment) shows
    another definition, and a new version's view another statement: either changes it.

    ``pg_get_viewdef`` qualifies the names that are not on the search_path: a connection
    with another search_path than the install's (one that drops ``public`` where the audit
    objects live there) sees the views as changed, and ``migrate`` creates them again."""
    return f"{layouts.COMMENT_TAG} {_digest(create + chr(0) + deployed)}"


def _deployed_views(cursor: Cursor, layout: Layout, schema: str) -> dict[str, tuple[str, str | None, bool]]:
    """Each read view of ``layout`` that exists: its definition, its comment and whether
    the trigger refusing writes is on it."""
    cursor.execute(
        """
        SELECT c.relname::text, pg_catalog.pg_get_viewdef(c.oid), pg_catalog.obj_description(c.oid, 'pg_class'),
               EXISTS (SELECT FROM pg_catalog.pg_trigger t
                        WHERE t.tgrelid OPERATOR(pg_catalog.=) c.oid AND t.tgname OPERATOR(pg_catalog.=) %s
                          AND t.tgtype OPERATOR(pg_catalog.=) %s
                          AND t.tgfoid OPERATOR(pg_catalog.=) pg_catalog.to_regprocedure(%s))
          FROM pg_catalog.pg_class c
          JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
         WHERE n.nspname OPERATOR(pg_catalog.=) %s AND c.relname OPERATOR(pg_catalog.=) ANY (%s)
           AND c.relkind OPERATOR(pg_catalog.=) 'v'
        """,
        [
            layouts.VIEW_TRIGGER,
            _VIEW_TRIGGER_TYPE,
            render(ident(schema, layouts.REFUSE_WRITE), cursor) + "()",
            schema,
            list(layout.views),
        ],
    )
    return {
        name: (definition, comment, bool(guarded)) for name, definition, comment, guarded in cursor.fetchall()
    }


def view_problems(cursor: Cursor, layout: Layout, schema: str = "public") -> dict[str, str]:
    """Each read view of ``layout`` that is missing, whose definition is not the one this
    version creates (replaced, or made by an older version), or that lost the trigger
    refusing writes, with what is wrong; and the same of the read functions returning
    the read view's rows (``layout.read_functions``), by name.

    The view rows written before the context table need (see :func:`ddl.create_view`)
    is as good as the plain one where there are none, so either is accepted.
    """
    deployed = _deployed_views(cursor, layout, schema)
    expected = [
        {
            name: render(create, cursor)
            for name, create in ddl.view_definitions(layout, schema, legacy).items()
        }
        for legacy in (False, True)
    ]
    problems = {}
    for name in layout.views:
        if name not in deployed:
            problems[name] = "it is missing"
            continue
        definition, comment, guarded = deployed[name]
        if comment not in {_view_digest(creates[name], definition) for creates in expected}:
            problems[name] = "its definition differs"
        elif not guarded:
            problems[name] = f"its trigger {layouts.VIEW_TRIGGER} refusing writes is missing"
    functions = _deployed_read_functions(cursor, layout, schema)
    for name, _, _ in layout.read_functions:
        if name not in functions:
            problems[name] = "it is missing"
        elif functions[name][1] != _view_digest(
            render(ddl.create_read_function(layout, schema, name), cursor), functions[name][0]
        ):
            problems[name] = "its definition differs"
    return problems


def _deployed_read_functions(
    cursor: Cursor, layout: Layout, schema: str
) -> dict[str, tuple[str, str | None]]:
    """The definition (``pg_get_functiondef``) and the comment of each read function of
    ``layout`` (:func:`ddl.create_read_function`) that exists, by name: one query."""
    names = [name for name, _, _ in layout.read_functions]
    signatures = [
        render(ident(schema, name), cursor) + f"({arguments})" for name, arguments, _ in layout.read_functions
    ]
    cursor.execute(
        "SELECT f.name, pg_catalog.pg_get_functiondef(p.oid), pg_catalog.obj_description(p.oid, 'pg_proc')"
        "  FROM ROWS FROM (pg_catalog.unnest(%s::text[]), pg_catalog.unnest(%s::text[])) AS f(name, signature)"
        "  JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) pg_catalog.to_regprocedure(f.signature)",
        [names, signatures],
    )
    return {name: (definition, comment) for name, definition, comment in cursor.fetchall()}


def _comment_views(cursor: Cursor, layout: Layout, schema: str, legacy: bool) -> None:
    """Record in each read view's comment what :func:`view_problems` compares."""
    deployed = _deployed_views(cursor, layout, schema)
    for name, create in ddl.view_definitions(layout, schema, legacy).items():
        comment = _view_digest(render(create, cursor), deployed[name][0])
        execute(cursor, SQL("COMMENT ON VIEW {} IS {}").format(ident(schema, name), literal(comment)))
    functions = _deployed_read_functions(cursor, layout, schema)
    for name, arguments, _ in layout.read_functions:
        if name in functions:  # created with the views
            comment = _view_digest(
                render(ddl.create_read_function(layout, schema, name), cursor), functions[name][0]
            )
            execute(
                cursor,
                SQL("COMMENT ON FUNCTION {}({}) IS {}").format(
                    ident(schema, name), SQL(arguments), literal(comment)
                ),
            )


def layout_status(
    cursor: Cursor, layout: Layout, schema: str = "public", gin_index: bool = False
) -> LayoutStatus:
    """Report whether ``layout``'s objects in ``schema`` are INSTALLED, OUTDATED or MISSING."""
    state = catalog.table_state(cursor, schema, layout.table, layout.function)
    if not state.exists:
        status = Status.MISSING
    elif (
        state.comment == layouts.table_comment(layout)
        # (a column a later release added: install adds it, see upgrade104.ADDED_COLUMNS)
        and all(name in state.column_types for name in layout.table_columns)
        and state.function_comment == f"{layouts.COMMENT_TAG} {_function_digest(cursor, layout, schema)}"
        and not function_problems(cursor, layout, schema)
        and not seal_trigger_problems(cursor, layout, schema)
        and not view_problems(cursor, layout, schema)
        and not context_storage_problems(cursor, layout, schema)
        and {layout.context_id_index, layout.event_index} <= state.indexes
        and (not layout.has_payload_gin or (layouts.SIMPLE_GIN_INDEX in state.indexes) == gin_index)
        and (
            sealing.FREEZE_TRIGGERS <= state.seal_triggers
            # sealing starts once a 1.0.4 upgrade has finished: backfill() adds them then
            or backfill_pending(cursor, layout, schema)
        )
    ):
        status = Status.INSTALLED
    else:
        status = Status.OUTDATED
    return LayoutStatus(layout, schema, status, state)


def context_storage_problems(cursor: Cursor, layout: Layout, schema: str = "public") -> list[str]:
    """The context table's partitions without :data:`ddl.CONTEXT_STORAGE` (made by a
    version before it, or reset by hand), by name; :func:`install` sets it on them."""
    cursor.execute(
        """
        SELECT c.relname::text
          FROM pg_catalog.pg_partition_tree(pg_catalog.to_regclass(%s)) AS t
          JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) t.relid
         WHERE t.isleaf
           AND NOT (COALESCE(c.reloptions, '{}') OPERATOR(pg_catalog.@>) %s::text[])
         ORDER BY 1
        """,
        [render(ident(schema, layout.context_table), cursor), list(ddl.CONTEXT_RELOPTIONS)],
    )
    return [name for (name,) in cursor.fetchall()]


def _context_storage(cursor: Cursor, layout: Layout, schema: str) -> None:
    """Give every context partition :data:`ddl.CONTEXT_STORAGE` (see
    :func:`ddl.set_context_storage` for its lock, which writers do not wait for)."""
    for name in context_storage_problems(cursor, layout, schema):
        execute(cursor, ddl.set_context_storage(schema, name))


def install(cursor: Cursor, layout: Layout, schema: str = "public", gin_index: bool = False) -> Status:
    """Create or upgrade ``layout``'s objects (see :func:`_install`); where the installing
    role is a superuser, also the event triggers that guard the capture objects."""
    superuser, guarded = guard_state(cursor)
    found = layout_status(cursor, layout, schema, gin_index).status
    if found is Status.INSTALLED and (guarded or not superuser):
        return found
    with _maintenance(cursor):
        status = _install(cursor, layout, schema, gin_index)
        if superuser:
            for statement in ddl.create_guard(schema):
                execute(cursor, statement)
    return status


def _install(cursor: Cursor, layout: Layout, schema: str = "public", gin_index: bool = False) -> Status:
    """Create or upgrade ``layout``'s table, default partition, indexes, view and functions.

    A table left by 1.0.4 is upgraded in place: hstore columns become jsonb, 2.0's columns
    are added, and tables still audited by 1.0.4's triggers get the new triggers.

    Args:
        cursor: a cursor on the target database, inside a transaction.
        layout: :data:`layouts.SIMPLE` or :data:`layouts.ADVANCED`.
        schema: where the audit objects live.
        gin_index: simple layout only: keep a GIN index on the whole payload.

    Returns:
        The status found before the call: nothing was done when it is INSTALLED.
    """
    found = layout_status(cursor, layout, schema, gin_index)
    if found.status is Status.INSTALLED:
        return found.status

    seq_text = _seq_text(cursor, layout, schema)
    # The views are dropped and created again: the roles that read them keep doing so.
    readers = privileges.view_readers(cursor, schema, layout.views) if found.table.exists else []
    statements: list[Composable] = []
    if schema != "public":
        statements.append(ddl.create_schema(schema))
    statements.append(ddl.create_sequence(layout, schema))
    if not found.table.exists:
        statements.append(ddl.create_table(layout, schema, seq_text))
    else:
        statements.extend(ddl.drop_views(layout, schema))
        statements.extend(upgrade104.table_statements(layout, schema, found.table.column_types, seq_text))
    if not found.table.exists:
        statements.append(ddl.create_default_partition(layout, schema))
        statements.extend(ddl.create_indexes(layout, schema))
    else:
        # The table holds rows: a missing index is declared on the parent alone, a catalog
        # change (the DEFAULT partition, created after it if missing, gets its own at
        # once); build_indexes() then builds it partition by partition, writers going on.
        statements.extend(
            ddl.create_parent_index(layout, schema, spec)
            for spec in ddl.trail_indexes(layout, gin_index)
            if spec.name not in found.table.indexes
        )
        statements.append(ddl.drop_event_brin(layout, schema))
        statements.append(ddl.create_default_partition(layout, schema))
    statements.extend(
        ddl.create_context_table(layout, schema, render(ident(schema, layout.context_sequence), cursor))
    )
    if layout.has_payload_gin and not (found.table.exists and gin_index):
        statements.append(ddl.gin_index(schema, gin_index))
    statements.extend(sealing.create_tables(layout, schema))
    functions = _create_functions(cursor, layout, schema)
    statements.append(functions)
    statements.extend(sealing.create_append_only(layout, schema))
    statements.append(ddl.comment_function(layout, schema, _digest(render(functions, cursor))))
    statements.extend(ddl.protect_context_table(layout, schema))  # its triggers call a helper
    legacy = found.table.exists and _legacy_contexts(cursor, layout, schema)
    statements.extend(ddl.create_view(layout, schema, legacy))  # its trigger calls a helper
    statements.extend(ddl.protect_table(layout, schema))
    statements.append(ddl.comment_table(layout, schema))
    for statement in statements:
        execute(cursor, statement)
    _comment_views(cursor, layout, schema, legacy)
    privileges.grant_view_readers(cursor, schema, layout.views, readers)
    privileges.grant_read_functions(cursor, layout, schema, readers)

    if not backfill_pending(cursor, layout, schema):
        for statement in sealing.create_freeze(layout, schema):
            execute(cursor, statement)
    if found.table.exists:
        _replace_legacy_triggers(cursor, layout, schema)
    if found.table.exists and not (found.table.comment or "").startswith(layouts.COMMENT_TAG):
        # Only a table 1.0.4 made carries no comment of ours: its partitions are adopted
        # once, at this upgrade. On any later reinstall an uncommented partition is somebody
        # else's, and retention must never touch it.
        upgrade104.adopt_partitions(cursor, layout, schema)
    if found.table.exists:
        _context_partitions(cursor, layout, schema)
    _context_storage(cursor, layout, schema)
    return found.status


def _context_partitions(cursor: Cursor, layout: Layout, schema: str) -> None:
    """Give the context table a partition beside each audit partition made before it."""
    for row in catalog.partitions(cursor, schema, layout.table):
        if row.is_default or row.lower is None or row.upper is None:
            continue
        name = layout.context_partition(row.name)
        if catalog.existing_tables(cursor, [(schema, name)]):
            continue
        for statement in ddl.create_context_partition(layout, schema, row.name, row.lower, row.upper):
            execute(cursor, statement)
        privileges.match_parent(cursor, schema, name, layout.context_table)


def _legacy_contexts(cursor: Cursor, layout: Layout, schema: str) -> bool:
    """Whether the table holds rows written before the context table that carry a context
    (their statement's first row holds it: the partial head index finds one at once)."""
    cursor.execute(
        "SELECT to_regclass(%s) IS NOT NULL",
        [render(ident(schema, layout.context_head_index), cursor)],
    )
    if not cursor.fetchone()[0]:
        return False
    execute(cursor, ddl.has_legacy_contexts(layout, schema))
    return bool(cursor.fetchone()[0])


def backfill(connection: Any, layout: Layout, schema: str = "public", pages: int = 1000) -> int:
    """Finish the upgrade of a 1.0.4 table: number its rows (simple layout) and convert its
    hstore values to jsonb (advanced), ``pages`` heap pages per statement, partitions in
    time order. Returns how many rows were changed.

    On a connection in autocommit mode every batch is a transaction of its own, holding
    row locks on rows no writer touches, so audited writes go on meanwhile. Safe to stop
    and run again: it resumes where it stopped, the old rows' ids still 1..n, and removes
    its markers when done.

    Raises:
        AuditError: another run on the table holds the lock (one at a time), or numbering
            reached the ids of rows written since the upgrade (run it again to resume).
    """
    cursor = connection.cursor()
    done = upgrade104.finish(cursor, layout, schema, pages)
    if done is None:
        return 0
    # Sealing may start now: every row has its final number and values.
    with _maintenance(cursor):
        for statement in sealing.create_freeze(layout, schema):
            execute(cursor, statement)
    return done


def indexes_pending(cursor: Cursor, layout: Layout, schema: str = "public") -> list[str]:
    """The audit table's indexes an upgrade declared and :func:`build_indexes` has not
    finished yet (INVALID: some partition lacks its index), by name. Only the engine's own
    indexes count: an index someone else left INVALID is theirs to mend."""
    cursor.execute(
        """
        SELECT i.relname::text
          FROM pg_catalog.pg_index x
          JOIN pg_catalog.pg_class i ON i.oid OPERATOR(pg_catalog.=) x.indexrelid
         WHERE x.indrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(%s) AND NOT x.indisvalid
           AND i.relname OPERATOR(pg_catalog.=) ANY (%s)
         ORDER BY 1
        """,
        [
            render(ident(schema, layout.table), cursor),
            [spec.name for spec in ddl.trail_indexes(layout, gin_index=True)],
        ],
    )
    return [name for (name,) in cursor.fetchall()]


@dataclass(frozen=True)
class IndexBuild:
    """What :func:`build_indexes` did."""

    #: The partition indexes built, by name.
    built: list[str]
    #: INVALID partition indexes a stopped build had left, dropped and built again.
    rebuilt: list[str]
    #: The audit table's indexes that became valid.
    completed: list[str]


def _partitions_lacking(cursor: Cursor, layout: Layout, schema: str, index: str) -> list[tuple[str, str]]:
    """The partitions (schema, name) of the audit table with no index attached to ``index``,
    DEFAULT partition last, the others in time order."""
    cursor.execute(
        """
        SELECT n.nspname::text, c.relname::text
          FROM pg_catalog.pg_inherits h
          JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) h.inhrelid
          JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
         WHERE h.inhparent OPERATOR(pg_catalog.=) pg_catalog.to_regclass(%s)
           AND NOT h.inhdetachpending
           AND NOT EXISTS (
                 SELECT FROM pg_catalog.pg_index x
                   JOIN pg_catalog.pg_inherits hi ON hi.inhrelid OPERATOR(pg_catalog.=) x.indexrelid
                  WHERE x.indrelid OPERATOR(pg_catalog.=) c.oid
                    AND hi.inhparent OPERATOR(pg_catalog.=) pg_catalog.to_regclass(%s))
         ORDER BY pg_catalog.pg_get_expr(c.relpartbound, c.oid) OPERATOR(pg_catalog.=) 'DEFAULT',
                  pg_catalog.pg_get_expr(c.relpartbound, c.oid), c.relname
        """,
        [render(ident(schema, layout.table), cursor), render(ident(schema, index), cursor)],
    )
    return [(row[0], row[1]) for row in cursor.fetchall()]


def _index_found(cursor: Cursor, schema: str, name: str, table: str) -> tuple[bool, bool] | None:
    """(it indexes ``schema.table``, it is valid) for the index ``schema.name``, or None."""
    cursor.execute(
        """
        SELECT x.indrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(%s), x.indisvalid
          FROM pg_catalog.pg_index x
         WHERE x.indexrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(%s)
        """,
        [render(ident(schema, table), cursor), render(ident(schema, name), cursor)],
    )
    row = cursor.fetchone()
    return None if row is None else (bool(row[0]), bool(row[1]))


def _attach(connection: Any, statement: Composable, policy: LockPolicy, sleep: Any) -> None:
    """Run ``statement`` in a transaction of its own under ``lock_timeout``, retried after a
    pause while a long transaction holds the partition: it never queues writers behind it
    for longer than the timeout."""

    def give_up(cursor: Cursor) -> AuditError:
        return AuditError(
            f"{render(statement, cursor)} could not get its lock within {policy.lock_timeout_ms} ms "
            f"in {policy.attempts} attempts (a long transaction writes to that partition); the "
            "index is built, run this again later to attach it"
        )

    run_with_lock_retries(connection, policy, lambda cursor: execute(cursor, statement), give_up, sleep)


def build_indexes(
    connection: Any,
    layout: Layout,
    schema: str = "public",
    policy: LockPolicy | None = None,
    sleep: Any = time.sleep,
) -> IndexBuild:
    """Finish the indexes an upgrade declared on the audit table (see
    :func:`indexes_pending`) without blocking audited writes.

    For each, partition by partition (DEFAULT partition included): ``CREATE INDEX
    CONCURRENTLY`` on the partition, then ``ALTER INDEX ... ATTACH PARTITION`` under
    ``lock_timeout`` (``policy``); the parent index becomes valid with its last partition.
    Partitions created meanwhile come with their index already. An INVALID index a stopped
    run left on a partition is dropped (``CONCURRENTLY``) and built again. Safe to stop and
    run again; a second run while one is going returns at once, having done nothing.

    Args:
        connection: a DB-API connection in autocommit mode (``CONCURRENTLY`` runs outside a
            transaction block).

    Returns:
        What was built, rebuilt and completed.

    Raises:
        ConfigurationError: the connection is inside a transaction (not in autocommit mode).
        AuditError: another table's index holds a partition index's name, or a partition's
            index could not be attached within ``policy``'s attempts.
    """
    if not getattr(connection, "autocommit", False):
        raise ConfigurationError(
            "build_indexes() needs a connection in autocommit mode: CREATE INDEX CONCURRENTLY "
            "cannot run inside a transaction block"
        )
    policy = policy or LockPolicy()
    cursor = connection.cursor()
    result = IndexBuild([], [], [])
    pending = indexes_pending(cursor, layout, schema)
    if not pending:
        return result
    lock = f"{layouts.COMMENT_TAG}:{schema}.{layout.table}:indexes"
    cursor.execute("SELECT pg_try_advisory_lock(hashtext(%s))", [lock])
    if not cursor.fetchone()[0]:
        return result  # another run builds them
    try:
        specs = {spec.name: spec for spec in ddl.trail_indexes(layout, gin_index=True)}
        for index in pending:
            spec = specs[index]
            for partition in _partitions_lacking(cursor, layout, schema, index):
                _build_one(connection, cursor, layout, schema, index, spec, partition, policy, sleep, result)
            if index not in indexes_pending(cursor, layout, schema):
                result.completed.append(index)
    finally:
        # A connection lost half way has released the lock with it: keep the first error.
        with contextlib.suppress(Exception):
            cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", [lock])
    return result


def _build_one(
    connection: Any,
    cursor: Cursor,
    layout: Layout,
    schema: str,
    index: str,
    spec: ddl.IndexSpec,
    partition: tuple[str, str],
    policy: LockPolicy,
    sleep: Any,
    result: IndexBuild,
) -> None:
    """Build ``spec`` on one partition and attach it to the audit table's ``index``."""
    part_schema, part_name = partition
    name = ddl.partition_index_name(part_name, spec, layout.table)
    found = _index_found(cursor, part_schema, name, part_name)
    if found is not None and not found[0]:
        raise AuditError(
            f"cannot build index {part_schema}.{name} on partition {part_schema}.{part_name}: an index "
            "of another table has that name; rename or drop it, then run this again"
        )
    if found is not None and not found[1]:
        # A build stopped half way (cancelled, timed out, the server restarted) left it INVALID.
        execute(cursor, ddl.drop_index_concurrently(part_schema, name))
        result.rebuilt.append(name)
        found = None
    if found is None:
        execute(cursor, ddl.create_partition_index(part_schema, part_name, name, spec))
        result.built.append(name)
    # A partition attached since it was listed came with an index of its own already, and
    # a second one cannot be attached: look again right before attaching.
    if partition in _partitions_lacking(cursor, layout, schema, index):
        _attach(connection, ddl.attach_partition_index(schema, index, part_schema, name), policy, sleep)


def _replace_legacy_triggers(cursor: Cursor, layout: Layout, schema: str) -> None:
    """Tables audited by 1.0.4 keep being audited, by the new triggers; one without a
    primary key is recorded whole, with ``object_pk`` NULL."""
    legacy = [t for t in catalog.audit_triggers(cursor) if t.name in LEGACY_TRIGGERS]
    for table_schema, table in sorted({(t.schema, t.table) for t in legacy}):
        pk = catalog.primary_key(cursor, table_schema, table)
        enable(cursor, layout, TableSpec(table_schema, table, pk), schema=schema)
    upgrade104.drop_legacy_functions(cursor, schema)


def trigger_digest(
    cursor: Cursor, layout: Layout, schema: str, spec: TableSpec, partition: tuple[str, str] | None = None
) -> str:
    statements = ddl.create_triggers(layout, schema, spec, partition)
    return _digest(" ".join(render(s, cursor) for s in statements))


Partitions = dict[tuple[str, str], list[tuple[str, str]]]


@dataclass(frozen=True)
class TableFacts:
    """What installing triggers reads from the catalog, read once for many tables."""

    triggers: list[catalog.TriggerInfo]
    partitions: Partitions
    trusted_types: dict[tuple[str, str], bool]
    #: The virtual generated columns of each table (PostgreSQL 18), left out of the trail.
    virtual: dict[tuple[str, str], tuple[str, ...]] = dataclasses.field(default_factory=dict)
    #: Whether the guard's event triggers are on (see ``TableSpec.guarded``).
    guarded: bool = False


def table_facts(cursor: Cursor, layout: Layout, schema: str, tables: Iterable[tuple[str, str]]) -> TableFacts:
    """The triggers, partitions, type ownership and virtual columns of ``tables``, and
    whether the guard is on, in five queries."""
    tables = list(tables)
    function = render(SQL("{}()").format(ident(schema, layout.function)), cursor)
    return TableFacts(
        catalog.audit_triggers(cursor),
        catalog.partitions_of(cursor, tables),
        catalog.trusted_types(cursor, tables, function),
        catalog.virtual_columns(cursor, tables),
        guard_state(cursor)[1],
    )


def _facts(
    cursor: Cursor, layout: Layout, schema: str, table: tuple[str, str], facts: TableFacts | None
) -> TableFacts:
    if facts is None or table not in facts.partitions:
        return table_facts(cursor, layout, schema, [table])
    return facts


def _targets(table: tuple[str, str], facts: TableFacts) -> list[tuple[str, str] | None]:
    """Where a table's triggers go: the table itself (None) and each of its partitions."""
    return [None, *facts.partitions[table]]


def _on(existing: Iterable[catalog.TriggerInfo], table: tuple[str, str]) -> dict[str, catalog.TriggerInfo]:
    return {t.name: t for t in existing if (t.schema, t.table) == table}


def _as_found(spec: TableSpec, facts: TableFacts) -> TableSpec:
    """``spec`` with what the catalog says about its types, its virtual columns and the guard.

    A table with partitions keeps statement-level capture whatever ``spec.row_level`` asks:
    PostgreSQL turns an UPDATE that moves a row to another partition into a DELETE and an
    INSERT for row triggers (no AFTER UPDATE row trigger fires), while the parent's
    transition tables see it as the UPDATE it is.
    """
    table = (spec.schema, spec.table)
    return dataclasses.replace(
        spec,
        trusted_types=facts.trusted_types.get(table, False),
        virtual=facts.virtual.get(table, ()),
        guarded=facts.guarded,
        row_level=spec.row_level and not facts.partitions.get(table),
    )


def enable(
    cursor: Cursor,
    layout: Layout,
    spec: TableSpec,
    schema: str = "public",
    facts: TableFacts | None = None,
) -> bool:
    """Install the capture triggers on one table and on each of its partitions, replacing
    older or other-layout ones.

    A trigger that was disabled (or set to fire only on a replica or origin) is recreated.
    Partitions attached later get theirs at the next call (``migrate``); until then the
    database check ``E021`` reports them. ``spec.trusted_types``, ``spec.virtual`` and
    ``spec.guarded`` are taken from the catalog.

    Args:
        facts: from :func:`table_facts` for many tables at once, to save three queries
            per table.

    Returns:
        True if triggers were (re)created, False if they were already current.
    """
    facts = _facts(cursor, layout, schema, (spec.schema, spec.table), facts)
    spec = _as_found(spec, facts)
    changed = False
    for partition in _targets((spec.schema, spec.table), facts):
        table = partition or (spec.schema, spec.table)
        wanted = ddl.trigger_definitions(layout, schema, spec, partition)
        on_table = _on(facts.triggers, table)
        digest = trigger_digest(cursor, layout, schema, spec, partition)
        if set(on_table) == set(wanted) and all(
            t.digest == digest and trigger_difference(t, wanted[t.name]) is None for t in on_table.values()
        ):
            continue
        with _maintenance(cursor):
            for name in (*OUR_TRIGGERS, *LEGACY_TRIGGERS):
                if name in on_table:
                    execute(cursor, ddl.drop_trigger(name, *table))
            for statement in ddl.create_triggers(layout, schema, spec, partition):
                execute(cursor, statement)
            for name in wanted:
                execute(cursor, ddl.comment_trigger(name, table, digest))
        # Default privileges may have granted ALL on the table when it was created.
        privileges.close_audited_table(cursor, *table)
        changed = True
    return changed


_NOT_FIRING = {
    "D": "disabled (ALTER TABLE ... DISABLE TRIGGER): it never fires",
    "O": "enabled for origin sessions only: it skips sessions with session_replication_role = replica",
    "R": "enabled on replicas only: it skips ordinary sessions",
}


def _describe_type(tgtype: int) -> str:
    timing = (
        "INSTEAD OF"
        if tgtype & ddl.TRIGGER_TYPE_INSTEAD
        else "BEFORE"
        if tgtype & ddl.TRIGGER_TYPE_BEFORE
        else "AFTER"
    )
    events = " OR ".join(op for op, bit in ddl.TRIGGER_EVENTS.items() if tgtype & bit) or "nothing"
    level = "ROW" if tgtype & ddl.TRIGGER_TYPE_ROW else "STATEMENT"
    return f"{timing} {events} FOR EACH {level}"


def _trigger_attributes(definition: ddl.TriggerDefinition) -> dict[str, object]:
    """What a trigger does, in the order its differences are reported (see ``_TRIGGER_WORDING``)."""
    return {
        "function": definition.function,
        "type": definition.type,
        "columns": definition.columns,
        "transition tables": (definition.old_table, definition.new_table),
        "args": definition.args,
        "condition": definition.condition,
        "enabled": definition.enabled,
    }


#: How a capture trigger that differs is described, attribute by attribute: "replaced: ..."
#: when it does something else, else how it fails to fire in every session.
_TRIGGER_WORDING: dict[str, Wording] = {
    "function": lambda have, want: (
        f"replaced: it executes {have[0]}.{have[1]}() instead of {want[0]}.{want[1]}()"
    ),
    "type": lambda have, want: f"replaced: it fires {_describe_type(have)} instead of {_describe_type(want)}",
    "columns": lambda have, want: "replaced: it fires only for an UPDATE naming some columns (UPDATE OF)",
    "transition tables": lambda have, want: (
        f"replaced: its transition tables are (old {have[0]}, new {have[1]}) instead of "
        f"(old {want[0]}, new {want[1]})"
    ),
    "args": lambda have, want: f"replaced: its arguments are {list(have)} instead of {list(want)}",
    "condition": lambda have, want: f"replaced: its WHEN condition is {have} instead of {want}",
    "enabled": lambda have, want: _NOT_FIRING.get(have, f"enabled as {have!r}"),
}


def trigger_difference(found: catalog.TriggerInfo, wanted: ddl.TriggerDefinition) -> str | None:
    """How the deployed trigger ``found`` differs from ``wanted`` (from
    :func:`ddl.trigger_definitions`), or None when it does the same.

    The whole definition counts, never the name: the function it executes, its level,
    timing and events, ``UPDATE OF`` columns, transition tables, arguments, WHEN condition
    and enabled state, compared by :func:`definition_difference`. Returns ``"replaced: ..."``
    for the first difference in what it does, else how it fails to fire in every session
    (see ``_NOT_FIRING``).
    """
    if found.definition is None:
        return "replaced: its definition could not be read"
    return definition_difference(
        _trigger_attributes(wanted), _trigger_attributes(found.definition), _TRIGGER_WORDING
    )


def _capture_functions(schema: str) -> set[tuple[str, str]]:
    return {
        (schema, f)
        for layout in LAYOUTS.values()
        for f in (layout.function, layout.key_function, layout.row_function)
    }


def trigger_problems(
    cursor: Cursor, layout: Layout, schema: str, specs: Iterable[TableSpec]
) -> list[tuple[TableSpec, str]]:
    """What keeps each of ``specs``' tables (and their partitions) from being audited as
    installed: a capture trigger missing, replaced by one that does something else (see
    :func:`trigger_difference`), not firing in every session, or outdated (a column or type
    changed since, say). Empty when all is well. ``enable()`` repairs each of these;
    ``migrate`` calls it for every registered model.
    """
    specs = list(specs)
    facts = table_facts(cursor, layout, schema, [(spec.schema, spec.table) for spec in specs])
    ours = _capture_functions(schema)
    problems: list[tuple[TableSpec, str]] = []
    for spec in specs:
        found_spec = _as_found(spec, facts)
        for partition in _targets((spec.schema, spec.table), facts):
            on_table = _on(facts.triggers, partition or (spec.schema, spec.table))
            where = f" on partition {partition[0]}.{partition[1]}" if partition else ""
            digest = trigger_digest(cursor, layout, schema, found_spec, partition)
            wanted = ddl.trigger_definitions(layout, schema, found_spec, partition)
            for operation, name in ddl.trigger_names(layout, found_spec, partition).items():
                found = on_table.get(name)
                if found is None:
                    problems.append(
                        (spec, f"capture trigger {name} is missing{where}: {operation} is not audited")
                    )
                    continue
                difference = trigger_difference(found, wanted[name])
                legitimate = found.definition is not None and found.definition.function in ours
                if difference and difference.startswith("replaced") and legitimate and found.digest != digest:
                    # Made by the engine for another spec, version or layout: migrate's to redo.
                    difference = None
                if difference is not None:
                    problems.append((spec, f"capture trigger {name}{where} is {difference}"))
                elif found.digest != digest or not legitimate:
                    problems.append(
                        (spec, f"capture trigger {name}{where} is outdated or belongs to another layout")
                    )
    return problems


def disable(cursor: Cursor, table_schema: str, table: str, facts: TableFacts | None = None) -> bool:
    """Remove every audit trigger (ours or 1.0.4's) from one table and its partitions.

    Returns True if any was dropped.
    """
    if facts is None or (table_schema, table) not in facts.partitions:
        facts = TableFacts(
            catalog.audit_triggers(cursor), catalog.partitions_of(cursor, [(table_schema, table)]), {}
        )
    found = [
        (name, target)
        for partition in _targets((table_schema, table), facts)
        for target in [partition or (table_schema, table)]
        for name in _on(facts.triggers, target)
    ]
    if found:
        with _maintenance(cursor):
            for name, target in found:
                execute(cursor, ddl.drop_trigger(name, *target))
    return bool(found)


def uninstall(cursor: Cursor, layout: Layout, schema: str = "public", drop_data: bool = False) -> None:
    """Remove the triggers from every table, then the functions; the audit table only if ``drop_data``."""
    with _maintenance(cursor):
        _uninstall(cursor, layout, schema, drop_data)


def _uninstall(cursor: Cursor, layout: Layout, schema: str, drop_data: bool) -> None:
    for trigger in catalog.audit_triggers(cursor):
        execute(cursor, ddl.drop_trigger(trigger.name, trigger.schema, trigger.table))
    for function in (layout.function, layout.key_function, layout.row_function):
        execute(cursor, SQL("DROP FUNCTION IF EXISTS {}()").format(ident(schema, function)))
    for which, args in layouts.SEAL_FUNCTIONS:
        # CASCADE: the freeze triggers go with their function.
        execute(
            cursor,
            SQL("DROP FUNCTION IF EXISTS {}({}) CASCADE").format(
                ident(schema, layout.seal_function(which)), SQL(args)
            ),
        )
    if not any(
        catalog.table_state(cursor, schema, other.table, other.function).function_comment
        for other in LAYOUTS.values()
        if other is not layout
    ):
        if guard_state(cursor)[0]:  # the guard goes with the last layout (a superuser made it)
            execute(
                cursor,
                SQL("DROP FUNCTION IF EXISTS {}() CASCADE").format(ident(schema, layouts.GUARD_FUNCTION)),
            )
            for name, args in layouts.GUARD_HELPERS:
                execute(cursor, SQL("DROP FUNCTION IF EXISTS {}({})").format(ident(schema, name), SQL(args)))
        for name, args in (*layouts.HELPERS, *layouts.SEAL_HELPERS):
            # CASCADE: a view kept with its rows loses the trigger that refused writes to it.
            execute(
                cursor, SQL("DROP FUNCTION IF EXISTS {}({}) CASCADE").format(ident(schema, name), SQL(args))
            )
    if drop_data:
        for statement in ddl.drop_views(layout, schema):
            execute(cursor, statement)
        execute(cursor, SQL("DROP TABLE IF EXISTS {} CASCADE").format(ident(schema, layout.table)))
        execute(cursor, SQL("DROP TABLE IF EXISTS {} CASCADE").format(ident(schema, layout.context_table)))
        for table in (layout.seal_table, layout.mark_table):
            execute(cursor, SQL("DROP TABLE IF EXISTS {}").format(ident(schema, table)))
        # A detached partition is kept with its rows, but its id default still draws from
        # the sequence, which could then not be dropped: it loses the default instead.
        for sequence in (layout.sequence, layout.context_sequence):
            for table, column in catalog.detached_defaults(
                cursor, schema, sequence, layouts.DETACHED_COMMENT
            ):
                execute(
                    cursor,
                    SQL("ALTER TABLE {} ALTER COLUMN {} DROP DEFAULT").format(
                        ident(schema, table), ident(column)
                    ),
                )
            execute(cursor, SQL("DROP SEQUENCE IF EXISTS {}").format(ident(schema, sequence)))


@dataclass(frozen=True)
class KeptTable:
    """The table of a layout that is not the active one, kept with its rows."""

    layout: Layout
    schema: str
    partitions: int
    has_rows: bool
    #: Triggers that still write to it (none once ``enable()`` moved them all).
    writers: int


def kept_tables(cursor: Cursor, active: Layout, schema: str = "public") -> list[KeptTable]:
    """The audit tables of the other layouts that exist in ``schema``: after a switch of
    layout their rows stay, readable through their views, and nothing writes to them."""
    found = []
    for layout in LAYOUTS.values():
        if layout is active or not catalog.table_state(cursor, schema, layout.table, layout.function).exists:
            continue
        parts = catalog.partitions(cursor, schema, layout.table)
        execute(cursor, SQL("SELECT EXISTS (SELECT FROM {})").format(ident(schema, layout.table)))
        has_rows = bool(cursor.fetchone()[0])
        writers = catalog.triggers_calling(cursor, schema, layout.function)
        found.append(KeptTable(layout, schema, len(parts), has_rows, writers))
    return found


def check_schema_name(schema: str) -> str:
    if not isinstance(schema, str) or not schema or len(schema.encode()) > 63:
        raise ConfigurationError(f"audit schema must be a non-empty name of at most 63 bytes, got {schema!r}")
    return schema
