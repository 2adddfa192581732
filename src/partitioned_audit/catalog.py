"""Reads of pg_catalog, returned as frozen dataclasses. Values are always bound parameters."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass

from .ddl import TriggerDefinition, canonical_condition
from .layouts import COMMENT_TAG, LEGACY_TRIGGERS, PREFIX
from .sql import Cursor


@dataclass(frozen=True)
class TriggerInfo:
    schema: str
    table: str
    name: str
    comment: str | None
    #: pg_trigger.tgenabled: A fires always (what the engine installs), O only when
    #: session_replication_role is origin or local, R only on a replica, D never.
    enabled: str = "A"
    #: What the trigger does; compare it with ddl.trigger_definitions() (see
    #: objects.trigger_difference), never trust the name or the comment alone.
    definition: TriggerDefinition | None = None

    @property
    def digest(self) -> str | None:
        prefix = f"{COMMENT_TAG} "
        if self.comment and self.comment.startswith(prefix):
            return self.comment[len(prefix) :]
        return None


@dataclass(frozen=True)
class TableState:
    """What exists of one layout's audit table."""

    exists: bool
    comment: str | None
    column_types: dict[str, str]
    function_comment: str | None
    #: The names of the table's indexes.
    indexes: frozenset[str]
    #: The table's own triggers named ``dpa_seal_*`` that fire in every session.
    seal_triggers: frozenset[str] = frozenset()


def audit_triggers(cursor: Cursor) -> list[TriggerInfo]:
    """Every trigger this engine or 1.0.4 created, on any table, with its whole definition."""
    cursor.execute(
        """
        SELECT n.nspname, c.relname, t.tgname, obj_description(t.oid, 'pg_trigger'), t.tgenabled::text,
               fn.nspname, p.proname, t.tgtype::int, t.tgargs, t.tgoldtable, t.tgnewtable,
               t.tgattr::int2[]::int[], CASE WHEN t.tgqual IS NOT NULL THEN pg_get_triggerdef(t.oid) END
          FROM pg_catalog.pg_trigger t
          JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
          JOIN pg_catalog.pg_namespace fn ON fn.oid = p.pronamespace
         WHERE NOT t.tgisinternal AND t.tgparentid = 0  -- clones on partitions follow their parent
           AND (starts_with(t.tgname::text, %s) OR t.tgname::text = ANY (%s))
         ORDER BY 1, 2, 3
        """,
        [f"{PREFIX}audit_", list(LEGACY_TRIGGERS)],
    )
    return [
        TriggerInfo(
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            TriggerDefinition(
                function=(row[5], row[6]),
                type=int(row[7]),
                enabled=row[4],
                args=_trigger_args(row[8]),
                old_table=row[9],
                new_table=row[10],
                columns=tuple(row[11] or ()),
                condition=canonical_condition(_condition(row[12])),
            ),
        )
        for row in cursor.fetchall()
    ]


def _trigger_args(raw: bytes | memoryview | None) -> tuple[str, ...]:
    """pg_trigger.tgargs: each argument's bytes followed by a NUL."""
    data = bytes(raw or b"")
    return tuple(part.decode("utf-8", "replace") for part in data.split(b"\x00")[:-1])


#: The WHEN condition in what pg_get_triggerdef() prints; arguments after it may hold any text.
_WHEN = re.compile(r" FOR EACH (?:ROW|STATEMENT) WHEN \((.*)\) EXECUTE (?:FUNCTION|PROCEDURE) ", re.S)


def _condition(definition: str | None) -> str | None:
    if definition is None:
        return None
    match = _WHEN.search(definition)
    # Unreadable: a text that can equal no expected condition, so the trigger is reported.
    return match.group(1) if match else definition


def triggers_calling(cursor: Cursor, schema: str, function: str) -> int:
    """How many triggers (clones on partitions aside) call ``schema.function``."""
    cursor.execute(
        """
        SELECT count(*) FROM pg_catalog.pg_trigger t
          JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
          JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = %s AND p.proname = %s AND t.tgparentid = 0
        """,
        [schema, function],
    )
    return int(cursor.fetchone()[0])


def table_state(cursor: Cursor, schema: str, table: str, function: str) -> TableState:
    """The audit table's comment, column types and indexes, the capture function's comment."""
    cursor.execute(
        """
        SELECT c.oid IS NOT NULL,
               obj_description(c.oid, 'pg_class'),
               (SELECT coalesce(jsonb_object_agg(a.attname, format_type(a.atttypid, a.atttypmod)), '{}')
                  FROM pg_catalog.pg_attribute a
                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
               (SELECT obj_description(p.oid, 'pg_proc')
                  FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace
                 WHERE pn.nspname = %(schema)s AND p.proname = %(function)s AND p.pronargs = 0),
               ARRAY(SELECT i.relname::text FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
                      WHERE x.indrelid = c.oid),
               ARRAY(SELECT t.tgname::text FROM pg_catalog.pg_trigger t
                      WHERE t.tgrelid = c.oid AND t.tgparentid = 0 AND t.tgenabled = 'A'
                        AND starts_with(t.tgname::text, %(seal_prefix)s))
          FROM (SELECT 1) AS one
          LEFT JOIN (pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace)
                 ON n.nspname = %(schema)s AND c.relname = %(table)s
        """,
        {
            "schema": schema,
            "table": table,
            "function": function,
            "seal_prefix": f"{PREFIX}seal_",
        },
    )
    exists, comment, columns, function_comment, indexes, seal_triggers = cursor.fetchone()
    if isinstance(columns, str):  # psycopg2 without a jsonb loader in some set-ups
        import json

        columns = json.loads(columns)
    return TableState(
        bool(exists),
        comment,
        dict(columns or {}),
        function_comment,
        frozenset(indexes),
        frozenset(seal_triggers),
    )


def primary_key(cursor: Cursor, schema: str, table: str) -> tuple[str, ...]:
    """Primary key columns of ``schema.table`` in key order; empty if it has none."""
    cursor.execute(
        """
        SELECT a.attname
          FROM pg_catalog.pg_index i
          JOIN pg_catalog.pg_class c ON c.oid = i.indrelid
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
          JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
         WHERE n.nspname = %s AND c.relname = %s AND i.indisprimary
         ORDER BY k.ord
        """,
        [schema, table],
    )
    return tuple(row[0] for row in cursor.fetchall())


def partitions_of(
    cursor: Cursor, tables: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """For each (schema, table), every partition below it at any depth, as (schema, name);
    an empty list for a table that is not partitioned. One query for all tables."""
    names = list(tables)
    found: dict[tuple[str, str], list[tuple[str, str]]] = {name: [] for name in names}
    if not names:
        return found
    cursor.execute(
        """
        SELECT w.schema, w.name, pn.nspname, pc.relname
          FROM unnest(%s::text[], %s::text[]) AS w(schema, name)
          JOIN pg_catalog.pg_namespace n ON n.nspname = w.schema
          JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = w.name AND c.relkind = 'p'
         CROSS JOIN LATERAL pg_catalog.pg_partition_tree(c.oid) AS t
          JOIN pg_catalog.pg_class pc ON pc.oid = t.relid
          JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace
         WHERE t.level > 0
         ORDER BY 1, 2, t.level, 3, 4
        """,
        [[s for s, _ in names], [t for _, t in names]],
    )
    for schema, name, part_schema, part in cursor.fetchall():
        found[(schema, name)].append((part_schema, part))
    return found


def trusted_types(
    cursor: Cursor, tables: Iterable[tuple[str, str]], function: str
) -> dict[tuple[str, str], bool]:
    """For each (schema, table), whether every non-built-in type it uses (through domains,
    arrays and composite types) belongs to a superuser or to the owner of ``function``
    (a regprocedure text, the capture function), and has no cast to json whose function
    another role owns. Only those roles can then give one of them a cast to json. Missing
    tables are left out."""
    names = list(tables)
    if not names:
        return {}
    cursor.execute(
        """
        WITH RECURSIVE tables(schema, name, rel) AS (
                SELECT w.schema, w.name, c.oid
                  FROM unnest(%s::text[], %s::text[]) AS w(schema, name)
                  JOIN pg_catalog.pg_namespace n ON n.nspname = w.schema
                  JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = w.name
        ), types(rel, oid) AS (
                SELECT t.rel, a.atttypid FROM tables t
                  JOIN pg_catalog.pg_attribute a ON a.attrelid = t.rel AND a.attnum > 0 AND NOT a.attisdropped
            UNION
                SELECT types.rel, inner_type.oid
                  FROM types JOIN pg_catalog.pg_type ty ON ty.oid = types.oid
                 CROSS JOIN LATERAL (
                        SELECT nullif(ty.typbasetype, 0)
                        UNION ALL SELECT nullif(ty.typelem, 0)
                        UNION ALL SELECT a.atttypid FROM pg_catalog.pg_attribute a
                                   WHERE a.attrelid = ty.typrelid AND a.attnum > 0 AND NOT a.attisdropped
                       ) AS inner_type(oid)
                 WHERE inner_type.oid IS NOT NULL
        )
        , audit_owner(oid) AS (
                SELECT proowner FROM pg_catalog.pg_proc WHERE oid = to_regprocedure(%s)
        )
        SELECT t.schema, t.name, NOT EXISTS (
                   SELECT FROM types
                     JOIN pg_catalog.pg_type ty ON ty.oid = types.oid
                     JOIN pg_catalog.pg_roles o ON o.oid = ty.typowner
                    WHERE types.rel = t.rel AND types.oid >= 16384 AND NOT o.rolsuper
                      AND o.oid IS DISTINCT FROM (SELECT oid FROM audit_owner)
               ) AND NOT EXISTS (
                   SELECT FROM types
                     JOIN pg_catalog.pg_cast c ON c.castsource = types.oid
                                              AND c.casttarget = 'pg_catalog.json'::pg_catalog.regtype
                     JOIN pg_catalog.pg_proc p ON p.oid = c.castfunc
                     JOIN pg_catalog.pg_roles o ON o.oid = p.proowner
                    WHERE types.rel = t.rel AND types.oid >= 16384 AND NOT o.rolsuper
                      AND o.oid IS DISTINCT FROM (SELECT oid FROM audit_owner)
               )
          FROM tables t
        """,
        [[s for s, _ in names], [t for _, t in names], function],
    )
    return {(row[0], row[1]): bool(row[2]) for row in cursor.fetchall()}


def virtual_columns(
    cursor: Cursor, tables: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], tuple[str, ...]]:
    """For each (schema, table), its virtual generated columns (PostgreSQL 18's default
    kind of ``GENERATED ALWAYS AS``, ``attgenerated = 'v'``) in column order; an empty
    tuple for a table without any, as every table before 18. Missing tables are left out."""
    names = list(tables)
    if not names:
        return {}
    cursor.execute(
        """
        SELECT w.schema, w.name,
               ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a
                      WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                        AND a.attgenerated = 'v'
                      ORDER BY a.attnum)
          FROM unnest(%s::text[], %s::text[]) AS w(schema, name)
          JOIN pg_catalog.pg_namespace n ON n.nspname = w.schema
          JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = w.name
        """,
        [[s for s, _ in names], [t for _, t in names]],
    )
    return {(row[0], row[1]): tuple(row[2]) for row in cursor.fetchall()}


def detached_defaults(cursor: Cursor, schema: str, sequence: str, comment: str) -> list[tuple[str, str]]:
    """(table, column) of every table in ``schema`` commented ``comment`` whose column
    default draws from ``schema.sequence``: a detached partition keeps the default of its
    former parent."""
    cursor.execute(
        """
        SELECT c.relname, a.attname
          FROM pg_catalog.pg_class s
          JOIN pg_catalog.pg_namespace n ON n.oid = s.relnamespace
          JOIN pg_catalog.pg_depend d ON d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
                                     AND d.refobjid = s.oid
                                     AND d.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass
          JOIN pg_catalog.pg_attrdef ad ON ad.oid = d.objid
          JOIN pg_catalog.pg_class c ON c.oid = ad.adrelid
          JOIN pg_catalog.pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
         WHERE n.nspname = %s AND s.relname = %s AND c.relnamespace = n.oid
           AND obj_description(c.oid, 'pg_class') = %s
         ORDER BY 1, 2
        """,
        [schema, sequence, comment],
    )
    return [(row[0], row[1]) for row in cursor.fetchall()]


def existing_tables(cursor: Cursor, names: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of the (schema, table) pairs exist as ordinary or partitioned tables."""
    if not names:
        return set()
    cursor.execute(
        """
        SELECT n.nspname, c.relname
          FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p')
           AND (n.nspname, c.relname) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
        """,
        [[s for s, _ in names], [t for _, t in names]],
    )
    return {(row[0], row[1]) for row in cursor.fetchall()}


@dataclass(frozen=True)
class PartitionRow:
    """One partition of an audit table, with its bound as PostgreSQL prints it and as instants."""

    name: str
    bound: str
    is_default: bool
    comment: str | None
    lower: dt.datetime | None = None  # None for the DEFAULT partition (or MINVALUE)
    upper: dt.datetime | None = None


# The bound prints its instants with their offset, so reading them back is exact whatever
# the session's TimeZone; MINVALUE/MAXVALUE (no quotes) give NULL.
_BOUNDS = r"""FROM \('([^']*)'\) TO \('([^']*)'\)"""


def partitions(cursor: Cursor, schema: str, table: str) -> list[PartitionRow]:
    """Partitions of ``schema.table``, ordered by name."""
    cursor.execute(
        """
        SELECT c.relname, b.text, b.text = 'DEFAULT', obj_description(c.oid, 'pg_class'),
               m.instants[1]::timestamptz, m.instants[2]::timestamptz
          FROM pg_catalog.pg_inherits i
          JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
          JOIN pg_catalog.pg_class p ON p.oid = i.inhparent
          JOIN pg_catalog.pg_namespace n ON n.oid = p.relnamespace
         CROSS JOIN LATERAL (SELECT pg_get_expr(c.relpartbound, c.oid) AS text) AS b
         CROSS JOIN LATERAL (SELECT regexp_match(b.text, %s) AS instants) AS m
         WHERE n.nspname = %s AND p.relname = %s
         ORDER BY c.relname
        """,
        [_BOUNDS, schema, table],
    )
    return [PartitionRow(*row) for row in cursor.fetchall()]
