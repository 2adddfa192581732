"""The two audit table layouts, as data: their names, their columns and their templates.

An audited table is a :class:`TableSpec`; a layout is a :class:`Layout`, and the two are
:data:`SIMPLE` and :data:`ADVANCED`. The names of the objects the engine installs beside
the audit table, and of the settings they read, are here too. The statements that create
those objects are built from this data by :mod:`partitioned_audit.ddl`, and the functions
among them are whole templates in ``partitioned_audit/templates/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import ConfigurationError
from .sql import Composable, literal

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
    ``{names}`` :func:`ddl.create_table` and :func:`ddl.create_view` fill with quoted
    identifiers; ``capture``, ``key_capture`` and ``row_capture`` name whole function
    templates in ``partitioned_audit/templates/``, which :func:`ddl.create_functions` fills
    in one pass.
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
    #: The audited row after the change (before it, for a DELETE) as jsonb, from the read
    #: view aliased ``v``: what the read models type with the audited table's row type.
    row_after: str
    #: The audited row before an UPDATE as jsonb, from the read view aliased ``v``, where the
    #: entry holds it; else NULL, and the version before holds it.
    row_before: str = "NULL::jsonb"
    #: Whether a row may hold no schema (``schema_column`` NULL): 1.0.4's rows, written when
    #: every audited table was in ``public``, which is then their schema.
    schemaless_rows: bool = False
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
        :func:`ddl.create_view`)."""
        return f"{self.table}_context_view"

    @property
    def keys_view(self) -> str:
        """The keys of the entries and the columns the admin's list filters on, without the
        context join (see :func:`ddl.create_view`)."""
        return f"{self.table}_keys_view"

    @property
    def views(self) -> tuple[str, ...]:
        """Every read view: the read models' view first."""
        return (self.view, self.context_view, self.keys_view)

    @property
    def object_function(self) -> str:
        """The read view's rows of one object, by a plan kept per connection (see
        ``templates/object_entries.sql``): what ``filter_object()`` and ``history()`` read."""
        return f"{self.table}_object_entries"

    @property
    def context_function(self) -> str:
        """The context view's rows whose context contains one of a list of objects, by a
        plan kept per connection (see ``templates/context_entries.sql``): what
        ``filter_context()`` reads for a key without a B-tree of its own."""
        return f"{self.table}_context_entries"

    @property
    def read_functions(self) -> tuple[tuple[str, str, str], ...]:
        """The functions returning read view rows, each ``(name, argument types, template)``:
        dropped before the views and created after them, granted as the views are."""
        return (
            (self.object_function, OBJECT_FUNCTION_ARGS, "object_entries.sql"),
            (self.context_function, CONTEXT_FUNCTION_ARGS, "context_entries.sql"),
        )

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
        writer declared (see :data:`CONTEXT_COLUMNS`)."""
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
# single-row write's cost (docs/performance.md). Nor does a statement that changed no row:
# the statement-level captures draw the new row's id first and write the row after their
# audit rows, only when they wrote one (a statement-level trigger fires for an UPDATE or
# DELETE that matched nothing). The views show the row's own login role where it has one
# (every row but a simple one written before the column, which has a context row), else
# its context row's (the same role): the row's own is what every seal
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
    row_after="v.object_payload",
    schemaless_rows=True,
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
    row_after="coalesce(v.row_data, '{}') || coalesce(v.changed_fields, '{}')",
    row_before="v.row_data",
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
# Names of the objects the engine installs beside the audit table, and their settings
# ---------------------------------------------------------------------------------------

#: The context table's columns: partitioned like the audit table, by the transaction's
#: start (see _CONTEXT_NOTE).
CONTEXT_COLUMNS = """
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

#: The context table's partition key: the transaction's start, as the audit rows' time.
CONTEXT_TIME_COLUMN = "created"

#: The argument types of each layout's object function (templates/object_entries.sql).
OBJECT_FUNCTION_ARGS = "text, text, text"
#: The argument types of each layout's context function (templates/context_entries.sql).
CONTEXT_FUNCTION_ARGS = "jsonb"


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
# trigger's digest, so E021 reports it and migrate recomputes it. The checks are the
# templates check_type_owners.sql, check_json_casts.sql and foreign_type.sql.
