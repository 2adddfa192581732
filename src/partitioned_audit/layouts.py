"""The two audit table layouts and the SQL that creates their objects.

Pure: every function returns composed SQL and does no I/O. The statements of one object
version are frozen here; a change to them is a new ``OBJECTS_VERSION`` and a new migration.

Capture is statement-level: one AFTER ... FOR EACH STATEMENT trigger per operation, with
transition tables, so a statement touching N rows costs one function call and one
``INSERT ... SELECT`` of N rows instead of N calls (see docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .errors import ConfigurationError
from .sql import SQL, Composable, Composed, ident, literal

#: Bumped whenever a statement below changes. Stored in ``COMMENT ON TABLE``.
OBJECTS_VERSION = "2.0"

#: Prefix of every trigger, function and comment the engine creates.
PREFIX = "dpa_"
COMMENT_TAG = "partitioned_audit"
# Marks the partitions this engine created; retention never touches a partition without it.
PARTITION_COMMENT = f"{COMMENT_TAG} partition"

NEW_TABLE = "dpa_new"
OLD_TABLE = "dpa_old"

#: Trigger names used by 1.0.4; removed when a table is (re)installed or disabled.
LEGACY_TRIGGERS = ("trigger_audit_entry_creator_trigger", "audit_trigger_row", "audit_trigger_stm")
#: Functions created by 1.0.4, dropped when the layout is upgraded.
LEGACY_FUNCTIONS = (
    "trigger_audit_entry_creator_func_v2()",
    "if_modified_func()",
    "audit_table(regclass)",
    "audit_table(regclass, boolean, boolean)",
    "audit_table(regclass, boolean, boolean, text[])",
)


@dataclass(frozen=True)
class TableSpec:
    """An audited table: where it is and which columns need special care.

    Args:
        schema: schema of the table (``TG_TABLE_SCHEMA``).
        table: table name, any legal identifier.
        pk: primary key columns, in key order; one column is stored as text, several as a
            JSON array.
        excluded: columns left out of the audit payload (updates touching only these are
            not recorded by the advanced layout).
        masked: columns whose value is replaced by ``"[masked]"`` (NULL stays null).
    """

    schema: str
    table: str
    pk: tuple[str, ...]
    excluded: tuple[str, ...] = ()
    masked: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.schema or not self.table:
            raise ConfigurationError(f"table spec needs a schema and a table name, got {self!r}")
        if not self.pk:
            raise ConfigurationError(
                f"table {self.schema}.{self.table} has no primary key columns: "
                "an audited table needs one to identify rows"
            )

    def trigger_args(self) -> list[Composable]:
        """Trigger arguments: ``text[]`` literals, which the function casts with no query.

        (Parsing JSON arguments took a subquery per list and call: a third of the cost of
        auditing a single-row INSERT; see docs/performance.md.)
        """
        return [literal(text_array(cols)) for cols in (self.pk, self.excluded, self.masked)]


def text_array(values: tuple[str, ...]) -> str:
    """The ``text[]`` input form of ``values``: every element double-quoted, with its
    backslashes and double quotes escaped, so any column name survives."""
    return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


@dataclass(frozen=True)
class Layout:
    """Names and time column of one audit table layout."""

    name: str
    table: str
    view: str
    time_column: str
    event_column: str
    function: str
    operations: tuple[str, ...] = ("INSERT", "UPDATE", "DELETE")

    @property
    def sequence(self) -> str:
        return f"{self.table}_{'event_id' if self.name == 'advanced' else 'audit_event_id'}_seq"

    @property
    def default_partition(self) -> str:
        return f"{self.table}_default"

    @property
    def object_index(self) -> str:
        return f"{self.table}_object_idx"

    @property
    def time_index(self) -> str:
        return f"{self.table}_time_brin"

    def triggers(self) -> dict[str, str]:
        """Trigger name by operation."""
        return {op: f"{PREFIX}audit_{op.lower()[:3]}" for op in self.operations}


SIMPLE = Layout(
    name="simple",
    table="audit_simple",
    view="audit_simple_view",
    time_column="audit_entry_created",
    event_column="audit_event_id",
    function=f"{PREFIX}simple_capture",
)
ADVANCED = Layout(
    name="advanced",
    table="logged_actions",
    view="logged_actions_view",
    time_column="action_tstamp_tx",
    event_column="event_id",
    function=f"{PREFIX}advanced_capture",
    operations=("INSERT", "UPDATE", "DELETE", "TRUNCATE"),
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

_SIMPLE_COLUMNS = """
    object_table character varying(63) NOT NULL,
    object_payload jsonb NOT NULL,
    audit_entry_created timestamp with time zone NOT NULL DEFAULT now(),
    audit_entry_created_statement_timestamp timestamp with time zone NOT NULL DEFAULT statement_timestamp(),
    audit_txid_current bigint NOT NULL,
    audit_operation character varying(1) NOT NULL,
    audit_event_id bigint NOT NULL DEFAULT nextval({seq}),
    object_schema text,
    object_pk text,
    audit_context jsonb
"""

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
    audit_context jsonb
"""

#: Columns 2.0 added to each layout, for tables created by 1.0.4 (name, type).
ADDED_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "simple": (("object_schema", "text"), ("object_pk", "text"), ("audit_context", "jsonb")),
    "advanced": (("object_pk", "text"), ("statement_id", "bigint"), ("audit_context", "jsonb")),
}


def create_schema(schema: str) -> Composable:
    return SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident(schema))


def create_sequence(layout: Layout, schema: str) -> Composable:
    return SQL("CREATE SEQUENCE IF NOT EXISTS {} AS bigint").format(ident(schema, layout.sequence))


def create_table(layout: Layout, schema: str, seq_text: str) -> Composable:
    """CREATE TABLE for ``layout``; ``seq_text`` is the rendered, quoted sequence name."""
    columns = _SIMPLE_COLUMNS if layout.name == "simple" else _ADVANCED_COLUMNS
    return SQL("CREATE TABLE {table} (" + columns + ") PARTITION BY RANGE ({time})").format(
        table=ident(schema, layout.table),
        seq=SQL("{}::regclass").format(literal(seq_text)),
        time=ident(layout.time_column),
    )


def add_event_column(layout: Layout, schema: str, seq_text: str) -> Composable:
    """Give a 1.0.4 simple table its event id; existing rows are numbered in place."""
    return SQL(
        "ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} bigint NOT NULL DEFAULT nextval({}::regclass)"
    ).format(ident(schema, layout.table), ident(layout.event_column), literal(seq_text))


def add_columns(layout: Layout, schema: str) -> Composable:
    parts = [
        SQL("ADD COLUMN IF NOT EXISTS {} {}").format(ident(name), SQL(sqltype))
        for name, sqltype in ADDED_COLUMNS[layout.name]
    ]
    return SQL("ALTER TABLE {} ").format(ident(schema, layout.table)) + SQL(", ").join(parts)


def convert_hstore_columns(layout: Layout, schema: str, columns: Sequence[str]) -> Composable:
    """Turn 1.0.4's hstore columns into jsonb; values become JSON strings, as hstore held text."""
    parts = [
        SQL("ALTER COLUMN {col} TYPE jsonb USING hstore_to_jsonb({col})").format(col=ident(col))
        for col in columns
    ]
    return SQL("ALTER TABLE {} ").format(ident(schema, layout.table)) + SQL(", ").join(parts)


def create_default_partition(layout: Layout, schema: str) -> Composable:
    return SQL("CREATE TABLE IF NOT EXISTS {} PARTITION OF {} DEFAULT").format(
        ident(schema, layout.default_partition), ident(schema, layout.table)
    )


def create_indexes(layout: Layout, schema: str) -> list[Composable]:
    """B-tree for the history of one object; BRIN on time, which costs next to nothing to maintain.

    The B-tree key is (table, pk) without the time: the versions of one object then share
    one deduplicated key, so the index is smaller and cheaper to write; partition pruning
    handles a time range, and the few versions of an object are sorted after the lookup.
    """
    table_col = "object_table" if layout.name == "simple" else "table_name"
    return [
        SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({}, object_pk)").format(
            ident(layout.object_index), ident(schema, layout.table), ident(table_col)
        ),
        SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING brin ({})").format(
            ident(layout.time_index), ident(schema, layout.table), ident(layout.time_column)
        ),
    ]


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
        for name in (layout.table, layout.default_partition, layout.view, layout.sequence)
    ]
    for function, arguments in (
        (layout.function, ""),
        (f"{PREFIX}pk_text", "jsonb, text[]"),
        (f"{PREFIX}redact", "jsonb, text[], text[]"),
    ):
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


def create_view(layout: Layout, schema: str) -> list[Composable]:
    view = ident(schema, layout.view)
    table = ident(schema, layout.table)
    if layout.name == "simple":
        body = SQL(
            "SELECT audit_event_id AS id, object_table, object_payload, audit_entry_created,"
            " audit_entry_created_statement_timestamp, audit_txid_current, audit_operation,"
            " object_schema, object_pk, audit_context FROM {}"
        ).format(table)
    else:
        body = SQL(
            "SELECT event_id, schema_name, table_name, relid, session_user_name, action_tstamp_tx,"
            " action_tstamp_stm, action_tstamp_clk, transaction_id, application_name, client_addr,"
            " client_port, client_query, action, row_data, changed_fields, statement_only,"
            " row_data AS row_data_json, changed_fields AS changed_fields_json,"
            " object_pk, statement_id, audit_context FROM {}"
        ).format(table)
    # DROP first: 1.0.4's views had other columns, which CREATE OR REPLACE cannot remove.
    return [SQL("DROP VIEW IF EXISTS {}").format(view), SQL("CREATE VIEW {} AS ").format(view) + body]


# ---------------------------------------------------------------------------------------
# Capture functions
# ---------------------------------------------------------------------------------------

_HELPERS = """
CREATE OR REPLACE FUNCTION {pk_text}(j jsonb, pk text[]) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT CASE WHEN cardinality(pk) = 1 THEN j ->> pk[1]
                ELSE (SELECT jsonb_agg(j -> k ORDER BY o) FROM unnest(pk) WITH ORDINALITY AS u(k, o))::text
           END
$fn$;
CREATE OR REPLACE FUNCTION {redact}(j jsonb, excluded text[], masked text[]) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT (j - excluded) || coalesce(
        (SELECT jsonb_object_agg(k, CASE WHEN j -> k = 'null'::jsonb THEN 'null'::jsonb
                                         ELSE '"[masked]"'::jsonb END)
           FROM unnest(masked) AS k
          WHERE j ? k AND NOT k = ANY (excluded)),
        '{{}}'::jsonb)
$fn$;
"""

_DECLARE = """
DECLARE
    _pk pg_catalog.text[] := TG_ARGV[0]::pg_catalog.text[];
    _excluded pg_catalog.text[] := TG_ARGV[1]::pg_catalog.text[];
    _masked pg_catalog.text[] := TG_ARGV[2]::pg_catalog.text[];
    _plain boolean := cardinality(_excluded) = 0 AND cardinality(_masked) = 0;
    _pk1 text := CASE WHEN cardinality(_pk) = 1 THEN _pk[1] END;
    _context jsonb := NULL;
"""

# The same INSERT reads the NEW transition table for INSERT/UPDATE and the OLD one for
# DELETE; plpgsql needs the table name in the text, so the statement is rendered twice.
_SIMPLE_INSERT = """
        INSERT INTO {table} (object_table, object_schema, object_pk, object_payload,
                             audit_txid_current, audit_operation, audit_context)
        SELECT TG_TABLE_NAME, TG_TABLE_SCHEMA,
               coalesce(r.j ->> _pk1, {pk_text}(r.j, _pk)),
               CASE WHEN _plain THEN r.j ELSE {redact}(r.j, _excluded, _masked) END,
               _txid, _op, _context
          FROM (SELECT to_jsonb(t.*) AS j FROM {source} AS t) AS r;
"""

_SIMPLE_FUNCTION = (
    """
CREATE OR REPLACE FUNCTION {function}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
"""
    + _DECLARE
    + """
    _txid bigint := txid_current();
    _op text := left(TG_OP, 1);
BEGIN
    IF TG_OP = 'DELETE' THEN
"""
    + _SIMPLE_INSERT.replace("{source}", OLD_TABLE)
    + """
    ELSE
"""
    + _SIMPLE_INSERT.replace("{source}", NEW_TABLE)
    + """
    END IF;
    RETURN NULL;
END
$fn$;
"""
)

_ADVANCED_COMMON_COLUMNS = """
            schema_name, table_name, relid, session_user_name, action_tstamp_tx, action_tstamp_stm,
            action_tstamp_clk, transaction_id, application_name, client_addr, client_port,
            client_query, action, statement_only, statement_id, audit_context"""

_ADVANCED_COMMON_VALUES = """
            TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_RELID, session_user::text, current_timestamp,
            statement_timestamp(), clock_timestamp(), _txid, _app, _addr, _port"""

# INSERT and DELETE: one row per row of the transition table, the query text on the first.
_ADVANCED_ROWS = (
    """
        INSERT INTO {table} (row_data, object_pk,"""
    + _ADVANCED_COMMON_COLUMNS
    + """)
        SELECT CASE WHEN _plain THEN r.j ELSE {redact}(r.j, _excluded, _masked) END,
               coalesce(r.j ->> _pk1, {pk_text}(r.j, _pk)),"""
    + _ADVANCED_COMMON_VALUES
    + """,
               CASE WHEN r.n = 1 THEN _query END, _op, false, _stmt, _context
          FROM (SELECT to_jsonb(t.*) AS j, row_number() OVER () AS n FROM {source} AS t) AS r;
"""
)

# UPDATE: PostgreSQL fills the OLD and NEW transition tables in step, one pair per updated
# row, so the n-th rows of both belong together, even when the key itself changed.
_ADVANCED_UPDATE = (
    """
        INSERT INTO {table} (row_data, changed_fields, object_pk,"""
    + _ADVANCED_COMMON_COLUMNS
    + """)
        SELECT d.old_j, d.changed, coalesce(d.old_j ->> _pk1, {pk_text}(d.old_j, _pk)),"""
    + _ADVANCED_COMMON_VALUES
    + """,
               CASE WHEN row_number() OVER () = 1 THEN _query END, 'U', false, _stmt, _context
          FROM (
                SELECT CASE WHEN _plain THEN o.j ELSE {redact}(o.j, _excluded, _masked) END AS old_j,
                       (SELECT jsonb_object_agg(e.key, CASE WHEN e.key = ANY (_masked) AND e.value <> 'null'::jsonb
                                                            THEN '"[masked]"'::jsonb ELSE e.value END)
                          FROM jsonb_each(n.j) AS e
                         WHERE NOT e.key = ANY (_excluded)
                           AND (o.j -> e.key) IS DISTINCT FROM e.value) AS changed
                  FROM (SELECT to_jsonb(t.*) AS j, row_number() OVER () AS n FROM {old} AS t) AS o
                  JOIN (SELECT to_jsonb(t.*) AS j, row_number() OVER () AS n FROM {new} AS t) AS n USING (n)
               ) AS d
         WHERE d.changed IS NOT NULL;
"""
)

_ADVANCED_FUNCTION = (
    """
CREATE OR REPLACE FUNCTION {function}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
"""
    + _DECLARE
    + """
    _txid bigint := txid_current();
    _op text := left(TG_OP, 1);
    _app text := current_setting('application_name');
    _addr inet := inet_client_addr();
    _port integer := inet_client_port();
    -- The query text carries the values it writes: never keep it for tables with
    -- excluded or masked columns.
    _query text := CASE WHEN _plain THEN current_query() END;
    _stmt bigint := nextval({seq});
BEGIN
    IF TG_OP = 'INSERT' THEN
"""
    + _ADVANCED_ROWS.replace("{source}", NEW_TABLE)
    + """
    ELSIF TG_OP = 'DELETE' THEN
"""
    + _ADVANCED_ROWS.replace("{source}", OLD_TABLE)
    + """
    ELSIF TG_OP = 'UPDATE' THEN
"""
    + _ADVANCED_UPDATE.replace("{old}", OLD_TABLE).replace("{new}", NEW_TABLE)
    + """
    ELSE
        INSERT INTO {table} ("""
    + _ADVANCED_COMMON_COLUMNS
    + """)
        VALUES ("""
    + _ADVANCED_COMMON_VALUES
    + """, _query, 'T', true, _stmt, _context);
    END IF;
    RETURN NULL;
END
$fn$;
"""
)


def _function_names(layout: Layout, schema: str) -> dict[str, Composable]:
    return {
        "function": ident(schema, layout.function),
        "pk_text": ident(schema, f"{PREFIX}pk_text"),
        "redact": ident(schema, f"{PREFIX}redact"),
        "table": ident(schema, layout.table),
    }


def create_functions(layout: Layout, schema: str, seq_text: str) -> Composable:
    """The capture function of ``layout`` and the helpers it calls, schema-qualified."""
    names = _function_names(layout, schema)
    body = _SIMPLE_FUNCTION if layout.name == "simple" else _ADVANCED_FUNCTION
    helpers = SQL(_HELPERS).format(pk_text=names["pk_text"], redact=names["redact"])
    function = SQL(body).format(seq=SQL("{}::regclass").format(literal(seq_text)), **names)
    return Composed([helpers, function])


def comment_function(layout: Layout, schema: str, digest: str) -> Composable:
    return SQL("COMMENT ON FUNCTION {}() IS {}").format(
        ident(schema, layout.function), literal(f"{COMMENT_TAG} {digest}")
    )


# ---------------------------------------------------------------------------------------
# Triggers
# ---------------------------------------------------------------------------------------


def drop_trigger(name: str, spec_schema: str, spec_table: str) -> Composable:
    return SQL("DROP TRIGGER IF EXISTS {} ON {}").format(ident(name), ident(spec_schema, spec_table))


def create_triggers(layout: Layout, schema: str, spec: TableSpec) -> list[Composable]:
    """One statement-level trigger per operation on ``spec``'s table."""
    target = ident(spec.schema, spec.table)
    function = ident(schema, layout.function)
    args = SQL(", ").join(spec.trigger_args())
    statements: list[Composable] = []
    for operation, name in layout.triggers().items():
        if operation == "INSERT":
            referencing = SQL("REFERENCING NEW TABLE AS {}").format(ident(NEW_TABLE))
        elif operation == "DELETE":
            referencing = SQL("REFERENCING OLD TABLE AS {}").format(ident(OLD_TABLE))
        elif operation == "UPDATE" and layout.name == "simple":
            referencing = SQL("REFERENCING NEW TABLE AS {}").format(ident(NEW_TABLE))
        elif operation == "UPDATE":
            referencing = SQL("REFERENCING OLD TABLE AS {} NEW TABLE AS {}").format(
                ident(OLD_TABLE), ident(NEW_TABLE)
            )
        else:
            referencing = Composed([])
        statements.append(
            SQL(
                "CREATE TRIGGER {name} AFTER {op} ON {target} {referencing} FOR EACH STATEMENT EXECUTE FUNCTION {function}({args})"
            ).format(
                name=ident(name),
                op=SQL(operation),
                target=target,
                referencing=referencing,
                function=function,
                args=args,
            )
        )
    return statements


def comment_trigger(name: str, spec: TableSpec, digest: str) -> Composable:
    return SQL("COMMENT ON TRIGGER {} ON {} IS {}").format(
        ident(name), ident(spec.schema, spec.table), literal(f"{COMMENT_TAG} {digest}")
    )
