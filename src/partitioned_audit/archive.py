"""The archive tier: old partitions as Parquet on an object store, checked against the seals.

``archive`` writes each expired partition to ``<URL>/<partition>/``: one zstd Parquet file,
``data.parquet``, whose columns are the read view's (named and typed as the view names and
types them, so a query written against the view runs on the archive), plus one column per
audit table column the view does not show unchanged (``dpa_stored_<column>``, what the
seals hashed), and ``manifest.json`` (see docs/archive.md). Rows are streamed from a
server-side cursor in event-id order, ``BATCH_ROWS`` at a time, into row groups: memory is
bounded whatever the partition's size.

Order of a run, so that a run stopped at any point loses nothing and leaves no second copy
of any row where ``read_parquet('<URL>/**/*.parquet')`` looks:

1. the rows are written to ``data.parquet.partial`` (no reader lists it), and checked on
   the way: every sealed row's digest, recomputed from the Arrow batch being written and
   merged with the rows of the same chunks outside the partition, against the seal that
   covers it;
2. that object is read back from the store: it must hold exactly the bytes written (their
   SHA-256 and size), so the check of step 1 holds for it;
3. it is moved to ``data.parquet`` (one object appears at once), then ``manifest.json`` is
   written the same way; the next run finds the manifest and only checks it again;
4. the partition is marked archived (a comment on its event-id column, which ``list``
   shows), and with ``drop`` detached and dropped through retention, which appends its
   entry to the chain, only if it still holds exactly the rows archived.

Runs on one audit table take a session advisory lock: a second one fails at once.
"""

from __future__ import annotations

import array as array_
import base64
import bisect
import contextlib
import datetime as dt
import hashlib
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from . import catalog
from .ddl import context_join, view_select_list
from .errors import AuditError
from .layouts import COMMENT_TAG, CONTEXT_ID_COLUMN, CONTEXT_TIME_COLUMN, PREFIX, Layout
from .offline import (
    TEXT_SETTINGS,
    Entry,
    Positions,
    Seal,
    attached_partitions,
    field_piece,
    field_texts,
    read_entries,
    require_columns,
    row_line,
    row_piece,
    sealed_positions,
    walk,
)
from .partitioning.maintenance import Maintainer
from .partitioning.ranges import PartitionInfo
from .sealing import CONTEXT_FIELDS, FORMAT, INLINE_BYTES, Finding
from .sql import SQL, Composable, Cursor, execute, ident, literal, render
from .store import PARTIAL, Store

#: Rows per fetch and per Parquet row group.
BATCH_ROWS = 50_000
#: The archive layout version written into each manifest.
ARCHIVE_FORMAT = 1
MANIFEST = "manifest.json"
DATA_FILE = "data.parquet"
#: Prefix of the columns holding a field the seals hash that the read view shows otherwise
#: (``dpa_stored_<column>``; a context row's column: ``dpa_stored_context_<column>``).
STORED_PREFIX = f"{PREFIX}stored_"
#: How an archive column names a context row's column it holds (``c.<column>``).
CONTEXT_ALIAS = "c"
#: The comment on an archived partition's event-id column: this, then the manifest's URL.
ARCHIVED_MARK = f"{COMMENT_TAG} archived "
_CURSOR = "dpa_archive"
#: The temporary table restore stages context rows in.
_CONTEXT_STAGE = "dpa_restore_context"
_ZSTD_LEVEL = 3


class ArchiveError(AuditError):
    """An archive, restore or archive check cannot be done; nothing was dropped."""


class ArchiveBusy(ArchiveError):
    """Another archive or restore run holds the lock of this audit table."""


# ---------------------------------------------------------------------------------------
# Columns: the read view's, and the table's that the view does not show unchanged
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One archive column: its name, its PostgreSQL type, and the field the seals hash
    whose value it holds unchanged (see :func:`sealed_fields`; None when it holds something
    derived, such as a coalesced login role)."""

    name: str
    pg_type: str
    source: str | None


def _split_items(template: str) -> list[str]:
    """The items of a select list template, split at commas outside parentheses and braces."""
    items, depth, start = [], 0, 0
    for i, char in enumerate(template):
        if char in "({":
            depth += 1
        elif char in ")}":
            depth -= 1
        elif char == "," and depth == 0:
            items.append(template[start:i].strip())
            start = i + 1
    items.append(template[start:].strip())
    return [item for item in items if item]


def sealed_fields(layout: Layout, seal_format: int = FORMAT) -> list[str]:
    """The fields a seal of ``seal_format`` hashes (by default the format new seals use:
    every field any format hashes), in order, as archive columns name their source: an
    audit table column by its name (``layout.sealed_columns(seal_format)``), then from
    format 3 on a context row's column as ``c.<column>``
    (:data:`~partitioned_audit.sealing.CONTEXT_FIELDS`)."""
    context = [column if alias == "e" else f"{CONTEXT_ALIAS}.{column}" for alias, column in CONTEXT_FIELDS]
    return [*layout.sealed_columns(seal_format), *(context if seal_format >= 3 else [])]


def table_fields(layout: Layout) -> list[str]:
    """The sealed fields that are audit table columns: what restore copies back."""
    return [name for name in sealed_fields(layout) if not name.startswith(f"{CONTEXT_ALIAS}.")]


def view_sources(layout: Layout) -> list[str | None]:
    """For each column of the layout's read view, in order, the sealed field it shows
    unchanged (``a.x`` or ``c.x``, alone or ``AS y``), else None."""
    names = set(sealed_fields(layout))
    found: list[str | None] = []
    for item in _split_items(layout.view_columns):
        words = item.split()
        plain = len(words) == 1 or (len(words) == 3 and words[1].upper() == "AS")
        alias, _, column = words[0].partition(".")
        source = column if alias == "a" else words[0]
        found.append(source if plain and source in names else None)
    return found


def _types(cursor: Cursor, schema: str, relation: str) -> list[tuple[str, str]]:
    cursor.execute(
        "SELECT a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a"
        " WHERE a.attrelid = pg_catalog.to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        [render(ident(schema, relation), cursor)],
    )
    return [(name, kind) for name, kind in cursor.fetchall()]


def archive_columns(cursor: Cursor, layout: Layout, schema: str) -> list[Column]:
    """The columns of ``layout``'s archive: the read view's, then ``dpa_stored_<column>``
    for each table column the view does not show unchanged.

    Raises:
        ArchiveError: the view in the database does not have the layout's columns (run migrate).
    """
    view = _types(cursor, schema, layout.view)
    types = dict(_types(cursor, schema, layout.table))
    types.update(
        (f"{CONTEXT_ALIAS}.{name}", kind) for name, kind in _types(cursor, schema, layout.context_table)
    )
    sources = view_sources(layout)
    fields = sealed_fields(layout)
    if len(view) != len(sources) or any(name not in types for name in fields):
        raise ArchiveError(
            f"the read view {schema}.{layout.view} does not have the {layout.name} layout's columns;"
            " bring the audit objects up to date first (python manage.py migrate, or partitioned_audit.install())"
        )
    columns = [Column(name, kind, source) for (name, kind), source in zip(view, sources, strict=True)]
    shown = {c.source for c in columns}
    columns += [
        Column(STORED_PREFIX + name.replace(f"{CONTEXT_ALIAS}.", "context_", 1), types[name], name)
        for name in fields
        if name not in shown
    ]
    return columns


def _arrow_type(pg_type: str) -> Any:
    import pyarrow as pa

    return {
        "bigint": pa.int64(),
        "integer": pa.int32(),
        "smallint": pa.int16(),
        "oid": pa.int64(),
        "boolean": pa.bool_(),
        "timestamp with time zone": pa.timestamp("us", "UTC"),
    }.get(pg_type, pa.string())


def _fetched(column: Column) -> Composable:
    """How a column is selected: natively where its Arrow type holds it, else as its text."""
    name = ident("q", column.name)
    if column.pg_type == "oid":
        return SQL("{}::pg_catalog.int8").format(name)
    if column.pg_type == "timestamp with time zone":
        # Microseconds since the epoch (exact: extract returns numeric): the driver reads an
        # integer several times faster than a timestamp, and Arrow takes it as it stands.
        return SQL("(EXTRACT(epoch FROM {}) * 1000000)::pg_catalog.int8").format(name)
    if _arrow_type(column.pg_type) != _arrow_type("text"):
        return name
    if column.pg_type in ("jsonb", "json", "text") or column.pg_type.startswith("character varying"):
        return SQL("{}::pg_catalog.text").format(name)
    # (the output text, as the seals read it: ::text differs for some types, such as inet)
    return SQL("CASE WHEN {c} IS NOT NULL THEN pg_catalog.format('%s', {c}) END").format(c=name)


def schema_of(columns: Sequence[Column]) -> Any:
    import pyarrow as pa

    return pa.schema([pa.field(c.name, _arrow_type(c.pg_type)) for c in columns])


# ---------------------------------------------------------------------------------------
# Values as PostgreSQL writes them: what the seals hash, what COPY reads back
# ---------------------------------------------------------------------------------------


def column_texts(array: Any) -> Any:
    """The output text PostgreSQL writes for each value of an Arrow column (NULL stays
    NULL), in a session with ``TimeZone = 'UTC'``, as the seals read them: a string array."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = array.type
    if pa.types.is_timestamp(kind):
        # (as UTC wall time: the cast of a naive timestamp is several times faster)
        text = pc.cast(array.cast(pa.timestamp(kind.unit)), pa.string())
        # PostgreSQL drops a zero fraction and trailing zeros, and writes the offset as +00.
        text = pc.utf8_rtrim(pc.utf8_rtrim(text, characters="0"), characters=".")
        return pc.binary_join_element_wise(text, pa.scalar("+00"), "")
    if pa.types.is_boolean(kind):
        return pc.if_else(array, pa.scalar("t"), pa.scalar("f"))
    if pa.types.is_integer(kind):
        return pc.cast(array, pa.string())
    return array


def text_arrays(batch: Any, columns: Sequence[Column], fields: Sequence[str]) -> list[Any]:
    """The batch as field texts: one string array per field of ``fields`` (names of
    :func:`sealed_fields`), in order."""
    where = {c.source: c.name for c in columns if c.source is not None}
    return [column_texts(batch.column(where[name])) for name in fields]


def row_texts(batch: Any, columns: Sequence[Column], fields: Sequence[str]) -> list[list[str | None]]:
    """The batch's rows as the texts of ``fields``, in order."""
    per_column = [array.to_pylist() for array in text_arrays(batch, columns, fields)]
    return [list(row) for row in zip(*per_column, strict=True)]


def row_digests(arrays: Sequence[Any]) -> list[bytes]:
    """Each row's digest over ``arrays`` (:func:`partitioned_audit.offline.row_digest`:
    format 2 over the layout's fields, format 3 over those and the context fields), its
    field pieces built column by column in Arrow; a field longer than ``INLINE_BYTES`` is
    hashed apart, as the format says."""
    import pyarrow as pa
    import pyarrow.compute as pc

    empty, null, inline = (
        pa.scalar(b"", pa.binary()),
        pa.scalar(b"\x00", pa.binary()),
        pa.scalar(b"\x01", pa.binary()),
    )
    pieces = []
    for array in arrays:
        data = pc.cast(array, pa.binary())
        lengths = pc.fill_null(pc.binary_length(data), 0).cast(pa.uint32())
        if len(lengths) and pc.max(lengths).as_py() > INLINE_BYTES:
            pieces.append(pa.array([field_piece(v) for v in array.to_pylist()], pa.binary()))
            continue
        # Each length as 4 bytes big-endian: the array's own buffer, its bytes swapped in C.
        words = array_.array("I")
        words.frombytes(
            lengths.buffers()[1].to_pybytes()[lengths.offset * 4 : (lengths.offset + len(lengths)) * 4]
        )
        if sys.byteorder == "little":
            words.byteswap()
        packed = pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(4), len(lengths), [None, pa.py_buffer(words.tobytes())]
        ).cast(pa.binary())
        joined = pc.binary_join_element_wise(inline, packed, data, empty)
        pieces.append(pc.if_else(pc.is_null(data), null, joined))
    rows = pc.binary_join_element_wise(*pieces, pa.scalar(b"", pa.binary()))
    sha256 = hashlib.sha256
    return [sha256(row).digest() for row in rows.to_pylist()]


# ---------------------------------------------------------------------------------------
# The seals covering a partition's rows
# ---------------------------------------------------------------------------------------


@dataclass
class SealState:
    """What the seal table says about chunks, read in the archive's snapshot."""

    seals: list[Seal]
    #: (seal id, chunk) -> (rows, digest, id of the entry that last listed it).
    expected: dict[tuple[int, int], tuple[int, bytes, int]]
    #: The last sealed event id.
    sealed: int
    #: Transaction ids of still open seals, whose rows are not sealed yet.
    late: set[int]
    #: Entry digests by id.
    digests: dict[int, bytes]

    def __post_init__(self) -> None:
        # Seals cover contiguous, increasing ranges: a row's seal is found by bisection.
        self.seals = sorted(self.seals, key=lambda s: s.first)
        self._firsts = [s.first for s in self.seals]

    def seal(self, seal_id: int) -> Seal:
        return next(s for s in self.seals if s.seal_id == seal_id)

    def chunk_of(self, event_id: int) -> tuple[Seal, int] | None:
        """The seal covering ``event_id`` and the index of its chunk there, if any."""
        at = bisect.bisect_right(self._firsts, event_id) - 1
        if at < 0 or event_id > self.seals[at].last:
            return None
        found = self.seals[at]
        return found, (event_id - found.first) // found.size


def seal_state(entries: Sequence[Entry], attached: set[str], table_text: str) -> SealState:
    """The chunks' expected digests after ``entries``, as verify counts them (one walk of
    the chain, :func:`~partitioned_audit.offline.walk`): an entry verify does not count
    counts for nothing here, nor does a retention entry of a partition attached again."""
    done = walk(entries, attached, table_text)
    return SealState(
        list(done.seals.values()),
        {key: (rows, digest or b"", entry) for key, (rows, digest, _, entry) in done.expected.items()},
        done.sealed,
        done.late,
        {e.seal_id: e.digest for e in entries},
    )


# ---------------------------------------------------------------------------------------
# The manifest
# ---------------------------------------------------------------------------------------


@dataclass
class Manifest:
    """``manifest.json`` of one archived partition (see docs/archive.md)."""

    partition: str
    schema: str
    table: str
    layout: str
    range: tuple[str | None, str | None]
    rows: int
    min_event_id: int | None
    max_event_id: int | None
    columns: list[Column]
    files: list[dict[str, Any]]
    #: Rows with an event id up to here, outside ``late``, are sealed.
    sealed_through: int
    late: list[int]
    #: One per chunk holding a sealed row: seal_id, index, entry (the seal entry giving the
    #: digest), format, rows, digest (hex), others ([event id, base64 piece] of the chunk's
    #: rows outside the partition).
    chunks: list[dict[str, Any]]
    #: The seal entries the chunks name: {seal_id: digest (hex)}.
    entries: dict[int, str]
    archived_at: str
    format: int = ARCHIVE_FORMAT

    def as_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "partition": self.partition,
            "schema": self.schema,
            "table": self.table,
            "layout": self.layout,
            "range": list(self.range),
            "rows": self.rows,
            "min_event_id": self.min_event_id,
            "max_event_id": self.max_event_id,
            "columns": [{"name": c.name, "type": c.pg_type, "stores": c.source} for c in self.columns],
            "files": self.files,
            "seals": {
                "sealed_through": self.sealed_through,
                "late_transactions": self.late,
                "entries": [{"seal_id": k, "digest": v} for k, v in sorted(self.entries.items())],
                "chunks": self.chunks,
            },
            "archived_at": self.archived_at,
        }

    def encode(self) -> bytes:
        return (json.dumps(self.as_json(), indent=1, sort_keys=True) + "\n").encode()

    @classmethod
    def decode(cls, data: bytes, where: str) -> Manifest:
        try:
            doc = json.loads(data)
            seals = doc["seals"]
            if doc["format"] != ARCHIVE_FORMAT:
                raise ArchiveError(f"{where}: archive format {doc['format']!r} is not one this version reads")
            return cls(
                partition=doc["partition"],
                schema=doc["schema"],
                table=doc["table"],
                layout=doc["layout"],
                range=(doc["range"][0], doc["range"][1]),
                rows=int(doc["rows"]),
                min_event_id=doc["min_event_id"],
                max_event_id=doc["max_event_id"],
                columns=[Column(c["name"], c["type"], c["stores"]) for c in doc["columns"]],
                files=list(doc["files"]),
                sealed_through=int(seals["sealed_through"]),
                late=[int(x) for x in seals["late_transactions"]],
                chunks=list(seals["chunks"]),
                entries={int(e["seal_id"]): e["digest"] for e in seals["entries"]},
                archived_at=doc["archived_at"],
            )
        except ArchiveError:
            raise
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise ArchiveError(f"{where} is not a readable manifest: {type(exc).__name__}: {exc}") from exc


# ---------------------------------------------------------------------------------------
# Checking a copy
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One way an archived partition differs from its manifest or its seals."""

    partition: str
    file: str
    detail: str
    seal_id: int | None = None
    first_event_id: int | None = None
    last_event_id: int | None = None

    def finding(self) -> Finding:
        return Finding(
            "archive",
            self.seal_id,
            self.first_event_id,
            self.last_event_id,
            None,
            None,
            self.file,
            self.detail,
        )


def _sha256(store: Store, path: str) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0

    def read() -> None:
        nonlocal size
        with store.fs.open_input_stream(path) as stream:
            while True:
                block = stream.read(8 << 20)
                if not block:
                    break
                digest.update(block)
                size += len(block)

    store._call("read", path, read)
    return digest.hexdigest(), size


def batches(store: Store, path: str, columns: Sequence[str] | None = None) -> Iterator[Any]:
    """The record batches of one Parquet object (only ``columns``, if given), read as a stream."""
    import pyarrow.parquet as pq

    def open_file() -> Any:
        return pq.ParquetFile(store.fs.open_input_file(path))

    parquet = store._call("read", path, open_file)
    try:
        yield from parquet.iter_batches(batch_size=BATCH_ROWS, columns=columns)
    except OSError as exc:
        raise ArchiveError(f"{path}: {exc}") from exc


@dataclass(frozen=True)
class _Chunk:
    """What one chunk holding sealed rows of the partition must hash to."""

    seal_id: int
    index: int
    first: int
    size: int
    format: int
    rows: int
    digest: str
    #: (event id, piece) of the chunk's sealed rows outside the partition, in order.
    others: list[tuple[int, bytes]]


def _manifest_chunks(manifest: Manifest) -> dict[tuple[int, int], _Chunk]:
    return {
        (int(c["seal_id"]), int(c["index"])): _Chunk(
            int(c["seal_id"]),
            int(c["index"]),
            int(c["first"]),
            int(c["size"]),
            int(c["format"]),
            int(c["rows"]),
            c["digest"],
            [(int(i), base64.b64decode(p)) for i, p in c["others"]],
        )
        for c in manifest.chunks
    }


#: Where a sealed event id falls: its chunk (seal id, index), and the event ids that chunk
#: spans ([first, last]), or None when no chunk holds it.
_Located = tuple[tuple[int, int], int, int] | None


class _Checker:
    """Recomputes the chunk digests of a partition's sealed rows from its Arrow batches, fed
    in event-id order (one chunk hashed at a time, merged with its rows outside the
    partition), and collects where they differ from their seals.

    ``locate`` gives the chunk of a sealed event id, ``chunk`` what that chunk must hash to."""

    def __init__(
        self,
        partition: str,
        columns: Sequence[Column],
        layout: Layout,
        sealed_through: int,
        late: set[int],
        locate: Callable[[int], _Located],
        chunk: Callable[[tuple[int, int]], _Chunk],
    ) -> None:
        self.partition, self.columns, self.layout = partition, columns, layout
        self.sealed_through, self.late, self.locate, self.chunk = sealed_through, late, locate, chunk
        self.fields = sealed_fields(layout)
        self.problems: list[Problem] = []
        #: The chunks met, in order.
        self.seen: dict[tuple[int, int], _Chunk] = {}
        self.current: _Chunk | None = None
        #: The event ids the current chunk spans.
        self.span = (1, 0)
        self.hasher: Any = None
        #: How many of the current chunk's rows outside the partition are hashed.
        self.merged = 0
        self.count = 0
        self.where = ""

    def _ints(self, batch: Any, source: str) -> list[int | None]:
        """The values of sealed field ``source`` (an integer column) as ints, from the batch's
        own column when it holds integers (it does in any archive this writes)."""
        import pyarrow as pa

        name = next((c.name for c in self.columns if c.source == source), None)
        column = batch.column(name) if name is not None else None
        if column is not None and pa.types.is_integer(column.type):
            return column.to_pylist()  # type: ignore[no-any-return]
        (texts,) = text_arrays(batch, self.columns, [source])
        return [None if x is None else int(x) for x in texts.to_pylist()]

    def batch(self, batch: Any, where: str) -> None:
        """Hash the sealed rows of ``batch``, read from ``where`` (named by any problem)."""
        self.where = where
        ids = self._ints(batch, self.layout.event_column)
        txids = self._ints(batch, self.layout.txid_column) if self.late else []
        through, late = self.sealed_through, self.late
        # Each row's line (format 1) or digest (later formats: its fields, then its context
        # fields), made for the whole batch when a row of that format comes (_pieces).
        pieces: dict[int, list[bytes]] = {}
        for row, found in enumerate(ids):
            event_id = 0 if found is None else found
            if event_id > through or (late and txids[row] in late):
                continue
            if not self.span[0] <= event_id <= self.span[1]:
                located = self.locate(event_id)
                if located is None:
                    self.problems.append(
                        Problem(
                            self.partition,
                            where,
                            f"event {event_id} is sealed but no chunk of the manifest holds it",
                            None,
                            event_id,
                            event_id,
                        )
                    )
                    continue
                self.finish()
                key, low, high = located
                self.current = self.seen[key] = self.chunk(key)
                self.span, self.hasher, self.count, self.merged = (low, high), hashlib.sha256(), 0, 0
            chunk = self.current
            assert chunk is not None  # noqa: S101 - set with the span
            others = chunk.others
            while self.merged < len(others) and others[self.merged][0] < event_id:
                self.hasher.update(others[self.merged][1])
                self.merged += 1
            seal_format = chunk.format
            if seal_format not in pieces:
                pieces[seal_format] = self._pieces(batch, seal_format)
            self.hasher.update(pieces[seal_format][row])
            self.count += 1

    def _pieces(self, batch: Any, seal_format: int) -> list[bytes]:
        """What each row of ``batch`` adds to its chunk's digest in ``seal_format``, from the
        fields that format hashes (an archive made before a format added a column has none
        of it, and only seals of earlier formats to check); a row holding a value in a column
        the format does not cover (``Layout.stray_columns``) hashes every column."""
        fields = sealed_fields(self.layout, seal_format)
        held = {c.source for c in self.columns}
        stray = [name for name in self.layout.stray_columns(seal_format) if name in held]
        flags = [False] * batch.num_rows
        if stray:
            texts = [array.to_pylist() for array in text_arrays(batch, self.columns, stray)]
            flags = [any(v is not None for v in values) for values in zip(*texts, strict=True)]
        every = [*self.layout.column_names, *fields[len(self.layout.sealed_columns(seal_format)) :]]
        if seal_format == 1:
            plain = [row_line(line) for line in row_texts(batch, self.columns, fields)]
            full = [row_line(line) for line in row_texts(batch, self.columns, every)] if any(flags) else plain
        else:
            plain = row_digests(text_arrays(batch, self.columns, fields))
            full = row_digests(text_arrays(batch, self.columns, every)) if any(flags) else plain
        return [full[i] if flag else plain[i] for i, flag in enumerate(flags)]

    def finish(self) -> None:
        """Compare the chunk being hashed with its seal (at the end of a file, of the rows)."""
        chunk, self.current, self.span = self.current, None, (1, 0)
        if chunk is None:
            return
        for _, extra in chunk.others[self.merged :]:
            self.hasher.update(extra)
        rows = self.count + len(chunk.others)
        if rows != chunk.rows or self.hasher.hexdigest() != chunk.digest:
            lo = chunk.first + chunk.index * chunk.size
            self.problems.append(
                Problem(
                    self.partition,
                    self.where,
                    f"chunk {chunk.index} of seal {chunk.seal_id} differs from its seal"
                    f" ({chunk.rows} rows sealed, {rows} found with the rows outside the partition)",
                    chunk.seal_id,
                    lo,
                    lo + chunk.size - 1,
                )
            )


def _manifest_checker(manifest: Manifest, layout: Layout, chunks: dict[tuple[int, int], _Chunk]) -> _Checker:
    """A checker of the rows of an archived partition against the chunks of its manifest."""
    # (seal's first event id, seal id, chunk size): a row's chunk is found by its seal.
    starts = sorted({(c.first, c.seal_id, c.size) for c in chunks.values()})
    firsts = [s[0] for s in starts]

    def locate(event_id: int) -> _Located:
        at = bisect.bisect_right(firsts, event_id) - 1
        if at < 0:
            return None
        first, seal_id, size = starts[at]
        index = (event_id - first) // size
        if (seal_id, index) not in chunks:
            return None
        # (a chunk of a seal ends where the next seal starts, at the latest)
        last = first + (index + 1) * size - 1
        return (
            (seal_id, index),
            first + index * size,
            last if at + 1 == len(starts) else min(last, firsts[at + 1] - 1),
        )

    return _Checker(
        manifest.partition,
        manifest.columns,
        layout,
        manifest.sealed_through,
        set(manifest.late),
        locate,
        chunks.__getitem__,
    )


def check_copy(
    store: Store,
    manifest: Manifest,
    layout: Layout,
    files: Sequence[tuple[str, str]],
    progress: Callable[[int], None] | None = None,
) -> list[Problem]:
    """Read ``files`` (manifest entry name, path in the store) back and check them against
    ``manifest``: each file's SHA-256 and row count, and every sealed row's chunk digest.
    Returns the problems found ([] when the copy is exact)."""
    part = manifest.partition
    chunks = _manifest_chunks(manifest)
    checker = _manifest_checker(manifest, layout, chunks)
    problems = checker.problems
    total = 0
    for name, path in files:
        where = store.url_of(part, name)
        listed = next((f for f in manifest.files if f["name"] == name), None)
        digest, _size = _sha256(store, path)
        if listed is None or digest != listed["sha256"]:
            problems.append(
                Problem(
                    part,
                    where,
                    f"its SHA-256 is {digest}, the manifest says {listed['sha256'] if listed else 'nothing'}",
                )
            )
        rows_in_file = 0
        for batch in batches(store, path):
            rows_in_file += batch.num_rows
            checker.batch(batch, where)
            if progress is not None:
                progress(batch.num_rows)
        checker.finish()
        total += rows_in_file
        if listed is not None and rows_in_file != int(listed["rows"]):
            problems.append(
                Problem(part, where, f"it holds {rows_in_file} rows, the manifest says {listed['rows']}")
            )
    if total != manifest.rows:
        problems.append(
            Problem(part, store.url_of(part), f"{total} rows archived, the manifest says {manifest.rows}")
        )
    for key in sorted(set(chunks) - set(checker.seen)):
        problems.append(
            Problem(
                part,
                store.url_of(part),
                f"chunk {key[1]} of seal {key[0]} has none of its rows in the archive",
                key[0],
            )
        )
    return problems


# ---------------------------------------------------------------------------------------
# Archiving
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Archived:
    """What happened to one partition in an ``archive`` run."""

    partition: PartitionInfo
    #: ``archived`` (written now), ``kept`` (a checked copy was already there).
    state: str
    rows: int
    bytes: int
    manifest: str
    dropped: bool
    seconds: float = 0.0


def lock_key(maintainer: Maintainer) -> str:
    return f"{COMMENT_TAG}:archive:{maintainer.table}"


class _Lock:
    """The session advisory lock of archive runs on one audit table."""

    def __init__(self, maintainer: Maintainer) -> None:
        self.cursor = maintainer.connection.cursor()
        self.key = lock_key(maintainer)

    def __enter__(self) -> _Lock:
        self.cursor.execute("SELECT pg_catalog.pg_try_advisory_lock(pg_catalog.hashtext(%s))", [self.key])
        if not self.cursor.fetchone()[0]:
            raise ArchiveBusy(
                f"another archive or restore run on this audit table holds its lock ({self.key});"
                " nothing was done: let it finish, then run again"
            )
        return self

    def __exit__(self, *exc: object) -> None:
        self.cursor.execute("SELECT pg_catalog.pg_advisory_unlock(pg_catalog.hashtext(%s))", [self.key])


@contextlib.contextmanager
def _snapshot(connection: Any) -> Iterator[Cursor]:
    """A REPEATABLE READ, READ ONLY transaction (a savepoint inside the caller's), with the
    settings the row texts depend on."""
    cursor = connection.cursor()
    own = bool(getattr(connection, "autocommit", False))
    cursor.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" if own else "SAVEPOINT dpa_archive")
    try:
        for name, value in TEXT_SETTINGS.items():
            cursor.execute("SELECT pg_catalog.set_config(%s, %s, true)", [name, value])
        # The read of the rows is costed high (the view's subquery for rows written before
        # the context table), which makes PostgreSQL compile it with JIT: over a second of a
        # 200,000-row partition's three, for a query that runs once.
        cursor.execute("SELECT pg_catalog.set_config('jit', 'off', true)")
        yield cursor
    finally:
        cursor.execute("ROLLBACK" if own else "ROLLBACK TO SAVEPOINT dpa_archive")


def archived_marks(maintainer: Maintainer) -> dict[str, str]:
    """{partition: manifest URL} of the attached partitions marked archived."""
    cursor = maintainer.connection.cursor()
    cursor.execute(
        "SELECT c.relname::text, pg_catalog.col_description(c.oid, a.attnum) FROM pg_catalog.pg_inherits i"
        " JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid"
        " JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attname = %s"
        " WHERE i.inhparent = pg_catalog.to_regclass(%s)",
        [maintainer.layout.event_column, render(ident(maintainer.schema, maintainer.layout.table), cursor)],
    )
    return {
        name: comment[len(ARCHIVED_MARK) :]
        for name, comment in cursor.fetchall()
        if comment and comment.startswith(ARCHIVED_MARK)
    }


def _mark(maintainer: Maintainer, partition: str, url: str) -> None:
    execute(
        maintainer.connection.cursor(),
        SQL("COMMENT ON COLUMN {} IS {}").format(
            ident(maintainer.schema, partition, maintainer.layout.event_column), literal(ARCHIVED_MARK + url)
        ),
    )


def _bounds(maintainer: Maintainer, partition: str) -> tuple[str | None, str | None]:
    for row in catalog.partitions(maintainer.connection.cursor(), maintainer.schema, maintainer.layout.table):
        if row.name == partition:
            return (
                row.lower.isoformat() if row.lower else None,
                row.upper.isoformat() if row.upper else None,
            )
    raise ArchiveError(f"{maintainer.schema}.{partition} is not a partition of {maintainer.table}")


def _read_manifest(store: Store, partition: str) -> Manifest | None:
    path = store.path(partition, MANIFEST)
    if not store.exists(path):
        return None
    return Manifest.decode(store.read_bytes(path), store.url_of(partition, MANIFEST))


class _HashingSink:
    """A writable file over a store's output stream that keeps the SHA-256 and the size of
    every byte written through it: what the object read back must hash to."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.sha256.update(view)
        self.size += view.nbytes
        self.stream.write(view)
        return view.nbytes

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self.stream.flush()

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.stream.close()


@dataclass
class _Written:
    """What :func:`_write_partition` wrote: the manifest (files not yet listed), the
    problems its rows' check found, and the SHA-256 and size of the bytes written."""

    manifest: Manifest
    problems: list[Problem]
    sha256: str
    size: int


def _write_partition(
    maintainer: Maintainer,
    store: Store,
    info: PartitionInfo,
    columns: list[Column],
    progress: Callable[[int], None] | None,
    batch_rows: int,
) -> _Written:
    """Stream the partition's rows into ``data.parquet.partial``, and check each batch's
    sealed rows against their seals on the way (from the Arrow batches being written, with
    the seals and the chunks' rows outside the partition read in the same snapshot)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    layout, schema = maintainer.layout, maintainer.schema
    schema_ = schema_of(columns)
    partial = store.path(info.partition, DATA_FILE + PARTIAL)
    where = store.url_of(info.partition, DATA_FILE + PARTIAL)
    event_name = next(c.name for c in columns if c.source == layout.event_column)
    event_at = next(i for i, c in enumerate(columns) if c.source == layout.event_column)
    with _snapshot(maintainer.connection) as cursor:
        state = seal_state(
            read_entries(cursor, layout, schema),
            attached_partitions(cursor, layout, schema),
            f"{schema}.{layout.table}",
        )
        others = _others(
            cursor, maintainer, info.partition, state, *_counts(cursor, maintainer, info.partition)[1:]
        )

        def chunk(key: tuple[int, int]) -> _Chunk:
            if key not in state.expected:
                raise ArchiveError(
                    f"chunk {key[1]} of seal {key[0]} holds rows of {info.partition} but no seal entry lists it;"
                    " run verify"
                )
            seal = state.seal(key[0])
            rows, digest, _entry = state.expected[key]
            return _Chunk(
                key[0], key[1], seal.first, seal.size, seal.format, rows, digest.hex(), others.get(key, [])
            )

        def locate(event_id: int) -> _Located:
            found = state.chunk_of(event_id)
            if found is None:
                return None
            seal, index = found
            low = seal.first + index * seal.size
            return (seal.seal_id, index), low, min(seal.last, low + seal.size - 1)

        checker = _Checker(info.partition, columns, layout, state.sealed, state.late, locate, chunk)
        # (legacy: rows written before the context table show their own context, as in a
        # view made where such rows are left; the others show the context row's, as in any view)
        inner = SQL("SELECT {view}, {stored} FROM {part} AS a {join}").format(
            view=view_select_list(layout, schema, legacy=True),
            stored=SQL(", ").join(
                SQL("{}.{} AS {}").format(*_field_reference(c.source), ident(c.name))
                for c in columns
                if c.name.startswith(STORED_PREFIX) and c.source
            )
            or SQL("NULL AS {}").format(ident(f"{PREFIX}none")),
            part=ident(schema, info.partition),
            join=context_join(layout, schema, "a"),
        )
        execute(
            cursor,
            SQL(
                "DECLARE {cursor} NO SCROLL CURSOR FOR SELECT {fields} FROM ({inner}) AS q ORDER BY q.{event}"
            ).format(
                cursor=ident(_CURSOR),
                fields=SQL(", ").join(_fetched(c) for c in columns),
                inner=inner,
                event=ident(event_name),
            ),
        )
        fetch = SQL("FETCH FORWARD {} FROM {}").format(literal(batch_rows), ident(_CURSOR))
        rows, low, high = 0, None, None
        types = [field.type for field in schema_]
        # (timestamps come as microseconds since the epoch: see _fetched)
        fetched_types = [pa.int64() if pa.types.is_timestamp(kind) else kind for kind in types]

        def open_output() -> tuple[_HashingSink, Any]:
            sink = _HashingSink(store.fs.open_output_stream(partial))
            return sink, pq.ParquetWriter(sink, schema_, compression="zstd", compression_level=_ZSTD_LEVEL)

        sink, writer = store._call("write", partial, open_output)
        try:
            while True:
                execute(cursor, fetch)
                fetched = cursor.fetchall()
                if not fetched:
                    break
                # (one pass over the rows in C: zip transposes them into columns)
                batch = pa.RecordBatch.from_arrays(
                    [
                        pa.array(values, type=read).cast(kind)
                        for values, read, kind in zip(
                            zip(*fetched, strict=True), fetched_types, types, strict=True
                        )
                    ],
                    schema=schema_,
                )
                store._call("write", partial, writer.write_batch, batch, batch_rows)
                checker.batch(batch, where)
                low = fetched[0][event_at] if low is None else low
                high = fetched[-1][event_at]
                rows += len(fetched)
                if progress is not None:
                    progress(len(fetched))
            checker.finish()
        finally:
            store._call("write", partial, writer.close)
            store._call("write", partial, sink.close)
        execute(cursor, SQL("CLOSE {}").format(ident(_CURSOR)))
    entries = {key: state.expected[key][2] for key in checker.seen}
    chunks = [
        {
            "seal_id": c.seal_id,
            "index": c.index,
            "first": c.first,
            "size": c.size,
            "format": c.format,
            "entry": entries[key],
            "rows": c.rows,
            "digest": c.digest,
            "others": [[event_id, base64.b64encode(piece).decode()] for event_id, piece in c.others],
        }
        for key, c in sorted(checker.seen.items())
    ]
    manifest = Manifest(
        partition=info.partition,
        schema=schema,
        table=layout.table,
        layout=layout.name,
        range=_bounds(maintainer, info.partition),
        rows=rows,
        min_event_id=low,
        max_event_id=high,
        columns=columns,
        files=[],
        sealed_through=state.sealed,
        late=sorted(state.late),
        chunks=chunks,
        entries={entry: state.digests[entry].hex() for entry in entries.values()},
        archived_at=dt.datetime.now(dt.UTC).isoformat(),
    )
    return _Written(manifest, checker.problems, sink.sha256.hexdigest(), sink.size)


def _field_reference(source: str) -> tuple[Composable, Composable]:
    """(alias, column) of a sealed field over the audit rows ``a`` and context rows ``c``."""
    alias, _, column = source.rpartition(".")
    return ident(alias or "a"), ident(column)


def _others(
    cursor: Cursor,
    maintainer: Maintainer,
    partition: str,
    state: SealState,
    low: int | None,
    high: int | None,
) -> dict[tuple[int, int], list[tuple[int, bytes]]]:
    """For each chunk around the partition's event ids ``low``..``high``, what its sealed
    rows outside the partition add to its digest: [(event id, piece)] in event-id order."""
    if low is None or high is None or not state.seals:
        return {}
    first = state.chunk_of(max(low, state.seals[0].first))
    last = state.chunk_of(min(high, state.sealed))
    if first is None or last is None or low > state.sealed:
        return {}
    seal, index = first
    start = seal.first + index * seal.size
    seal, index = last
    end = min(seal.last, seal.first + (index + 1) * seal.size - 1)
    layout = maintainer.layout
    event = ident(layout.event_column)
    execute(
        cursor,
        SQL(
            "SELECT e.{event}, {fields} FROM {table} e {join} WHERE e.{event} BETWEEN {low} AND {high}"
            " AND e.tableoid <> {part}::pg_catalog.regclass ORDER BY e.{event}"
        ).format(
            event=event,
            fields=field_texts(layout),
            table=ident(maintainer.schema, layout.table),
            join=context_join(layout, maintainer.schema, "e"),
            low=literal(start),
            high=literal(end),
            part=literal(render(ident(maintainer.schema, partition), cursor)),
        ),
    )
    txid_at = layout.column_names.index(layout.txid_column)
    found: dict[tuple[int, int], list[tuple[int, bytes]]] = {}
    positions: dict[int, Positions] = {}
    for event_id, *texts in cursor.fetchall():
        if event_id > state.sealed or (texts[txid_at] is not None and int(texts[txid_at]) in state.late):
            continue
        at = state.chunk_of(event_id)
        if at is None:
            continue
        if at[0].format not in positions:
            positions[at[0].format] = sealed_positions(layout, at[0].format)
        piece = row_piece(texts, positions[at[0].format], at[0].format)
        found.setdefault((at[0].seal_id, at[1]), []).append((event_id, piece))
    return found


def archive_partition(
    maintainer: Maintainer,
    store: Store,
    info: PartitionInfo,
    drop: bool = False,
    progress: Callable[[int], None] | None = None,
    batch_rows: int | None = None,
) -> Archived:
    """Archive one partition (see the module docstring); the caller holds the archive lock.

    Args:
        batch_rows: rows per fetch and per Parquet row group (default :data:`BATCH_ROWS`).

    Raises:
        ArchiveError: the copy does not match the partition or its seals; nothing was
            published or dropped.
        StoreError: the store failed; the next run starts the partition again.
        OutdatedInstall: the audit table lacks a column of this version (run migrate).
    """
    started = time.monotonic()
    require_columns(maintainer.connection.cursor(), maintainer.layout, maintainer.schema)
    columns = archive_columns(maintainer.connection.cursor(), maintainer.layout, maintainer.schema)
    directory = store.path(info.partition)
    manifest_path = store.path(info.partition, MANIFEST)
    manifest = _read_manifest(store, info.partition)
    state = "kept"
    if manifest is not None:
        files = [(f["name"], store.path(info.partition, f["name"])) for f in manifest.files]
        problems = check_copy(store, manifest, maintainer.layout, files)
        if problems or not _same_rows(maintainer, info.partition, manifest):
            # A published copy that no longer matches is not overwritten: it may be the only one.
            detail = problems[0].detail if problems else "the partition's rows are not the ones archived"
            raise ArchiveError(
                f"{store.url_of(info.partition, MANIFEST)} exists but does not match {maintainer.schema}."
                f"{info.partition}: {detail}; check it with verify --archive, move it away, and run again"
            )
    else:
        state = "archived"
        # What a stopped run left behind: never read, always rewritten.
        for leftover in store.listing(directory):
            if leftover.endswith(PARTIAL):
                store.delete(leftover)
        store.make_dir(directory)
        written = _write_partition(maintainer, store, info, columns, progress, batch_rows or BATCH_ROWS)
        manifest = written.manifest
        partial = store.path(info.partition, DATA_FILE + PARTIAL)
        manifest.files = [
            {"name": DATA_FILE, "sha256": written.sha256, "rows": manifest.rows, "bytes": written.size}
        ]
        problems = written.problems
        # The rows were checked as they were written; the object must hold exactly those bytes.
        digest, size = _sha256(store, partial)
        if (digest, size) != (written.sha256, written.size):
            problems.append(
                Problem(
                    info.partition,
                    store.url_of(info.partition, DATA_FILE),
                    f"the object read back ({size} bytes, SHA-256 {digest}) is not what was written"
                    f" ({written.size} bytes, SHA-256 {written.sha256})",
                )
            )
        if problems:
            raise ArchiveError(
                f"the copy of {maintainer.schema}.{info.partition} read back from {store.url} does not match:"
                f" {problems[0].detail} ({problems[0].file}); nothing was published, run verify"
            )
        store.publish(partial, store.path(info.partition, DATA_FILE))
        store.write_bytes(manifest_path + PARTIAL, manifest.encode())
        store.publish(manifest_path + PARTIAL, manifest_path)
    url = store.url_of(info.partition, MANIFEST)
    _mark(maintainer, info.partition, url)
    dropped = False
    if drop:
        dropped = bool(
            maintainer.detach(
                [info],
                drop=True,
                check=lambda cursor, part: _require_same_rows(cursor, maintainer, part, manifest),
            )
        )
    size = sum(int(f["bytes"]) for f in manifest.files)
    return Archived(info, state, manifest.rows, size, url, dropped, time.monotonic() - started)


def _counts(cursor: Cursor, maintainer: Maintainer, partition: str) -> tuple[int, int | None, int | None]:
    event = ident(maintainer.layout.event_column)
    execute(
        cursor,
        SQL("SELECT count(*), min({e}), max({e}) FROM {t}").format(
            e=event, t=ident(maintainer.schema, partition)
        ),
    )
    count, low, high = cursor.fetchone()
    return int(count), low, high


def _same_rows(maintainer: Maintainer, partition: str, manifest: Manifest) -> bool:
    found = _counts(maintainer.connection.cursor(), maintainer, partition)
    return found == (manifest.rows, manifest.min_event_id, manifest.max_event_id)


def _require_same_rows(cursor: Cursor, maintainer: Maintainer, partition: str, manifest: Manifest) -> None:
    found = _counts(cursor, maintainer, partition)
    if found != (manifest.rows, manifest.min_event_id, manifest.max_event_id):
        raise ArchiveError(
            f"{maintainer.schema}.{partition} changed since it was archived ({found[0]} rows, events"
            f" {found[1]}..{found[2]}; the archive holds {manifest.rows}, events {manifest.min_event_id}.."
            f"{manifest.max_event_id}); not dropped: archive it again"
        )


def archive(
    maintainer: Maintainer,
    store: Store,
    older_than_days: int,
    drop: bool = False,
    now: dt.datetime | None = None,
    progress: Callable[[PartitionInfo, int, int], None] | None = None,
    batch_rows: int | None = None,
) -> list[Archived]:
    """Archive every partition of ours whose whole range ended ``older_than_days`` ago.

    Args:
        progress: called with (partition, rows done now, rows in the partition).
        batch_rows: rows per fetch and per Parquet row group (default :data:`BATCH_ROWS`):
            memory grows with it.

    Raises:
        ArchiveBusy: another run holds the lock.
    """
    with _Lock(maintainer):
        done = []
        for info in maintainer.expired(older_than_days, now):
            total = _counts(maintainer.connection.cursor(), maintainer, info.partition)[0]

            def step(rows: int, info: PartitionInfo = info, total: int = total) -> None:
                if progress is not None:
                    progress(info, rows, total)

            done.append(archive_partition(maintainer, store, info, drop, step, batch_rows))
        return done


# ---------------------------------------------------------------------------------------
# Reading the archive back: verify, restore, read
# ---------------------------------------------------------------------------------------


def manifests(store: Store, maintainer: Maintainer) -> list[Manifest]:
    """The published manifests of this audit table's partitions, by partition name."""
    found = []
    for name in store.directories():
        if PartitionInfo.of(name, maintainer.layout.table) is None:
            continue
        manifest = _read_manifest(store, name)
        if manifest is not None and (manifest.schema, manifest.table) == (
            maintainer.schema,
            maintainer.layout.table,
        ):
            found.append(manifest)
    return found


def _against_seals(maintainer: Maintainer, manifest: Manifest) -> list[Problem]:
    """The manifest's chunks and entries against the seal table in the database, which
    verify checks in turn: a manifest rewritten to match altered rows is caught here."""
    cursor = maintainer.connection.cursor()
    execute(
        cursor,
        SQL(
            "SELECT s.seal_id, s.digest, s.chunk_seal, s.chunk_index, s.chunk_rows, s.chunk_digest FROM {}"
            " s WHERE s.seal_id = ANY (%s)"
        ).format(ident(maintainer.schema, maintainer.layout.seal_table)),
        [sorted(manifest.entries)],
    )
    entries = {
        int(seal_id): (
            bytes(digest).hex(),
            {(s, k): (n, bytes(d).hex()) for s, k, n, d in zip(cs, ks, ns, ds, strict=True)},
        )
        for seal_id, digest, cs, ks, ns, ds in cursor.fetchall()
    }
    where = store_name = manifest.partition
    problems = []
    for seal_id, digest in sorted(manifest.entries.items()):
        if seal_id not in entries or entries[seal_id][0] != digest:
            problems.append(
                Problem(
                    where,
                    store_name,
                    f"seal entry {seal_id} named by the manifest is not in the seal table as the manifest says",
                    seal_id,
                )
            )
    for c in manifest.chunks:
        entry = entries.get(int(c["entry"]))
        sealed = entry[1].get((int(c["seal_id"]), int(c["index"]))) if entry else None
        if sealed != (int(c["rows"]), c["digest"]):
            problems.append(
                Problem(
                    where,
                    store_name,
                    f"the manifest's digest of chunk {c['index']} of seal {c['seal_id']} is not"
                    f" the one seal entry {c['entry']} holds",
                    int(c["seal_id"]),
                )
            )
    return problems


def verify_archive(
    maintainer: Maintainer, store: Store, progress: Callable[[int], None] | None = None
) -> tuple[list[Finding], int, int]:
    """Check every archived partition of this audit table: its files against the manifest,
    its sealed rows against their seals. Returns (findings, partitions, rows)."""
    findings: list[Finding] = []
    rows = 0
    found = manifests(store, maintainer)
    for manifest in found:
        files = [(f["name"], store.path(manifest.partition, f["name"])) for f in manifest.files]
        problems = check_copy(store, manifest, maintainer.layout, files, progress)
        problems += [
            Problem(p.partition, store.url_of(manifest.partition, MANIFEST), p.detail, p.seal_id)
            for p in _against_seals(maintainer, manifest)
        ]
        findings += [p.finding() for p in problems]
        rows += manifest.rows
    return findings, len(found), rows


class _Reader:
    """A file-like object over an iterator of bytes, for psycopg2's ``copy_expert``."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks, self.buffer = chunks, b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self.buffer) < size:
            chunk = next(self.chunks, None)
            if chunk is None:
                break
            self.buffer += chunk
        if size < 0:
            out, self.buffer = self.buffer, b""
        else:
            out, self.buffer = self.buffer[:size], self.buffer[size:]
        return out

    readline = read


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})


def copy_lines(rows: Sequence[Sequence[str | None]]) -> bytes:
    """Rows of field texts in COPY's text format."""
    return "".join(
        "\t".join("\\N" if v is None else v.translate(_COPY_ESCAPES) for v in row) + "\n" for row in rows
    ).encode()


def _copy_in(cursor: Cursor, statement: str, chunks: Iterator[bytes]) -> None:
    raw: Any = getattr(cursor, "cursor", cursor)  # (Django's cursor wrapper)
    if hasattr(raw, "copy"):  # psycopg 3
        with raw.copy(statement) as copy:
            for chunk in chunks:
                copy.write(chunk)
    else:
        raw.copy_expert(statement, _Reader(chunks))


def context_fields(layout: Layout) -> list[tuple[str, str]]:
    """(context table column, sealed field) of the context row of an archived audit row: its
    id, time and transaction, which :func:`~partitioned_audit.ddl.context_join` matches
    (the context row's ``created`` and ``txid`` are its audit rows' time and transaction),
    then what the seals read of it."""
    return [
        ("context_id", CONTEXT_ID_COLUMN),
        (CONTEXT_TIME_COLUMN, layout.time_column),
        ("txid", layout.txid_column),
        *(
            (column, f"{CONTEXT_ALIAS}.{column}")
            for alias, column in CONTEXT_FIELDS
            if alias == CONTEXT_ALIAS
        ),
    ]


def _context_lines(batch: Any, columns: Sequence[Column], layout: Layout) -> bytes:
    """The context rows the batch's audit rows point at, once each, in COPY's text format."""
    rows = row_texts(batch, columns, [field for _, field in context_fields(layout)])
    # A row with no context, or whose context row was not found when archived, has none.
    found = {tuple(row[:3]): row for row in rows if row[0] is not None and row[3] is not None}
    return copy_lines(list(found.values()))


def restore(
    maintainer: Maintainer, store: Store, partition: str, progress: Callable[[int], None] | None = None
) -> Manifest:
    """Re-create and attach ``partition`` from its archive, after checking the archive
    against its manifest and the seals. Returns the manifest.

    Raises:
        ArchiveError: no archive of it, or one that does not match; nothing was changed.
        PartitionError: the partition (or one holding its range) exists.
        OutdatedInstall: the audit table lacks a column of this version (run migrate).
    """
    info = PartitionInfo.of(partition, maintainer.layout.table)
    if info is None:
        raise ArchiveError(
            f"{partition!r} is not a partition name of {maintainer.table} (<table>_<YYYYMMDD>_<YYYYMMDD>)"
        )
    require_columns(maintainer.connection.cursor(), maintainer.layout, maintainer.schema)
    with _Lock(maintainer):
        manifest = _read_manifest(store, partition)
        if manifest is None or (manifest.schema, manifest.table) != (
            maintainer.schema,
            maintainer.layout.table,
        ):
            raise ArchiveError(
                f"no archive of {maintainer.schema}.{partition} at {store.url_of(partition, MANIFEST)}"
            )
        files = [(f["name"], store.path(partition, f["name"])) for f in manifest.files]
        problems = check_copy(store, manifest, maintainer.layout, files)
        problems += _against_seals(maintainer, manifest)
        if problems:
            raise ArchiveError(
                f"the archive of {partition} does not match: {problems[0].detail} ({problems[0].file}); nothing restored"
            )
        layout = maintainer.layout
        # (an archive made before a column was added has none of it: the rows get NULL, as
        # rows stored without the column read it)
        held = {c.source for c in manifest.columns}
        fields = [name for name in table_fields(layout) if name in held]
        needed = {c.name for c in manifest.columns if c.source in {f for _, f in context_fields(layout)}}

        def chunks() -> Iterator[bytes]:
            for _name, path in files:
                for batch in batches(store, path):
                    yield copy_lines(row_texts(batch, manifest.columns, fields))
                    if progress is not None:
                        progress(batch.num_rows)

        def contexts() -> Iterator[bytes]:
            for _name, path in files:
                for batch in batches(store, path, sorted(needed)):
                    yield _context_lines(batch, manifest.columns, layout)

        def fill(cursor: Cursor, name: str) -> int:
            statement = SQL("COPY {} ({}) FROM STDIN").format(
                ident(maintainer.schema, name), SQL(", ").join(ident(c) for c in fields)
            )
            for setting, value in TEXT_SETTINGS.items():
                cursor.execute("SELECT pg_catalog.set_config(%s, %s, true)", [setting, value])
            _copy_in(cursor, render(statement, cursor), chunks())
            found = _counts(cursor, maintainer, name)
            if found != (manifest.rows, manifest.min_event_id, manifest.max_event_id):
                raise ArchiveError(
                    f"restoring {partition} copied {found[0]} rows, the manifest says {manifest.rows}"
                )
            _restore_contexts(cursor, maintainer, contexts())
            return found[0]

        maintainer.restore(info, fill)
        _mark(maintainer, partition, store.url_of(partition, MANIFEST))
        return manifest


def _restore_contexts(cursor: Cursor, maintainer: Maintainer, lines: Iterator[bytes]) -> None:
    """Put back the context rows of restored audit rows (``lines``: COPY text of
    :func:`context_fields`), each once, but those the context table still holds."""
    layout = maintainer.layout
    contexts = ident(maintainer.schema, layout.context_table)
    staged = ident("pg_temp", _CONTEXT_STAGE)
    names = SQL(", ").join(ident(column) for column, _ in context_fields(layout))
    execute(cursor, SQL("CREATE TEMPORARY TABLE {} (LIKE {})").format(ident(_CONTEXT_STAGE), contexts))
    _copy_in(cursor, render(SQL("COPY {} ({}) FROM STDIN").format(staged, names), cursor), lines)
    # (a context row of several batches was staged once per batch)
    execute(
        cursor,
        SQL(
            "INSERT INTO {contexts} ({names}) SELECT DISTINCT ON (t.context_id, t.created, t.txid) {staged_names}"
            " FROM {staged} AS t WHERE NOT EXISTS (SELECT FROM {contexts} AS c"
            " WHERE c.txid = t.txid AND c.created = t.created AND c.context_id = t.context_id)"
        ).format(
            contexts=contexts,
            names=names,
            staged=staged,
            staged_names=SQL(", ").join(
                SQL("t.{}").format(ident(column)) for column, _ in context_fields(layout)
            ),
        ),
    )
    execute(cursor, SQL("DROP TABLE {}").format(staged))


def read_rows(store: Store, table: str, equal: dict[str, Any]) -> list[dict[str, Any]]:
    """The archived rows of ``table``'s partitions whose columns equal ``equal``, as dicts
    keyed by the view's column names; complete partitions only (those with a manifest)."""
    import pyarrow.dataset as ds

    paths = []
    for name in store.directories():
        if PartitionInfo.of(name, table) is None:
            continue
        manifest = _read_manifest(store, name)
        if manifest is not None:
            paths += [store.path(name, f["name"]) for f in manifest.files]
    if not paths:
        return []
    dataset = store._call("read", store.root, ds.dataset, paths, None, "parquet", store.fs)
    condition = None
    for column, value in equal.items():
        term = ds.field(column).is_null() if value is None else ds.field(column) == value
        condition = term if condition is None else condition & term
    table_ = store._call("read", store.root, dataset.to_table, None, condition)
    return table_.to_pylist()  # type: ignore[no-any-return]
