"""Apply a plan: create partitions, moving rows the DEFAULT partition caught into them.

Runs in the caller's transaction under a transaction-level advisory lock, so two
maintenance runs on one audit table never interleave; the second one fails fast.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from .. import catalog
from ..errors import PartitionError
from ..layouts import COMMENT_TAG, Layout
from ..sql import SQL, Cursor, execute, ident, literal
from .plan import Plan, plan, today_utc
from .ranges import PartitionInfo, TimeRangeGenerator

PARTITION_COMMENT = f"{COMMENT_TAG} partition"


def existing_partitions(cursor: Cursor, layout: Layout, schema: str = "public") -> list[PartitionInfo]:
    """Partitions of the audit table whose names follow ``<table>_<YYYYMMDD>_<YYYYMMDD>``."""
    found = []
    for row in catalog.partitions(cursor, schema, layout.table):
        info = PartitionInfo.parse(row.name)
        if info is not None and info.partitioned_table == layout.table:
            found.append(info)
    return found


def make_plan(
    cursor: Cursor,
    layout: Layout,
    generator: TimeRangeGenerator,
    extra_days: int,
    schema: str = "public",
    now: dt.datetime | None = None,
) -> Plan:
    return plan(
        layout.table, existing_partitions(cursor, layout, schema), today_utc(now), extra_days, generator
    )


def lock(cursor: Cursor, layout: Layout, schema: str) -> None:
    """Take the maintenance lock of this audit table for the rest of the transaction."""
    cursor.execute(
        "SELECT pg_try_advisory_xact_lock(hashtext(%s))", [f"{COMMENT_TAG}:{schema}.{layout.table}"]
    )
    if not cursor.fetchone()[0]:
        raise PartitionError(
            f"another partition maintenance of {schema}.{layout.table} is running; try again when it ends"
        )


def create(
    cursor: Cursor, layout: Layout, partitions: Sequence[PartitionInfo], schema: str = "public"
) -> int:
    """Create ``partitions``; rows of their ranges leave the DEFAULT partition for them.

    Returns:
        How many rows were moved out of the DEFAULT partition.
    """
    lock(cursor, layout, schema)
    parent = ident(schema, layout.table)
    default = ident(schema, layout.default_partition)
    time = ident(layout.time_column)
    moved = 0
    for info in partitions:
        table = ident(schema, info.partition)
        lower, upper = literal(info.time_range.lower), literal(info.time_range.upper)
        execute(cursor, SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS)").format(table, parent))
        execute(
            cursor,
            SQL(
                "WITH moved AS (DELETE FROM {default} WHERE {time} >= {lower} AND {time} < {upper} RETURNING *)"
                " INSERT INTO {table} SELECT * FROM moved"
            ).format(default=default, time=time, lower=lower, upper=upper, table=table),
        )
        moved += max(getattr(cursor, "rowcount", 0) or 0, 0)
        # The CHECK lets ATTACH skip scanning the new partition.
        execute(
            cursor,
            SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK ({time} >= {lower} AND {time} < {upper})").format(
                table, ident(f"{info.partition[:50]}_bound"), time=time, lower=lower, upper=upper
            ),
        )
        execute(
            cursor,
            SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})").format(
                parent, table, lower, upper
            ),
        )
        execute(
            cursor,
            SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(table, ident(f"{info.partition[:50]}_bound")),
        )
        execute(cursor, SQL("COMMENT ON TABLE {} IS {}").format(table, literal(PARTITION_COMMENT)))
        execute(cursor, SQL("REVOKE ALL ON {} FROM PUBLIC").format(table))
    return moved
