"""Apply plans to a live database: create, detach and drop partitions, and check coverage.

Every change runs in a short transaction of its own that first takes a transaction-level
advisory lock (two maintenance runs on one audit table never interleave) and sets a
``lock_timeout``. When a lock cannot be had in time the transaction is rolled back and tried
again later, so an audited write never waits behind maintenance for longer than
``lock_timeout``. On a connection already inside a transaction (Django's ``atomic``, a test)
each attempt is a savepoint instead, and the locks are held until the caller commits.

Design of the safety net and of retention, which PostgreSQL makes interact:

* The DEFAULT partition catches rows no partition covers, so a write never fails. Creating
  a partition moves the DEFAULT rows of its range into it and attaches it; ATTACH takes only
  SHARE UPDATE EXCLUSIVE on the audit table (writers keep going) and scans the DEFAULT
  partition, which is kept empty, so the scan is instant.
* ``DETACH PARTITION ... CONCURRENTLY`` is refused while a DEFAULT partition exists, and the
  DEFAULT partition cannot itself be detached concurrently. Detaching it around a concurrent
  detach therefore still needs one brief ACCESS EXCLUSIVE lock on the audit table, exactly
  what a plain DETACH needs, and opens a window in which a stray row fails. So retention
  uses a plain DETACH of all expired partitions in one short transaction, bounded by
  ``lock_timeout`` and retried: one brief lock, and the safety net never goes away.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .. import catalog, privileges, sealing
from ..ddl import context_storage, create_context_default, create_context_gin, create_default_partition
from ..errors import ConfigurationError, PartitionError
from ..layouts import (
    COMMENT_TAG,
    CONTEXT_TIME_COLUMN,
    DETACHED_COMMENT,
    MAINTENANCE_SETTING,
    PARTITION_COMMENT,
    Layout,
)
from ..offline import verify as offline_verify
from ..sql import SQL, Composable, Cursor, execute, ident, literal, render, sqlstate
from .plan import Coverage, Plan, coverage, expired, plan, today_utc
from .ranges import PartitionInfo, TimeRangeGenerator

T = TypeVar("T")

LOCK_NOT_AVAILABLE = "55P03"


@dataclass(frozen=True)
class LockPolicy:
    """How long maintenance DDL may wait for a lock, and how it tries again.

    ``lock_timeout_ms`` bounds how long an audited write can be held up by maintenance;
    after a timeout the attempt is rolled back, and after a pause of about ``pause_ms``
    (with jitter) it is tried again, ``attempts`` times in all.
    """

    lock_timeout_ms: int = 200
    attempts: int = 30
    pause_ms: int = 500

    def __post_init__(self) -> None:
        for name in ("lock_timeout_ms", "attempts", "pause_ms"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigurationError(f"LockPolicy.{name} must be a positive integer, got {value!r}")


def run_with_lock_retries(
    connection: Any,
    policy: LockPolicy,
    work: Callable[[Cursor], T],
    give_up: Callable[[Cursor], Exception],
    sleep: Callable[[float], None],
) -> T:
    """Run ``work`` under ``policy.lock_timeout_ms``, tried again after a pause of about
    ``policy.pause_ms`` (with jitter) each time a lock cannot be had in time, so that it
    never keeps writers queued behind it for longer than the timeout.

    Each attempt is a transaction of its own on a connection in autocommit mode, otherwise a
    savepoint, whose locks the caller's transaction then holds until it ends; there the
    caller's ``lock_timeout`` is set back after a successful attempt. An attempt failing for
    another reason is rolled back and its error raised.

    Args:
        connection: a DB-API connection (psycopg or psycopg2).
        policy: the lock timeout, the number of attempts and the pause between them.
        work: what one attempt runs, given a cursor; its result is returned.
        give_up: the error to raise, given a cursor, when the last attempt timed out too.
        sleep: called with seconds between attempts (tests pass a recorder).

    Returns:
        What ``work`` returned in the attempt that got its locks.
    """
    own_transaction = getattr(connection, "autocommit", False)
    if own_transaction:
        begin, commit, rollback = "BEGIN", "COMMIT", "ROLLBACK"
    else:
        begin = "SAVEPOINT partitioned_audit_maintenance"
        commit = "RELEASE SAVEPOINT partitioned_audit_maintenance"
        rollback = "ROLLBACK TO SAVEPOINT partitioned_audit_maintenance"
    for attempt in range(1, policy.attempts + 1):
        cursor = connection.cursor()
        cursor.execute(begin)
        try:
            if not own_transaction:
                cursor.execute("SELECT current_setting('lock_timeout')")
                previous_timeout = cursor.fetchone()[0]
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", [f"{policy.lock_timeout_ms}ms"])
            result = work(cursor)
            if not own_transaction:  # a setting made in a savepoint outlives its release
                cursor.execute("SELECT set_config('lock_timeout', %s, true)", [previous_timeout])
        except BaseException as exc:
            cursor.execute(rollback)
            if sqlstate(exc) != LOCK_NOT_AVAILABLE:
                raise
            if attempt == policy.attempts:
                raise give_up(cursor) from exc
            sleep(policy.pause_ms / 1000 * random.uniform(0.5, 1.5))  # noqa: S311 - jitter only
            continue
        cursor.execute(commit)
        return result
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True)
class Created:
    """What :meth:`Maintainer.create` did.

    ``covered`` maps each partition asked for whose whole range existing partitions already
    hold (nothing was created for it) to the names of those partitions.
    """

    partitions: list[PartitionInfo]
    moved_rows: int
    covered: dict[str, list[str]] = field(default_factory=dict)


class Maintainer:
    """Partition maintenance of one audit table over a DB-API connection (psycopg or psycopg2).

    Args:
        connection: preferably in autocommit mode, so that each change commits on its own
            and holds its locks only briefly.
        layout: the audit table's layout.
        schema: the schema of the audit table.
        policy: lock timeout and retries.
        sleep: called with seconds between attempts (tests pass a recorder).
    """

    def __init__(
        self,
        connection: Any,
        layout: Layout,
        schema: str = "public",
        policy: LockPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.connection = connection
        self.layout = layout
        self.schema = schema
        self.policy = policy or LockPolicy()
        self.sleep = sleep

    @property
    def table(self) -> str:
        return f"{self.schema}.{self.layout.table}"

    # -- reading ------------------------------------------------------------------------

    def catalog_rows(self) -> list[catalog.PartitionRow]:
        """Every partition of the audit table, including the DEFAULT one and foreign names."""
        rows = catalog.partitions(self.connection.cursor(), self.schema, self.layout.table)
        if not rows:
            self.require_installed()
        return rows

    def require_installed(self) -> None:
        """Raise a readable error when this layout's audit table is not in ``schema``.

        Raises:
            PartitionError: naming the layout, the table, and how to install it.
        """
        if not catalog.existing_tables(self.connection.cursor(), [(self.schema, self.layout.table)]):
            raise PartitionError(
                f"the {self.layout.name} layout is not installed here: audit table {self.table} "
                "does not exist; install the audit objects first (python manage.py migrate, or "
                "partitioned_audit.install())"
            )

    def existing(self, owned_only: bool = False) -> list[PartitionInfo]:
        """Partitions named ``<table>_<YYYYMMDD>_<YYYYMMDD>``; with ``owned_only``, only ours."""
        found = []
        for row in self.catalog_rows():
            info = PartitionInfo.of(row.name, self.layout.table)
            if info is None:
                continue
            if owned_only and row.comment != PARTITION_COMMENT:
                continue
            found.append(info)
        return sorted(found, key=lambda p: p.from_date)

    def plan(self, generator: TimeRangeGenerator, extra_days: int, now: dt.datetime | None = None) -> Plan:
        return plan(self.layout.table, self.existing(), today_utc(now), extra_days, generator)

    def expired(self, older_than_days: int, now: dt.datetime | None = None) -> list[PartitionInfo]:
        """Our partitions whose whole range is older than ``older_than_days`` days."""
        return expired(self.existing(owned_only=True), today_utc(now), older_than_days)

    def check(self, extra_days: int, now: dt.datetime | None = None) -> Coverage:
        rows = self.catalog_rows()
        default = [r for r in rows if r.is_default]
        default_rows = 0
        if default:
            cursor = self.connection.cursor()
            execute(cursor, SQL("SELECT count(*) FROM {}").format(ident(self.schema, default[0].name)))
            default_rows = int(cursor.fetchone()[0])
        return coverage(self.table, self.existing(), today_utc(now), extra_days, default_rows, bool(default))

    # -- changing -----------------------------------------------------------------------

    def create(self, partitions: Sequence[PartitionInfo]) -> Created:
        """Create ``partitions``, skipping any a concurrent run made meanwhile.

        Rows of their ranges leave the DEFAULT partition for them, in the same transaction.
        A missing DEFAULT partition is recreated first. A partition whose whole range
        existing partitions already hold is not created: ``Created.covered`` names them
        (1.0.4 projects' test fixtures create ``[today, today + 2 days)`` after ``migrate``
        made this month's partition).

        Raises:
            PartitionError: a partition would hold part of an existing one's range; nothing
                was created.
        """

        def work(cursor: Cursor) -> Created:
            present = {row.name: row for row in catalog.partitions(cursor, self.schema, self.layout.table)}
            if not any(row.is_default for row in present.values()):
                execute(cursor, create_default_partition(self.layout, self.schema))
                privileges.match_parent(cursor, self.schema, self.layout.default_partition, self.layout.table)
            self._context_default(cursor)
            made, moved, covered = [], 0, {}
            for info in partitions:
                if info.partition in present:
                    continue
                holders = covering(info.time_range.lower, info.time_range.upper, present.values())
                if holders:
                    covered[info.partition] = [row.name for row in holders]
                    continue
                bounds = snapped_bounds(info, present.values())
                clash = overlapping(*bounds, present.values())
                if clash:
                    raise PartitionError(
                        f"{self.schema}.{info.partition} ({bounds[0]} .. {bounds[1]}) would overlap "
                        f"partition {self.schema}.{clash[0].name} ({clash[0].bound}), which holds part "
                        "of its range; choose a range that ends where existing partitions begin "
                        "(list-all shows them)"
                    )
                moved += self._create_one(cursor, info, bounds)
                present[info.partition] = catalog.PartitionRow(info.partition, "", False, None, *bounds)
                made.append(info)
            return Created(made, moved, covered)

        return self._locked(work)

    def merge_pending(self, now: dt.datetime | None = None) -> dict[str, int]:
        """Merge the GIN pending list of each finished partition of the context table (its
        range ended by ``now``) into its tree, with ``gin_clean_pending_list()``.

        The context GIN keeps PostgreSQL's ``fastupdate``: an insert appends its keys to a
        pending list of up to ``gin_pending_list_limit`` (4 MB), which is merged into the
        tree when it is full (or by VACUUM, or autovacuum's ANALYZE). Every search of the
        index reads the whole list: a request's search paid about 0.1 ms per 10 pending
        pages of each partition (docs/performance.md). A partition's last list stays when
        its month ends below autovacuum's thresholds, which it then never reaches again;
        merging it once leaves nothing there for good. It takes no lock that writers or
        readers wait for (the index's ROW EXCLUSIVE, and its metapage for the merge), and
        needs the index's owner: a role that does not own it (a run that had nothing to
        create) leaves it. The current partition, whose list refills as it is written, is
        left to its writers.

        Returns:
            The pages merged, by index, for the indexes that had any.
        """
        instant = now or dt.datetime.now(dt.UTC)
        cursor = self.connection.cursor()
        finished = [
            render(ident(self.schema, row.name), cursor)
            for row in catalog.partitions(cursor, self.schema, self.layout.context_table)
            if not row.is_default and row.upper is not None and row.upper <= instant
        ]
        if not finished:
            return {}
        execute(
            cursor,
            "SELECT c.relname::text, pg_catalog.gin_clean_pending_list(c.oid)"
            "  FROM pg_catalog.pg_inherits i"
            "  JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) i.inhrelid"
            "  JOIN pg_catalog.pg_index x ON x.indexrelid OPERATOR(pg_catalog.=) c.oid"
            " WHERE i.inhparent OPERATOR(pg_catalog.=) %s::pg_catalog.regclass"
            "   AND x.indrelid OPERATOR(pg_catalog.=) ANY (%s::pg_catalog.regclass[])"
            "   AND pg_catalog.pg_has_role(c.relowner, 'USAGE')"
            " ORDER BY 1",
            [render(ident(self.schema, self.layout.context_gin_index), cursor), finished],
        )
        return {name: int(pages) for name, pages in cursor.fetchall() if pages}

    def detach(
        self,
        partitions: Sequence[PartitionInfo],
        drop: bool = False,
        check: Callable[[Cursor, str], None] | None = None,
    ) -> list[PartitionInfo]:
        """Detach (and with ``drop``, drop) ``partitions``; only ones this engine created.

        ``check`` is called with the cursor and each partition's name under the maintenance
        lock, before anything changes; it raises to keep the partition (the archive checks
        that the partition still holds the rows it copied).

        Returns:
            The partitions detached or dropped; ones already gone are skipped.
        """

        def work(cursor: Cursor) -> list[PartitionInfo]:
            present = {row.name: row for row in catalog.partitions(cursor, self.schema, self.layout.table)}
            context_partitions = {
                row.name: row for row in catalog.partitions(cursor, self.schema, self.layout.context_table)
            }
            done = []
            for info in partitions:
                row = present.get(info.partition)
                if row is None:
                    continue
                if row.comment != PARTITION_COMMENT:
                    raise PartitionError(
                        f"{self.schema}.{info.partition} was not created by partitioned_audit "
                        f"(its comment is {row.comment!r}); refusing to detach or drop it"
                    )
                # The context rows of its transactions go with it (they have the same time, so
                # no other audit partition's row points at them, given the same bounds).
                contexts = self.layout.context_partition(info.partition)
                beside = context_partitions.get(contexts)
                if beside is not None and (beside.lower, beside.upper) != (row.lower, row.upper):
                    raise PartitionError(
                        f"{self.schema}.{contexts} does not have the bounds of {info.partition}:"
                        " rows of other audit partitions may point at its context rows; refusing"
                        " to detach or drop them"
                    )
                if check is not None:
                    check(cursor, info.partition)
                # The chain records what its sealed rows leave behind, before they go.
                sealing.retire(cursor, self.layout, self.schema, info.partition, drop)
                # The context partition first, as writers lock the context table first (see
                # _create_one).
                for parent, name in (
                    (ident(self.schema, self.layout.context_table), contexts),
                    (self._parent, info.partition),
                ):
                    if name == contexts and beside is None:
                        continue  # made before the context table, whose DEFAULT holds its rows
                    table = ident(self.schema, name)
                    execute(cursor, SQL("ALTER TABLE {} DETACH PARTITION {}").format(parent, table))
                    if drop:
                        execute(cursor, SQL("DROP TABLE {}").format(table))
                    else:
                        execute(
                            cursor, SQL("COMMENT ON TABLE {} IS {}").format(table, literal(DETACHED_COMMENT))
                        )
                done.append(info)
            return done

        return self._locked(work)

    def seal(
        self, chunk_size: int = sealing.DEFAULT_CHUNK_SIZE, wait_ms: int = sealing.DEFAULT_WAIT_MS
    ) -> sealing.Sealed:
        """Seal the rows written since the last seal (see :mod:`partitioned_audit.sealing`).

        Under the maintenance lock, so a partition never leaves while its rows are sealed.
        """
        self.require_installed()
        return self._locked(
            lambda cursor: sealing.seal(cursor, self.layout, self.schema, chunk_size, wait_ms)
        )

    def holders(self) -> list[sealing.Holder]:
        """The transactions holding audit rows not yet visible, oldest first (see
        :func:`partitioned_audit.sealing.holders`)."""
        self.require_installed()
        return sealing.holders(self.connection.cursor(), self.layout, self.schema)

    def verify(self, expect: str | None = None, offline: bool = False) -> sealing.Verification:
        """Recompute every seal; ``expect`` is a head digest kept outside the database.

        With ``offline``, the digests are recomputed here from plain SELECTs
        (:mod:`partitioned_audit.offline`), so no function inside the database is trusted.
        """
        self.require_installed()
        if offline:
            return offline_verify(self.connection, self.layout, self.schema, expect)
        return sealing.verify(self.connection.cursor(), self.layout, self.schema, expect)

    def restrict(self, role: str, read: bool = False) -> privileges.Outcome:
        """Close every audit object to ``role`` and PUBLIC (see :mod:`partitioned_audit.privileges`).

        Runs under the maintenance lock, so it never interleaves with a partition being
        created, and in one transaction: on an error nothing was changed.
        """
        self.require_installed()
        return self._locked(lambda cursor: privileges.apply(cursor, self.layout, self.schema, role, read))

    # -- internals ----------------------------------------------------------------------

    @property
    def _parent(self) -> Any:
        return ident(self.schema, self.layout.table)

    def _context_default(self, cursor: Cursor) -> None:
        """Recreate the context table's DEFAULT partition if it went missing."""
        if not catalog.existing_tables(cursor, [(self.schema, self.layout.context_default_partition)]):
            execute(cursor, create_context_default(self.layout, self.schema))
            privileges.match_parent(
                cursor, self.schema, self.layout.context_default_partition, self.layout.context_table
            )

    def restore(self, info: PartitionInfo, fill: Callable[[Cursor, str], int]) -> int:
        """Create and attach ``info`` holding the rows ``fill(cursor, name)`` copies into it
        before it is attached (the archive's restore), in one transaction.

        Returns:
            What ``fill`` returned (the rows it copied).

        Raises:
            PartitionError: ``info`` or a partition holding part of its range exists.
        """

        def work(cursor: Cursor) -> int:
            present = {row.name: row for row in catalog.partitions(cursor, self.schema, self.layout.table)}
            clash = overlapping(info.time_range.lower, info.time_range.upper, present.values())
            if info.partition in present or clash:
                raise PartitionError(
                    f"{self.schema}.{(clash[0].name if clash else info.partition)} holds the range of "
                    f"{info.partition} in the audit table; nothing to restore (list-all shows it)"
                )
            copied: list[int] = []
            self._create_one(
                cursor,
                info,
                (info.time_range.lower, info.time_range.upper),
                lambda c, n: copied.append(fill(c, n)),
            )
            return copied[0]

        return self._locked(work)

    def _create_one(
        self,
        cursor: Cursor,
        info: PartitionInfo,
        bounds: tuple[dt.datetime, dt.datetime],
        fill: Callable[[Cursor, str], None] | None = None,
    ) -> int:
        """Create the audit partition ``info`` and the context table's beside it, with the
        same bounds: returns how many audit rows left the DEFAULT partition for it. ``fill``
        copies rows into the audit partition before it is attached, the context partition
        being attached by then.

        The context table's first: a writer locks it before the audit table (the capture
        looks its context row up first), so taking them in that order never deadlocks. A
        context partition is not made where one already holds part of the range (left by
        an audit partition dropped by hand): its rows stay there.
        """
        contexts = self.layout.context_partition(info.partition)
        present = catalog.partitions(cursor, self.schema, self.layout.context_table)
        if contexts not in {row.name for row in present} and not overlapping(*bounds, present):
            self._create_partition(
                cursor,
                self.layout.context_table,
                contexts,
                self.layout.context_default_partition,
                CONTEXT_TIME_COLUMN,
                bounds,
                storage=context_storage(),
                indexes=[create_context_gin(self.layout, self.schema, contexts)],
            )
        return self._create_partition(
            cursor,
            self.layout.table,
            info.partition,
            self.layout.default_partition,
            self.layout.time_column,
            bounds,
            fill,
        )

    def _create_partition(
        self,
        cursor: Cursor,
        parent_name: str,
        partition: str,
        default_name: str,
        time_column: str,
        bounds: tuple[dt.datetime, dt.datetime],
        fill: Callable[[Cursor, str], None] | None = None,
        storage: Composable | None = None,
        indexes: Sequence[Composable] = (),
    ) -> int:
        """Create ``partition`` of ``parent_name``, move its range's rows out of the DEFAULT
        partition into it and attach it: returns how many rows moved. ``fill`` copies rows
        into it first (the archive's restore); ``storage`` is its ``WITH (...)`` clause (a
        context partition's, see :data:`partitioned_audit.ddl.CONTEXT_STORAGE`); ``indexes``
        are made on it before it is attached, which takes them as partitions of the
        parent's matching indexes (see :data:`partitioned_audit.ddl.CONTEXT_GIN_STORAGE`)."""
        parent = ident(self.schema, parent_name)
        table = ident(self.schema, partition)
        default = ident(self.schema, default_name)
        time_col = ident(time_column)
        lower, upper = literal(bounds[0]), literal(bounds[1])
        bound = ident(f"{partition[:50]}_bound")
        # Writers whose rows would land in the DEFAULT partition wait from here to commit, so
        # that no row of the new range can slip in between the move and the ATTACH scan.
        execute(cursor, SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(default))
        execute(
            cursor,
            SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS) {}").format(
                table, parent, storage if storage is not None else SQL("")
            ),
        )
        for index in indexes:
            execute(cursor, index)
        if fill is not None:
            fill(cursor, partition)
        # Sealed rows may be among them: they move unchanged, which the freeze lets through
        # for the engine's maintenance only.
        cursor.execute("SELECT set_config(%s, 'on', true)", [MAINTENANCE_SETTING])
        execute(
            cursor,
            SQL(
                "WITH moved AS (DELETE FROM {default} WHERE {time} >= {lower} AND {time} < {upper} RETURNING *)"
                " INSERT INTO {table} SELECT * FROM moved"
            ).format(default=default, time=time_col, lower=lower, upper=upper, table=table),
        )
        moved = max(getattr(cursor, "rowcount", 0) or 0, 0)
        cursor.execute("SELECT set_config(%s, '', true)", [MAINTENANCE_SETTING])
        # The CHECK lets ATTACH skip scanning the new partition.
        execute(
            cursor,
            SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK ({time} >= {lower} AND {time} < {upper})").format(
                table, bound, time=time_col, lower=lower, upper=upper
            ),
        )
        execute(
            cursor,
            SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})").format(
                parent, table, lower, upper
            ),
        )
        execute(cursor, SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(table, bound))
        execute(cursor, SQL("COMMENT ON TABLE {} IS {}").format(table, literal(PARTITION_COMMENT)))
        # Default privileges may have opened the new table: give it its parent's grants only.
        privileges.match_parent(cursor, self.schema, partition, parent_name)
        return moved

    def _locked(self, work: Callable[[Cursor], T]) -> T:
        """Run ``work`` under the maintenance lock and ``lock_timeout``, retrying on lock timeouts."""
        policy = self.policy

        def locked_work(cursor: Cursor) -> T:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"{COMMENT_TAG}:{self.table}"])
            return work(cursor)

        def give_up(cursor: Cursor) -> PartitionError:
            return PartitionError(
                f"partition maintenance of {self.table} could not get its locks within "
                f"{policy.lock_timeout_ms} ms in {policy.attempts} attempts (another maintenance "
                "run or a long transaction on the audit table holds them); nothing was changed, "
                "try again later"
            )

        return run_with_lock_retries(self.connection, policy, locked_work, give_up, self.sleep)


#: How far a neighbour's real bound may be from a new partition's UTC bound and still be
#: taken as the same boundary: more than any time zone offset, less than a partition.
SNAP = dt.timedelta(hours=26)
_EARLIEST = dt.datetime.min.replace(tzinfo=dt.UTC)
_LATEST = dt.datetime.max.replace(tzinfo=dt.UTC)


def _span(row: catalog.PartitionRow) -> tuple[dt.datetime, dt.datetime]:
    """A non-default partition's range; MINVALUE and MAXVALUE as the ends of time."""
    return row.lower or _EARLIEST, row.upper or _LATEST


def overlapping(
    lower: dt.datetime, upper: dt.datetime, rows: Iterable[catalog.PartitionRow]
) -> list[catalog.PartitionRow]:
    """The partitions among ``rows`` holding part of ``[lower, upper)``, earliest first."""
    spans = [(row, *_span(row)) for row in rows if not row.is_default]
    return [row for row, low, high in sorted(spans, key=lambda s: s[1]) if low < upper and lower < high]


def covering(
    lower: dt.datetime, upper: dt.datetime, rows: Iterable[catalog.PartitionRow]
) -> list[catalog.PartitionRow]:
    """The partitions that together hold all of ``[lower, upper)`` with no gap, else []."""
    found = overlapping(lower, upper, rows)
    reach = lower
    for row in found:
        low, high = _span(row)
        if low > reach:
            return []
        reach = max(reach, high)
    return found if found and reach >= upper else []


def snapped_bounds(
    info: PartitionInfo, neighbours: Iterable[catalog.PartitionRow]
) -> tuple[dt.datetime, dt.datetime]:
    """The bounds of ``info``, moved onto a neighbour's real bound when that is within a day.

    1.0.4 gave its partitions bounds in the session's time zone: next to one of those, a
    UTC-bounded partition would overlap it by a few hours (and ATTACH would fail) or leave
    a gap of a few hours whose rows would stay in the DEFAULT partition for good.
    """
    lower, upper = info.time_range.lower, info.time_range.upper
    for row in neighbours:
        if row.lower is None or row.upper is None:
            continue
        if row.lower < lower < row.upper + SNAP and abs(row.upper - lower) < SNAP:
            lower = row.upper
        if row.lower - SNAP < upper < row.upper and abs(row.lower - upper) < SNAP:
            upper = row.lower
    if lower >= upper:
        raise PartitionError(
            f"{info.partition} would be empty between its neighbours ({lower} .. {upper}); "
            "check the existing partitions with list-all"
        )
    return lower, upper
