"""The SQL that creates the layouts' objects: the audit table, its indexes, the context
table, the read views, the object function, the guard, the capture functions and triggers.

Pure: every function returns composed SQL built from the data of
:mod:`partitioned_audit.layouts` and does no I/O. Every function deployed in the database
is a whole template in ``partitioned_audit/templates/``, filled in one pass. The statements
of one object version are frozen here and there; a change to them is a new
``OBJECTS_VERSION`` and a new migration.

Capture runs at one of two levels, chosen per table (``TableSpec.row_level``): statement
level, one AFTER ... FOR EACH STATEMENT trigger per operation, with transition tables, so a
statement touching N rows costs one function call and one ``INSERT ... SELECT`` of N rows;
or row level, one AFTER ... FOR EACH ROW trigger per operation, whose ``INSERT ... VALUES``
costs less for the single-row writes most applications make. TRUNCATE is recorded at
statement level either way (see docs/performance.md).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import AuditError
from .layouts import (
    CAST_GUARD,
    COMMENT_TAG,
    CONTEXT_COLUMNS,
    CONTEXT_FIXED_TRIGGER,
    CONTEXT_FIXED_TRUNCATE_TRIGGER,
    CONTEXT_ID_COLUMN,
    CONTEXT_MADE_SETTING,
    CONTEXT_SETTING,
    EVENT_TRIGGERS,
    GUARD_FUNCTION,
    GUARD_TYPES_REACHED,
    HELPERS,
    IDENTIFIER_FUNCTION,
    KEY_TRIGGER,
    LAYOUTS,
    MAINTENANCE_SETTING,
    NEW_TABLE,
    OLD_TABLE,
    ORDERED_CONTEXT_KEYS,
    PARTITION_COMMENT,
    PLAIN_CASTS_FUNCTION,
    PREFIX,
    REFUSE_WRITE,
    SIMPLE,
    SIMPLE_GIN_INDEX,
    VIEW_TRIGGER,
    Layout,
    TableSpec,
    functions,
    table_comment,
    text_array,
)
from .sql import SQL, Composable, Composed, ident, literal, quote_ident

# ---------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------


def create_schema(schema: str) -> Composable:
    return SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident(schema))


def create_sequence(layout: Layout, schema: str) -> Composable:
    return SQL("CREATE SEQUENCE IF NOT EXISTS {} AS bigint").format(ident(schema, layout.sequence))


def _seq_default(seq_text: str) -> Composable:
    return SQL("{}::regclass").format(literal(seq_text))


def create_table(layout: Layout, schema: str, seq_text: str) -> Composable:
    """CREATE TABLE for ``layout``; ``seq_text`` is the rendered, quoted sequence name."""
    return SQL("CREATE TABLE {table} (" + layout.columns + ") PARTITION BY RANGE ({time})").format(
        table=ident(schema, layout.table), seq=_seq_default(seq_text), time=ident(layout.time_column)
    )


def create_default_partition(layout: Layout, schema: str) -> Composable:
    return SQL("CREATE TABLE IF NOT EXISTS {} PARTITION OF {} DEFAULT").format(
        ident(schema, layout.default_partition), ident(schema, layout.table)
    )


@dataclass(frozen=True)
class IndexSpec:
    """One index of the audit table: its name, access method and key, as data, so that the
    same definition builds it on the parent in one statement (a new, empty table) or
    partition by partition (an upgrade, see :func:`create_partition_index`)."""

    name: str
    method: str
    key: Composable


def trail_indexes(layout: Layout, gin_index: bool = False) -> list[IndexSpec]:
    """B-tree for the history of one object; BRIN on time, which costs next to nothing to
    maintain (it grows with every row) and serves a time range; a B-tree on the event id,
    which reads the newest entries in order (the admin's list and its pages, each a bounded
    walk down the index, index-only for the entries a page skips) and one entry by id
    (``.get(pk=)``, ``get_instance()``); a B-tree on the context row's id, which finds the
    rows of a context (``filter_context()``) once the context table's indexes found its row.

    The event id's index was a BRIN until the admin had to show the newest entries of ten
    million without sorting a partition: only a B-tree gives them in order. Filled at its
    right edge, it costs about 20 bytes per row (docs/performance.md). The BRIN it replaces
    is dropped.

    The (table, pk) key has no time: the versions of one object then share one
    deduplicated key, so the index is smaller and cheaper to write; partition pruning
    handles a time range, and the few versions of an object are sorted after the lookup.
    The context id index deduplicates the same way: a transaction's rows share one key.
    """
    specs = [
        IndexSpec(layout.object_index, "btree", SQL("{}, object_pk").format(ident(layout.table_column))),
        IndexSpec(layout.time_index, "brin", ident(layout.time_column)),
        IndexSpec(layout.event_index, "btree", ident(layout.event_column)),
        IndexSpec(layout.context_id_index, "btree", ident(CONTEXT_ID_COLUMN)),
    ]
    if layout.has_payload_gin and gin_index:
        specs.append(IndexSpec(SIMPLE_GIN_INDEX, "gin", ident("object_payload")))
    return specs


def create_indexes(layout: Layout, schema: str) -> list[Composable]:
    """The indexes of :func:`trail_indexes` on a new audit table, which holds no row yet,
    and the drop of the event id's former BRIN."""
    table = ident(schema, layout.table)
    statements: list[Composable] = [
        SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING {} ({})").format(
            ident(spec.name), table, SQL(spec.method), spec.key
        )
        for spec in trail_indexes(layout)
    ]
    statements.insert(3, drop_event_brin(layout, schema))
    return statements


def drop_event_brin(layout: Layout, schema: str) -> Composable:
    return SQL("DROP INDEX IF EXISTS {}").format(ident(schema, f"{layout.table}_event_brin"))


def create_parent_index(layout: Layout, schema: str, spec: IndexSpec) -> Composable:
    """``spec`` on the audit table alone (``ON ONLY``): a change of the catalog, no row read.

    The index stays INVALID until each partition has its own index attached
    (:func:`create_partition_index`, :func:`attach_partition_index`); partitions created
    meanwhile get theirs with them. The planner uses each partition's index as soon as it
    exists.
    """
    return SQL("CREATE INDEX IF NOT EXISTS {} ON ONLY {} USING {} ({})").format(
        ident(spec.name), ident(schema, layout.table), SQL(spec.method), spec.key
    )


def partition_index_name(partition: str, spec: IndexSpec, table: str) -> str:
    """The name of ``spec``'s index on ``partition``: the partition's name and what the
    index's name adds to the table's (``audit_simple_20240101_20240201_event_idx``), cut
    with a digest to PostgreSQL's 63 bytes when longer."""
    suffix = spec.name.removeprefix(table) if spec.name.startswith(table) else f"_{spec.name}"
    name = f"{partition}{suffix}"
    if len(name.encode()) <= 63:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    room = 63 - len(f"_{digest}")
    return name.encode()[:room].decode(errors="ignore") + f"_{digest}"


def create_partition_index(schema: str, partition: str, name: str, spec: IndexSpec) -> Composable:
    """Build ``spec`` on one partition without blocking its writers (``CONCURRENTLY``: it
    runs outside a transaction block; a failed build leaves an INVALID index, which
    :func:`drop_index_concurrently` removes before it is built again)."""
    return SQL("CREATE INDEX CONCURRENTLY IF NOT EXISTS {} ON {} USING {} ({})").format(
        ident(name), ident(schema, partition), SQL(spec.method), spec.key
    )


def attach_partition_index(schema: str, parent: str, index_schema: str, index: str) -> Composable:
    """Attach a partition's index to the audit table's: a catalog change, brief, but under
    an ACCESS EXCLUSIVE lock on the partition's index (run it under ``lock_timeout``). The
    parent index becomes VALID when its last partition is attached."""
    return SQL("ALTER INDEX {} ATTACH PARTITION {}").format(ident(schema, parent), ident(index_schema, index))


def drop_index_concurrently(schema: str, name: str) -> Composable:
    return SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(ident(schema, name))


def context_key(key: str) -> Composable:
    """The indexed expression of a key of :data:`ORDERED_CONTEXT_KEYS`: its text, so that a
    number and its text are one value (``filter_context(user_id=7)`` finds ``"7"``)."""
    return SQL("(context ->> {})").format(literal(key))


#: The storage parameters of every partition of the context table. A context search reads
#: a few rows from each partition (a GIN or B-tree probe, a fraction of a millisecond), yet
#: over a large trail the planner, summing the partitions' costs, starts a Gather of
#: parallel workers over them: at 10 M rows one request's entries took 17.6 ms of execution
#: with the default two workers against 0.98 ms without (docs/performance.md). A read API
#: returning a lazy queryset cannot SET anything for the caller's read, so the partitions
#: themselves say it: with ``parallel_workers = 0`` the planner makes no parallel scan of
#: any of them, whatever query reads them. It may still hand whole partitions to workers
#: (a Parallel Append), which only the partitioned parent's setting would forbid, and
#: PostgreSQL (15 and 18, tried) refuses storage parameters on a partitioned table: the context view
#: rules that out for ``filter_context()`` (see :data:`SERIAL_ONLY`).
CONTEXT_STORAGE = "parallel_workers = 0"
#: :data:`CONTEXT_STORAGE` as ``pg_class.reloptions`` shows it.
CONTEXT_RELOPTIONS = ("parallel_workers=0",)


#: The storage parameter of the context table's GIN, on each partition's index. Every search
#: of a GIN reads its whole pending list (``fastupdate``), about 13 µs per page: the default
#: 4 MB (512 pages) added up to 7 ms, 3.5 on average, to one request's search in the current
#: partition. A list of 512 kB (64 pages, at most about 1 ms) cost the writes about what 4 MB
#: does, amortized (15-18 µs per context row either way, the merges counted), and spares the
#: write that fills a 4 MB list its merge of about half a second (docs/performance.md).
#: PostgreSQL refuses it on an existing partitioned index, so the partitions created from
#: now on get it (:func:`create_context_gin`); an install's current partition keeps what it had.
CONTEXT_GIN_STORAGE = "gin_pending_list_limit = 512"


def create_context_gin(layout: Layout, schema: str, partition: str) -> Composable:
    """The context GIN of the new context partition ``partition``, made before it is attached
    (ATTACH then takes it as the partition of the parent's GIN), with
    :data:`CONTEXT_GIN_STORAGE`."""
    return SQL(
        "CREATE INDEX ON {} USING gin (context jsonb_path_ops) WITH (" + CONTEXT_GIN_STORAGE + ")"
        " WHERE context IS NOT NULL"
    ).format(ident(schema, partition))


def context_storage() -> Composable:
    """The ``WITH (...)`` clause of a context partition (see :data:`CONTEXT_STORAGE`)."""
    return SQL("WITH (" + CONTEXT_STORAGE + ")")


def set_context_storage(schema: str, partition: str) -> Composable:
    """Give an existing context partition :data:`CONTEXT_STORAGE`.

    ``ALTER TABLE ... SET (parallel_workers = ...)`` takes a SHARE UPDATE EXCLUSIVE lock on
    the partition alone: it conflicts with VACUUM, ANALYZE, index builds and other DDL, not
    with the ROW EXCLUSIVE lock of the capture's INSERT nor the ACCESS SHARE of a read, so
    writers and readers go on while it waits and while it runs (it only rewrites the
    catalog row; the partition's data is not touched). Cached plans of the partition are
    replanned once, with the new setting.
    """
    return SQL("ALTER TABLE {} SET (" + CONTEXT_STORAGE + ")").format(ident(schema, partition))


def create_context_default(layout: Layout, schema: str) -> Composable:
    return SQL("CREATE TABLE IF NOT EXISTS {} PARTITION OF {} DEFAULT {}").format(
        ident(schema, layout.context_default_partition),
        ident(schema, layout.context_table),
        context_storage(),
    )


def create_context_partition(
    layout: Layout, schema: str, partition: str, lower: object, upper: object
) -> list[Composable]:
    """The context table's partition beside the audit partition ``partition`` (bounds
    ``lower`` to ``upper``), for a table whose partitions were made before the context
    table: its DEFAULT partition is then empty, so nothing needs to move."""
    table = ident(schema, layout.context_partition(partition))
    return [
        SQL("CREATE TABLE IF NOT EXISTS {} PARTITION OF {} FOR VALUES FROM ({}) TO ({}) {}").format(
            table, ident(schema, layout.context_table), literal(lower), literal(upper), context_storage()
        ),
        SQL("COMMENT ON TABLE {} IS {}").format(table, literal(PARTITION_COMMENT)),
    ]


def create_context_table(layout: Layout, schema: str, seq_text: str) -> list[Composable]:
    """The context table, its DEFAULT partition and its indexes (see _CONTEXT_NOTE in layouts.py);
    :func:`protect_context_table` closes it once the functions exist.

    A (txid, id) B-tree serves the capture's lookup and the views' join; a partial GIN
    ``jsonb_path_ops`` serves containment (``@>``) on any key; a B-tree per key of
    :data:`ORDERED_CONTEXT_KEYS` reads one user's contexts newest first.
    """
    table = ident(schema, layout.context_table)
    sequence = ident(schema, layout.context_sequence)
    statements: list[Composable] = [
        SQL("CREATE SEQUENCE IF NOT EXISTS {} AS bigint").format(sequence),
        SQL("CREATE TABLE IF NOT EXISTS {} (" + CONTEXT_COLUMNS + ") PARTITION BY RANGE (created)").format(
            table, seq=_seq_default(seq_text)
        ),
        create_context_default(layout, schema),
        SQL("CREATE INDEX IF NOT EXISTS {} ON {} (txid, context_id)").format(
            ident(layout.context_txid_index), table
        ),
        SQL(
            "CREATE INDEX IF NOT EXISTS {} ON {} USING gin (context jsonb_path_ops) WITH ("
            + CONTEXT_GIN_STORAGE
            + ") WHERE context IS NOT NULL"
        ).format(ident(layout.context_gin_index), table),
    ]
    for key in ORDERED_CONTEXT_KEYS:
        statements.append(
            SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({}, created) WHERE {} IS NOT NULL").format(
                ident(layout.context_key_index(key)), table, context_key(key), context_key(key)
            )
        )
    return statements


def protect_context_table(layout: Layout, schema: str) -> list[Composable]:
    """The triggers refusing to change the context rows, and no privilege for PUBLIC."""
    table = ident(schema, layout.context_table)
    fixed = ident(schema, f"{PREFIX}context_fixed")
    statements: list[Composable] = [
        SQL("DROP TRIGGER IF EXISTS {} ON {}").format(ident(CONTEXT_FIXED_TRIGGER), table),
        SQL("DROP TRIGGER IF EXISTS {} ON {}").format(ident(CONTEXT_FIXED_TRUNCATE_TRIGGER), table),
        SQL("CREATE TRIGGER {} BEFORE UPDATE OR DELETE ON {} FOR EACH ROW EXECUTE FUNCTION {}()").format(
            ident(CONTEXT_FIXED_TRIGGER), table, fixed
        ),
        SQL("CREATE TRIGGER {} BEFORE TRUNCATE ON {} FOR EACH STATEMENT EXECUTE FUNCTION {}()").format(
            ident(CONTEXT_FIXED_TRUNCATE_TRIGGER), table, fixed
        ),
        SQL("ALTER TABLE {} ENABLE ALWAYS TRIGGER {}").format(table, ident(CONTEXT_FIXED_TRIGGER)),
        SQL("ALTER TABLE {} ENABLE ALWAYS TRIGGER {}").format(table, ident(CONTEXT_FIXED_TRUNCATE_TRIGGER)),
    ]
    # Only the owner (and the SECURITY DEFINER capture) may touch them, as the audit rows.
    statements += [
        SQL("REVOKE ALL ON {} FROM PUBLIC").format(ident(schema, name))
        for name in (layout.context_table, layout.context_default_partition, layout.context_sequence)
    ]
    return statements


def gin_index(schema: str, wanted: bool) -> Composable:
    """Create or drop the opt-in GIN index on the simple payload."""
    if wanted:
        return SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING gin (object_payload)").format(
            ident(SIMPLE_GIN_INDEX), ident(schema, SIMPLE.table)
        )
    return SQL("DROP INDEX IF EXISTS {}").format(ident(schema, SIMPLE_GIN_INDEX))


def protect_table(layout: Layout, schema: str) -> list[Composable]:
    """Only the owner (and the SECURITY DEFINER capture function) may touch audit rows.

    EXECUTE on the capture function is revoked too: a trigger fires without any EXECUTE
    check, but CREATE TRIGGER needs it, and a role allowed to attach the owner's function to
    a table of its own (a temporary table will do) could append forged rows to the trail.
    """
    statements: list[Composable] = [
        SQL("REVOKE ALL ON {} FROM PUBLIC").format(ident(schema, name))
        for name in (layout.table, layout.default_partition, *layout.views, layout.sequence)
    ]
    # The read functions read the views with the caller's rights: EXECUTE goes to
    # the roles granted SELECT on the views (audit_privileges --read), as SELECT does.
    read_functions = [(name, arguments) for name, arguments, _ in layout.read_functions]
    for function, arguments in [*functions(layout), *read_functions]:
        statements.append(
            SQL("REVOKE ALL ON FUNCTION {}({}) FROM PUBLIC").format(ident(schema, function), SQL(arguments))
        )
    return statements


def comment_table(layout: Layout, schema: str) -> Composable:
    return SQL("COMMENT ON TABLE {} IS {}").format(
        ident(schema, layout.table), literal(table_comment(layout))
    )


# ---------------------------------------------------------------------------------------
# Views: plain projections, so the planner prunes partitions and uses indexes through them.
# ---------------------------------------------------------------------------------------


#: What the capture stored, before the context table, in ``audit_context`` of every row of
#: a statement but the first, when the statement was written inside a context: the first
#: row held the context itself. Rows written so are read as they were (see
#: :func:`legacy_context`).
CONTEXT_REF = "0"
#: The rows holding a context themselves (a statement's first row), before the context
#: table: the predicate of the two partial indexes on them.
CONTEXT_HEAD = "jsonb_typeof(audit_context) = 'object'"


def legacy_context(layout: Layout, schema: str) -> Composable:
    """``audit_context`` as the view shows it where rows written before the context table
    are left: the context row's, else the row's own, or for a row that refers to its
    statement's first row, that row's (through the partial head index)."""
    return SQL(
        "CASE WHEN a.{ctx} IS NOT NULL THEN c.context"
        " WHEN jsonb_typeof(a.audit_context) = 'number' THEN ("
        "SELECT h.audit_context FROM {table} AS h"
        " WHERE h.{txid} = a.{txid} AND h.{time} = a.{time} AND h.{event} < a.{event}"
        # Unqualified, audit_context is the head's here: the predicate of the head index.
        " AND " + CONTEXT_HEAD + " ORDER BY h.{event} DESC LIMIT 1) ELSE a.audit_context END AS audit_context"
    ).format(
        ctx=ident(CONTEXT_ID_COLUMN),
        table=ident(schema, layout.table),
        txid=ident(layout.txid_column),
        time=ident(layout.time_column),
        event=ident(layout.event_column),
    )


def context_join(layout: Layout, schema: str, row: str) -> Composable:
    """``LEFT JOIN`` of the context table, as ``c``, to the audit rows aliased ``row``: on the
    transaction, its time (which prunes the context table to one partition) and the id. The
    one way a row finds its context row: the views, the seals and the offline verifier."""
    return SQL(
        "LEFT JOIN {contexts} AS c ON c.txid OPERATOR(pg_catalog.=) {row}.{txid}"
        " AND c.created OPERATOR(pg_catalog.=) {row}.{time} AND c.context_id OPERATOR(pg_catalog.=) {row}.{ctx}"
    ).format(
        contexts=ident(schema, layout.context_table),
        row=ident(row),
        txid=ident(layout.txid_column),
        time=ident(layout.time_column),
        ctx=ident(CONTEXT_ID_COLUMN),
    )


def has_legacy_contexts(layout: Layout, schema: str) -> Composable:
    """Whether some row written before the context table holds a context (one probe of
    the partial head index, where it exists)."""
    return SQL("SELECT EXISTS (SELECT FROM {} WHERE " + CONTEXT_HEAD + ")").format(
        ident(schema, layout.table)
    )


def view_select_list(layout: Layout, schema: str, legacy: bool = False) -> Composable:
    """The read view's select list, over the audit table (or one of its partitions) aliased
    ``a`` joined to its context rows by :func:`context_join` (``c``): the view's columns, as
    the view and the archive name them. With ``legacy``, see :func:`create_view`."""
    return SQL(layout.view_columns).format(
        context=legacy_context(layout, schema) if legacy else SQL("c.context AS audit_context")
    )


#: A condition that is always true and makes a query reading it plan without parallel
#: workers: ``current_schema()`` is PARALLEL UNSAFE, and PostgreSQL decides whether a
#: query may use workers at all from the functions it names, before it simplifies the
#: condition away (``x OR true`` is ``true``: nothing is evaluated when it runs). The
#: context view holds it. Its searches read a few rows from each context partition, yet
#: over a large trail the planner, summing the partitions' costs, starts workers for them
#: (17.6 ms of execution against 0.98 ms without, one request at 10 M rows, see
#: docs/performance.md). The partitions' ``parallel_workers = 0`` (:data:`CONTEXT_STORAGE`)
#: keeps each of them from a parallel scan, but not the planner from handing whole
#: partitions to workers (a Parallel Append), which only the partitioned parent's setting
#: would forbid, and PostgreSQL refuses it there; ``filter_context()`` returns a lazy
#: queryset, so it cannot SET anything for the caller's read.
SERIAL_ONLY = "(pg_catalog.current_schema() IS NULL OR true)"


def view_definitions(layout: Layout, schema: str, legacy: bool = False) -> dict[str, Composable]:
    """The ``CREATE VIEW`` statement of each read view, by name.

    The read view (``layout.view``, the read models' table) joins each row to its context
    row (on the transaction, its time, which prunes the context table to one partition, and
    the id): its ``audit_context`` is the context row's context, a plain column, so a filter
    on it reaches the context table's indexes. With ``legacy``, rows written before the
    context table keep showing theirs (see :func:`legacy_context`).

    Two more views serve reads that the join makes slow, with the same meaning:

    - The context view (``layout.context_view``): the entries that have a context row, with
      the read view's columns, read from the context row first. Each context row's audit
      rows come from a ``LATERAL`` subquery (a probe of the context id index, in the
      partition of the context row's time), and the time, the transaction and the context
      id are the context row's, so ``ORDER BY`` time is the order of the context table's
      ``user_id`` index: a user's newest entries are a walk down that index that stops
      after a page. ``OFFSET 0`` keeps the planner from flattening the subquery into a
      join: it would estimate that join at one row (its three equalities multiplied as if
      independent) and sort all of a user's rows instead of walking the index.
      ``filter_context()`` reads it. With ``legacy`` it is the read view's rows, as
      before the context table. It is read without parallel workers (see
      :data:`SERIAL_ONLY`).
    - The keys view (``layout.keys_view``): the event id and the columns the admin's list
      filters on, from the audit rows alone. PostgreSQL 15 does not remove a LEFT JOIN to
      a partitioned table even when nothing of it is read, so the admin's bounds (the
      event id a page or a window starts at) read this view: a walk of the event-id index
      alone.
    """
    view = ident(schema, layout.view)
    table = ident(schema, layout.table)
    if legacy:
        by_context = SQL("SELECT * FROM {view} WHERE audit_context IS NOT NULL AND " + SERIAL_ONLY).format(
            view=view
        )
    else:
        # The audit row's columns by name, not a.*: a view depends on every column it
        # names, and a 1.0.4 table's hstore columns must go once their values are moved.
        by_context = SQL(
            "SELECT {columns} FROM {contexts} AS c CROSS JOIN LATERAL (SELECT {row} FROM {table} AS a"
            " WHERE a.{ctx} OPERATOR(pg_catalog.=) c.context_id AND a.{time} OPERATOR(pg_catalog.=) c.created"
            " AND a.{txid} OPERATOR(pg_catalog.=) c.txid OFFSET 0) AS a WHERE " + SERIAL_ONLY
        ).format(
            row=SQL(", ").join(SQL("a.{}").format(ident(name)) for name in layout.column_names),
            columns=SQL(layout.context_view_columns),
            contexts=ident(schema, layout.context_table),
            table=table,
            ctx=ident(CONTEXT_ID_COLUMN),
            time=ident(layout.time_column),
            txid=ident(layout.txid_column),
        )
    definitions = {
        layout.view: SQL("SELECT {columns} FROM {table} AS a {join}").format(
            table=table,
            columns=view_select_list(layout, schema, legacy),
            join=context_join(layout, schema, "a"),
        ),
        layout.context_view: by_context,
        layout.keys_view: SQL("SELECT {columns} FROM {table} AS a").format(
            columns=SQL(layout.keys_view_columns), table=table
        ),
    }
    return {
        name: SQL("CREATE VIEW {view} AS {definition}").format(
            view=ident(schema, name), definition=definition
        )
        for name, definition in definitions.items()
    }


def create_view(layout: Layout, schema: str, legacy: bool = False) -> list[Composable]:
    """The read views (see :func:`view_definitions`), each refusing every write.

    A plain view is automatically updatable and writes through it run with the view
    owner's rights: a role granted INSERT or UPDATE on the view, by ``GRANT ... ON ALL
    TABLES`` say, could rewrite the trail. The INSTEAD OF trigger refuses every such write,
    whoever makes it and whatever was granted.

    Then the functions returning the read view's rows of one object
    (templates/object_entries.sql) and of the contexts containing given objects
    (templates/context_entries.sql).
    """
    # DROP first: 1.0.4's views had other columns, which CREATE OR REPLACE cannot remove;
    # the views depending on the read view before it.
    statements = drop_views(layout, schema)
    for name, definition in view_definitions(layout, schema, legacy).items():
        statements += [
            definition,
            SQL(
                "CREATE TRIGGER {name} INSTEAD OF INSERT OR UPDATE OR DELETE ON {view}"
                " FOR EACH ROW EXECUTE FUNCTION {refuse}()"
            ).format(name=ident(VIEW_TRIGGER), view=ident(schema, name), refuse=ident(schema, REFUSE_WRITE)),
        ]
    statements += [create_read_function(layout, schema, name) for name, _, _ in layout.read_functions]
    return statements


def drop_views(layout: Layout, schema: str) -> list[Composable]:
    """DROP every read view of ``layout``, those depending on the read view first: the
    read functions (which return its rows) and the other views."""
    return [
        *(drop_read_function(layout, schema, name) for name, _, _ in layout.read_functions),
        *(SQL("DROP VIEW IF EXISTS {}").format(ident(schema, name)) for name in reversed(layout.views)),
    ]


def _read_function(layout: Layout, name: str) -> tuple[str, str]:
    """The argument types and the template of the read function ``name`` of ``layout``."""
    return {function: (arguments, template) for function, arguments, template in layout.read_functions}[name]


def create_object_function(layout: Layout, schema: str) -> Composable:
    """The function returning the read view's rows of one object (templates/object_entries.sql):
    of the table ``of_table`` in ``of_schema`` (a 1.0.4 simple row, which has no schema,
    counting as ``public``), whose key is ``of_key``."""
    _, template = _read_function(layout, layout.object_function)
    return SQL(deployed(template).strip()).format(
        function=ident(schema, layout.object_function),
        view=ident(schema, layout.view),
        table_column=ident(layout.table_column),
        schema_column=ident(layout.schema_column),
    )


def create_context_function(layout: Layout, schema: str) -> Composable:
    """The function returning the context view's rows whose context contains one of the
    objects of the jsonb array ``any_of`` (templates/context_entries.sql)."""
    _, template = _read_function(layout, layout.context_function)
    return SQL(deployed(template).strip()).format(
        function=ident(schema, layout.context_function),
        view=ident(schema, layout.view),
        context_view=ident(schema, layout.context_view),
    )


def create_read_function(layout: Layout, schema: str, name: str) -> Composable:
    """The ``CREATE FUNCTION`` of the read function ``name`` of ``layout`` (one of
    ``layout.read_functions``)."""
    makers = {
        layout.object_function: create_object_function,
        layout.context_function: create_context_function,
    }
    return makers[name](layout, schema)


def drop_read_function(layout: Layout, schema: str, name: str) -> Composable:
    arguments, _ = _read_function(layout, name)
    return SQL("DROP FUNCTION IF EXISTS {}({})").format(ident(schema, name), SQL(arguments))


# ---------------------------------------------------------------------------------------
# Capture functions
# ---------------------------------------------------------------------------------------

#: Whether the engine's own maintenance is under way (MAINTENANCE_SETTING is on) and may
#: pass: with the guard installed, only for a member of the guard function's owner (a table
#: owner setting it gets nothing); without it, for whoever holds the privileges anyway.
#: Never NULL (an unset setting reads as NULL). A template: fill ``{setting}`` and
#: ``{schema}`` with literals.
MAINTENANCE_ALLOWED = (
    "(coalesce(current_setting({setting}, true), '') = 'on' AND coalesce(pg_has_role(current_user,"
    " (SELECT p.proowner FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
    f" WHERE n.nspname = {{schema}} AND p.proname = '{PREFIX}guard_capture'), 'MEMBER'), true))"
)

# Installed only when the installing role is a superuser (CREATE EVENT TRIGGER needs it).
# It refuses, outside the engine's own install and uninstall: dropping a capture trigger
# (unless its table goes with it), dropping a capture function, an ALTER TABLE that leaves a
# capture trigger not firing in every session, and renaming a capture trigger. The engine
# lets itself through by setting MAINTENANCE_SETTING, which only counts for a member of the
# role owning this function (or a superuser): a table owner setting it is refused all the same.
#: The guard function and its helpers, a whole template (templates/guard.sql).
_GUARD = "guard.sql"
#: The function following the types a row reaches, made twice from one template: as an
#: audit helper (TYPES_REACHED) and as the guard's (GUARD_TYPES_REACHED).
_TYPES_REACHED = "types_reached.sql"
#: The helpers both layouts' capture functions share (but TYPES_REACHED), one template a
#: function, in the order they are created; the function digest hashes their text in this
#: order (objects._function_digest).
HELPER_TEMPLATES = (
    "pk_text.sql",
    "redact.sql",
    "foreign_type.sql",
    "check_type_owners.sql",
    "check_json_casts.sql",
    "context_object.sql",
    "context_fixed.sql",
    "refuse_write.sql",
)


def create_guard(schema: str) -> list[Composable]:
    """The event triggers that refuse to drop, disable or rename capture objects, and casts
    to json of untrusted roles (superuser only)."""
    guard = ident(schema, GUARD_FUNCTION)
    ours = sorted({name for layout in LAYOUTS.values() for name, _ in functions(layout)})
    captures = tuple(sorted(layout.function for layout in LAYOUTS.values()))
    statements: list[Composable] = [
        SQL(template(_TYPES_REACHED)).format(types_reached=ident(schema, GUARD_TYPES_REACHED)),
        SQL(template(_GUARD)).format(
            guard=guard,
            capture_functions=SQL("{}::text[]").format(literal(text_array(captures))),
            plain_casts=ident(schema, PLAIN_CASTS_FUNCTION),
            identifier=ident(schema, IDENTIFIER_FUNCTION),
            types_reached=ident(schema, GUARD_TYPES_REACHED),
            setting=literal(MAINTENANCE_SETTING),
            schema=literal(schema),
            functions=SQL("{}::text[]").format(literal(text_array(tuple(ours)))),
            seal_tables=SQL("{}::text[]").format(
                literal(text_array(tuple(sorted(layout.seal_table for layout in LAYOUTS.values()))))
            ),
            maintenance_allowed=SQL(MAINTENANCE_ALLOWED).format(
                setting=literal(MAINTENANCE_SETTING), schema=literal(schema)
            ),
        ),
        SQL("REVOKE ALL ON FUNCTION {}() FROM PUBLIC").format(guard),
    ]
    statements += drop_guard()
    for name, (event, tags) in EVENT_TRIGGERS.items():
        when = SQL(" WHEN TAG IN ({})").format(SQL(", ").join(literal(t) for t in tags)) if tags else SQL("")
        statements.append(
            SQL("CREATE EVENT TRIGGER {} ON {}{} EXECUTE FUNCTION {}()").format(
                ident(name), SQL(event), when, guard
            )
        )
    return statements


def drop_guard() -> list[Composable]:
    return [SQL("DROP EVENT TRIGGER IF EXISTS {}").format(ident(name)) for name in EVENT_TRIGGERS]


def set_maintenance(on: bool) -> Composable:
    return SQL("SELECT set_config({}, {}, false)").format(
        literal(MAINTENANCE_SETTING), literal("on" if on else "")
    )


def create_functions(layout: Layout, schema: str, seq_text: str) -> Composable:
    """The capture function of ``layout`` and the helpers it calls, schema-qualified."""
    helpers = {name.removeprefix(PREFIX): ident(schema, name) for name, _ in HELPERS}
    names = {
        "function": ident(schema, layout.function),
        "key_function": ident(schema, layout.key_function),
        "row_function": ident(schema, layout.row_function),
        "table": ident(schema, layout.table),
        "seq": SQL("{}::pg_catalog.regclass").format(literal(seq_text)),
        "check_json_casts": helpers["check_json_casts"],
        "cast_guard": literal(CAST_GUARD),
        # The writer's context, read once per statement (see partitioned_audit.context).
        "context": SQL(
            "{f}(CASE WHEN pg_catalog.current_setting({s}, true) OPERATOR(pg_catalog.=) '' THEN NULL"
            " ELSE pg_catalog.current_setting({s}, true)::pg_catalog.jsonb END)"
        ).format(f=helpers["context_object"], s=literal(CONTEXT_SETTING)),
        "contexts": ident(schema, layout.context_table),
        "context_seq": SQL("{}::pg_catalog.regclass").format(
            literal(quote_ident(schema, layout.context_sequence))
        ),
        "context_made": literal(CONTEXT_MADE_SETTING),
        "maintenance_allowed": SQL(MAINTENANCE_ALLOWED).format(
            setting=literal(MAINTENANCE_SETTING), schema=literal(schema)
        ),
        "pk_text": helpers["pk_text"],
        "redact": helpers["redact"],
    }
    templates = (
        template(_TYPES_REACHED),  # before the SQL helpers, whose bodies are checked on creation
        *(deployed(name) for name in HELPER_TEMPLATES),
        *(template(name) for name in (layout.capture, layout.key_capture, layout.row_capture)),
    )
    return Composed([SQL(text).format(**{**names, **helpers}) for text in templates])


#: Where the function templates are: beside this module, shipped as package data.
TEMPLATES = Path(__file__).with_name("templates")


def template(name: str) -> str:
    """The text of the function template ``name`` in :data:`TEMPLATES`, read whole: what
    runs in PostgreSQL once :func:`create_functions` has filled in its names."""
    return (TEMPLATES / name).read_text(encoding="utf-8")


#: The last line of the header of a template made from a function that was a Python string
#: before: only what follows it is filled in and run. The header says what the function does
#: and why without being part of the text the function digest hashes, which stays what it
#: was, so an existing install is not reported outdated.
DEPLOYED_BELOW = "-- Deployed from the next line on, byte for byte: a change is a new object version.\n"


def deployed(name: str) -> str:
    """The part of template ``name`` that is deployed: the file after its header (see
    :data:`DEPLOYED_BELOW`), still to be filled in."""
    header, marker, text = template(name).partition(DEPLOYED_BELOW)
    if not marker or not all(line.startswith("--") for line in header.splitlines()):
        raise AuditError(f"templates/{name} has no header of comment lines ending with {DEPLOYED_BELOW!r}")
    return text


def comment_function(layout: Layout, schema: str, digest: str) -> Composable:
    return SQL("COMMENT ON FUNCTION {}() IS {}").format(
        ident(schema, layout.function), literal(f"{COMMENT_TAG} {digest}")
    )


# ---------------------------------------------------------------------------------------
# Triggers
# ---------------------------------------------------------------------------------------


def drop_trigger(name: str, spec_schema: str, spec_table: str) -> Composable:
    return SQL("DROP TRIGGER IF EXISTS {} ON {}").format(ident(name), ident(spec_schema, spec_table))


_TRANSITION_NAMES = {"NEW": NEW_TABLE, "OLD": OLD_TABLE}


def trigger_names(
    layout: Layout, spec: TableSpec, partition: tuple[str, str] | None = None
) -> dict[str, str]:
    """Every trigger :func:`create_triggers` makes, by what it records.

    The key trigger is a row trigger: PostgreSQL clones it to every partition itself, so a
    partition gets none of its own; so are the row-level captures (``spec.row_level``).
    """
    names = dict(layout.triggers())
    if partition is not None:
        names = {op: name for op, name in names.items() if not spec.row_level_for(op)}
    if spec.pk and partition is None:
        names["UPDATE of the key"] = KEY_TRIGGER
    return names


def _arg_values(
    layout: Layout, spec: TableSpec, operation: str, partition: tuple[str, str] | None
) -> list[str]:
    """The arguments of ``layout``'s trigger for ``operation``: a TRUNCATE records no row, so
    its trigger takes no virtual columns (_VIRTUAL_NOTE in layouts.py); a row trigger's clones on
    partitions have its arguments, so it names the table its rows are filed under."""
    if spec.row_level_for(operation):
        return spec.row_trigger_arg_values(partition=True)
    if layout.transition_tables[operation]:
        return spec.row_trigger_arg_values(partition is not None)
    args = spec.trigger_arg_values()
    return args + [spec.schema, spec.table] if partition is not None else args


#: pg_trigger.tgtype bits (PostgreSQL's TRIGGER_TYPE_*): FOR EACH ROW, then the events.
TRIGGER_TYPE_ROW = 1
TRIGGER_TYPE_BEFORE = 2
TRIGGER_TYPE_INSTEAD = 64
TRIGGER_EVENTS = {"INSERT": 4, "DELETE": 8, "UPDATE": 16, "TRUNCATE": 32}


@dataclass(frozen=True)
class TriggerDefinition:
    """What a trigger does, as pg_trigger holds it: the whole definition, its name aside.

    Two triggers with equal definitions record the same writes the same way; a capture
    trigger is recognised by this, never by its name alone (the owner of a table, or a role
    holding TRIGGER on it, can ``CREATE OR REPLACE TRIGGER`` under any name).
    """

    #: (schema, name) of the function it executes; the engine's take no declared arguments.
    function: tuple[str, str]
    #: pg_trigger.tgtype: level, timing and events (see TRIGGER_EVENTS).
    type: int
    #: 'A' always, 'O' origin sessions only, 'R' replicas only, 'D' disabled.
    enabled: str
    args: tuple[str, ...]
    #: The transition tables' names (REFERENCING OLD TABLE AS ..., NEW TABLE AS ...).
    old_table: str | None
    new_table: str | None
    #: The column numbers of ``UPDATE OF``: none for the engine's triggers.
    columns: tuple[int, ...]
    #: The WHEN condition as ``pg_get_triggerdef()`` prints it, its quoted identifiers that
    #: need no quotes unquoted (see :func:`canonical_condition`); None without one.
    condition: str | None


_COLUMN_REF = r'(?:old|new)\.(?:"(?:[^"]|"")*"|[a-z_][a-z0-9_$]*)'
#: A column reference cast to a type, as PostgreSQL prints the cast it adds to compare a
#: column whose type has no equality of its own: ``(old.isbn)::text`` for a varchar.
_CAST_COLUMN = re.compile(
    r"\(("
    + _COLUMN_REF
    + r')\)::(?:"(?:[^"]|"")*"|[a-z_][a-z0-9_ .$]*?)(?:\([0-9, ]*\))?(?:\[\])*(?=\)| IS DISTINCT FROM )'
)


def canonical_condition(text: str | None) -> str | None:
    """A WHEN condition as :func:`key_condition` writes it, whatever the key's types: each
    double-quoted identifier that would read the same unquoted written bare (PostgreSQL
    quotes keywords), and the casts it adds to compare a column left out (a varchar is
    compared as text)."""
    if text is None:
        return None

    def bare(match: re.Match[str]) -> str:
        inner = match.group(1)
        return inner if re.fullmatch(r"[a-z_][a-z0-9_$]*", inner) else match.group(0)

    return _CAST_COLUMN.sub(r"\1", re.sub(r'"((?:[^"]|"")*)"', bare, text))


def key_condition(pk: Sequence[str]) -> str:
    """How PostgreSQL prints the key trigger's WHEN (``ROW(OLD.pk) IS DISTINCT FROM
    ROW(NEW.pk)``): the parser splits the row comparison into one test per column."""
    tests = [f"(old.{_quoted(c)} IS DISTINCT FROM new.{_quoted(c)})" for c in pk]
    return tests[0] if len(tests) == 1 else "(" + " OR ".join(tests) + ")"


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def trigger_definitions(
    layout: Layout, schema: str, spec: TableSpec, partition: tuple[str, str] | None = None
) -> dict[str, TriggerDefinition]:
    """The definition of every trigger :func:`create_triggers` makes, by name."""
    wanted: dict[str, TriggerDefinition] = {}
    names = trigger_names(layout, spec, partition)
    for operation, name in layout.triggers().items():
        if name not in names.values():
            continue
        tables = spec.transition_tables(layout, operation)
        row = spec.row_level_for(operation)
        wanted[name] = TriggerDefinition(
            function=(schema, layout.row_function if row else layout.function),
            type=(TRIGGER_TYPE_ROW if row else 0) | TRIGGER_EVENTS[operation],
            enabled="A",
            args=tuple(_arg_values(layout, spec, operation, partition)),
            old_table=OLD_TABLE if "OLD" in tables else None,
            new_table=NEW_TABLE if "NEW" in tables else None,
            columns=(),
            condition=None,
        )
    if KEY_TRIGGER in names.values():
        wanted[KEY_TRIGGER] = TriggerDefinition(
            function=(schema, layout.key_function),
            type=TRIGGER_TYPE_ROW | TRIGGER_EVENTS["UPDATE"],
            enabled="A",
            args=tuple(spec.row_trigger_arg_values(partition=True)),
            old_table=None,
            new_table=None,
            columns=(),
            condition=canonical_condition(key_condition(spec.pk)),
        )
    return wanted


def create_triggers(
    layout: Layout, schema: str, spec: TableSpec, partition: tuple[str, str] | None = None
) -> list[Composable]:
    """One trigger per operation on ``spec``'s table, enabled ALWAYS: statement-level, or
    row-level for INSERT, UPDATE and DELETE with ``spec.row_level``.

    With ``partition`` (schema, name), the triggers go on that partition of ``spec``'s
    table instead, and file its rows under ``spec``'s table: PostgreSQL fires a statement
    trigger only on the table a statement names, so a write made directly to a partition
    escapes the parent's triggers, and a write through the parent escapes the partition's.

    A trigger left at the default (ENABLE ORIGIN) does not fire in a session with
    ``session_replication_role = replica``, which a superuser sets to bulk-load or repair
    data: those writes would leave no trace. ALWAYS fires in every session.

    The key trigger fires on every UPDATE whose row leaves it with another key, not only
    on one naming a key column (``UPDATE OF``): a BEFORE trigger can change ``NEW.id``
    while the statement's SET list names other columns. Its WHEN condition keeps the cost
    of an UPDATE that keeps the key to one comparison per row, with no function call.
    :func:`trigger_definitions` says what the catalog must then hold.
    """
    target = ident(*(partition or (spec.schema, spec.table)))
    statements: list[Composable] = []
    names = trigger_names(layout, spec, partition)
    for operation, name in layout.triggers().items():
        if name not in names.values():
            continue
        row = spec.row_level_for(operation)
        tables = [
            SQL("{} TABLE AS {}").format(SQL(kind), ident(_TRANSITION_NAMES[kind]))
            for kind in spec.transition_tables(layout, operation)
        ]
        referencing = SQL("REFERENCING ") + SQL(" ").join(tables) + SQL(" ") if tables else SQL("")
        statements.append(
            SQL(
                "CREATE TRIGGER {name} AFTER {op} ON {target} {referencing}"
                "FOR EACH {level} EXECUTE FUNCTION {function}({args})"
            ).format(
                name=ident(name),
                op=SQL(operation),
                target=target,
                referencing=referencing,
                level=SQL("ROW" if row else "STATEMENT"),
                function=ident(schema, layout.row_function if row else layout.function),
                args=SQL(", ").join(literal(v) for v in _arg_values(layout, spec, operation, partition)),
            )
        )
        statements.append(SQL("ALTER TABLE {} ENABLE ALWAYS TRIGGER {}").format(target, ident(name)))
    if KEY_TRIGGER in names.values():
        old = SQL(", ").join(SQL("OLD.{}").format(ident(c)) for c in spec.pk)
        new = SQL(", ").join(SQL("NEW.{}").format(ident(c)) for c in spec.pk)
        statements += [
            SQL(
                "CREATE TRIGGER {name} AFTER UPDATE ON {target} FOR EACH ROW"
                " WHEN (ROW({old}) IS DISTINCT FROM ROW({new})) EXECUTE FUNCTION {function}({args})"
            ).format(
                name=ident(KEY_TRIGGER),
                target=target,
                old=old,
                new=new,
                function=ident(schema, layout.key_function),
                # Its clones on partitions have the same arguments: name the table they file under.
                args=SQL(", ").join(spec.row_trigger_args(partition=True)),
            ),
            SQL("ALTER TABLE {} ENABLE ALWAYS TRIGGER {}").format(target, ident(KEY_TRIGGER)),
        ]
    return statements


def comment_trigger(name: str, table: tuple[str, str], digest: str) -> Composable:
    return SQL("COMMENT ON TRIGGER {} ON {} IS {}").format(
        ident(name), ident(*table), literal(f"{COMMENT_TAG} {digest}")
    )
