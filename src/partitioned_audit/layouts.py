"""The two audit table layouts and the SQL that creates their objects.

Pure: every function returns composed SQL and does no I/O. The statements of one object
version are frozen here; a change to them is a new ``OBJECTS_VERSION`` and a new migration.

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
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigurationError
from .sql import SQL, Composable, Composed, ident, literal

#: Bumped whenever a statement below changes. Stored in ``COMMENT ON TABLE``.
OBJECTS_VERSION = "2.0"

#: Prefix of every trigger, function and comment the engine creates.
PREFIX = "dpa_"
COMMENT_TAG = "partitioned_audit"
# Marks the partitions this engine created; retention never touches a partition without it.
PARTITION_COMMENT = f"{COMMENT_TAG} partition"
# What a partition's comment becomes when retention detaches it.
DETACHED_COMMENT = f"{COMMENT_TAG} detached partition"

#: The fourth trigger argument (TableSpec.casts_mode): what the capture checks per statement.
CASTS_TRUSTED, CASTS_CHECK_CASTS, CASTS_CHECK_OWNERS = "t", "c", "o"

NEW_TABLE = "dpa_new"
OLD_TABLE = "dpa_old"

#: Trigger names used by 1.0.4; removed when a table is (re)installed or disabled.
LEGACY_TRIGGERS = ("trigger_audit_entry_creator_trigger", "audit_trigger_row", "audit_trigger_stm")


@dataclass(frozen=True)
class TableSpec:
    """An audited table: where it is and which columns need special care.

    Args:
        schema: schema of the table (``TG_TABLE_SCHEMA``).
        table: table name, any legal identifier.
        pk: primary key columns, in key order; one column is stored as text, several as a
            JSON array. Empty for a table without a primary key: its rows are recorded
            whole, with ``object_pk`` NULL (so no per-object history).
        excluded: columns left out of the audit payload (updates touching only these are
            not recorded by the advanced layout).
        masked: columns whose value is replaced by ``"[masked]"`` (NULL stays null).
        virtual: the table's virtual generated columns (PostgreSQL 18), which a trigger
            reads as NULL whatever their value: left out of the payload as excluded columns
            are, and nothing else (the advanced layout keeps the query text, which holds
            none of their values). :func:`objects.enable` finds them from the catalog.
        skip_unchanged: simple layout: record no UPDATE of a row whose columns, excluded
            ones aside, all keep their values (a ``save()`` that changed nothing), as the
            advanced layout never does. Its UPDATE trigger then also asks for the OLD
            transition table, to compare each row with its new version.
        trusted_types: every non-built-in type of the table (and inside its types) belongs to
            the audit owner or a superuser, so no other role can give it a cast to json
            (see _CASTS_NOTE); :func:`objects.enable` finds it out from the catalog.
        guarded: the guard's event triggers are on (a superuser installed them), so no role
            but the audit owner or a superuser can create a cast to json, nor give an audited
            table whose triggers trust its types a column of another role's type (see
            _CASTS_NOTE); :func:`objects.enable` finds it out from the catalog.
        row_level: capture INSERT, UPDATE and DELETE with row triggers (the layout's
            ``row_capture``) instead of statement triggers with transition tables; TRUNCATE
            stays at statement level. :func:`objects.enable` keeps a partitioned table at
            statement level (see :data:`CAPTURE_LEVELS`).
    """

    schema: str
    table: str
    pk: tuple[str, ...]
    excluded: tuple[str, ...] = ()
    masked: tuple[str, ...] = ()
    trusted_types: bool = False
    virtual: tuple[str, ...] = ()
    skip_unchanged: bool = False
    guarded: bool = False
    row_level: bool = False

    def __post_init__(self) -> None:
        if not self.schema or not self.table:
            raise ConfigurationError(f"table spec needs a schema and a table name, got {self!r}")

    def trigger_args(self) -> list[Composable]:
        """Trigger arguments: ``text[]`` literals, which the function casts with no query.

        (Parsing JSON arguments took a subquery per list and call: a third of the cost of
        auditing a single-row INSERT; see docs/performance.md.)
        """
        return [literal(value) for value in self.trigger_arg_values()]

    def trigger_arg_values(self) -> list[str]:
        """The values :meth:`trigger_args` writes as literals: what ``pg_trigger.tgargs`` holds."""
        columns = [text_array(cols) for cols in (self.pk, self.excluded, self.masked)]
        return [*columns, self.casts_mode(), "t" if self.skip_unchanged else "f"]

    def casts_mode(self) -> str:
        """The fourth trigger argument, what the capture checks before it converts rows
        (see _CASTS_NOTE): ``t`` nothing (the guard is on and every type is trusted),
        ``c`` the casts to json (the guard is on), ``o`` the types' owners (no guard)."""
        if not self.guarded:
            return CASTS_CHECK_OWNERS
        return CASTS_TRUSTED if self.trusted_types else CASTS_CHECK_CASTS

    def transition_tables(self, layout: Layout, operation: str) -> tuple[str, ...]:
        """The transition tables ``layout``'s trigger for ``operation`` asks for on this table:
        comparing a row with its old version takes the OLD table as well; a row trigger
        takes none."""
        if self.row_level_for(operation):
            return ()
        if self.skip_unchanged and operation == "UPDATE":
            return ("OLD", "NEW")
        return layout.transition_tables[operation]

    def row_level_for(self, operation: str) -> bool:
        """Whether ``operation`` is captured by a row trigger on this table."""
        return self.row_level and operation in ROW_OPERATIONS

    def row_trigger_args(self, partition: bool) -> list[Composable]:
        """The arguments of a trigger that records rows: :meth:`trigger_args`, then the
        table its rows are filed under (``TG_ARGV[5]``, ``[6]``: always on a partition), then
        the virtual columns (``TG_ARGV[7]``), only for a table having some. Such a table's
        own triggers then name it in ``TG_ARGV[5]``, ``[6]`` too: the same table as
        ``TG_TABLE_SCHEMA``, ``TG_TABLE_NAME``. An ordinary table's triggers keep five
        arguments."""
        return [literal(value) for value in self.row_trigger_arg_values(partition)]

    def row_trigger_arg_values(self, partition: bool) -> list[str]:
        """The values :meth:`row_trigger_args` writes as literals."""
        args = self.trigger_arg_values()
        if partition or self.virtual:
            args += [self.schema, self.table]
        if self.virtual:
            args.append(text_array(self.virtual))
        return args


#: The operations a row-level capture records; TRUNCATE has no row.
ROW_OPERATIONS = ("INSERT", "UPDATE", "DELETE")
#: The values of a capture level (``DPA_CAPTURE_LEVEL``; ``TableSpec.row_level`` in the engine).
CAPTURE_LEVELS = ("statement", "row")


def text_array(values: tuple[str, ...]) -> str:
    """The ``text[]`` input form of ``values``: every element double-quoted, with its
    backslashes and double quotes escaped, so any column name survives."""
    return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


@dataclass(frozen=True)
class Layout:
    """One audit table layout, as data: its names, its columns and its capture function.

    What differs between the layouts lives here, so the code that creates objects has no
    branch on a layout's name. ``columns`` and ``view_columns`` are SQL templates whose
    ``{names}`` :func:`create_table` and :func:`create_view` fill with quoted identifiers;
    ``capture``, ``key_capture`` and ``row_capture`` name whole function templates in
    ``partitioned_audit/templates/``, which :func:`create_functions` fills in one pass.
    """

    name: str
    table: str
    view: str
    time_column: str
    event_column: str
    #: Column holding the audited table's name, first key of the history index.
    table_column: str
    #: Column holding the writer's transaction id (``txid_current()``).
    txid_column: str
    #: Column holding the operation's code: ``I``, ``U``, ``D`` or ``T``.
    operation_column: str
    #: Column holding the audited table's schema.
    schema_column: str
    #: Column holding the statement's start (``statement_timestamp()``).
    statement_time_column: str
    #: The read views' name for ``event_column``: the key of the read models.
    view_key_column: str
    function: str
    columns: str
    view_columns: str
    #: The context view's select list: ``view_columns`` with the columns its context row
    #: holds too (the time, the transaction, the context id) read from the context row
    #: ``c``, so that an order by time is the order of the context table's indexes.
    context_view_columns: str
    #: The keys view's select list: the columns the admin filters and orders the list by,
    #: from the audit row alone (no join).
    keys_view_columns: str
    #: The statement-level capture: the name of its template in ``templates/``.
    capture: str
    #: The row-level function that files a key-changing UPDATE under the old key as well.
    key_capture: str
    #: The row-level capture (``TableSpec.row_level``).
    row_capture: str
    #: Transition tables each trigger asks for: only what its branch of ``capture`` reads,
    #: since PostgreSQL copies every row into each one requested.
    transition_tables: dict[str, tuple[str, ...]]
    #: Whether the table carries the opt-in GIN index on the payload (simple layout).
    has_payload_gin: bool = False
    #: Columns added after seals of format 2 were defined, with the seal format whose row
    #: encoding first covers each (see :meth:`sealed_columns`): a seal of an earlier format
    #: keeps hashing the columns it hashed when it was made, so it verifies over its rows
    #: after the column is added, and a seal of that format on covers the new column. A
    #: row of an earlier seal holds NULL there (it was written before the column); one
    #: that holds a value is hashed with every column (:meth:`stray_columns`).
    sealed_from: dict[str, int] = field(default_factory=dict)

    @property
    def operations(self) -> tuple[str, ...]:
        return tuple(self.transition_tables)

    @property
    def column_names(self) -> tuple[str, ...]:
        """The columns of ``columns``, in order, but the context reference: what a seal's
        row encoding lists (those of :meth:`sealed_columns` for a given format)."""
        return tuple(name for name in self.table_columns if name != CONTEXT_ID_COLUMN)

    def sealed_columns(self, seal_format: int) -> tuple[str, ...]:
        """The columns of :attr:`column_names` a seal of ``seal_format`` hashes, in order:
        all but those :attr:`sealed_from` gives a later format."""
        return tuple(name for name in self.column_names if self.sealed_from.get(name, 1) <= seal_format)

    def stray_columns(self, seal_format: int) -> tuple[str, ...]:
        """The columns of :attr:`column_names` a seal of ``seal_format`` does not hash (those
        :attr:`sealed_from` gives a later format). Every row such a seal covered holds NULL
        in each, having been written before the column; a row that holds a value in any is
        hashed with every column of :attr:`column_names` instead (docs/tamper-evidence.md),
        so a value written in since the seal changes its digest."""
        return tuple(name for name in self.column_names if self.sealed_from.get(name, 1) > seal_format)

    @property
    def table_columns(self) -> tuple[str, ...]:
        """Every column of ``columns``, the context reference included: what an installed
        table must have (an install without one is OUTDATED, and ``install`` adds it)."""
        return tuple(line.split()[0] for line in self.columns.strip().splitlines())

    @property
    def sequence(self) -> str:
        return f"{self.table}_{self.event_column}_seq"

    @property
    def backfill_sequence(self) -> str:
        """Numbers the rows of a 1.0.4 table after the upgrade; exists while that is pending."""
        return f"{self.table}_backfill_seq"

    @property
    def context_view(self) -> str:
        """The entries that have a context, read from their context row first (see
        :func:`create_view`)."""
        return f"{self.table}_context_view"

    @property
    def keys_view(self) -> str:
        """The keys of the entries and the columns the admin's list filters on, without the
        context join (see :func:`create_view`)."""
        return f"{self.table}_keys_view"

    @property
    def views(self) -> tuple[str, ...]:
        """Every read view: the read models' view first."""
        return (self.view, self.context_view, self.keys_view)

    @property
    def object_function(self) -> str:
        """The read view's rows of one object, by a plan kept per connection (see
        :data:`OBJECT_ENTRIES`): what ``filter_object()`` and ``history()`` read."""
        return f"{self.table}_object_entries"

    @property
    def default_partition(self) -> str:
        return f"{self.table}_default"

    @property
    def object_index(self) -> str:
        return f"{self.table}_object_idx"

    @property
    def context_index(self) -> str:
        """Before the context table: the partial GIN on the statements' first rows."""
        return f"{self.table}_context_gin"

    @property
    def context_head_index(self) -> str:
        """Before the context table: the partial B-tree finding a statement's first row."""
        return f"{self.table}_context_head"

    @property
    def context_table(self) -> str:
        """One row per transaction and context: who wrote (the login role) and what the
        writer declared (see :data:`_CONTEXT_COLUMNS`)."""
        return f"{self.table}_context"

    @property
    def context_sequence(self) -> str:
        return f"{self.context_table}_id_seq"

    @property
    def context_default_partition(self) -> str:
        return f"{self.context_table}_default"

    @property
    def context_id_index(self) -> str:
        """The audit rows of one context row."""
        return f"{self.table}_context_id"

    @property
    def context_txid_index(self) -> str:
        """A transaction's context rows: the capture's lookup and the views' join."""
        return f"{self.context_table}_txid"

    @property
    def context_gin_index(self) -> str:
        return f"{self.context_table}_gin"

    def context_key_index(self, key: str) -> str:
        """The B-tree on one key of the context, newest first (see :data:`ORDERED_CONTEXT_KEYS`)."""
        return f"{self.context_table}_{key}"

    def context_partition(self, partition: str) -> str:
        """The partition of the context table beside the audit partition ``partition``."""
        return self.context_table + partition.removeprefix(self.table)

    @property
    def time_index(self) -> str:
        return f"{self.table}_time_brin"

    @property
    def event_index(self) -> str:
        return f"{self.table}_event_idx"

    @property
    def key_function(self) -> str:
        return f"{self.function}_key"

    @property
    def row_function(self) -> str:
        """The row-level capture (``TableSpec.row_level``)."""
        return f"{self.function}_row"

    @property
    def seal_table(self) -> str:
        """The append-only chain of seals (see :mod:`partitioned_audit.sealing`)."""
        return f"{self.table}_seal"

    @property
    def mark_table(self) -> str:
        """Horizons an earlier seal could not reach yet, with the writers it waited for."""
        return f"{self.table}_seal_mark"

    def seal_function(self, which: str) -> str:
        """``chunks``, ``seal``, ``verify``, ``retire`` or ``freeze``."""
        return f"{self.function.removesuffix('_capture')}_{which}"

    def triggers(self) -> dict[str, str]:
        """Statement trigger name by operation."""
        return {op: f"{PREFIX}audit_{op.lower()[:3]}" for op in self.operations}


#: The column of an audit row holding the id of its context row.
CONTEXT_ID_COLUMN = "audit_context_id"
#: The row trigger that fires only when an UPDATE changes a row's primary key.
KEY_TRIGGER = f"{PREFIX}audit_key"


# ---------------------------------------------------------------------------------------
# The simple layout: the row after the change (before it, for a DELETE), one row per row.
# ---------------------------------------------------------------------------------------

_SIMPLE_COLUMNS = """
    object_table character varying(63) NOT NULL,
    object_payload jsonb,
    audit_entry_created timestamp with time zone NOT NULL DEFAULT now(),
    audit_entry_created_statement_timestamp timestamp with time zone NOT NULL DEFAULT statement_timestamp(),
    audit_txid_current bigint NOT NULL,
    audit_operation character varying(1) NOT NULL,
    audit_event_id bigint NOT NULL DEFAULT nextval({seq}),
    object_schema text,
    object_pk text,
    audit_context jsonb,
    audit_context_id bigint,
    session_user_name text
"""

_SIMPLE_VIEW_COLUMNS = """
    a.audit_event_id AS id, a.object_table, a.object_payload, a.audit_entry_created,
    a.audit_entry_created_statement_timestamp, a.audit_txid_current, a.audit_operation,
    a.object_schema, a.object_pk, {context}, a.audit_context_id,
    coalesce(a.session_user_name, c.session_user_name) AS session_user_name
"""

_SIMPLE_CONTEXT_VIEW_COLUMNS = """
    a.audit_event_id AS id, a.object_table, a.object_payload, c.created AS audit_entry_created,
    a.audit_entry_created_statement_timestamp, c.txid AS audit_txid_current, a.audit_operation,
    a.object_schema, a.object_pk, c.context AS audit_context, c.context_id AS audit_context_id,
    coalesce(a.session_user_name, c.session_user_name) AS session_user_name
"""

_SIMPLE_KEYS_VIEW_COLUMNS = """
    a.audit_event_id AS id, a.object_table, a.object_schema, a.object_pk, a.audit_entry_created,
    a.audit_operation
"""


# _QUALIFIED_NOTE. The capture functions run with the audit owner's rights (SECURITY
# DEFINER) but under the caller's search_path: a SET search_path clause would cost 1-5 us
# per call (docs/performance.md). So every name in them and in the helpers they
# inline is schema-qualified: pg_catalog.f() for functions, pg_catalog.t for types that are
# not SQL keywords, OPERATOR(pg_catalog.op) for operators, and no construct that looks an
# operator up by name (IS DISTINCT FROM, NULLIF, JOIN ... USING, simple CASE). The
# transition tables need no schema: PostgreSQL finds them before any table.
# tests/attacks/test_search_path.py shadows each of them for the caller.
# plpgsql wants a transition table's name written out, so each branch has its own INSERT.
# _casts_checked: see _CASTS_NOTE.
# _VIRTUAL_NOTE. PostgreSQL 18 computes a virtual generated column when a query reads the
# table; a trigger's NEW and OLD and its transition tables hold NULL in its place, whatever
# its value. Recording that NULL would read as data, and computing the value here would run
# the table owner's expression with the audit owner's rights, a parse and a plan per
# statement: so the capture leaves these columns out, as excluded ones. A table having some
# passes them as TG_ARGV[7] (see TableSpec.row_trigger_args); an ordinary table's triggers
# pass no such argument and its captures pay one NULL test per statement. enable() finds
# them in the catalog, and a virtual column added (or dropped) later changes the triggers'
# digest: the database check reports it and migrate recreates them.

# _CONTEXT_NOTE. Who wrote a row and what the writer declared live in the layout's context
# table, one row per transaction, login role and context; each audit row holds its id
# (audit_context_id). A statement looks its transaction's row up (one probe of the (txid)
# B-tree of the one partition now() falls in) and adds it when it is missing: the first
# statement of a transaction, or the first after SET LOCAL changed the context. Only
# txid_current() chooses the row: nothing a writer sets can point its rows at another
# transaction's context, and session_user is the role that logged in, whatever SET ROLE
# or the context claims. The lookup is skipped until the transaction has made a context
# row: making one sets CONTEXT_MADE_SETTING to the transaction's id, for the transaction
# (undone with a rolled-back savepoint, as the row is). That setting only ever saves a
# lookup: a writer who sets it makes the capture look up (and find nothing, or its own
# transaction's row), one who resets it makes a second context row for the same
# transaction, login role and context; neither reaches another transaction's row.
# Both layouts write the login role on every audit row too (session_user_name: 1.0.4's
# column in the advanced layout, added in 2.0 to the simple one; covered by a seal's row
# digest, see Layout.sealed_from) and make a context row only for a transaction that set
# a context: a write outside any context pays no context row, the largest piece of a
# single-row write's cost (docs/performance.md). The views show the row's own login role
# where it has one (every row but a simple one written before the column, which has a
# context row), else its context row's (the same role): the row's own is what every seal
# format covers (a simple row's from format 4 on, or wherever it holds a value:
# Layout.stray_columns), a context row only format 3 on.
# The row's time is now(), the transaction's start, as the audit rows' time: both tables
# are partitioned alike, so a context row lives and goes with the partition of the audit
# rows pointing at it.

SIMPLE = Layout(
    name="simple",
    table="audit_simple",
    view="audit_simple_view",
    time_column="audit_entry_created",
    event_column="audit_event_id",
    table_column="object_table",
    txid_column="audit_txid_current",
    operation_column="audit_operation",
    schema_column="object_schema",
    statement_time_column="audit_entry_created_statement_timestamp",
    view_key_column="id",
    function=f"{PREFIX}simple_capture",
    columns=_SIMPLE_COLUMNS,
    view_columns=_SIMPLE_VIEW_COLUMNS,
    context_view_columns=_SIMPLE_CONTEXT_VIEW_COLUMNS,
    keys_view_columns=_SIMPLE_KEYS_VIEW_COLUMNS,
    capture="simple_capture.sql",
    key_capture="simple_key_capture.sql",
    row_capture="simple_row_capture.sql",
    transition_tables={"INSERT": ("NEW",), "UPDATE": ("NEW",), "DELETE": ("OLD",), "TRUNCATE": ()},
    has_payload_gin=True,
    sealed_from={"session_user_name": 4},
)

# ---------------------------------------------------------------------------------------
# The advanced layout: the old row and the changed fields, with session details.
# ---------------------------------------------------------------------------------------

_ADVANCED_COLUMNS = """
    event_id bigint NOT NULL DEFAULT nextval({seq}),
    schema_name text NOT NULL,
    table_name text NOT NULL,
    relid oid NOT NULL,
    session_user_name text,
    action_tstamp_tx timestamp with time zone NOT NULL,
    action_tstamp_stm timestamp with time zone NOT NULL,
    action_tstamp_clk timestamp with time zone NOT NULL,
    transaction_id bigint,
    application_name text,
    client_addr inet,
    client_port integer,
    client_query text,
    action text NOT NULL CHECK (action IN ('I', 'D', 'U', 'T')),
    row_data jsonb,
    changed_fields jsonb,
    statement_only boolean NOT NULL,
    object_pk text,
    statement_id bigint,
    audit_context jsonb,
    audit_context_id bigint
"""

_ADVANCED_VIEW_COLUMNS = """
    a.event_id, a.schema_name, a.table_name, a.relid,
    coalesce(a.session_user_name, c.session_user_name) AS session_user_name, a.action_tstamp_tx,
    a.action_tstamp_stm, a.action_tstamp_clk, a.transaction_id, a.application_name, a.client_addr,
    a.client_port, a.client_query, a.action, a.row_data, a.changed_fields, a.statement_only,
    a.row_data AS row_data_json, a.changed_fields AS changed_fields_json,
    a.object_pk, a.statement_id, {context}, a.audit_context_id
"""

_ADVANCED_CONTEXT_VIEW_COLUMNS = """
    a.event_id, a.schema_name, a.table_name, a.relid,
    coalesce(a.session_user_name, c.session_user_name) AS session_user_name, c.created AS action_tstamp_tx,
    a.action_tstamp_stm, a.action_tstamp_clk, c.txid AS transaction_id, a.application_name, a.client_addr,
    a.client_port, a.client_query, a.action, a.row_data, a.changed_fields, a.statement_only,
    a.row_data AS row_data_json, a.changed_fields AS changed_fields_json,
    a.object_pk, a.statement_id, c.context AS audit_context, c.context_id AS audit_context_id
"""

_ADVANCED_KEYS_VIEW_COLUMNS = """
    a.event_id, a.schema_name, a.table_name, a.object_pk, a.action_tstamp_tx, a.action
"""


ADVANCED = Layout(
    name="advanced",
    table="logged_actions",
    view="logged_actions_view",
    time_column="action_tstamp_tx",
    event_column="event_id",
    table_column="table_name",
    txid_column="transaction_id",
    operation_column="action",
    schema_column="schema_name",
    statement_time_column="action_tstamp_stm",
    view_key_column="event_id",
    function=f"{PREFIX}advanced_capture",
    columns=_ADVANCED_COLUMNS,
    view_columns=_ADVANCED_VIEW_COLUMNS,
    context_view_columns=_ADVANCED_CONTEXT_VIEW_COLUMNS,
    keys_view_columns=_ADVANCED_KEYS_VIEW_COLUMNS,
    capture="advanced_capture.sql",
    key_capture="advanced_key_capture.sql",
    row_capture="advanced_row_capture.sql",
    transition_tables={"INSERT": ("NEW",), "UPDATE": ("OLD", "NEW"), "DELETE": ("OLD",), "TRUNCATE": ()},
)
LAYOUTS = {layout.name: layout for layout in (SIMPLE, ADVANCED)}

#: 1.0.4's GIN index on the whole simple payload; opt-in since 2.0.
SIMPLE_GIN_INDEX = "idx_audit_simple"


def get_layout(name: str) -> Layout:
    """Return the layout called ``name`` ("simple" or "advanced")."""
    try:
        return LAYOUTS[name]
    except KeyError:
        raise ConfigurationError(
            f"unknown audit layout {name!r}; choose one of {', '.join(sorted(LAYOUTS))}"
        ) from None


def table_comment(layout: Layout) -> str:
    return f"{COMMENT_TAG} layout={layout.name} version={OBJECTS_VERSION}"


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


#: The context table's columns: partitioned like the audit table, by the transaction's
#: start (see _CONTEXT_NOTE).
_CONTEXT_COLUMNS = """
    context_id bigint NOT NULL DEFAULT nextval({seq}),
    created timestamp with time zone NOT NULL,
    txid bigint NOT NULL,
    session_user_name text NOT NULL,
    context jsonb
"""
#: Keys of the context with a B-tree of their own, on (the key's text, time): a user's
#: newest entries are then read first, a page at a time, however many the user made. Every
#: other key is found through the GIN index on the whole context.
ORDERED_CONTEXT_KEYS = ("user_id",)
#: The trigger keeping the context rows as they were written.
CONTEXT_FIXED_TRIGGER = f"{PREFIX}context_fixed"
CONTEXT_FIXED_TRUNCATE_TRIGGER = f"{PREFIX}context_fixed_truncate"


def context_key(key: str) -> Composable:
    """The indexed expression of a key of :data:`ORDERED_CONTEXT_KEYS`: its text, so that a
    number and its text are one value (``filter_context(user_id=7)`` finds ``"7"``)."""
    return SQL("(context ->> {})").format(literal(key))


#: The context table's partition key: the transaction's start, as the audit rows' time.
CONTEXT_TIME_COLUMN = "created"


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
    """The context table, its DEFAULT partition and its indexes (see _CONTEXT_NOTE);
    :func:`protect_context_table` closes it once the functions exist.

    A (txid, id) B-tree serves the capture's lookup and the views' join; a partial GIN
    ``jsonb_path_ops`` serves containment (``@>``) on any key; a B-tree per key of
    :data:`ORDERED_CONTEXT_KEYS` reads one user's contexts newest first.
    """
    table = ident(schema, layout.context_table)
    sequence = ident(schema, layout.context_sequence)
    statements: list[Composable] = [
        SQL("CREATE SEQUENCE IF NOT EXISTS {} AS bigint").format(sequence),
        SQL("CREATE TABLE IF NOT EXISTS {} (" + _CONTEXT_COLUMNS + ") PARTITION BY RANGE (created)").format(
            table, seq=_seq_default(seq_text)
        ),
        create_context_default(layout, schema),
        SQL("CREATE INDEX IF NOT EXISTS {} ON {} (txid, context_id)").format(
            ident(layout.context_txid_index), table
        ),
        SQL(
            "CREATE INDEX IF NOT EXISTS {} ON {} USING gin (context jsonb_path_ops) WHERE context IS NOT NULL"
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
    # The object function reads the read view with the caller's rights: EXECUTE goes to
    # the roles granted SELECT on the views (audit_privileges --read), as SELECT does.
    for function, arguments in [*functions(layout), (layout.object_function, OBJECT_FUNCTION_ARGS)]:
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

    Then the function returning one object's rows of the read view (see _OBJECT_NOTE).
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
    statements.append(create_object_function(layout, schema))
    return statements


def drop_views(layout: Layout, schema: str) -> list[Composable]:
    """DROP every read view of ``layout``, those depending on the read view first: the
    object function (which returns its rows) and the other views."""
    return [
        drop_object_function(layout, schema),
        *(SQL("DROP VIEW IF EXISTS {}").format(ident(schema, name)) for name in reversed(layout.views)),
    ]


# _OBJECT_NOTE. One object's entries (filter_object(), history()) name no time, so a plan
# of the read view keeps every partition of the audit table and, through the join, every
# partition of the context table: planning it took 0.6-1.1 ms at 13 monthly partitions
# (15 per table with the next month and DEFAULT), 4-5 times its execution, and grows by
# about 0.1 ms per pair of partitions (docs/performance.md, "One object's history without
# planning"). Nothing in such a query can prune at plan time, so the generic plan (the
# object's table and key as parameters) is the plan PostgreSQL makes for any object: a
# probe of the (table, key) index in each audit partition and, per entry found, one probe
# of the context table's (txid, context id) index in the partition of the entry's time,
# the others pruned when it runs. A PL/pgSQL function keeps its statements' plans for the
# life of the connection (of each server connection, behind a pooler): the first call
# plans, every later one runs the kept plan. plan_cache_mode = force_generic_plan makes
# that plan the generic one from the first call; left to choose, PostgreSQL compares the
# generic plan's estimate (a context probe counted in every partition) with a custom
# plan's and plans anew at every call. Parallel workers and JIT are off for it, as for
# any read of a few rows: the planner, which costs a context probe in every partition for
# each entry it expects, could start workers for an object it expects many entries of.
# SECURITY INVOKER (the default): it reads the read view with the caller's rights, so a
# role reads through it exactly what it may read from the view, and it is granted EXECUTE
# where the views are granted SELECT. It returns the view's row type, so it is dropped
# before the views and created after them.
OBJECT_ENTRIES = """
CREATE FUNCTION {function}(of_table text, of_schema text, of_key text)
    RETURNS SETOF {view} LANGUAGE plpgsql STABLE ROWS 10
    SET plan_cache_mode = force_generic_plan
    SET max_parallel_workers_per_gather = 0
    SET jit = off
AS $fn$
BEGIN
    RETURN QUERY SELECT v.* FROM {view} AS v
     WHERE v.{table_column} OPERATOR(pg_catalog.=) of_table
       AND (v.{schema_column} OPERATOR(pg_catalog.=) of_schema
            OR (of_schema OPERATOR(pg_catalog.=) 'public' AND v.{schema_column} IS NULL))
       AND v.object_pk OPERATOR(pg_catalog.=) of_key;
END
$fn$
"""
#: The argument types of :data:`OBJECT_ENTRIES`.
OBJECT_FUNCTION_ARGS = "text, text, text"


def create_object_function(layout: Layout, schema: str) -> Composable:
    """The function returning the read view's rows of one object (see _OBJECT_NOTE): of
    the table ``of_table`` in ``of_schema`` (a 1.0.4 simple row, which has no schema,
    counting as ``public``), whose key is ``of_key``."""
    return SQL(OBJECT_ENTRIES.strip()).format(
        function=ident(schema, layout.object_function),
        view=ident(schema, layout.view),
        table_column=ident(layout.table_column),
        schema_column=ident(layout.schema_column),
    )


def drop_object_function(layout: Layout, schema: str) -> Composable:
    return SQL("DROP FUNCTION IF EXISTS {}({})").format(
        ident(schema, layout.object_function), SQL(OBJECT_FUNCTION_ARGS)
    )


# ---------------------------------------------------------------------------------------
# Capture functions
# ---------------------------------------------------------------------------------------

#: Installed once per schema, shared by both layouts: (name, argument types).
HELPERS = (
    (f"{PREFIX}pk_text", "jsonb, text[]"),
    (f"{PREFIX}redact", "jsonb, text[], text[]"),
    (f"{PREFIX}check_json_casts", "oid"),
    (f"{PREFIX}check_type_owners", "oid"),
    (f"{PREFIX}types_reached", "oid"),
    (f"{PREFIX}foreign_type", "oid, name"),
    (f"{PREFIX}refuse_write", ""),
    (f"{PREFIX}context_object", "jsonb"),
    (f"{PREFIX}context_fixed", ""),
)
REFUSE_WRITE = f"{PREFIX}refuse_write"
#: The types a row of a table reaches (templates/types_reached.sql), which the capture's
#: checks follow.
TYPES_REACHED = f"{PREFIX}types_reached"
#: The event trigger function guarding the capture objects.
GUARD_FUNCTION = f"{PREFIX}guard_capture"
#: The event trigger that refuses casts to json of untrusted roles (see _CASTS_NOTE); the
#: capture asks whether it is on before it relies on it.
CAST_GUARD = f"{PREFIX}guard_cast"
#: The event triggers running the guard function: name -> (event, the command tags it
#: fires on, every one when empty).
EVENT_TRIGGERS: dict[str, tuple[str, tuple[str, ...]]] = {
    f"{PREFIX}guard_drop": ("sql_drop", ()),
    f"{PREFIX}guard_alter": ("ddl_command_end", ("ALTER TABLE", "ALTER TRIGGER", "CREATE TRIGGER")),
    CAST_GUARD: ("ddl_command_end", ("CREATE CAST",)),
    f"{PREFIX}guard_rewrite": ("table_rewrite", ()),
}
#: The guard's helpers: whether an ALTER TABLE's type changes are plain casts.
PLAIN_CASTS_FUNCTION = f"{PREFIX}guard_plain_casts"
IDENTIFIER_FUNCTION = f"{PREFIX}guard_identifier"
#: The guard's own function made from the template of TYPES_REACHED: the guard runs as the
#: role altering a table, which must not run code of the audit owner (who may replace
#: TYPES_REACHED) nor need EXECUTE on an audit function; this one the guard's owner owns.
GUARD_TYPES_REACHED = f"{PREFIX}guard_types_reached"
#: The guard's functions (name, argument types), but the guard function itself.
GUARD_HELPERS = (
    (PLAIN_CASTS_FUNCTION, "text, oid"),
    (IDENTIFIER_FUNCTION, "text"),
    (GUARD_TYPES_REACHED, "oid"),
)
#: What a writer sets, with SET LOCAL, to have its context recorded in audit_context.
CONTEXT_SETTING = "partitioned_audit.context"
#: Set by the capture, for the transaction, to the id of the transaction once it has made
#: a context row (see _CONTEXT_NOTE); never read for anything but skipping a lookup.
CONTEXT_MADE_SETTING = "partitioned_audit.context_made"
#: Set (by the engine, for its own install/uninstall) to let the guard's owner through.
MAINTENANCE_SETTING = "partitioned_audit.maintenance"
VIEW_TRIGGER = f"{PREFIX}read_only"


#: The sealing helpers both layouts share, and each layout's sealing functions.
SEAL_HELPERS = (
    (
        f"{PREFIX}seal_link",
        "bytea, bigint, text, timestamp with time zone, bigint, bigint, bigint, integer, text, "
        "bigint[], integer[], bigint[], bytea[], text[], jsonb",
    ),
    (f"{PREFIX}seal_append_only", ""),
    (
        f"{PREFIX}seal_entry_problem",
        "bigint, text, bigint, bigint, bigint, integer, bigint[], integer[], bigint[], bytea[], text[], jsonb, "
        "bigint[], bigint[], bigint[], integer[], bigint[], bigint, integer, bigint",
    ),
)
SEAL_FUNCTIONS = (
    ("chunks", "bigint[], bigint[], integer[], integer[], bigint, bigint, oid, bigint[]"),
    ("seal", "integer, integer"),
    ("verify", "bytea"),
    ("retire", "regclass, boolean"),
    ("freeze", ""),
)


def functions(layout: Layout) -> list[tuple[str, str]]:
    """Every function ``layout`` installs, as (name, argument types)."""
    sealing = [(layout.seal_function(which), args) for which, args in SEAL_FUNCTIONS]
    return [
        (layout.function, ""),
        (layout.key_function, ""),
        (layout.row_function, ""),
        *HELPERS,
        *sealing,
        *SEAL_HELPERS,
    ]


# _CASTS_NOTE. A SECURITY DEFINER function must run no code another role controls. The
# capture function turns rows into jsonb, and for a type that is not built in (oid >= 16384),
# to_jsonb() calls the type's cast to json when there is one (PostgreSQL 14-18 look for a
# cast to json only, from the base type of a domain; json_categorize_type() in jsonfuncs.c,
# jsonb_categorize_type() in jsonb.c before 16): a cast whose function another role owns
# would run with the audit owner's rights. Nothing else in a conversion runs such code: base
# types' output functions are C (a superuser made them), enums, arrays, composite types,
# ranges and domains print with built-in code, and no domain CHECK runs on output. Only a
# type's owner (or a superuser) can create a cast from it. The cast is looked up per row,
# so a check made once per statement holds only if no untrusted cast can appear until the
# statement ends. TG_ARGV[3] says how that is made sure (TableSpec.casts_mode):
#   't': the guard is on and every non-built-in type the table reaches belongs to the audit
#        owner or a superuser. The guard refuses CREATE CAST to json (or jsonb) by, or with a
#        function of, any other role, and an ALTER TABLE that gives such a table a column
#        reaching another role's type: nothing to check, the capture pays nothing.
#   'c': the guard is on, and some type belongs to another role: dpa_check_json_casts()
#        refuses the write if one of the table's types has a cast to json of an untrusted
#        role (made before the guard). The guard refuses new ones, so none can appear while
#        the statement runs. It asks first whether that event trigger is still on, and
#        checks the owners instead when it is not.
#   'o' (or anything else): no guard, so nothing stops a type's owner from creating a cast at
#        any moment, nor the table's owner from adding a column of its own type: the trigger
#        argument cannot vouch for anything. dpa_check_type_owners() refuses the write unless
#        every non-built-in type the table reaches belongs to the audit owner or a
#        superuser, which no other role can then give a cast. That holds until the statement
#        ends: the write's lock keeps the columns as they are (ALTER TABLE needs ACCESS
#        EXCLUSIVE), a composite type used by a column cannot change, and only the type's
#        owner or a superuser can change its owner. A table of built-in types only pays one
#        catalog lookup.
# enable() computes the argument; a change of the guard or of the types changes the
# trigger's digest, so E021 reports it and migrate recomputes it.
_HELPERS = """
-- dpa_pk_text, dpa_redact and dpa_context_object are inlined into the capture functions,
-- under the caller's search_path: every name is qualified (see _QUALIFIED_NOTE).
CREATE OR REPLACE FUNCTION {pk_text}(j jsonb, pk text[]) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT CASE WHEN pg_catalog.cardinality(pk) OPERATOR(pg_catalog.=) 1 THEN j OPERATOR(pg_catalog.->>) pk[1]
                ELSE (SELECT pg_catalog.jsonb_agg(j OPERATOR(pg_catalog.->) k ORDER BY o)
                        FROM pg_catalog.unnest(pk) WITH ORDINALITY AS u(k, o))::pg_catalog.text
           END
$fn$;
CREATE OR REPLACE FUNCTION {redact}(j jsonb, excluded text[], masked text[]) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT (j OPERATOR(pg_catalog.-) excluded) OPERATOR(pg_catalog.||) coalesce(
        (SELECT pg_catalog.jsonb_object_agg(
                    k, CASE WHEN (j OPERATOR(pg_catalog.->) k) OPERATOR(pg_catalog.=) 'null'::pg_catalog.jsonb
                            THEN 'null'::pg_catalog.jsonb ELSE '"[masked]"'::pg_catalog.jsonb END)
           FROM pg_catalog.unnest(masked) AS k
          WHERE j OPERATOR(pg_catalog.?) k AND NOT k OPERATOR(pg_catalog.=) ANY (excluded)),
        '{{}}'::pg_catalog.jsonb)
$fn$;
-- The first type dpa_types_reached() (templates/types_reached.sql) finds in a row of rel
-- that belongs to neither a superuser nor role trusted, as ARRAY[type, owner]; NULL if none.
CREATE OR REPLACE FUNCTION {foreign_type}(rel oid, trusted name) RETURNS text[]
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT ARRAY[types.oid::regtype::text, o.rolname::text]
      FROM {types_reached}(rel) AS types(oid)
      JOIN pg_type ty ON ty.oid = types.oid JOIN pg_roles o ON o.oid = ty.typowner
     WHERE NOT o.rolsuper AND o.rolname <> trusted
     ORDER BY types.oid
     LIMIT 1
$fn$;
-- Without the guard, what the capture calls per statement (see _CASTS_NOTE): a table of
-- built-in types only reaches no cast at all, which one lookup tells, with no SET clause
-- (every name is qualified, as in the capture: see _QUALIFIED_NOTE); any other table is
-- checked by dpa_check_json_casts(), which then checks its types' owners too.
CREATE OR REPLACE FUNCTION {check_type_owners}(rel oid) RETURNS boolean
LANGUAGE plpgsql STABLE AS $fn$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_attribute a
                    WHERE a.attrelid OPERATOR(pg_catalog.=) rel AND a.attnum OPERATOR(pg_catalog.>) 0
                      AND a.atttypid OPERATOR(pg_catalog.>=) 16384 AND NOT a.attisdropped) THEN
        RETURN true;
    END IF;
    RETURN {check_json_casts}(rel);
END
$fn$;
-- Raises if converting a row of rel to jsonb could run code of a role other than the audit
-- owner (current_user in the capture) or a superuser. Without the guard's event trigger
-- refusing such casts, a type's owner can create one at any moment, so every type a row
-- holds must belong to the audit owner or a superuser, which no other role can then give
-- one; and in any case no cast to json of such a role may exist from one of them.
CREATE OR REPLACE FUNCTION {check_json_casts}(rel oid) RETURNS boolean
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    _cast record;
    _type text[];
BEGIN
    IF NOT EXISTS (SELECT FROM pg_event_trigger WHERE evtname = {cast_guard} AND evtenabled <> 'D') THEN
        _type := {foreign_type}(rel, current_user);
        IF _type IS NOT NULL THEN
            RAISE EXCEPTION 'partitioned_audit: refusing to audit a write to %: type % belongs to role %, which could give it a cast to json that would run with the rights of the audit owner, and no guard refuses such a cast',
                rel::regclass, _type[1], _type[2]
                USING ERRCODE = 'insufficient_privilege',
                      HINT = format('Run migrate once as a superuser, which installs the guard, or have role %s own the type (ALTER TYPE %s OWNER TO %s).',
                                    current_user, _type[1], current_user);
        END IF;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_cast c JOIN pg_proc p ON p.oid = c.castfunc
                     JOIN pg_roles o ON o.oid = p.proowner
                    WHERE c.castsource >= 16384 AND c.casttarget = 'json'::regtype
                      AND NOT o.rolsuper AND o.rolname <> current_user) THEN
        RETURN true;  -- no cast to json of an untrusted role anywhere
    END IF;
    -- The types to_jsonb() meets in a row of rel that may have a cast of their own.
    SELECT c.castsource::regtype AS source, c.castfunc::regprocedure AS func, o.rolname AS owner
      INTO _cast
      FROM {types_reached}(rel) AS types(oid)
      JOIN pg_cast c ON c.castsource = types.oid AND c.casttarget = 'json'::regtype
      JOIN pg_proc p ON p.oid = c.castfunc
      JOIN pg_roles o ON o.oid = p.proowner
     WHERE NOT o.rolsuper AND o.rolname <> current_user
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'partitioned_audit: refusing to audit a write to %: the cast from % to json runs % of role %, which would run with the rights of the audit owner',
            rel::regclass, _cast.source, _cast.func, _cast.owner
            USING ERRCODE = 'insufficient_privilege',
                  HINT = format('Drop the cast (DROP CAST (%s AS json)), or have role %s own its function.',
                                _cast.source, current_user);
    END IF;
    RETURN true;
END
$fn$;
-- The context as a JSON object: a statement's first row holds an object, and its other rows
-- a number that refers to it, so a context set by hand as another JSON value is wrapped.
CREATE OR REPLACE FUNCTION {context_object}(c jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT CASE WHEN c IS NULL OR pg_catalog.jsonb_typeof(c) OPERATOR(pg_catalog.=) 'object' THEN c
                ELSE pg_catalog.jsonb_build_object('value', c) END
$fn$;
-- Keeps the context rows as the capture wrote them: they go with their partition only, and
-- the engine's maintenance moves them out of the DEFAULT partition unchanged.
CREATE OR REPLACE FUNCTION {context_fixed}() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    IF {maintenance_allowed} THEN
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    RAISE EXCEPTION 'partitioned_audit: the rows of % are never changed nor removed but with their partition', TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$fn$;
CREATE OR REPLACE FUNCTION {refuse_write}() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    RAISE EXCEPTION 'partitioned_audit: % is read-only: audit rows are written by the capture triggers only', TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$fn$;
"""


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
        "context_made": literal(CONTEXT_MADE_SETTING),
        "maintenance_allowed": SQL(MAINTENANCE_ALLOWED).format(
            setting=literal(MAINTENANCE_SETTING), schema=literal(schema)
        ),
        "pk_text": helpers["pk_text"],
        "redact": helpers["redact"],
    }
    templates = (
        template(_TYPES_REACHED),  # before the SQL helpers, whose bodies are checked on creation
        _HELPERS,
        *(template(name) for name in (layout.capture, layout.key_capture, layout.row_capture)),
    )
    return Composed([SQL(text).format(**{**names, **helpers}) for text in templates])


#: Where the function templates are: beside this module, shipped as package data.
TEMPLATES = Path(__file__).with_name("templates")


def template(name: str) -> str:
    """The text of the function template ``name`` in :data:`TEMPLATES`, read whole: what
    runs in PostgreSQL once :func:`create_functions` has filled in its names."""
    return (TEMPLATES / name).read_text(encoding="utf-8")


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
    its trigger takes no virtual columns (_VIRTUAL_NOTE); a row trigger's clones on
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
