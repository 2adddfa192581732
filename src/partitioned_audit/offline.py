"""Verify the sealed trail outside the database: plain SELECTs, every digest recomputed here.

``sealing.verify`` asks ``dpa_<layout>_verify()``, a function inside the database; whoever
can replace that function (the owner of the audit objects, a superuser) can make it lie.
:func:`verify` calls no function of ours: it reads the seal table and the audit rows with
plain ``SELECT``\\ s (each field as its type's output text, through PostgreSQL's built-in
``format('%s', ...)``), then recomputes every chunk digest and the chain with ``hashlib``,
following the encoding docs/tamper-evidence.md specifies, and applies the same rules as the
in-database verify, with the same findings.

Memory stays bounded: rows come through a server-side cursor, in event-id order, so one
chunk is hashed at a time; only the seal entries' chunk lists are held.

The encodings (format 1: :func:`record_text`, :func:`row_line`; format 2: :func:`field_piece`,
:func:`row_digest`; both: :func:`link_digest`) live here and nowhere else.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .ddl import context_join
from .errors import OutdatedInstall
from .layouts import Layout
from .sealing import (
    CONTEXT_FIELDS,
    EXTRA_FORMATS,
    GENESIS,
    INLINE_BYTES,
    MIN_RETENTION,
    Finding,
    Verification,
    parse_head,
)
from .sql import SQL, Composable, Cursor, execute, ident, literal, quote_ident

#: Rows fetched per round trip from the server-side cursor.
FETCH_ROWS = 5_000
_CURSOR = "dpa_offline_verify"
#: The settings the text of a row depends on, as the sealing functions fix them.
TEXT_SETTINGS = {
    "search_path": "pg_catalog, pg_temp",
    "TimeZone": "UTC",
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "postgres",
    "extra_float_digits": "1",
}

# ---------------------------------------------------------------------------------------
# The canonical encoding, format 1 (docs/tamper-evidence.md, "The bytes hashed")
# ---------------------------------------------------------------------------------------

#: What makes PostgreSQL quote a field of a record: these characters and ASCII white space
#: (its C ``isspace``; a multi-byte character never counts, whatever Unicode says).
_SPECIAL = frozenset('"\\(), \t\n\r\v\f')


def record_text(fields: Sequence[str | None]) -> str:
    """PostgreSQL's text of ``ROW(f1, ..., fn)`` given each field's output text.

    NULL is nothing at all; a field that is empty or holds a double quote, backslash,
    parenthesis, comma or ASCII white space is wrapped in double quotes, with each ``"``
    and ``\\`` inside doubled.
    """
    out = []
    for value in fields:
        if value is None:
            out.append("")
        elif value == "" or any(c in _SPECIAL for c in value):
            out.append('"' + value.replace("\\", "\\\\").replace('"', '""') + '"')
        else:
            out.append(value)
    return "(" + ",".join(out) + ")"


def row_line(fields: Sequence[str | None]) -> bytes:
    """The bytes one audit row adds to its chunk's digest."""
    return (record_text(fields) + "\n").encode()


# ---------------------------------------------------------------------------------------
# Format 2: each row hashed apart
# ---------------------------------------------------------------------------------------


def field_piece(value: str | None) -> bytes:
    """A field's piece: 0x00 for NULL; 0x01, the length (4 bytes, big-endian) and the UTF-8
    bytes of its text when at most ``INLINE_BYTES`` long; else 0x02 and their SHA-256."""
    if value is None:
        return b"\x00"
    data = value.encode()
    if len(data) <= INLINE_BYTES:
        return b"\x01" + len(data).to_bytes(4, "big") + data
    return b"\x02" + hashlib.sha256(data).digest()


def row_digest(fields: Sequence[str | None]) -> bytes:
    """A row's 32-byte digest (format 2): SHA-256 of its fields' pieces in column order."""
    return hashlib.sha256(b"".join(field_piece(f) for f in fields)).digest()


#: What :func:`sealed_positions` gives: the fields a format hashes, the columns it does not
#: cover, the fields it hashes for a row holding a value in one of those.
Positions = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]


def sealed_positions(layout: Layout, seal_format: int) -> Positions:
    """Which of a row's field texts, as :func:`field_texts` selects them (the fields of
    ``layout.column_names``, then those of ``CONTEXT_FIELDS``), a seal of ``seal_format``
    hashes, in order: the fields of ``layout.sealed_columns(seal_format)`` (format 4 and
    later: the columns ``layout.sealed_from`` added too), then from format 3 on the
    context fields. Returned with the positions of the columns the format does not cover
    (``layout.stray_columns``) and those it hashes for a row holding a value in one of
    them: every column, then from format 3 on the context fields."""
    covered = set(layout.sealed_columns(seal_format))
    stray = set(layout.stray_columns(seal_format))
    width = len(layout.column_names)
    columns = [i for i, name in enumerate(layout.column_names) if name in covered]
    context = range(width, width + len(CONTEXT_FIELDS)) if seal_format >= 3 else range(0)
    return (
        (*columns, *context),
        tuple(i for i, name in enumerate(layout.column_names) if name in stray),
        (*range(width), *context),
    )


def row_piece(
    values: Sequence[str | None],
    positions: Positions,
    seal_format: int,
) -> bytes:
    """What a row adds to its chunk's digest in ``seal_format``, given its field texts as
    :func:`field_texts` selects them and the ``positions`` :func:`sealed_positions` gives
    for the format: the line of the fields it hashes (format 1), else their digest; a row
    that holds a value in a column the format does not cover hashes every column."""
    hashed, stray, every = positions
    fields = [values[i] for i in (every if any(values[i] is not None for i in stray) else hashed)]
    if seal_format == 1:
        return row_line(fields)
    return row_digest(fields)


def _number(value: int | None) -> str | None:
    return None if value is None else str(value)


def link_digest(previous: bytes, entry: Entry) -> bytes:
    """The digest of a seal entry, chaining from ``previous``."""
    header = record_text(
        [
            str(entry.seal_id),
            entry.kind,
            entry.sealed_at,
            _number(entry.first_event_id),
            _number(entry.last_event_id),
            _number(entry.row_count),
            _number(entry.chunk_size),
            entry.partition_name,
        ]
    )
    chunks = "".join(
        record_text(
            [
                _number(c.seal_id),
                _number(c.index),
                _number(c.rows),
                None if c.digest is None else c.digest.hex(),
                c.partitions,
            ]
        )
        + "\n"
        for c in entry.chunks
    )
    # (format 2 and later: then the text of ``extra``, on a line of its own)
    extra = "" if entry.extra is None else entry.extra + "\n"
    return hashlib.sha256(f"{previous.hex()}\n{header}\n{chunks}{extra}".encode()).digest()


# ---------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    seal_id: int
    index: int
    rows: int | None
    digest: bytes | None
    partitions: str | None


@dataclass(frozen=True)
class Entry:
    """One row of the seal table, as stored."""

    seal_id: int
    kind: str
    sealed_at: str
    first_event_id: int | None
    last_event_id: int | None
    row_count: int | None
    chunk_size: int | None
    partition_name: str | None
    chunks: tuple[Chunk, ...]
    #: The stored arrays had different lengths (a forged entry); ``chunks`` is then empty.
    ragged: bool
    previous: bytes
    digest: bytes
    #: The output text of ``extra`` (None: format 1).
    extra: str | None = None
    #: ``extra`` parsed, when it is a JSON object.
    document: dict[str, Any] | None = None
    #: The output text of ``extra -> 'format'`` when ``extra`` is an object.
    format_text: str | None = None
    #: A retention entry's range end, as PostgreSQL writes it, and whether it ended at least
    #: ``MIN_RETENTION`` before the entry (None when the entry carries no range to judge).
    upper: str | None = None
    expired: bool | None = None

    @property
    def format(self) -> int | None:
        """The entry's format: 1 without ``extra``, 2 or later when ``extra`` says so, else None."""
        if self.extra is None:
            return 1
        value = None if self.document is None else self.document.get("format")
        return int(value) if _is_number(value) and value in EXTRA_FORMATS else None

    def ids(self, key: str) -> list[int] | None:
        """``extra -> key`` when it is a list of ids (at most 18 digits), else None."""
        value = None if self.document is None else self.document.get(key)
        if not isinstance(value, list) or not all(
            isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 10**18 for x in value
        ):
            return None
        return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _bytes(value: Any) -> bytes:
    return b"" if value is None else bytes(value)


def _maybe_bytes(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


def read_entries(cursor: Cursor, layout: Layout, schema: str) -> list[Entry]:
    """Every entry of the seal table, in seal_id order, as stored."""
    execute(
        cursor,
        SQL(
            "SELECT s.seal_id, s.kind, pg_catalog.format('%s', s.sealed_at), s.first_event_id, s.last_event_id,"
            " s.row_count, s.chunk_size, s.partition_name, s.chunk_seal, s.chunk_index, s.chunk_rows,"
            " s.chunk_digest, s.chunk_partitions, s.previous, s.digest,"
            " CASE WHEN s.extra IS NOT NULL THEN pg_catalog.format('%s', s.extra) END,"
            " CASE WHEN pg_catalog.jsonb_typeof(s.extra) OPERATOR(pg_catalog.=) 'object'"
            " THEN pg_catalog.format('%s', s.extra OPERATOR(pg_catalog.->) 'format') END,"
            # F6: when a retention entry's partition range ended (format 1: the date its name ends with)
            " pg_catalog.format('%s', u.upper), u.upper OPERATOR(pg_catalog.<=) (s.sealed_at"
            " OPERATOR(pg_catalog.-) {retention}::pg_catalog.interval)"
            " FROM {seals} s CROSS JOIN LATERAL (SELECT CASE WHEN s.kind OPERATOR(pg_catalog.=) 'seal' THEN NULL"
            " WHEN s.extra IS NOT NULL THEN ((s.extra OPERATOR(pg_catalog.->) 'range')"
            " OPERATOR(pg_catalog.->>) 1)::pg_catalog.timestamptz"
            " ELSE pg_catalog.timezone('UTC', pg_catalog.to_date(pg_catalog.substring(s.partition_name,"
            " '_[0-9]{{8}}_([0-9]{{8}})$'), 'YYYYMMDD')::pg_catalog.timestamp) END AS upper) u"
            " ORDER BY s.seal_id"
        ).format(seals=ident(schema, layout.seal_table), retention=literal(MIN_RETENTION)),
    )
    found = []
    for row in cursor.fetchall():
        seal_id, kind, at, first, last, count, size, part, cs, ks, ns, ds, ps, previous, digest = row[:15]
        extra, format_text, upper, expired = row[15:]
        upper = upper or None  # (format() writes NULL as '')
        document = None
        if extra is not None:
            parsed = json.loads(extra)
            document = parsed if isinstance(parsed, dict) else None
        arrays = [list(a or []) for a in (cs, ks, ns, ds, ps)]
        ragged = len({len(a) for a in arrays}) > 1
        chunks = (
            ()
            if ragged
            else tuple(Chunk(s, k, n, _maybe_bytes(d), p) for s, k, n, d, p in zip(*arrays, strict=True))
        )
        found.append(
            Entry(
                seal_id,
                kind,
                at,
                first,
                last,
                count,
                size,
                part,
                chunks,
                ragged,
                _bytes(previous),
                _bytes(digest),
                extra,
                document,
                format_text,
                None if kind == "seal" or (extra is None and upper is None) else upper,
                None if kind == "seal" or (extra is None and upper is None) else bool(expired),
            )
        )
    return found


def attached_partitions(cursor: Cursor, layout: Layout, schema: str) -> set[str]:
    """The partitions of the audit table, named as ``regclass`` prints them."""
    cursor.execute(
        "SELECT pg_catalog.format('%%s', i.inhrelid::pg_catalog.regclass) FROM pg_catalog.pg_inherits i"
        " WHERE i.inhparent OPERATOR(pg_catalog.=) pg_catalog.to_regclass(%s)",
        [quote_ident(schema, layout.table)],
    )
    return {name for (name,) in cursor.fetchall()}


def require_columns(cursor: Cursor, layout: Layout, schema: str) -> None:
    """Stop with a readable error when the audit table lacks a column of ``layout`` as this
    version installs it (an install not brought up to date since the package was: OUTDATED),
    before a plain SELECT of every column (here and in the archive) fails on it.

    Raises:
        OutdatedInstall: naming the table, the columns and how to add them.
    """
    cursor.execute(
        "SELECT a.attname::pg_catalog.text FROM pg_catalog.pg_attribute a"
        " WHERE a.attrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(%s)"
        " AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped",
        [quote_ident(schema, layout.table)],
    )
    found = {name for (name,) in cursor.fetchall()}
    missing = [name for name in layout.table_columns if name not in found]
    if missing:
        raise OutdatedInstall(
            f"the audit table {schema}.{layout.table} has no column {', '.join(missing)}: the"
            f" {layout.name} layout's install is OUTDATED, older than this version; bring the audit"
            " objects up to date first (python manage.py migrate, or partitioned_audit.install())"
        )


def field_texts(layout: Layout) -> Composable:
    """The select list of a row's field texts, each its output text, NULL kept apart: the
    fields of ``layout.column_names`` from the audit table aliased ``e``, then those of
    :data:`~.sealing.CONTEXT_FIELDS` (``e`` and its context row ``c``, joined by
    :func:`~.layouts.context_join`), the order format 3 hashes them in."""
    text = "CASE WHEN {c} IS NULL THEN NULL ELSE pg_catalog.format('%s', {c}) END"
    return SQL(", ").join(
        [
            *(SQL(text).format(c=SQL("e.{}").format(ident(c))) for c in layout.column_names),
            *(SQL(text).format(c=SQL("{}.{}").format(ident(a), ident(c))) for a, c in CONTEXT_FIELDS),
        ]
    )


def _rows(cursor: Cursor, layout: Layout, schema: str, sealed: int) -> Iterator[tuple[Any, ...]]:
    """(event id, partition, field texts..., context field texts...) of every row up to
    ``sealed`` or with no valid id, in event-id order (NULL first), through a server-side
    cursor: the fields of ``layout.column_names``, then those of ``CONTEXT_FIELDS``, its
    context row found as the views find it."""
    event = ident(layout.event_column)
    fields = field_texts(layout)
    execute(
        cursor,
        SQL(
            "DECLARE {cursor} NO SCROLL CURSOR FOR SELECT e.{event},"
            " pg_catalog.format('%s', e.tableoid::pg_catalog.regclass), {fields} FROM {table} e {join}"
            " WHERE e.{event} OPERATOR(pg_catalog.<=) {sealed} OR e.{event} IS NULL"
            " ORDER BY e.{event} NULLS FIRST"
        ).format(
            cursor=ident(_CURSOR),
            event=event,
            fields=fields,
            table=ident(schema, layout.table),
            join=context_join(layout, schema, "e"),
            sealed=SQL("{}::pg_catalog.int8").format(literal(sealed)),
        ),
    )
    fetch: Composable = SQL("FETCH FORWARD {} FROM {}").format(literal(FETCH_ROWS), ident(_CURSOR))
    while True:
        execute(cursor, fetch)
        batch = cursor.fetchall()
        if not batch:
            break
        yield from batch
    execute(cursor, SQL("CLOSE {}").format(ident(_CURSOR)))


# ---------------------------------------------------------------------------------------
# The rules, as in dpa_<layout>_verify()
# ---------------------------------------------------------------------------------------


@dataclass
class Seal:
    """A counted seal entry's range of event ids, chunk size and format."""

    seal_id: int
    first: int
    last: int
    size: int
    format: int


def _entry_problem(
    entry: Entry, seals: dict[int, Seal], opens: list[int], late_before: int, top: tuple[int, int] | None
) -> str | None:
    """What an entry claims that it may not (``dpa_seal_entry_problem``), or None: ``seals``
    are the earlier counted seals covering ids, ``opens`` those still open, ``late_before``
    the rows the chunks of earlier seals it carries had, ``top`` the highest format of the
    earlier counted seals and the first seal of that format (None before any): a seal's
    format never goes down along the chain."""
    if entry.extra is not None and entry.format not in EXTRA_FORMATS:
        return f"its format {entry.format_text or ''} is unknown"
    closes: list[int] = []
    if entry.kind == "seal" and entry.extra is not None:
        pending, closing = entry.ids("pending"), entry.ids("closes")
        if pending is None or closing is None:
            return "its pending transactions and the seals it closes are not lists of ids"
        closes = closing
    if entry.kind == "seal" and top is not None and (entry.format or 1) < top[0]:
        return f"its format {entry.format_text or 1} is lower than format {top[0]} of seal {top[1]} before it"
    first, last = entry.first_event_id, entry.last_event_id
    if first is None or last is None or first > last + (1 if closes else 0):
        return f"it covers events {_text(first)}..{_text(last)}, which end before they start"
    if entry.ragged:
        return "its chunk arrays differ in length"
    if any(c.rows is None or c.rows < 0 or c.digest is None for c in entry.chunks):
        return "it holds a chunk without a row count or a digest"
    if entry.kind == "seal":
        size = entry.chunk_size
        if size is None or size < 1:
            return "its chunk size is not 1 or more"
        stray = [c for c in closes if c not in opens]
        if stray:
            return f"it closes seal {stray[0]}, which has no open transactions to close"
        if len(set(closes)) != len(closes):
            return "it closes a seal twice"
        previous: tuple[bool, int, int] | None = None
        for c in entry.chunks:
            if c.seal_id is None or c.index is None or c.index < 0:
                return "it holds chunks that are not its own"
            own = c.seal_id == entry.seal_id
            if own and (last < first or c.index > (last - first) // size):
                return "it holds chunks that are not its own"
            if not own:
                seal = seals.get(c.seal_id) if c.seal_id < entry.seal_id and c.seal_id in closes else None
                if seal is None or c.index > (seal.last - seal.first) // seal.size:
                    return "it holds chunks that are not its own"
            key = (not own, c.seal_id, c.index)
            if previous is not None and previous >= key:
                return "it holds chunks that are not its own"
            previous = key
        if entry.row_count != sum(c.rows or 0 for c in entry.chunks) - late_before:
            return "its row count is not the sum of its chunks"
        return None
    if entry.kind in ("detach", "drop"):
        for c in entry.chunks:
            seal = seals.get(c.seal_id) if c.seal_id is not None and c.seal_id < entry.seal_id else None
            if seal is None or c.index is None or not 0 <= c.index <= (seal.last - seal.first) // seal.size:
                return "it retires chunks no earlier seal holds"
        if len({(c.seal_id, c.index) for c in entry.chunks}) != len(entry.chunks):
            return "it retires a chunk twice"
        return None
    return f"its kind {entry.kind} is unknown"


def _text(value: int | None) -> str:
    return "" if value is None else str(value)


def _chain_finding(entry: Entry, detail: str, where: bool = True, part: str | None = None) -> Finding:
    first, last = (entry.first_event_id, entry.last_event_id) if where else (None, None)
    return Finding("chain", entry.seal_id, first, last, None, None, part, detail)


@dataclass
class _Tally:
    """What the rows of one chunk hash to, and where they are; ``settled`` hashes the rows
    that are not late rows of an open seal's pending transactions."""

    key: tuple[int, int]
    hasher: Any
    settled: Any
    rows: int
    settled_rows: int
    partitions: set[str]


#: What a chunk's rows are now: rows, digest, partitions, rows and digest without late rows.
_Found = tuple[int, bytes, set[str], int, bytes]


def verify(
    connection: Any, layout: Layout, schema: str = "public", expect: str | None = None
) -> Verification:
    """Recompute every sealed chunk and the chain from plain SELECTs, in one snapshot.

    Runs in a REPEATABLE READ, READ ONLY transaction of its own on an autocommit
    connection, else in a savepoint of the caller's transaction (rolled back at the end).

    Args:
        expect: a head digest kept outside the database; the chain must contain it.

    Raises:
        OutdatedInstall: the audit table lacks a column of this version (run migrate).
    """
    wanted = parse_head(expect) if expect is not None else None
    cursor = connection.cursor()
    own = bool(getattr(connection, "autocommit", False))
    cursor.execute(
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" if own else "SAVEPOINT dpa_offline_verify"
    )
    try:
        for name, value in TEXT_SETTINGS.items():
            cursor.execute("SELECT pg_catalog.set_config(%s, %s, true)", [name, value])
        return _verify(cursor, layout, schema, wanted)
    finally:
        cursor.execute("ROLLBACK" if own else "ROLLBACK TO SAVEPOINT dpa_offline_verify")


@dataclass
class Walk:
    """The seal chain walked once, entry by entry, with verify's rules: its findings about
    the entries, and what the counted ones say about the chunks."""

    findings: list[Finding] = field(default_factory=list)
    #: Counted seals by id.
    seals: dict[int, Seal] = field(default_factory=dict)
    #: The last sealed event id.
    sealed: int = 0
    #: Rows the counted entries cover now (seals add, retention takes away).
    rows: int = 0
    #: The highest format of the counted seal entries and the first of that format.
    top: tuple[int, int] | None = None
    #: Counted seals with pending transactions that no counted entry closed yet, in order.
    opens: list[int] = field(default_factory=list)
    pending: dict[int, list[int]] = field(default_factory=dict)
    #: (seal id, chunk) -> (rows, digest, partitions, entry id) of the newest counted entry.
    expected: dict[tuple[int, int], tuple[int, bytes | None, str | None, int]] = field(default_factory=dict)
    #: The digest of the last entry (the genesis before any), and the id the next must have.
    previous: bytes = bytes.fromhex(GENESIS)
    following: int = 1

    @property
    def late(self) -> set[int]:
        """Transaction ids of seals still open: their rows are late rows, not sealed yet."""
        return {x for o in self.opens for x in self.pending[o]}


def walk(entries: Sequence[Entry], attached: set[str], table_text: str) -> Walk:
    """Walk the chain: each entry must chain from the one before and claim only what it may
    (an entry that does not is reported and not counted); a retention entry of a partition
    attached again (a restored one) is reported as such and does not count."""
    done = Walk()
    findings = done.findings
    for entry in entries:
        if entry.seal_id != done.following:
            findings.append(
                _chain_finding(entry, f"seals {done.following} to {entry.seal_id - 1} are missing", False)
            )
        elif entry.previous != done.previous:
            findings.append(
                _chain_finding(
                    entry, f"seal {entry.seal_id} does not chain from seal {entry.seal_id - 1}", False
                )
            )
        if link_digest(entry.previous, entry) != entry.digest:
            findings.append(
                _chain_finding(
                    entry, f"seal {entry.seal_id} was altered: its digest does not match its contents"
                )
            )
        done.previous, done.following = entry.digest, entry.seal_id + 1
        if entry.kind != "seal" and entry.partition_name in attached:
            # A retired partition attached again (restored): checked against the earlier seals.
            findings.append(
                _retention_finding(
                    "restored",
                    entry,
                    f"{_text(entry.row_count)} rows retired at {entry.sealed_at} are a partition of"
                    f" {table_text} again, checked against their seals",
                )
            )
            continue
        late_before = sum(
            done.expected[(c.seal_id, c.index)][0]
            for c in entry.chunks
            if entry.kind == "seal" and c.seal_id != entry.seal_id and (c.seal_id, c.index) in done.expected
        )
        problem = _entry_problem(entry, done.seals, done.opens, late_before, done.top)
        if problem is not None:
            findings.append(
                _chain_finding(
                    entry, f"seal {entry.seal_id} is not counted: {problem}", part=entry.partition_name
                )
            )
            continue
        assert entry.first_event_id is not None and entry.last_event_id is not None  # noqa: S101
        count = entry.row_count or 0
        if entry.kind == "seal":
            if entry.first_event_id != done.sealed + 1:
                findings.append(
                    _chain_finding(
                        entry,
                        f"seal {entry.seal_id} starts at event {entry.first_event_id}, not {done.sealed + 1}",
                    )
                )
            assert entry.chunk_size is not None  # noqa: S101
            if entry.last_event_id >= entry.first_event_id:  # (one sealing late rows only has none)
                done.seals[entry.seal_id] = Seal(
                    entry.seal_id,
                    entry.first_event_id,
                    entry.last_event_id,
                    entry.chunk_size,
                    entry.format or 1,
                )
                done.sealed = entry.last_event_id
            done.rows += count
            if done.top is None or (entry.format or 1) > done.top[0]:
                done.top = (entry.format or 1, entry.seal_id)
            closes = entry.ids("closes") or []
            done.opens = [o for o in done.opens if o not in closes]
            waiting = entry.ids("pending") or []
            if waiting:
                done.opens.append(entry.seal_id)
                done.pending[entry.seal_id] = waiting
        else:
            done.rows -= count
            verb = "dropped" if entry.kind == "drop" else "detached"
            if entry.expired is False:
                # Only a partition whose whole range had ended MIN_RETENTION before went by retention.
                findings.append(
                    _retention_finding(
                        "removed",
                        entry,
                        f"{_text(entry.row_count)} rows were {verb} at {entry.sealed_at} as retention, but the"
                        f" partition's range ends {'at ' + entry.upper if entry.upper else 'never'}, not"
                        f" {MIN_RETENTION} or more before: it had not expired",
                        found=0,
                    )
                )
            else:
                findings.append(
                    _retention_finding(
                        "retired", entry, f"{count} rows {verb} by retention at {entry.sealed_at}"
                    )
                )
        for c in entry.chunks:
            done.expected[(c.seal_id, c.index)] = (c.rows or 0, c.digest, c.partitions, entry.seal_id)
    return done


def _retention_finding(kind: str, entry: Entry, detail: str, found: int | None = None) -> Finding:
    """What verify says of a retention entry: its partition ``restored``, ``retired`` or
    ``removed`` (retired before it expired)."""
    return Finding(
        kind,
        entry.seal_id,
        entry.first_event_id,
        entry.last_event_id,
        entry.row_count,
        found,
        entry.partition_name,
        detail,
    )


def _verify(cursor: Cursor, layout: Layout, schema: str, wanted: bytes | None) -> Verification:
    require_columns(cursor, layout, schema)
    attached = attached_partitions(cursor, layout, schema)
    entries = read_entries(cursor, layout, schema)
    done = walk(entries, attached, f"{schema}.{layout.table}")
    findings = done.findings
    head = done.previous if done.following > 1 else None
    if wanted is not None and wanted not in {e.digest for e in entries}:
        findings.append(
            Finding(
                "head",
                None,
                None,
                None,
                None,
                None,
                None,
                f"the head kept outside the database, {wanted.hex()}, is not in the chain: "
                "the seals were rewritten or cut short",
            )
        )
    ordered = sorted(done.seals.values(), key=lambda s: s.first)
    txid = layout.column_names.index(layout.txid_column)
    # (rows of the pending transactions of seals still open are late rows, not sealed yet)
    found, outside = _recompute(cursor, layout, schema, ordered, done.sealed, txid, done.late)
    if ordered:
        expected = {key: value[:3] for key, value in done.expected.items()}
        findings.extend(_compare(ordered, expected, found, set(done.opens)))
        if outside[2]:
            low, high, count, parts = outside
            findings.append(
                Finding(
                    "added",
                    None,
                    low,
                    high,
                    0,
                    count,
                    " ".join(sorted(parts)),
                    f"{count} rows with an event id below 1 or none",
                )
            )
    first = ordered[0].first if ordered else None
    return Verification(
        done.following - 1, first, done.sealed, done.rows, head.hex() if head else None, findings
    )


def _recompute(
    cursor: Cursor,
    layout: Layout,
    schema: str,
    ordered: list[Seal],
    sealed: int,
    txid: int,
    skip: set[int],
) -> tuple[dict[tuple[int, int], _Found], tuple[int | None, int | None, int, set[str]]]:
    """Hash the rows chunk by chunk, each in its seal's format: {(seal, chunk): what they
    are now}, and the rows no seal can cover (lowest id, highest id, count, partitions)."""
    firsts = [s.first for s in ordered]
    found: dict[tuple[int, int], _Found] = {}
    low: int | None = None
    high: int | None = None
    count = 0
    parts: set[str] = set()
    tally: _Tally | None = None
    positions: dict[int, Positions] = {}
    for event_id, partition, *values in _rows(cursor, layout, schema, sealed):
        if event_id is None or event_id < 1:
            if event_id is not None:
                low = event_id if low is None else min(low, event_id)
                high = event_id if high is None else max(high, event_id)
            count += 1
            parts.add(partition)
            continue
        at = bisect.bisect_right(firsts, event_id) - 1
        if at < 0:
            continue  # below the first seal: not counted, as in the database
        seal = ordered[at]
        key = (seal.seal_id, (event_id - seal.first) // seal.size)
        if tally is None or tally.key != key:
            if tally is not None:
                found[tally.key] = _done(tally)
            tally = _Tally(key, hashlib.sha256(), hashlib.sha256(), 0, 0, set())
        late = values[txid] is not None and int(values[txid]) in skip
        if seal.format not in positions:
            positions[seal.format] = sealed_positions(layout, seal.format)
        piece = row_piece(values, positions[seal.format], seal.format)
        tally.hasher.update(piece)
        if seal.format != 1 and not late:
            tally.settled.update(piece)
        tally.rows += 1
        tally.settled_rows += 0 if late else 1
        tally.partitions.add(partition)
    if tally is not None:
        found[tally.key] = _done(tally)
    return found, (low, high, count, parts)


def _done(tally: _Tally) -> _Found:
    return (
        tally.rows,
        tally.hasher.digest(),
        tally.partitions,
        tally.settled_rows,
        tally.settled.digest(),
    )


def _compare(
    ordered: list[Seal],
    expected: dict[tuple[int, int], tuple[int, bytes | None, str | None]],
    found: dict[tuple[int, int], _Found],
    opens: set[int],
) -> list[Finding]:
    by_id = {s.seal_id: s for s in ordered}
    result = []
    for key in set(expected) | set(found):
        n, digest, sealed_in = expected.get(key, (0, None, None))
        found_n, found_digest, where, settled_n, settled = found.get(
            key, (0, None, set(), 0, hashlib.sha256().digest())
        )
        if digest == found_digest or (n == 0 and found_n == 0):
            continue
        if key in found and key[0] in opens and n == settled_n and (settled_n == 0 or digest == settled):
            continue  # it differs by late rows of a seal still open only
        now = " ".join(sorted(where))
        partitions = now or sealed_in
        was = f" (sealed in {sealed_in})" if sealed_in and sealed_in != now else ""
        if found_n < n:
            kind, detail = "removed", f"{n - found_n} of {n} sealed rows are missing"
        elif found_n > n:
            kind, detail = "added", f"{found_n - n} rows more than the {n} sealed"
        else:
            kind, detail = (
                "changed",
                f"{n} rows were sealed and {found_n} are there, but their contents differ",
            )
        seal = by_id[key[0]]
        lo = seal.first + key[1] * seal.size
        hi = min(seal.last, seal.first + (key[1] + 1) * seal.size - 1)
        result.append(Finding(kind, key[0], lo, hi, n, found_n, partitions, detail + was))
    return sorted(result, key=lambda f: f.first_event_id or 0)
