"""The upgrade of an audit table left by django-partitioned-audit 1.0.4 to this version.

What 1.0.4 left: a partitioned ``audit_simple`` without an event id nor 2.0's columns
(``object_schema``, ``object_pk``, ``audit_context``, ``audit_context_id``), or a
``logged_actions`` holding ``row_data`` and ``changed_fields`` as hstore and lacking
``object_pk`` and ``statement_id``; partitions named ``<table>_<YYYYMMDD>_<YYYYMMDD>``
without a comment; tables audited by 1.0.4's triggers and functions.

How, in two steps, so that no audited write waits on a lock for longer than a catalog
change:

1. Inside the migration's transaction, catalog changes only (:func:`table_statements`):
   2.0's columns are added empty, hstore columns are renamed ``<name>_hstore`` with an
   empty jsonb column under their name, the event id gets its default with ids for the
   existing rows reserved from the partitions' sizes (:func:`reserve_old_ids`); no
   partition is read or rewritten. The engine's install then
   adopts the partitions (:func:`adopt_partitions`), replaces 1.0.4's triggers and drops its
   functions (:data:`LEGACY_FUNCTIONS`).
2. After it, on an autocommit connection (:func:`finish`): the old rows are numbered and
   their hstore values converted, a range of heap pages per statement, each statement a
   transaction of its own that locks only rows no writer touches; the markers of the
   pending work (the backfill sequence, the ``*_hstore`` columns) are dropped at the end.
   Stopped half way, it resumes where it stopped, the old rows' ids still 1..n
   (:func:`resume_numbering`); one run at a time, under an advisory lock.

Pure statements, and the orchestration of step 2 given a cursor; the engine's
``objects.install`` and ``objects.backfill`` call it. docs/upgrading.md says what each
step locks and how long it took.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Mapping, Sequence

from . import catalog
from .ddl import _seq_default
from .errors import AuditError
from .layouts import COMMENT_TAG, CONTEXT_ID_COLUMN, PARTITION_COMMENT, Layout
from .partitioning.ranges import PartitionInfo
from .sql import SQL, Composable, Cursor, execute, ident, literal, render, sqlstate

#: Functions created by 1.0.4, dropped when the layout is upgraded.
LEGACY_FUNCTIONS = (
    "trigger_audit_entry_creator_func_v2()",
    "if_modified_func()",
    "audit_table(regclass)",
    "audit_table(regclass, boolean, boolean)",
    "audit_table(regclass, boolean, boolean, text[])",
)


def add_event_column(layout: Layout, schema: str, seq_text: str) -> list[Composable]:
    """Give a 1.0.4 simple table its event id without rewriting it.

    A column with a volatile default would rewrite every partition under an ACCESS
    EXCLUSIVE lock. Instead the column is added empty (a catalog change), new rows get ids
    after the ones reserved for the existing rows, and :func:`backfill_statement` numbers those
    in batches afterwards, while writers go on. The backfill sequence exists while that
    work is pending.
    """
    table, column = ident(schema, layout.table), ident(layout.event_column)
    return [
        SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} bigint").format(table, column),
        SQL("ALTER TABLE {} ALTER COLUMN {} SET DEFAULT nextval({})").format(
            table, column, _seq_default(seq_text)
        ),
        SQL("CREATE SEQUENCE IF NOT EXISTS {} AS bigint").format(ident(schema, layout.backfill_sequence)),
        reserve_old_ids(layout, schema, seq_text),
    ]


def reserve_old_ids(layout: Layout, schema: str, seq_text: str) -> Composable:
    """Start the event id sequence past the ids the existing rows will take, with no scan,
    and make that bound the backfill sequence's MAXVALUE.

    The existing rows are numbered 1..n afterwards (:func:`backfill_statement`); new rows
    must get ids above n. Counting n would read every partition while the migration holds
    its ACCESS EXCLUSIVE lock, every audited write waiting (0.9 s of the migration's 1.1 s at
    ten million rows on a quiet machine, seconds on a loaded one).
    Instead: the most rows the partitions' heap pages can hold, read from the catalog. Every
    row lies in a page below the relation's size, and a page holds at most
    MaxHeapTuplesPerPage line pointers, (block size - page header) / (aligned tuple header +
    line pointer) = (8192 - 24) / (24 + 4) = 291 for 8 kB pages. Run after the ADD COLUMN,
    whose lock keeps every partition from growing until the migration commits; rows
    written after it take the column's default. The ids between n and the bound are a gap,
    as a sequence leaves.

    The backfill sequence (``NO CYCLE``) stops at the bound: whatever draws from it, an
    old row can never take a new row's id (:func:`finish` says so and resumes). With no
    page at all there is no row to number, and no backfill sequence.
    """
    return SQL(
        """DO $fn$
DECLARE
    bound bigint;
BEGIN
    SELECT sum(pg_catalog.pg_relation_size(t.relid) / b.size * ((b.size - 24) / 28))::bigint INTO bound
      FROM pg_catalog.pg_class p
      JOIN pg_catalog.pg_namespace s ON s.oid OPERATOR(pg_catalog.=) p.relnamespace
     CROSS JOIN LATERAL pg_catalog.pg_partition_tree(p.oid) AS t
     CROSS JOIN (SELECT pg_catalog.current_setting('block_size')::bigint AS size) AS b
     WHERE s.nspname OPERATOR(pg_catalog.=) {schema} AND p.relname OPERATOR(pg_catalog.=) {table}
       AND t.isleaf;
    IF bound > 0 THEN
        PERFORM pg_catalog.setval({seq}, bound);
        EXECUTE pg_catalog.format('ALTER SEQUENCE %I.%I MAXVALUE %s NO CYCLE', {schema}, {backfill}, bound);
    ELSE
        EXECUTE pg_catalog.format('DROP SEQUENCE %I.%I', {schema}, {backfill});
    END IF;
END
$fn$"""
    ).format(
        seq=_seq_default(seq_text),
        schema=literal(schema),
        table=literal(layout.table),
        backfill=literal(layout.backfill_sequence),
    )


#: The MAXVALUE of a bigint sequence created without one.
UNBOUNDED = 2**63 - 1


def resume_numbering(cursor: Cursor, layout: Layout, schema: str) -> int:
    """Set the backfill sequence back to the highest id an old row holds; return its bound.

    A numbering statement that failed, or a server that crashed, spent sequence values no
    row kept (a sequence is not rolled back). Started again from the last id given, the
    numbering reuses them: the old rows' ids stay 1..n, below the bound. The old rows are
    the ones with an id up to the bound (the sequence's MAXVALUE): one read of the event
    id's index where it is built, of the old partitions otherwise, and none before the
    first value is drawn. Call it holding the numbering's lock (:func:`finish`).
    """
    sequence = ident(schema, layout.backfill_sequence)
    cursor.execute(
        "SELECT s.seqmax FROM pg_catalog.pg_sequence s WHERE s.seqrelid OPERATOR(pg_catalog.=) %s::regclass",
        [render(sequence, cursor)],
    )
    (bound,) = cursor.fetchone()
    execute(cursor, SQL("SELECT is_called FROM {}").format(sequence))
    # A sequence without a bound (MAXVALUE the type's largest) tells no old row from a new one.
    if cursor.fetchone()[0] and bound < UNBOUNDED:
        column = ident(layout.event_column)
        execute(
            cursor,
            SQL(
                "SELECT pg_catalog.setval({seq}, coalesce(m, 1), m IS NOT NULL)"
                " FROM (SELECT max({column}) AS m FROM {table} WHERE {column} <= {bound}) AS x"
            ).format(
                seq=_seq_default(render(sequence, cursor)),
                column=column,
                table=ident(schema, layout.table),
                bound=literal(int(bound)),
            ),
        )
    return int(bound)


def backfill_statement(
    layout: Layout,
    schema: str,
    partition: str,
    pages: tuple[int, int],
    number_with: str | None,
    hstore_columns: Sequence[str],
) -> Composable:
    """Finish the 1.0.4 upgrade for the rows in heap pages [first, end) of one partition:
    number the rows without an event id from the sequence ``number_with`` (rendered and
    quoted), in their physical order, and convert the ``hstore_columns`` still held as
    hstore. A TID range scan reads only those pages."""
    sets: list[Composable] = []
    pending: list[Composable] = []
    if number_with is not None:
        column = ident(layout.event_column)
        sets.append(SQL("{} = coalesce({}, nextval({}))").format(column, column, _seq_default(number_with)))
        pending.append(SQL("{} IS NULL").format(column))
    for name in hstore_columns:
        new, old = ident(name), ident(f"{name}{HSTORE_SUFFIX}")
        sets += [SQL("{} = hstore_to_jsonb({})").format(new, old), SQL("{} = NULL").format(old)]
        pending.append(SQL("{} IS NOT NULL").format(old))
    return SQL("UPDATE {} SET {} WHERE ctid >= {}::tid AND ctid < {}::tid AND ({})").format(
        ident(schema, partition),
        SQL(", ").join(sets),
        literal(f"({pages[0]},0)"),
        literal(f"({pages[1]},0)"),
        SQL(" OR ").join(pending),
    )


def finish_backfill(
    layout: Layout, schema: str, numbered: bool, hstore_columns: Sequence[str]
) -> list[Composable]:
    """Remove what marked the 1.0.4 upgrade as unfinished (catalog changes only)."""
    statements: list[Composable] = []
    if numbered:
        statements.append(SQL("DROP SEQUENCE {}").format(ident(schema, layout.backfill_sequence)))
    for name in hstore_columns:
        statements.append(
            SQL("ALTER TABLE {} DROP COLUMN {}").format(
                ident(schema, layout.table), ident(f"{name}{HSTORE_SUFFIX}")
            )
        )
    return statements


def add_columns(layout: Layout, schema: str) -> Composable:
    """Bring a 1.0.4 table to 2.0's columns: add the new ones, relax the ones 2.0 lets be NULL.

    Both are changes of the catalog only: no row is read or rewritten.
    """
    parts = [
        SQL("ADD COLUMN IF NOT EXISTS {} {}").format(ident(name), SQL(sqltype))
        for name, sqltype in ADDED_COLUMNS[layout.name]
    ]
    parts += [
        SQL("ALTER COLUMN {} DROP NOT NULL").format(ident(name)) for name in NULLABLE_SINCE_2_0[layout.name]
    ]
    return SQL("ALTER TABLE {} ").format(ident(schema, layout.table)) + SQL(", ").join(parts)


#: Columns 2.0 added to each layout (name, type), for tables created by 1.0.4 or by an
#: earlier 2.0 install: each is nullable with no default, so ADD COLUMN changes the catalog
#: only, on the parent and every partition at once (PostgreSQL rewrites no row: a row
#: stored without the column reads it as NULL). The simple layout's login role
#: (session_user_name) came after the others: an install made before it gains it so.
ADDED_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "simple": (
        ("object_schema", "text"),
        ("object_pk", "text"),
        ("audit_context", "jsonb"),
        (CONTEXT_ID_COLUMN, "bigint"),
        ("session_user_name", "text"),
    ),
    "advanced": (
        ("object_pk", "text"),
        ("statement_id", "bigint"),
        ("audit_context", "jsonb"),
        (CONTEXT_ID_COLUMN, "bigint"),
    ),
}
#: Columns 1.0.4 declared NOT NULL that 2.0 leaves empty on some rows (a TRUNCATE has no row).
NULLABLE_SINCE_2_0: dict[str, tuple[str, ...]] = {"simple": ("object_payload",), "advanced": ()}


def convert_hstore_columns(layout: Layout, schema: str, columns: Sequence[str]) -> list[Composable]:
    """Make way for jsonb in place of 1.0.4's hstore columns, without rewriting the table.

    Each hstore column is renamed ``<name>_hstore`` and an empty jsonb column takes its
    name (catalog changes only); :func:`backfill_statement` converts the values afterwards
    in batches (values become JSON strings, as hstore held text), and
    :func:`finish_backfill` drops the old columns.
    """
    table = ident(schema, layout.table)
    statements: list[Composable] = []
    for column in columns:
        statements.append(
            SQL("ALTER TABLE {} RENAME COLUMN {} TO {}").format(
                table, ident(column), ident(f"{column}{HSTORE_SUFFIX}")
            )
        )
        statements.append(SQL("ALTER TABLE {} ADD COLUMN {} jsonb").format(table, ident(column)))
    return statements


#: Suffix of a 1.0.4 hstore column whose values still wait to be converted.
HSTORE_SUFFIX = "_hstore"


def table_statements(
    layout: Layout, schema: str, column_types: Mapping[str, str], seq_text: str
) -> list[Composable]:
    """Step 1 for a table found with ``column_types`` (name -> type): the catalog changes
    that give it 2.0's columns. Nothing for a column it has already, so a 2.0 table only
    gets ``ADD COLUMN IF NOT EXISTS`` clauses that do nothing."""
    statements: list[Composable] = []
    hstore_columns = [c for c in ("row_data", "changed_fields") if column_types.get(c) == "hstore"]
    if hstore_columns:
        statements.extend(convert_hstore_columns(layout, schema, hstore_columns))
    if layout.event_column not in column_types:
        statements.extend(add_event_column(layout, schema, seq_text))
    statements.append(add_columns(layout, schema))
    return statements


def adopt_partitions(cursor: Cursor, layout: Layout, schema: str) -> None:
    """Mark the uncommented ``<table>_<YYYYMMDD>_<YYYYMMDD>`` partitions 1.0.4 made as ours,
    so that retention may later detach or drop them."""
    for row in catalog.partitions(cursor, schema, layout.table):
        if row.comment is None and PartitionInfo.of(row.name, layout.table) is not None:
            execute(
                cursor,
                SQL("COMMENT ON TABLE {} IS {}").format(ident(schema, row.name), literal(PARTITION_COMMENT)),
            )


def drop_legacy_functions(cursor: Cursor, schema: str) -> None:
    """Drop the functions of 1.0.4 (:data:`LEGACY_FUNCTIONS`) from ``schema``, if there."""
    for function in LEGACY_FUNCTIONS:
        # The signature is a fixed string of ours, not user input; the name part is quoted.
        name, _, args = function.partition("(")
        execute(cursor, SQL("DROP FUNCTION IF EXISTS {}(" + args).format(ident(schema, name)))


def unfinished(cursor: Cursor, layout: Layout, schema: str) -> tuple[bool, list[str]]:
    """What step 2 has left to do: (rows to number, hstore columns to convert)."""
    cursor.execute(
        """
        SELECT to_regclass(%s) IS NOT NULL,
               ARRAY(SELECT left(a.attname, -length(%s)) FROM pg_catalog.pg_attribute a
                      WHERE a.attrelid = to_regclass(%s) AND NOT a.attisdropped
                        AND right(a.attname, length(%s)) = %s ORDER BY 1)
        """,
        [
            render(ident(schema, layout.backfill_sequence), cursor),
            HSTORE_SUFFIX,
            render(ident(schema, layout.table), cursor),
            HSTORE_SUFFIX,
            HSTORE_SUFFIX,
        ],
    )
    numbering, hstore = cursor.fetchone()
    return bool(numbering), list(hstore)


def backfill_pending(cursor: Cursor, layout: Layout, schema: str = "public") -> bool:
    """Whether rows of a 1.0.4 table still wait for their event id or their jsonb values
    (see ``objects.backfill``)."""
    numbering, hstore = unfinished(cursor, layout, schema)
    return numbering or bool(hstore)


#: SQLSTATE of ``nextval`` past a sequence's MAXVALUE (sequence_generator_limit_exceeded).
SEQUENCE_LIMIT_EXCEEDED = "2200H"


def numbering_lock(layout: Layout, schema: str) -> str:
    """The key of the session advisory lock :func:`finish` holds: one run at a time."""
    return f"{COMMENT_TAG}:{schema}.{layout.table}:backfill"


def finish(cursor: Cursor, layout: Layout, schema: str, pages: int) -> int | None:
    """Step 2: number the old rows (simple layout) and convert their hstore values
    (advanced), ``pages`` heap pages per statement, partitions in time order, then drop the
    markers of the pending work. Returns how many rows were changed, None when nothing was
    pending. ``cursor`` should be in autocommit mode, so that every batch commits alone.

    Raises:
        AuditError: another run holds the lock (two would give the same ids twice once
            one of them resumes the sequence), or the backfill sequence reached its bound.
    """
    key = numbering_lock(layout, schema)
    cursor.execute("SELECT pg_catalog.pg_try_advisory_lock(pg_catalog.hashtext(%s))", [key])
    if not cursor.fetchone()[0]:
        raise AuditError(
            f"another run finishing the upgrade of {schema}.{layout.table} holds its lock ({key});"
            " nothing was done: let it finish (or end it), then run this again"
        )
    try:
        return _finish(cursor, layout, schema, pages)
    finally:
        # A connection lost half way has released the lock with it: keep the first error.
        with contextlib.suppress(Exception):
            cursor.execute("SELECT pg_catalog.pg_advisory_unlock(pg_catalog.hashtext(%s))", [key])


def _finish(cursor: Cursor, layout: Layout, schema: str, pages: int) -> int | None:
    """:func:`finish`'s work, under its lock."""
    numbering, hstore = unfinished(cursor, layout, schema)
    if not numbering and not hstore:
        return None
    number_with = render(ident(schema, layout.backfill_sequence), cursor) if numbering else None
    bound = resume_numbering(cursor, layout, schema) if numbering else 0
    done = 0
    rows = catalog.partitions(cursor, schema, layout.table)
    ordered = sorted(
        rows, key=lambda r: (r.is_default, r.lower is None, r.lower or dt.datetime.min.replace(tzinfo=dt.UTC))
    )
    for row in ordered:
        cursor.execute(
            "SELECT pg_relation_size(%s::regclass) / current_setting('block_size')::int",
            [render(ident(schema, row.name), cursor)],
        )
        size = int(cursor.fetchone()[0])
        for first in range(0, size + 1, pages):
            statement = backfill_statement(
                layout, schema, row.name, (first, first + pages), number_with, hstore
            )
            try:
                execute(cursor, statement)
            except Exception as exc:
                if number_with is not None and sqlstate(exc) == SEQUENCE_LIMIT_EXCEEDED:
                    raise AuditError(
                        f"numbering the rows of {schema}.{layout.table} kept from 1.0.4 stopped in "
                        f"partition {schema}.{row.name}: the sequence {schema}.{layout.backfill_sequence} "
                        f"reached {bound}, the last event id reserved for them (rows written since the "
                        "upgrade have the ids above it), and that statement was rolled back. Something "
                        "else drew values from it: run this again (`python manage.py migrate`, or "
                        "objects.backfill()), it resumes after the highest id already given"
                    ) from exc
                raise
            done += max(getattr(cursor, "rowcount", 0) or 0, 0)
    for statement in finish_backfill(layout, schema, numbering, hstore):
        execute(cursor, statement)
    return done
