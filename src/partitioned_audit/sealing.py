"""Tamper evidence: seal the trail in chained SHA-256 digests and verify it later.

A *seal* covers the next contiguous range of event ids, cut into *chunks* of ``chunk_size``
ids; each chunk's digest is SHA-256 over the canonical text of its rows (see
docs/tamper-evidence.md), and each seal's own digest hashes the previous seal's digest with
this seal's header and chunk digests. The last digest is the *head*: an operator who keeps
it outside the database can later prove that no sealed row was changed, removed or added,
even by a superuser who recomputed every seal.

Everything is computed inside PostgreSQL by functions installed with the layout; no audit
row travels to Python. Each function is a whole template, ``templates/seal*.sql``
(:data:`TEMPLATES`), whose header says what it does and why. The SQL here is pure (composed
statements, no I/O) except for :func:`seal`, :func:`verify` and :func:`retire`, which run
those functions on a cursor.

Safe horizon. Event ids come from a sequence, so a transaction may hold id 100 uncommitted
while id 101 commits. Every audit row is inserted through the audit table (the capture
functions name it), and a transaction holds a ROW EXCLUSIVE lock on it from before it takes
an id until it ends; it has a transaction id by then (its audited write), which its audit
rows record. So the seal reads the last id handed out, then the transactions holding that
lock and their transaction ids, waits up to ``wait_ms`` for them, and seals every id up to
the one read in one snapshot, recording the writers that snapshot still saw open
(``pending``). Their ids are gaps only they can fill: once they have all ended, a later seal
recomputes that seal's chunks and seals the rows they added (*late rows*) if they are all
that changed (the chunk's digest without rows of those transactions is the one sealed).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from .ddl import MAINTENANCE_ALLOWED, context_join, deployed
from .errors import AuditError, ConfigurationError
from .layouts import (
    COMMENT_TAG,
    CONTEXT_ID_COLUMN,
    MAINTENANCE_SETTING,
    PREFIX,
    SEAL_FUNCTIONS,
    SEAL_HELPERS,
    Layout,
)
from .sql import SQL, Composable, Composed, Cursor, execute, ident, literal, quote_ident, render, sqlstate

#: Event ids per chunk: the unit ``verify`` names when a digest differs. Chosen by
#: measurement (docs/performance.md): larger chunks seal no faster, smaller ones grow the
#: seal table.
DEFAULT_CHUNK_SIZE = 1_000
#: How long ``seal`` waits for transactions still adding audit rows before it settles for
#: an earlier horizon.
DEFAULT_WAIT_MS = 2_000
#: The digest the first seal chains from.
GENESIS = "00" * 32
#: The canonical encoding new seals use (docs/tamper-evidence.md); seals of earlier
#: formats, made before it, keep verifying with theirs. Format 3 adds to each row's fields
#: the context reference and what the context row it points at holds (:data:`CONTEXT_FIELDS`);
#: format 4 the columns ``Layout.sealed_from`` gives it (the simple layout's login role).
FORMAT = 4
#: The formats of a seal entry's ``extra`` (format 1 has none).
EXTRA_FORMATS = tuple(range(2, FORMAT + 1))
#: What format 3 appends to a row's fields, in order: the row's ``audit_context_id``, then
#: the login role and the context of the context row it points at (NULL where none).
CONTEXT_FIELDS = (("e", CONTEXT_ID_COLUMN), ("c", "session_user_name"), ("c", "context"))
#: The largest chunk a seal accepts: a chunk's digest hashes 32 bytes a row, 32 MB at most.
MAX_CHUNK_SIZE = 1_000_000
#: A field whose text is longer (in UTF-8 bytes) enters its row's digest as its own SHA-256.
INLINE_BYTES = 65_536
#: How long before a retirement a partition's whole range must have ended (the least
#: ``--older-than``); retire refuses a partition that has not, and verify reports one as removed.
MIN_RETENTION = "1 day"

#: Triggers protecting sealed rows and the seal table; the guard keeps them in place.
TRIGGER_PREFIX = f"{PREFIX}seal_"
FREEZE_TRIGGER = f"{TRIGGER_PREFIX}freeze"
FREEZE_TRUNCATE_TRIGGER = f"{TRIGGER_PREFIX}freeze_truncate"
FREEZE_TRIGGERS = frozenset({FREEZE_TRIGGER, FREEZE_TRUNCATE_TRIGGER})
APPEND_ONLY_TRIGGER = f"{TRIGGER_PREFIX}append_only"
APPEND_ONLY_TRUNCATE_TRIGGER = f"{TRIGGER_PREFIX}append_only_truncate"

LINK_FUNCTION, APPEND_ONLY_FUNCTION, ENTRY_PROBLEM_FUNCTION = (name for name, _ in SEAL_HELPERS)


class SealError(AuditError):
    """Sealing, verifying or retiring sealed rows cannot be done as asked."""


def _names(layout: Layout, schema: str) -> dict[str, Composable]:
    chunks, seal, verify, retire, freeze = (
        ident(schema, layout.seal_function(which)) for which, _ in SEAL_FUNCTIONS
    )
    return {
        "table": ident(schema, layout.table),
        "table_text": literal(f"{schema}.{layout.table}"),
        "table_reg": SQL("format('%I.%I', {}, {})::regclass").format(literal(schema), literal(layout.table)),
        "seals": ident(schema, layout.seal_table),
        "marks": ident(schema, layout.mark_table),
        "event": ident(layout.event_column),
        "chunks": chunks,
        # (the chunks function's name as text, for a statement retire builds with format())
        "chunks_name": literal(quote_ident(schema, layout.seal_function("chunks"))),
        "seal": seal,
        "verify": verify,
        "retire": retire,
        "freeze": freeze,
        "link": ident(schema, LINK_FUNCTION),
        "append_only": ident(schema, APPEND_ONLY_FUNCTION),
        "entry_problem": ident(schema, ENTRY_PROBLEM_FUNCTION),
        "default_partition": literal(layout.default_partition),
        "lock_key": literal(f"{COMMENT_TAG}:{schema}.{layout.table}"),
        "genesis": SQL("decode({}, 'hex')").format(literal(GENESIS)),
        "maintenance_allowed": SQL(MAINTENANCE_ALLOWED).format(
            setting=literal(MAINTENANCE_SETTING), schema=literal(schema)
        ),
        # (format 1's line: the columns it hashed, not those a later format added; every
        # column where the row holds a value in one of those: Layout.stray_columns)
        "columns": SQL(", ").join(SQL("e.{}").format(ident(c)) for c in layout.sealed_columns(1)),
        "all_columns": SQL(", ").join(SQL("e.{}").format(ident(c)) for c in layout.column_names),
        "stray": _stray(layout),
        "row_digest": _row_digest(layout),
        "context_join": context_join(layout, schema, "e"),
        "field_bytes": _field_bytes(layout),
        "txid": ident(layout.txid_column),
        "format": literal(FORMAT),
        "extra_formats": SQL(", ").join(SQL("{}::jsonb").format(literal(str(f))) for f in EXTRA_FORMATS),
        "max_chunk": literal(MAX_CHUNK_SIZE),
        "min_retention": SQL("interval {}").format(literal(MIN_RETENTION)),
        "full_xid": SQL(_FULL_XID),
        # (a writer in a savepoint also holds its subtransaction's id, later than its own)
        "xid_of": SQL(
            "(SELECT min({}) FROM pg_locks t WHERE t.locktype = 'transactionid' AND t.mode = 'ExclusiveLock'"
            " AND t.granted AND coalesce(t.pid, 0)::text || '/' || t.virtualtransaction = w)"
        ).format(SQL(_FULL_XID)),
    }


# The full (epoch-qualified) transaction id of pg_locks' 32-bit ``t.transactionid``, from
# ``_next``, the next id to be handed out when it was read. The 32-bit id is taken as the one
# nearest ``_next``, before or after it, the way PostgreSQL compares transaction ids: a writer
# may take its id after ``_next`` was read and before its lock is listed (it is then after
# every id the seal counts, but its full id must still be a real one, never negative).
_FULL_XID = (
    "(_next - (((_next - t.transactionid::text::bigint) % 4294967296 + 4294967296 + 2147483648)"
    " % 4294967296 - 2147483648))"
)


def _piece(name: str) -> Composable:
    """The piece of field bytes ``b.<name>``: 0x00 for NULL; 0x01, the length in 4 bytes
    and the bytes when at most ``INLINE_BYTES`` long; else 0x02 and their SHA-256."""
    return SQL(
        "CASE WHEN b.{f} IS NULL THEN '\\x00'::bytea"
        " WHEN octet_length(b.{f}) <= {inline} THEN '\\x01'::bytea || int4send(octet_length(b.{f})) || b.{f}"
        " ELSE '\\x02'::bytea || sha256(b.{f}) END"
    ).format(f=ident(name), inline=literal(INLINE_BYTES))


def _stray(layout: Layout) -> Composable:
    """Whether row ``e`` holds a value in a column its seal's format (``formats[w.i]``)
    does not cover (:meth:`~partitioned_audit.layouts.Layout.stray_columns`): such a row is
    hashed with every column, so a value written into one since the seal is found."""
    tests = [
        SQL("(formats[w.i] < {} AND e.{} IS NOT NULL)").format(literal(since), ident(name))
        for name, since in layout.sealed_from.items()
        if name in layout.column_names
    ]
    return SQL("({})").format(SQL(" OR ").join(tests)) if tests else SQL("false")


def _row_digest(layout: Layout) -> Composable:
    """A row's digest (formats 2 and later): SHA-256 over the pieces of the fields of
    ``layout.sealed_columns(format)`` in column order (see :func:`_piece`), from the UTF-8
    bytes ``b.f<i>`` of their output text (see :func:`_field_bytes`); format 3 and later go
    on with the pieces of :data:`CONTEXT_FIELDS` (``b.g<i>``). A column that a later format
    added (``layout.sealed_from``) adds nothing to the digest of an earlier one, unless the
    row holds a value in such a column (:func:`_stray`): then every column's piece. One hash
    a row, and a bounded one, whatever the row holds."""
    pieces = []
    for i, name in enumerate(layout.column_names):
        since = layout.sealed_from.get(name, 1)
        piece = _piece(f"f{i}")
        if since > 2:
            piece = SQL("CASE WHEN formats[w.i] >= {} OR {} THEN {} ELSE ''::bytea END").format(
                literal(since), _stray(layout), piece
            )
        pieces.append(piece)
    fields = SQL(" || ").join(pieces)
    context = SQL(" || ").join(_piece(f"g{i}") for i, _ in enumerate(CONTEXT_FIELDS))
    return SQL("sha256({} || CASE WHEN formats[w.i] >= 3 THEN {} ELSE ''::bytea END)").format(fields, context)


def _field_bytes(layout: Layout) -> Composable:
    """The UTF-8 bytes of each field's output text, as ``f0``, ``f1``, ... (each made
    once), and for format 3 those of :data:`CONTEXT_FIELDS` as ``g0``, ``g1``, ``g2``."""
    # (format() writes NULL as an empty string: NULL must stay NULL)
    text = "CASE WHEN {c} IS NOT NULL THEN convert_to(format('%s', {c}), 'UTF8') END AS {f}"
    return SQL(", ").join(
        [
            *(
                SQL(text).format(c=SQL("e.{}").format(ident(c)), f=ident(f"f{i}"))
                for i, c in enumerate(layout.column_names)
            ),
            *(
                SQL(text).format(c=SQL("{}.{}").format(ident(alias), ident(c)), f=ident(f"g{i}"))
                for i, (alias, c) in enumerate(CONTEXT_FIELDS)
            ),
        ]
    )


_TABLES = """
CREATE TABLE IF NOT EXISTS {seals} (
    seal_id bigint PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('seal', 'detach', 'drop')),
    sealed_at timestamp with time zone NOT NULL,
    first_event_id bigint NOT NULL,
    last_event_id bigint NOT NULL,
    row_count bigint NOT NULL,
    chunk_size integer,
    partition_name text,
    chunk_seal bigint[] NOT NULL,
    chunk_index integer[] NOT NULL,
    chunk_rows bigint[] NOT NULL,
    chunk_digest bytea[] NOT NULL,
    chunk_partitions text[] NOT NULL,
    previous bytea NOT NULL,
    digest bytea NOT NULL UNIQUE
);
-- Entries of format 2 and later (NULL: format 1): see docs/tamper-evidence.md.
ALTER TABLE {seals} ADD COLUMN IF NOT EXISTS extra jsonb;
CREATE TABLE IF NOT EXISTS {marks} (
    last_event_id bigint NOT NULL,
    writers text[] NOT NULL,
    taken_at timestamp with time zone NOT NULL DEFAULT now()
);
"""


def _writers_query(layout: Layout, schema: str) -> Composable:
    """The transactions (other than this one) holding a write lock on the audit table."""
    return SQL(
        "ARRAY(SELECT DISTINCT coalesce(l.pid, 0)::text || '/' || l.virtualtransaction FROM pg_locks l"
        " WHERE l.locktype = 'relation' AND l.granted AND l.mode <> 'AccessShareLock'"
        " AND l.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())"
        " AND l.relation = {table_reg} AND l.pid IS DISTINCT FROM pg_backend_pid())"
    ).format(table_reg=_names(layout, schema)["table_reg"])


def create_tables(layout: Layout, schema: str) -> list[Composable]:
    """The seal table and the marks of earlier horizons, closed to PUBLIC. (Seals of format 2
    record the transactions they sealed around in the chain and write no mark; the table
    stays, as existing installs and their privileges have it.)"""
    names = _names(layout, schema)
    return [
        SQL(_TABLES).format(**names),
        SQL("REVOKE ALL ON {} FROM PUBLIC").format(names["seals"]),
        SQL("REVOKE ALL ON {} FROM PUBLIC").format(names["marks"]),
    ]


def create_append_only(layout: Layout, schema: str) -> list[Composable]:
    """The triggers that refuse every change to a seal, and an INSERT not made by a sealing
    function (after :func:`create_functions`)."""
    names = _names(layout, schema)
    seals = names["seals"]
    return [
        SQL("DROP TRIGGER IF EXISTS {} ON {}").format(ident(APPEND_ONLY_TRIGGER), seals),
        SQL("DROP TRIGGER IF EXISTS {} ON {}").format(ident(APPEND_ONLY_TRUNCATE_TRIGGER), seals),
        SQL(
            "CREATE TRIGGER {} BEFORE INSERT OR UPDATE OR DELETE ON {} FOR EACH ROW EXECUTE FUNCTION {}({})"
        ).format(
            ident(APPEND_ONLY_TRIGGER),
            seals,
            names["append_only"],
            SQL(", ").join(
                [
                    literal(quote_ident(schema, layout.table)),
                    literal(quote_ident(schema, layout.seal_function("chunks"))),
                ]
            ),
        ),
        SQL("CREATE TRIGGER {} BEFORE TRUNCATE ON {} FOR EACH STATEMENT EXECUTE FUNCTION {}()").format(
            ident(APPEND_ONLY_TRUNCATE_TRIGGER), seals, names["append_only"]
        ),
        SQL("ALTER TABLE {} ENABLE ALWAYS TRIGGER {}").format(seals, ident(APPEND_ONLY_TRIGGER)),
        SQL("ALTER TABLE {} ENABLE ALWAYS TRIGGER {}").format(seals, ident(APPEND_ONLY_TRUNCATE_TRIGGER)),
    ]


#: The sealing functions' templates in ``partitioned_audit/templates/``, one a function, in
#: the order they are created: the helpers both layouts share, then the layout's own. The
#: function digest hashes their text in this order (objects._function_digest).
TEMPLATES = (
    "seal_link.sql",
    "seal_entry_problem.sql",
    "seal_append_only.sql",
    "seal_chunks.sql",
    "seal_freeze.sql",
    "seal.sql",
    "seal_retire.sql",
    "seal_verify.sql",
)


def create_functions(layout: Layout, schema: str) -> Composable:
    """The sealing functions of ``layout`` and the helpers they share, schema-qualified:
    each template of :data:`TEMPLATES` filled in one pass."""
    names = _names(layout, schema)
    names.update(
        seq=SQL("format('%I.%I', {}, {})").format(literal(schema), literal(layout.sequence)),
        backfill_seq=SQL("format('%I.%I', {}, {})").format(
            literal(schema), literal(layout.backfill_sequence)
        ),
        writers=_writers_query(layout, schema),
        freeze_trigger=literal(FREEZE_TRIGGER),
        event_name=literal(layout.event_column),
    )
    return Composed([SQL(deployed(name)).format(**names) for name in TEMPLATES])


def create_freeze(layout: Layout, schema: str) -> list[Composable]:
    """The triggers refusing to change sealed rows (cloned onto every partition) and to
    TRUNCATE the audit table while it holds some."""
    names = _names(layout, schema)
    table = names["table"]
    return [
        SQL("DROP TRIGGER IF EXISTS {} ON {}").format(ident(FREEZE_TRIGGER), table),
        SQL("DROP TRIGGER IF EXISTS {} ON {}").format(ident(FREEZE_TRUNCATE_TRIGGER), table),
        SQL("CREATE TRIGGER {} BEFORE UPDATE OR DELETE ON {} FOR EACH ROW EXECUTE FUNCTION {}()").format(
            ident(FREEZE_TRIGGER), table, names["freeze"]
        ),
        SQL("CREATE TRIGGER {} BEFORE TRUNCATE ON {} FOR EACH STATEMENT EXECUTE FUNCTION {}()").format(
            ident(FREEZE_TRUNCATE_TRIGGER), table, names["freeze"]
        ),
        SQL("ALTER TABLE {} ENABLE ALWAYS TRIGGER {}").format(table, ident(FREEZE_TRIGGER)),
        SQL("ALTER TABLE {} ENABLE ALWAYS TRIGGER {}").format(table, ident(FREEZE_TRUNCATE_TRIGGER)),
    ]


# ---------------------------------------------------------------------------------------
# Running them
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sealed:
    """What one ``seal`` did. ``sealed`` is False when nothing new was settled."""

    sealed: bool
    seal_id: int
    first_event_id: int | None
    last_event_id: int
    rows: int
    chunks: int
    head: str | None
    #: The last event id handed out when the seal looked.
    allocated: int
    #: Transactions still holding audit rows after the wait (``pid/virtual transaction``).
    waiting_for: list[str]
    #: The transaction ids of those whose rows this seal could not see yet: rows they commit
    #: later into its range are sealed, as late rows, by the first seal after they end.
    pending: list[int] = field(default_factory=list)
    #: Rows of earlier seals' open transactions, committed since, that this seal added.
    late_rows: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"action": "seal", **self.__dict__}


#: Findings that report what retention and restore did, not a problem.
INFORMATIONAL = frozenset({"retired", "restored"})


@dataclass(frozen=True)
class Finding:
    """One difference ``verify`` found (or, with kind ``retired``, one retention entry)."""

    kind: str  # changed, removed, added, chain, head, archive; retired, restored (not problems)
    seal_id: int | None
    first_event_id: int | None
    last_event_id: int | None
    expected_rows: int | None
    found_rows: int | None
    partitions: str | None
    detail: str

    def describe(self) -> str:
        where = ""
        if self.first_event_id is not None:
            where = f" events {self.first_event_id}..{self.last_event_id}"
        if self.partitions:
            where += f" in {self.partitions}"
        seal = f"seal {self.seal_id}" if self.seal_id is not None else "outside the seals"
        return f"{self.kind}: {seal}{where}: {self.detail}"


@dataclass(frozen=True)
class Verification:
    seals: int
    first_event_id: int | None
    last_event_id: int
    rows: int
    head: str | None
    findings: list[Finding] = field(default_factory=list)

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.kind not in INFORMATIONAL]

    @property
    def retired(self) -> list[Finding]:
        """Retention entries, and partitions restored after one: what changed, by design."""
        return [f for f in self.findings if f.kind in INFORMATIONAL]

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        return {
            "action": "verify",
            "ok": self.ok,
            "seals": self.seals,
            "first_event_id": self.first_event_id,
            "last_event_id": self.last_event_id,
            "rows": self.rows,
            "head": self.head,
            "problems": [f.__dict__ for f in self.problems],
            "retired": [f.__dict__ for f in self.retired],
        }


def _function(layout: Layout, schema: str, which: str) -> Composable:
    return ident(schema, layout.seal_function(which))


def _call(cursor: Cursor, statement: Composable, params: list[Any]) -> Any:
    try:
        cursor.execute(render(statement, cursor), params)
    except Exception as exc:
        # The functions raise with SQLSTATEs of classes 22, 25, 42, 55 and XX001 on purpose;
        # their message is the reason, without the driver's decoration. 53200 and 54000: a
        # field whose text PostgreSQL itself cannot write (over 1 GB; docs/tamper-evidence.md).
        if sqlstate(exc) in {"22023", "25000", "42501", "53200", "54000", "55000", "XX001"}:
            raise SealError(str(exc).splitlines()[0]) from exc
        raise
    return cursor.fetchall()


def _document(value: Any) -> dict[str, Any]:
    """A jsonb result: psycopg2 may leave it as text when no loader is registered."""
    return dict(json.loads(value) if isinstance(value, str) else value)


def seal(
    cursor: Cursor,
    layout: Layout,
    schema: str = "public",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    wait_ms: int = DEFAULT_WAIT_MS,
) -> Sealed:
    """Seal every settled audit row after the last seal; see the module docstring.

    Run it at READ COMMITTED, in a transaction of its own (``Maintainer.seal`` does).

    Raises:
        SealError: bad arguments, a 1.0.4 upgrade still numbering rows, a sequence that
            caches ids, the freeze trigger missing.
    """
    for name, value, least in (("chunk_size", chunk_size, 1), ("wait_ms", wait_ms, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise ConfigurationError(f"{name} must be an integer of at least {least}, got {value!r}")
    if chunk_size > MAX_CHUNK_SIZE:
        raise ConfigurationError(f"chunk_size must be at most {MAX_CHUNK_SIZE:,}, got {chunk_size!r}")
    statement = SQL("SELECT {}(%s, %s)").format(_function(layout, schema, "seal"))
    result = _document(_call(cursor, statement, [chunk_size, wait_ms])[0][0])
    return Sealed(
        sealed=bool(result["sealed"]),
        seal_id=int(result["seal_id"]),
        first_event_id=result.get("first_event_id"),
        last_event_id=int(result["last_event_id"]),
        rows=int(result.get("rows") or 0),
        chunks=int(result.get("chunks") or 0),
        head=result.get("head"),
        allocated=int(result["allocated"]),
        waiting_for=list(result.get("waiting_for") or []),
        pending=[int(x) for x in result.get("pending") or []],
        late_rows=int(result.get("late_rows") or 0),
    )


@dataclass(frozen=True)
class Holder:
    """A transaction holding a write lock on the audit table: its rows, when it commits, are
    sealed late (see :func:`seal`), and until then nothing seals them."""

    pid: int | None  # None for a prepared transaction
    xid: int | None  # None while it has written nothing
    #: When it began, where this role may see it (its own sessions, or pg_read_all_stats),
    #: else when a seal first saw it open; None when neither is known.
    since: dt.datetime | None
    #: Seconds from ``since`` to now (0 when ``since`` is unknown).
    age: float

    def describe(self) -> str:
        who = f"backend pid {self.pid}" if self.pid is not None else "a prepared transaction"
        xid = f", transaction {self.xid}" if self.xid is not None else ""
        since = f", open since {self.since.isoformat()} ({self.age:.0f} s)" if self.since else ""
        return f"{who}{xid}{since}"


def holders(cursor: Cursor, layout: Layout, schema: str = "public") -> list[Holder]:
    """The transactions (other than this one) holding a write lock on the audit table, oldest
    first. Their pid and transaction id are visible to any role; when they began only to the
    same role or a member of pg_read_all_stats, so otherwise the age counts from the first
    seal that saw the transaction open (where this role may read the seal table)."""
    names = _names(layout, schema)
    cursor.execute(
        "SELECT has_table_privilege(%s, 'SELECT')", [render(ident(schema, layout.seal_table), cursor)]
    )
    seen: Composable = SQL("NULL::timestamp with time zone")
    if cursor.fetchone()[0]:
        seen = SQL(
            "(SELECT min(s.sealed_at) FROM {} s WHERE s.extra -> 'pending' @> to_jsonb(x.xid))"
        ).format(names["seals"])
    statement = SQL(_HOLDERS).format(table_reg=names["table_reg"], full_xid=SQL(_FULL_XID), seen=seen)
    execute(cursor, statement)
    return [Holder(pid, xid, since, float(age or 0)) for pid, xid, since, age in cursor.fetchall()]


_HOLDERS = """
WITH w AS (
    SELECT DISTINCT l.pid, l.virtualtransaction FROM pg_catalog.pg_locks l
     WHERE l.locktype = 'relation' AND l.granted AND l.mode <> 'AccessShareLock'
       AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = current_database())
       AND l.relation = {table_reg} AND l.pid IS DISTINCT FROM pg_catalog.pg_backend_pid()
), n AS (SELECT pg_catalog.pg_snapshot_xmax(pg_catalog.pg_current_snapshot())::text::bigint AS _next)
SELECT h.pid, h.xid, h.since, extract(epoch FROM now() - h.since)
  FROM (SELECT w.pid, x.xid, least(a.xact_start, {seen}) AS since
          FROM w CROSS JOIN n
          LEFT JOIN LATERAL (SELECT min({full_xid}) AS xid FROM pg_catalog.pg_locks t
                              WHERE t.locktype = 'transactionid' AND t.mode = 'ExclusiveLock' AND t.granted
                                AND t.virtualtransaction = w.virtualtransaction) AS x ON true
          LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = w.pid) AS h
 ORDER BY h.since NULLS LAST, h.pid
"""


def parse_head(text: str) -> bytes:
    """A head digest as ``seal`` prints it: 64 hexadecimal digits."""
    cleaned = text.strip().lower()
    if len(cleaned) != 64 or any(c not in "0123456789abcdef" for c in cleaned):
        raise ConfigurationError(f"a head digest is 64 hexadecimal digits, got {text!r}")
    return bytes.fromhex(cleaned)


def verify(cursor: Cursor, layout: Layout, schema: str = "public", expect: str | None = None) -> Verification:
    """Recompute every sealed chunk and the chain, in one statement (one snapshot).

    Args:
        expect: a head digest kept outside the database; the chain must contain it.
    """
    head = parse_head(expect) if expect is not None else None
    statement = SQL("SELECT * FROM {}(%s)").format(_function(layout, schema, "verify"))
    rows = _call(cursor, statement, [head])
    findings = [Finding(*row) for row in rows if row[0] != "summary"]
    summary = next(row for row in rows if row[0] == "summary")
    _, seals, first, last, total, _, _, digest = summary
    return Verification(int(seals), first, int(last), int(total), digest, findings)


def retire(
    cursor: Cursor, layout: Layout, schema: str, partition: str, dropped: bool
) -> dict[str, Any] | None:
    """Record, before ``partition`` leaves the audit table, what its sealed chunks keep.

    Raises:
        SealError: the partition's sealed rows no longer match their seals; nothing retired.
    """
    statement = SQL("SELECT {}(%s::regclass, %s)").format(_function(layout, schema, "retire"))
    result = _call(cursor, statement, [render(ident(schema, partition), cursor), dropped])[0][0]
    return None if result is None else _document(result)
