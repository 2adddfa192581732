"""Tamper evidence: seal the trail in chained SHA-256 digests and verify it later.

A *seal* covers the next contiguous range of event ids, cut into *chunks* of ``chunk_size``
ids; each chunk's digest is SHA-256 over the canonical text of its rows (see
docs/tamper-evidence.md), and each seal's own digest hashes the previous seal's digest with
this seal's header and chunk digests. The last digest is the *head*: an operator who keeps
it outside the database can later prove that no sealed row was changed, removed or added,
even by a superuser who recomputed every seal.

Everything is computed inside PostgreSQL by functions installed with the layout; no audit
row travels to Python. The SQL here is pure (composed statements, no I/O) except for
:func:`seal`, :func:`verify` and :func:`retire`, which run those functions on a cursor.

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

from .errors import AuditError, ConfigurationError
from .layouts import (
    COMMENT_TAG,
    CONTEXT_ID_COLUMN,
    MAINTENANCE_ALLOWED,
    MAINTENANCE_SETTING,
    PREFIX,
    SEAL_FUNCTIONS,
    SEAL_HELPERS,
    Layout,
    context_join,
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
#: The canonical encoding new seals use (docs/tamper-evidence.md); seals of formats 1 and
#: 2, made before it, keep verifying with theirs. Format 3 adds to each row's fields the
#: context reference and what the context row it points at holds (:data:`CONTEXT_FIELDS`).
FORMAT = 3
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
        "canonical": SQL(_CANONICAL),
        "append": SQL(_APPEND).format(
            link=ident(schema, LINK_FUNCTION), seals=ident(schema, layout.seal_table)
        ),
        "columns": SQL(", ").join(SQL("e.{}").format(ident(c)) for c in layout.column_names),
        "row_digest": _row_digest(layout),
        "context_join": context_join(layout, schema, "e"),
        "field_bytes": _field_bytes(layout),
        "txid": ident(layout.txid_column),
        "format": literal(FORMAT),
        "format_of": SQL("coalesce((s.extra ->> 'format')::integer, 1)"),
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


def _row_digest(layout: Layout) -> Composable:
    """A row's digest (formats 2 and 3): SHA-256 over its fields' pieces in column order
    (see :func:`_piece`), from the UTF-8 bytes ``b.f<i>`` of their output text (see
    :func:`_field_bytes`); format 3 goes on with the pieces of :data:`CONTEXT_FIELDS`
    (``b.g<i>``). One hash a row, and a bounded one, whatever the row holds."""
    fields = SQL(" || ").join(_piece(f"f{i}") for i, _ in enumerate(layout.column_names))
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


# How the sealing functions add entry _e to the chain: its digest computed here; the seal
# table's trigger checks that it chains from the last entry and claims only what it may.
_APPEND = """    _e.digest := {link}(_e.previous, _e.seal_id, _e.kind, _e.sealed_at, _e.first_event_id, _e.last_event_id,
                        _e.row_count, _e.chunk_size, _e.partition_name, _e.chunk_seal, _e.chunk_index,
                        _e.chunk_rows, _e.chunk_digest, _e.chunk_partitions, _e.extra);
    INSERT INTO {seals} SELECT _e.*;"""

# Every function that turns rows or seals into text fixes the settings that text depends on.
_CANONICAL = """SET search_path = pg_catalog, pg_temp SET "TimeZone" = 'UTC' SET "DateStyle" = 'ISO, YMD'
SET "IntervalStyle" = 'postgres' SET extra_float_digits = '1'"""

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

# The chain link: the previous digest, this entry's header and its chunks, one line each.
_HELPERS = """
DROP FUNCTION IF EXISTS {link}(bytea, bigint, text, timestamp with time zone, bigint, bigint, bigint, integer, text,
    bigint[], integer[], bigint[], bytea[], text[]);
CREATE OR REPLACE FUNCTION {link}(previous bytea, seal_id bigint, kind text, sealed_at timestamp with time zone,
    first_event_id bigint, last_event_id bigint, row_count bigint, chunk_size integer, partition_name text,
    chunk_seal bigint[], chunk_index integer[], chunk_rows bigint[], chunk_digest bytea[], chunk_partitions text[],
    extra jsonb)
RETURNS bytea LANGUAGE sql STABLE {canonical} AS $fn$
    SELECT sha256(convert_to(
        encode(previous, 'hex') || E'\\n'
        || ROW(seal_id, kind, sealed_at, first_event_id, last_event_id, row_count, chunk_size, partition_name)::text
        || E'\\n'
        || coalesce((SELECT string_agg(ROW(c.s, c.k, c.n, encode(c.d, 'hex'), c.p)::text || E'\\n', '' ORDER BY c.o)
                       FROM unnest(chunk_seal, chunk_index, chunk_rows, chunk_digest, chunk_partitions)
                            WITH ORDINALITY AS c(s, k, n, d, p, o)), '')
        || coalesce(extra::text || E'\\n', ''),
        'UTF8'))
$fn$;
DROP FUNCTION IF EXISTS {entry_problem}(bigint, text, bigint, bigint, bigint, integer, bigint[], integer[], bigint[],
    bytea[], text[], bigint[], bigint[], bigint[], integer[]);
-- What an entry claims that it may not, given the earlier counted seals (ids, firsts, lasts,
-- sizes: those covering ids), the seals among them still open (opens: pending transactions,
-- not closed yet) and the rows the chunks of earlier seals it carries had (late_before).
CREATE OR REPLACE FUNCTION {entry_problem}(seal_id bigint, kind text, first_event_id bigint, last_event_id bigint,
    row_count bigint, chunk_size integer, chunk_seal bigint[], chunk_index integer[], chunk_rows bigint[],
    chunk_digest bytea[], chunk_partitions text[], extra jsonb, ids bigint[], firsts bigint[], lasts bigint[],
    sizes integer[], opens bigint[], late_before bigint)
RETURNS text LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    _closes bigint[] := '{{}}';
BEGIN
    IF extra IS NOT NULL AND (jsonb_typeof(extra) <> 'object'
                              OR NOT coalesce((extra -> 'format') IN ('2'::jsonb, '3'::jsonb), false)) THEN
        RETURN format('its format %s is unknown', CASE WHEN jsonb_typeof(extra) = 'object' THEN extra -> 'format' END);
    END IF;
    IF kind = 'seal' AND extra IS NOT NULL THEN
        IF jsonb_typeof(extra -> 'pending') IS DISTINCT FROM 'array' OR jsonb_typeof(extra -> 'closes') IS DISTINCT FROM 'array'
           OR EXISTS (SELECT FROM jsonb_array_elements(extra -> 'pending') AS x WHERE x::text !~ '^[0-9]{{1,18}}$')
           OR EXISTS (SELECT FROM jsonb_array_elements(extra -> 'closes') AS x WHERE x::text !~ '^[0-9]{{1,18}}$') THEN
            RETURN 'its pending transactions and the seals it closes are not lists of ids';
        END IF;
        _closes := ARRAY(SELECT x::text::bigint FROM jsonb_array_elements(extra -> 'closes') AS x);
    END IF;
    RETURN CASE
        -- (an entry that seals late rows only covers no new id: first is last + 1)
        WHEN kind IS NULL OR first_event_id IS NULL OR last_event_id IS NULL
          OR first_event_id > last_event_id + CASE WHEN cardinality(_closes) > 0 THEN 1 ELSE 0 END
            THEN format('it covers events %s..%s, which end before they start', first_event_id, last_event_id)
        WHEN coalesce(cardinality(chunk_seal), -1) <> coalesce(cardinality(chunk_index), -1)
          OR coalesce(cardinality(chunk_seal), -1) <> coalesce(cardinality(chunk_rows), -1)
          OR coalesce(cardinality(chunk_seal), -1) <> coalesce(cardinality(chunk_digest), -1)
          OR coalesce(cardinality(chunk_seal), -1) <> coalesce(cardinality(chunk_partitions), -1)
            THEN 'its chunk arrays differ in length'
        WHEN EXISTS (SELECT FROM unnest(chunk_rows, chunk_digest) AS c(n, d) WHERE c.n IS NULL OR c.n < 0 OR c.d IS NULL)
            THEN 'it holds a chunk without a row count or a digest'
        WHEN kind = 'seal' AND (chunk_size IS NULL OR chunk_size < 1) THEN 'its chunk size is not 1 or more'
        -- A seal closes only earlier seals still open, each once.
        WHEN kind = 'seal' AND EXISTS (SELECT FROM unnest(_closes) AS c WHERE c <> ALL (coalesce(opens, '{{}}')))
            THEN format('it closes seal %s, which has no open transactions to close',
                        (SELECT c FROM unnest(_closes) AS c WHERE c <> ALL (coalesce(opens, '{{}}')) LIMIT 1))
        WHEN kind = 'seal' AND (SELECT count(DISTINCT c) FROM unnest(_closes) AS c) <> cardinality(_closes)
            THEN 'it closes a seal twice'
        -- A seal holds its own chunks, in order, then chunks of the seals it closes (their
        -- late rows), in order: each once, within its seal's range.
        WHEN kind = 'seal' AND EXISTS (
                SELECT FROM unnest(chunk_seal, chunk_index) WITH ORDINALITY AS c(s, k, o)
                  LEFT JOIN unnest(chunk_seal, chunk_index) WITH ORDINALITY AS p(s, k, o) ON p.o = c.o - 1
                  LEFT JOIN unnest(ids, firsts, lasts, sizes) AS x(i, f, l, z)
                         ON x.i = c.s AND x.i < seal_id AND x.i = ANY (_closes)
                 WHERE c.s IS NULL OR c.k IS NULL OR c.k < 0
                    OR (c.s = seal_id AND (last_event_id < first_event_id OR c.k > (last_event_id - first_event_id) / chunk_size))
                    OR (c.s IS DISTINCT FROM seal_id AND (x.i IS NULL OR c.k > (x.l - x.f) / x.z))
                    OR (p.o IS NOT NULL AND ROW(p.s IS DISTINCT FROM seal_id, p.s, p.k) >= ROW(c.s IS DISTINCT FROM seal_id, c.s, c.k)))
            THEN 'it holds chunks that are not its own'
        WHEN kind = 'seal' AND row_count IS DISTINCT FROM
                (SELECT coalesce(sum(n), 0) FROM unnest(chunk_rows) AS n) - coalesce(late_before, 0)
            THEN 'its row count is not the sum of its chunks'
        -- Retention replaces chunks of earlier seals only, each once.
        WHEN kind IN ('detach', 'drop') AND EXISTS (
                SELECT FROM unnest(chunk_seal, chunk_index) AS c(s, k)
                  LEFT JOIN unnest(ids, firsts, lasts, sizes) AS x(i, f, l, z) ON x.i = c.s AND x.i < seal_id
                 WHERE x.i IS NULL OR c.k IS NULL OR c.k < 0 OR c.k > (x.l - x.f) / x.z)
            THEN 'it retires chunks no earlier seal holds'
        WHEN kind IN ('detach', 'drop') AND (SELECT count(DISTINCT (c.s, c.k)) FROM unnest(chunk_seal, chunk_index) AS c(s, k))
                                            <> cardinality(chunk_seal)
            THEN 'it retires a chunk twice'
        WHEN kind NOT IN ('seal', 'detach', 'drop') THEN format('its kind %s is unknown', kind)
    END;
END
$fn$;
-- The seal table takes INSERTs only, and only of an entry that chains from the last one
-- and claims only what it may (whoever inserts it: no setting lets an entry through).
-- TG_ARGV[0] is the audit table, whose partitions retention entries name; TG_ARGV[1] its
-- chunks function. An entry that replaces digests of earlier seals' chunks is checked
-- against the rows, since nobody can check it later: a retention entry (nobody can
-- recompute what it replaces once the partition is gone) is taken only while the chunks it
-- replaces still match their seals, and only if its digests are those of their rows outside
-- the partition; a seal closing earlier seals only once all their pending transactions have
-- ended, and only with chunks whose rows, without those transactions' (the late rows),
-- still match the digest they had, with the digests of all their rows now.
CREATE OR REPLACE FUNCTION {append_only}() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    _last bigint;
    _previous bytea;
    _sealed bigint;
    _ids bigint[];
    _firsts bigint[];
    _lasts bigint[];
    _sizes integer[];
    _formats integer[];
    _opens bigint[];
    _late_before bigint;
    _problem text;
    _lo bigint;
    _hi bigint;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        RAISE EXCEPTION 'partitioned_audit: % is append-only: seals are written by the sealing functions and never changed', TG_TABLE_NAME
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    EXECUTE format('SELECT max(s.seal_id), (array_agg(s.digest ORDER BY s.seal_id DESC))[1],
                           max(s.last_event_id) FILTER (WHERE s.kind = ''seal''),
                           array_agg(s.seal_id ORDER BY s.seal_id) FILTER (WHERE s.kind = ''seal'' AND s.last_event_id >= s.first_event_id),
                           array_agg(s.first_event_id ORDER BY s.seal_id) FILTER (WHERE s.kind = ''seal'' AND s.last_event_id >= s.first_event_id),
                           array_agg(s.last_event_id ORDER BY s.seal_id) FILTER (WHERE s.kind = ''seal'' AND s.last_event_id >= s.first_event_id),
                           array_agg(s.chunk_size ORDER BY s.seal_id) FILTER (WHERE s.kind = ''seal'' AND s.last_event_id >= s.first_event_id),
                           array_agg(coalesce((s.extra ->> ''format'')::integer, 1) ORDER BY s.seal_id)
                               FILTER (WHERE s.kind = ''seal'' AND s.last_event_id >= s.first_event_id),
                           coalesce(array_agg(s.seal_id ORDER BY s.seal_id)
                               FILTER (WHERE s.kind = ''seal'' AND jsonb_array_length(coalesce(s.extra -> ''pending'', ''[]'')) > 0
                                         AND NOT EXISTS (SELECT FROM %1$I.%2$I c WHERE c.extra -> ''closes'' @> to_jsonb(s.seal_id))), ''{{}}'')
                      FROM %1$I.%2$I s', TG_TABLE_SCHEMA, TG_TABLE_NAME)
       INTO _last, _previous, _sealed, _ids, _firsts, _lasts, _sizes, _formats, _opens;
    -- The rows the chunks of earlier seals a seal carries had: those of the newest entry naming each.
    EXECUTE format('SELECT sum(x.n)::bigint FROM unnest($1, $2) AS c(s, k)
                      CROSS JOIN LATERAL (SELECT e.n FROM %1$I.%2$I s, unnest(s.chunk_seal, s.chunk_index, s.chunk_rows) AS e(cs, k, n)
                                           WHERE e.cs = c.s AND e.k = c.k ORDER BY s.seal_id DESC LIMIT 1) AS x
                     WHERE c.s IS DISTINCT FROM $3', TG_TABLE_SCHEMA, TG_TABLE_NAME)
       INTO _late_before USING NEW.chunk_seal, NEW.chunk_index, NEW.seal_id;
    _problem := CASE
        WHEN NEW.seal_id IS DISTINCT FROM coalesce(_last, 0) + 1
            THEN format('its id is %s where the chain goes on with %s', NEW.seal_id, coalesce(_last, 0) + 1)
        WHEN NEW.previous IS DISTINCT FROM coalesce(_previous, {genesis}) THEN 'it does not chain from the last entry'
        WHEN NEW.digest IS DISTINCT FROM {link}(NEW.previous, NEW.seal_id, NEW.kind, NEW.sealed_at, NEW.first_event_id,
                NEW.last_event_id, NEW.row_count, NEW.chunk_size, NEW.partition_name, NEW.chunk_seal, NEW.chunk_index,
                NEW.chunk_rows, NEW.chunk_digest, NEW.chunk_partitions, NEW.extra)
            THEN 'its digest does not match its contents'
        WHEN NEW.kind = 'seal' AND NEW.first_event_id IS DISTINCT FROM coalesce(_sealed, 0) + 1
            THEN format('it starts at event %s, not %s', NEW.first_event_id, coalesce(_sealed, 0) + 1)
        -- Retention appends its entry before the partition leaves the audit table.
        WHEN NEW.kind <> 'seal' AND NOT EXISTS (
                SELECT FROM pg_inherits i WHERE i.inhparent = TG_ARGV[0]::regclass
                   AND i.inhrelid::regclass::text = NEW.partition_name)
            THEN format('it retires %s, which is not a partition of %s', NEW.partition_name, TG_ARGV[0])
        ELSE {entry_problem}(NEW.seal_id, NEW.kind, NEW.first_event_id, NEW.last_event_id, NEW.row_count,
                NEW.chunk_size, NEW.chunk_seal, NEW.chunk_index, NEW.chunk_rows, NEW.chunk_digest, NEW.chunk_partitions,
                NEW.extra, _ids, _firsts, _lasts, _sizes, _opens, _late_before)
    END;
    IF _problem IS NULL AND NEW.kind = 'seal' AND jsonb_array_length(coalesce(NEW.extra -> 'closes', '[]')) > 0 THEN
        -- (pg_xact_status: committed, aborted, or NULL once too old to tell, all ended)
        EXECUTE format($q$
            SELECT format('it closes seal %%s while its transaction %%s is still open', s.seal_id, x)
              FROM %1$I.%2$I s, jsonb_array_elements_text(s.extra -> 'pending') AS x
             WHERE s.extra -> 'pending' IS NOT NULL AND $1 -> 'closes' @> to_jsonb(s.seal_id)
               AND pg_xact_status(x::xid8) = 'in progress'
             ORDER BY s.seal_id LIMIT 1$q$, TG_TABLE_SCHEMA, TG_TABLE_NAME)
          INTO _problem USING NEW.extra;
    END IF;
    IF _problem IS NULL AND NEW.kind = 'seal' AND EXISTS (SELECT FROM unnest(NEW.chunk_seal) AS c WHERE c <> NEW.seal_id) THEN
        -- Each chunk of a closed seal: its rows without the pending transactions' are what
        -- the newest entry naming it holds, and all its rows are what this entry says.
        EXECUTE format($q$
            SELECT CASE WHEN coalesce(x.n, 0) <> coalesce(f.settled_rows, 0) OR (coalesce(f.settled_rows, 0) > 0 AND x.d IS DISTINCT FROM f.settled)
                        THEN format('chunk %%s of seal %%s changed beyond the late rows of the transactions it closes', c.k, c.s)
                        ELSE format('chunk %%s of seal %%s does not hold what its rows hash to', c.k, c.s) END
              FROM unnest($1, $2, $3, $4) WITH ORDINALITY AS c(s, k, n, d, o)
              JOIN %2$I.%3$I s ON s.seal_id = c.s
              LEFT JOIN LATERAL %1$s(ARRAY[s.seal_id], ARRAY[s.first_event_id], ARRAY[s.chunk_size],
                                     ARRAY[coalesce((s.extra ->> 'format')::integer, 1)],
                                     s.first_event_id + c.k::bigint * s.chunk_size,
                                     least(s.last_event_id, s.first_event_id + (c.k::bigint + 1) * s.chunk_size - 1), NULL,
                                     ARRAY(SELECT p::bigint FROM jsonb_array_elements_text(s.extra -> 'pending') AS p)) AS f ON true
              LEFT JOIN LATERAL (SELECT e.n, e.d FROM %2$I.%3$I s2, unnest(s2.chunk_seal, s2.chunk_index, s2.chunk_rows, s2.chunk_digest) AS e(cs, k, n, d)
                                  WHERE e.cs = c.s AND e.k = c.k ORDER BY s2.seal_id DESC LIMIT 1) AS x ON true
             WHERE c.s <> $5
               AND (coalesce(x.n, 0) <> coalesce(f.settled_rows, 0) OR (coalesce(f.settled_rows, 0) > 0 AND x.d IS DISTINCT FROM f.settled)
                    OR c.n <> coalesce(f.row_count, 0) OR c.d IS DISTINCT FROM f.digest)
             ORDER BY c.o LIMIT 1$q$, TG_ARGV[1], TG_TABLE_SCHEMA, TG_TABLE_NAME)
          INTO _problem
          USING NEW.chunk_seal, NEW.chunk_index, NEW.chunk_rows, NEW.chunk_digest, NEW.seal_id;
    END IF;
    IF _problem IS NULL AND NEW.kind <> 'seal' THEN
        SELECT min(x.f + c.k::bigint * x.z), max(least(x.l, x.f + (c.k::bigint + 1) * x.z - 1)) INTO _lo, _hi
          FROM unnest(NEW.chunk_seal, NEW.chunk_index) AS c(s, k) JOIN unnest(_ids, _firsts, _lasts, _sizes) AS x(i, f, l, z) ON x.i = c.s;
        EXECUTE format($q$
            SELECT CASE WHEN x.d IS DISTINCT FROM a.digest OR coalesce(x.n, 0) <> coalesce(a.row_count, 0)
                        THEN format('chunk %%s of seal %%s no longer matches its seal', c.k, c.s)
                        ELSE 'its chunks are not what they keep without the partition' END
              FROM unnest($6, $7, $8, $9) AS c(s, k, n, d)
              LEFT JOIN %1$s($1, $2, $3, $11, $4, $5, NULL, '{{}}') AS a ON a.seal_id = c.s AND a.chunk = c.k
              LEFT JOIN %1$s($1, $2, $3, $11, $4, $5, $10::regclass, '{{}}') AS b ON b.seal_id = c.s AND b.chunk = c.k
              LEFT JOIN LATERAL (SELECT e.n, e.d FROM %2$I.%3$I s, unnest(s.chunk_seal, s.chunk_index, s.chunk_rows, s.chunk_digest) AS e(cs, k, n, d)
                                  WHERE e.cs = c.s AND e.k = c.k ORDER BY s.seal_id DESC LIMIT 1) AS x ON true
             WHERE x.d IS DISTINCT FROM a.digest OR coalesce(x.n, 0) <> coalesce(a.row_count, 0)
                OR c.n <> coalesce(b.row_count, 0) OR c.d <> coalesce(b.digest, sha256(''::bytea))
             ORDER BY 1 LIMIT 1$q$, TG_ARGV[1], TG_TABLE_SCHEMA, TG_TABLE_NAME)
          INTO _problem
          USING _ids, _firsts, _sizes, _lo, _hi, NEW.chunk_seal, NEW.chunk_index, NEW.chunk_rows, NEW.chunk_digest,
                NEW.partition_name, _formats;
    END IF;
    IF _problem IS NOT NULL THEN
        RAISE EXCEPTION 'partitioned_audit: % is append-only: seal % is refused: %', TG_TABLE_NAME, NEW.seal_id, _problem
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Seals are written by the seal and retire functions (manage_partition_tables seal, detach, drop).';
    END IF;
    RETURN NEW;
END
$fn$;
"""

_FUNCTIONS = (
    # The chunks of the rows with event ids in [lo, hi] (and not in table ``exclude``): each
    # row falls in the seal whose first id is the largest not above its id (width_bucket
    # over ``firsts``), and in chunk (id - first) / size of it. A seal of format 1 hashes its
    # chunk's lines whole; later formats hash each row apart (:func:`_row_digest`), so a
    # chunk needs 32 bytes a row whatever the rows hold. ``settled`` is the digest (and
    # ``settled_rows`` the count) without the rows of transactions ``skip``: what a seal saw
    # when they were still open.
    """
DROP FUNCTION IF EXISTS {chunks}(bigint[], bigint[], integer[], bigint, bigint, oid);
CREATE OR REPLACE FUNCTION {chunks}(seal_ids bigint[], firsts bigint[], sizes integer[], formats integer[],
    lo bigint, hi bigint, exclude oid, skip bigint[])
RETURNS TABLE (seal_id bigint, chunk integer, row_count bigint, digest bytea, settled_rows bigint, settled bytea,
               partitions text, parts oid[])
LANGUAGE sql STABLE {canonical} SET work_mem = '64MB' AS $fn$
    SELECT seal_ids[r.i], r.k, count(*),
           CASE WHEN formats[r.i] = 1 THEN sha256(convert_to(string_agg(r.line, '' ORDER BY r.id), 'UTF8'))
                ELSE sha256(string_agg(r.d, ''::bytea ORDER BY r.id)) END,
           count(*) FILTER (WHERE NOT r.late),
           sha256(coalesce(string_agg(r.d, ''::bytea ORDER BY r.id) FILTER (WHERE NOT r.late), ''::bytea)),
           array_to_string(ARRAY(SELECT p::regclass::text FROM unnest(array_agg(DISTINCT r.part)) AS p ORDER BY 1), ' '),
           array_agg(DISTINCT r.part)
      FROM (SELECT w.i, ((e.{event} - firsts[w.i]) / sizes[w.i])::integer AS k, e.{event} AS id,
                   CASE WHEN formats[w.i] = 1 THEN ROW({columns})::text || E'\\n' END AS line,
                   CASE WHEN formats[w.i] <> 1 THEN {row_digest} END AS d,
                   coalesce(e.{txid} = ANY (skip), false) AS late, e.tableoid AS part
              FROM {table} e
              -- (format 3: the row's context row, as the views join it)
              {context_join}
             CROSS JOIN LATERAL (SELECT width_bucket(e.{event}, firsts) AS i) AS w
              -- (OFFSET 0: each field's text is made once, not once a use)
              LEFT JOIN LATERAL (SELECT {field_bytes} WHERE formats[w.i] <> 1 OFFSET 0) AS b ON true
             WHERE e.{event} >= lo AND e.{event} <= hi AND e.tableoid IS DISTINCT FROM exclude) AS r
     GROUP BY r.i, r.k
$fn$;
"""
    # Refuses to change or delete a sealed row, whoever asks; creating a partition moves
    # rows out of the DEFAULT partition under the maintenance setting, which stays allowed.
    """
CREATE OR REPLACE FUNCTION {freeze}() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    IF TG_LEVEL = 'STATEMENT' THEN
        IF EXISTS (SELECT FROM {seals} s WHERE s.kind = 'seal') AND NOT ({maintenance_allowed}) THEN
            RAISE EXCEPTION 'partitioned_audit: TRUNCATE of % is refused: it holds sealed audit rows', TG_TABLE_NAME
                USING ERRCODE = 'insufficient_privilege',
                      HINT = 'Retire old partitions with manage_partition_tables detach or drop.';
        END IF;
        RETURN NULL;
    END IF;
    IF OLD.{event} <= (SELECT s.last_event_id FROM {seals} s WHERE s.kind = 'seal' ORDER BY s.seal_id DESC LIMIT 1)
       AND NOT (TG_OP = 'DELETE' AND TG_TABLE_NAME = {default_partition} AND ({maintenance_allowed})) THEN
        RAISE EXCEPTION 'partitioned_audit: audit event % is sealed: % refused', OLD.{event}, TG_OP
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Sealed audit rows never change; retention detaches or drops whole partitions.';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$fn$;
"""
    # Seals every row after the last seal up to the last id handed out, around the
    # transactions still open (see the module docstring), and the late rows of earlier seals
    # whose open transactions have all ended since.
    """
CREATE OR REPLACE FUNCTION {seal}(chunk_size integer, wait_ms integer) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER {canonical} AS $fn$
DECLARE
    _chain bigint;
    _previous bytea;
    _last bigint;
    _allocated bigint;
    _writers text[];
    _held text[];
    _next bigint;
    _xids bigint[];
    _snapshot pg_snapshot;
    _live bigint[];
    _open record;
    _late record;
    _closes bigint[] := '{{}}';
    _late_rows bigint := 0;
    _late_chunks integer := 0;
    _deadline timestamp with time zone := clock_timestamp() + make_interval(secs => wait_ms / 1000.0);
    _e {seals}%ROWTYPE;
BEGIN
    IF chunk_size IS NULL OR chunk_size < 1 OR chunk_size > {max_chunk} OR wait_ms IS NULL OR wait_ms < 0 THEN
        RAISE EXCEPTION 'partitioned_audit: seal needs a chunk size from 1 to % and a wait of 0 ms or more, got % and %', {max_chunk}, chunk_size, wait_ms
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'partitioned_audit: seal must run at READ COMMITTED (this transaction is %): an older snapshot would miss committed rows', current_setting('transaction_isolation')
            USING ERRCODE = 'invalid_transaction_state';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext({lock_key}));
    IF to_regclass({backfill_seq}) IS NOT NULL OR EXISTS (
            SELECT FROM pg_attribute a WHERE a.attrelid = {table_reg} AND NOT a.attisdropped
               AND right(a.attname, 7) = '_hstore') THEN
        RAISE EXCEPTION 'partitioned_audit: % still has 1.0.4 rows waiting for the end of the upgrade; nothing was sealed', {table_text}
            USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'Run migrate, which finishes it.';
    END IF;
    IF (SELECT q.seqcache FROM pg_sequence q WHERE q.seqrelid = {seq}::regclass) > 1 THEN
        RAISE EXCEPTION 'partitioned_audit: sequence % caches ids, so they are not handed out in order; nothing was sealed', {seq}::regclass
            USING ERRCODE = 'object_not_in_prerequisite_state', HINT = format('ALTER SEQUENCE %s CACHE 1', {seq}::regclass);
    END IF;
    IF NOT EXISTS (SELECT FROM pg_trigger t WHERE t.tgrelid = {table_reg} AND t.tgname = {freeze_trigger} AND t.tgenabled = 'A') THEN
        RAISE EXCEPTION 'partitioned_audit: trigger % on % is missing or not always enabled; nothing was sealed', {freeze_trigger}, {table_text}
            USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'Run migrate, which recreates it.';
    END IF;
    SELECT s.seal_id, s.digest INTO _chain, _previous FROM {seals} s ORDER BY s.seal_id DESC LIMIT 1;
    SELECT s.last_event_id INTO _last FROM {seals} s WHERE s.kind = 'seal' ORDER BY s.seal_id DESC LIMIT 1;
    _chain := coalesce(_chain, 0);
    _previous := coalesce(_previous, {genesis});
    _last := coalesce(_last, 0);
    -- First the last id handed out, then who may still hold ids up to it, and their
    -- transaction ids (a writer has one before it takes an event id: its audited write).
    _allocated := coalesce(pg_sequence_last_value({seq}::regclass), 0);
    _next := pg_snapshot_xmax(pg_current_snapshot())::text::bigint;
    _writers := {writers};
    LOOP
        _xids := ARRAY(SELECT {xid_of} FROM unnest(_writers) AS w);
        EXIT WHEN cardinality(_writers) = 0 OR clock_timestamp() >= _deadline;
        PERFORM pg_sleep(0.005);
        _held := {writers};
        _writers := ARRAY(SELECT w FROM unnest(_writers) AS w WHERE w = ANY (_held));
    END LOOP;
    IF array_position(_xids, NULL) IS NOT NULL THEN
        -- A transaction holds the write lock without a transaction id: which ids it holds
        -- cannot be told apart from forged ones later, so nothing is sealed past the last seal.
        RETURN jsonb_build_object('sealed', false, 'seal_id', _chain, 'last_event_id', _last,
                                  'allocated', _allocated, 'waiting_for', to_jsonb(_writers), 'pending', '[]'::jsonb,
                                  'head', CASE WHEN _chain > 0 THEN encode(_previous, 'hex') END);
    END IF;
    _e.seal_id := _chain + 1;
    _e.kind := 'seal';
    _e.sealed_at := now();
    _e.first_event_id := _last + 1;
    _e.last_event_id := greatest(_allocated, _last);
    _e.chunk_size := chunk_size;
    -- One statement, one snapshot: the new chunks, and which writers it still saw open.
    SELECT coalesce(sum(c.row_count), 0), coalesce(array_agg(c.seal_id ORDER BY c.chunk), '{{}}'),
           coalesce(array_agg(c.chunk ORDER BY c.chunk), '{{}}'), coalesce(array_agg(c.row_count ORDER BY c.chunk), '{{}}'),
           coalesce(array_agg(c.digest ORDER BY c.chunk), '{{}}'), coalesce(array_agg(c.partitions ORDER BY c.chunk), '{{}}'),
           pg_current_snapshot()
      INTO _e.row_count, _e.chunk_seal, _e.chunk_index, _e.chunk_rows, _e.chunk_digest, _e.chunk_partitions, _snapshot
      FROM {chunks}(ARRAY[_e.seal_id], ARRAY[_e.first_event_id], ARRAY[chunk_size], ARRAY[{format}], _e.first_event_id,
                    _e.last_event_id, NULL, '{{}}') AS c;
    _xids := ARRAY(SELECT x FROM unnest(_xids) AS x WHERE NOT pg_visible_in_snapshot(x::text::xid8, _snapshot) ORDER BY 1);
    -- Earlier seals whose open transactions have all ended since: what they added to the
    -- sealed range (late rows) is sealed now, chunk by chunk, if it is all they changed.
    _live := ARRAY(SELECT {full_xid} FROM pg_locks t
                    WHERE t.locktype = 'transactionid' AND t.mode = 'ExclusiveLock' AND t.granted);
    FOR _open IN
        SELECT s.seal_id, s.first_event_id, s.last_event_id, s.chunk_size,
               ARRAY(SELECT x::bigint FROM jsonb_array_elements_text(s.extra -> 'pending') AS x) AS pending
          FROM {seals} s
         WHERE s.kind = 'seal' AND jsonb_array_length(coalesce(s.extra -> 'pending', '[]')) > 0
           AND NOT EXISTS (SELECT FROM {seals} c WHERE c.extra -> 'closes' @> to_jsonb(s.seal_id))
         ORDER BY s.seal_id
    LOOP
        CONTINUE WHEN _open.pending && _live;
        _closes := _closes || _open.seal_id;
        FOR _late IN
            SELECT f.*, x.n AS sealed_rows, x.d AS sealed_digest
              FROM {chunks}(ARRAY[_open.seal_id], ARRAY[_open.first_event_id], ARRAY[_open.chunk_size], ARRAY[{format}],
                            _open.first_event_id, _open.last_event_id, NULL, _open.pending) AS f
              LEFT JOIN LATERAL (SELECT c.n, c.d FROM {seals} s,
                                        unnest(s.chunk_seal, s.chunk_index, s.chunk_rows, s.chunk_digest) AS c(cs, k, n, d)
                                  WHERE c.cs = f.seal_id AND c.k = f.chunk ORDER BY s.seal_id DESC LIMIT 1) AS x ON true
             WHERE (x.n IS DISTINCT FROM f.row_count OR x.d IS DISTINCT FROM f.digest)
               AND coalesce(x.n, 0) = f.settled_rows AND (f.settled_rows = 0 OR x.d = f.settled)
             ORDER BY f.chunk
        LOOP
            _e.chunk_seal := _e.chunk_seal || _late.seal_id;
            _e.chunk_index := _e.chunk_index || _late.chunk;
            _e.chunk_rows := _e.chunk_rows || _late.row_count;
            _e.chunk_digest := _e.chunk_digest || _late.digest;
            _e.chunk_partitions := _e.chunk_partitions || _late.partitions;
            _late_rows := _late_rows + _late.row_count - coalesce(_late.sealed_rows, 0);
            _late_chunks := _late_chunks + 1;
        END LOOP;
    END LOOP;
    IF _e.last_event_id <= _last AND cardinality(_closes) = 0 THEN
        RETURN jsonb_build_object('sealed', false, 'seal_id', _chain, 'last_event_id', _last,
                                  'allocated', _allocated, 'waiting_for', to_jsonb(_writers), 'pending', to_jsonb(_xids),
                                  'head', CASE WHEN _chain > 0 THEN encode(_previous, 'hex') END);
    END IF;
    _e.row_count := _e.row_count + _late_rows;
    _e.previous := _previous;
    _e.extra := jsonb_build_object('format', {format}, 'pending', to_jsonb(_xids), 'closes', to_jsonb(_closes));
{append}
    RETURN jsonb_build_object('sealed', true, 'seal_id', _e.seal_id, 'first_event_id', _e.first_event_id,
                              'last_event_id', _e.last_event_id, 'rows', _e.row_count,
                              'chunks', cardinality(_e.chunk_index), 'late_rows', _late_rows, 'late_chunks', _late_chunks,
                              'closes', to_jsonb(_closes), 'allocated', _allocated,
                              'waiting_for', to_jsonb(_writers), 'pending', to_jsonb(_xids), 'head', encode(_e.digest, 'hex'));
END
$fn$;
"""
    # Before retention takes a partition away: appends what the chunks holding its sealed rows
    # keep without it. The seal table's trigger takes the entry only while those chunks'
    # rows still match their seals (one pass over the rows: retire itself hashes none).
    """
CREATE OR REPLACE FUNCTION {retire}(part regclass, dropped boolean) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER {canonical} AS $fn$
DECLARE
    _sealed bigint;
    _lo bigint;
    _hi bigint;
    _ids bigint[];
    _firsts bigint[];
    _sizes integer[];
    _formats integer[];
    _bounds text;
    _lower timestamp with time zone;
    _upper timestamp with time zone;
    _bad record;
    _e {seals}%ROWTYPE;
BEGIN
    SELECT s.last_event_id INTO _sealed FROM {seals} s WHERE s.kind = 'seal' ORDER BY s.seal_id DESC LIMIT 1;
    IF _sealed IS NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE format('SELECT min(%1$I), max(%1$I), count(*) FROM %2$s WHERE %1$I <= $1', {event_name}, part)
       INTO _e.first_event_id, _e.last_event_id, _e.row_count USING _sealed;
    IF _e.row_count = 0 THEN
        RETURN NULL;
    END IF;
    -- Retention takes only a partition whose whole range ended a day or more before now
    -- (MIN_RETENTION): the current month, a future one, MAXVALUE or the DEFAULT partition never go.
    SELECT pg_get_expr(c.relpartbound, c.oid) INTO _bounds FROM pg_class c WHERE c.oid = part;
    _lower := substring(_bounds FROM 'FROM \\(''([^'']*)''\\)')::timestamp with time zone;
    _upper := substring(_bounds FROM 'TO \\(''([^'']*)''\\)')::timestamp with time zone;
    IF _upper IS NULL OR _upper > now() - {min_retention} THEN
        RAISE EXCEPTION 'partitioned_audit: refusing to retire %: it holds sealed rows and its range (%) did not end % or more before now (%)', part, coalesce(_bounds, 'no bounds'), {min_retention}, now()
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Retention detaches or drops a partition only once its whole range has expired.';
    END IF;
    SELECT array_agg(s.seal_id ORDER BY s.seal_id), array_agg(s.first_event_id ORDER BY s.seal_id),
           array_agg(s.chunk_size ORDER BY s.seal_id), array_agg({format_of} ORDER BY s.seal_id)
      INTO _ids, _firsts, _sizes, _formats FROM {seals} s WHERE s.kind = 'seal' AND s.last_event_id >= s.first_event_id;
    -- Whole chunks around the partition's rows.
    _lo := _firsts[width_bucket(_e.first_event_id, _firsts)];
    _lo := _lo + (_e.first_event_id - _lo) / _sizes[width_bucket(_e.first_event_id, _firsts)] * _sizes[width_bucket(_e.first_event_id, _firsts)];
    -- (into the next chunk, whose rows are all past the partition's and so left out below)
    _hi := least(_sealed, _e.last_event_id + _sizes[width_bucket(_e.last_event_id, _firsts)]);
    -- The chunks holding a sealed row of the partition (read from its event-id index, no row
    -- hashed), and what each holds once the partition is gone (the rows of other partitions).
    -- The seal table's trigger hashes the chunks' rows and takes the entry only if they still
    -- match their seals.
    EXECUTE format('SELECT array_agg(c.s ORDER BY c.s, c.k), array_agg(c.k ORDER BY c.s, c.k),
                           array_agg(coalesce(r.row_count, 0) ORDER BY c.s, c.k),
                           array_agg(coalesce(r.digest, sha256(''''::bytea)) ORDER BY c.s, c.k),
                           array_agg(coalesce(r.partitions, '''') ORDER BY c.s, c.k)
                      FROM (SELECT DISTINCT $1[w.i] AS s, ((e.%1$I - $2[w.i]) / $3[w.i])::integer AS k
                              FROM %2$s e CROSS JOIN LATERAL (SELECT width_bucket(e.%1$I, $2) AS i) AS w
                             WHERE e.%1$I >= $5 AND e.%1$I <= $6 AND w.i > 0) AS c
                      LEFT JOIN %3$s($1, $2, $3, $4, $5, $6, $7, ''{{}}'') AS r ON r.seal_id = c.s AND r.chunk = c.k',
                   {event_name}, part, {chunks_name})
       INTO _e.chunk_seal, _e.chunk_index, _e.chunk_rows, _e.chunk_digest, _e.chunk_partitions
      USING _ids, _firsts, _sizes, _formats, _lo, _hi, part;
    SELECT s.seal_id + 1, s.digest INTO _e.seal_id, _e.previous FROM {seals} s ORDER BY s.seal_id DESC LIMIT 1;
    _e.kind := CASE WHEN dropped THEN 'drop' ELSE 'detach' END;
    _e.sealed_at := now();
    _e.partition_name := part::text;
    _e.extra := jsonb_build_object('format', {format}, 'range', jsonb_build_array(_lower, _upper));
BEGIN
{append}
    EXCEPTION WHEN insufficient_privilege THEN
        -- The trigger refused the entry: when a chunk holding a row of the partition no
        -- longer matches its seal (the usual reason), say which, and how.
        SELECT f.seal_id, f.chunk, x.n AS expected, f.row_count AS found INTO _bad
          FROM {chunks}(_ids, _firsts, _sizes, _formats, _lo, _hi, NULL, '{{}}') AS f
          LEFT JOIN LATERAL (SELECT c.n, c.d FROM {seals} s,
                                    unnest(s.chunk_seal, s.chunk_index, s.chunk_rows, s.chunk_digest) AS c(cs, k, n, d)
                              WHERE c.cs = f.seal_id AND c.k = f.chunk ORDER BY s.seal_id DESC LIMIT 1) AS x ON true
         WHERE part = ANY (f.parts) AND (x.n IS DISTINCT FROM f.row_count OR x.d IS DISTINCT FROM f.digest)
         ORDER BY f.seal_id, f.chunk
         LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'partitioned_audit: refusing to retire %: chunk % of seal % no longer matches its seal (% rows sealed, % found); run verify', part, _bad.chunk, _bad.seal_id, _bad.expected, _bad.found
                USING ERRCODE = 'data_corrupted';
        END IF;
        RAISE;
    END;
    RETURN jsonb_build_object('seal_id', _e.seal_id, 'kind', _e.kind, 'partition', _e.partition_name,
                              'first_event_id', _e.first_event_id, 'last_event_id', _e.last_event_id,
                              'rows', _e.row_count, 'head', encode(_e.digest, 'hex'));
END
$fn$;
"""
    # Recomputes every chunk and the chain; one row per finding, then a 'summary' row.
    # STABLE: every query in it reads the snapshot of the statement that called it.
    """
CREATE OR REPLACE FUNCTION {verify}(expect bytea) RETURNS TABLE (
    kind text, seal_id bigint, first_event_id bigint, last_event_id bigint,
    expected_rows bigint, found_rows bigint, partitions text, detail text)
LANGUAGE plpgsql STABLE {canonical} SET work_mem = '64MB' AS $fn$
DECLARE
    _s record;
    _previous bytea := {genesis};
    _next bigint := 1;
    _ids bigint[];
    _firsts bigint[];
    _sizes integer[];
    _lasts bigint[];
    _formats integer[];
    _open bigint[];
    _skip bigint[];
    _upper timestamp with time zone;
    _sealed bigint := 0;
    _head bytea;
    _rows bigint := 0;
    _skipped bigint[] := '{{}}';
    _opens bigint[] := '{{}}';
    _late_before bigint;
    _problem text;
BEGIN
    FOR _s IN SELECT * FROM {seals} ORDER BY 1 LOOP
        IF _s.seal_id <> _next THEN
            RETURN QUERY SELECT 'chain'::text, _s.seal_id, NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint, NULL::text,
                format('seals %s to %s are missing', _next, _s.seal_id - 1);
        ELSIF _s.previous <> _previous THEN
            RETURN QUERY SELECT 'chain'::text, _s.seal_id, NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint, NULL::text,
                format('seal %s does not chain from seal %s', _s.seal_id, _s.seal_id - 1);
        END IF;
        IF {link}(_s.previous, _s.seal_id, _s.kind, _s.sealed_at, _s.first_event_id, _s.last_event_id, _s.row_count,
                  _s.chunk_size, _s.partition_name, _s.chunk_seal, _s.chunk_index, _s.chunk_rows, _s.chunk_digest,
                  _s.chunk_partitions, _s.extra) IS DISTINCT FROM _s.digest THEN
            RETURN QUERY SELECT 'chain'::text, _s.seal_id, _s.first_event_id, _s.last_event_id, NULL::bigint, NULL::bigint,
                NULL::text, format('seal %s was altered: its digest does not match its contents', _s.seal_id);
        END IF;
        -- A retired partition attached again (restored from its archive) is back: its rows
        -- are checked against the seals that held them before the retention entry.
        IF _s.kind <> 'seal' AND EXISTS (SELECT FROM pg_inherits i WHERE i.inhparent = {table_reg}
                                            AND i.inhrelid::regclass::text = _s.partition_name) THEN
            RETURN QUERY SELECT 'restored'::text, _s.seal_id, _s.first_event_id, _s.last_event_id, _s.row_count,
                NULL::bigint, _s.partition_name,
                format('%s rows retired at %s are a partition of %s again, checked against their seals',
                       _s.row_count, _s.sealed_at, {table_text});
            _skipped := _skipped || _s.seal_id;
            _previous := _s.digest;
            _next := _s.seal_id + 1;
            CONTINUE;
        END IF;
        -- Only an entry that claims what it may counts: its own chunks, or a retired partition's.
        _problem := CASE
            WHEN false THEN NULL
            ELSE {entry_problem}(_s.seal_id, _s.kind, _s.first_event_id, _s.last_event_id, _s.row_count, _s.chunk_size,
                    _s.chunk_seal, _s.chunk_index, _s.chunk_rows, _s.chunk_digest, _s.chunk_partitions, _s.extra,
                    _ids, _firsts, _lasts, _sizes, _opens,
                    -- (the rows the chunks of earlier seals it carries had, in the counted entries)
                    CASE WHEN _s.kind = 'seal' AND EXISTS (
                             SELECT FROM unnest(_s.chunk_seal) AS c WHERE c IS DISTINCT FROM _s.seal_id) THEN
                        (SELECT sum(x.n)::bigint FROM unnest(_s.chunk_seal, _s.chunk_index) AS c(s, k)
                           CROSS JOIN LATERAL (SELECT e.n FROM {seals} p, unnest(p.chunk_seal, p.chunk_index, p.chunk_rows) AS e(cs, k, n)
                                                WHERE p.seal_id < _s.seal_id AND p.seal_id <> ALL (_skipped)
                                                  AND e.cs = c.s AND e.k = c.k ORDER BY p.seal_id DESC LIMIT 1) AS x
                          WHERE c.s IS DISTINCT FROM _s.seal_id) END)
        END;
        IF _problem IS NOT NULL THEN
            RETURN QUERY SELECT 'chain'::text, _s.seal_id, _s.first_event_id, _s.last_event_id, NULL::bigint, NULL::bigint,
                _s.partition_name, format('seal %s is not counted: %s', _s.seal_id, _problem);
            _skipped := _skipped || _s.seal_id;
            _previous := _s.digest;
            _next := _s.seal_id + 1;
            CONTINUE;
        END IF;
        IF _s.kind = 'seal' THEN
            IF _s.first_event_id <> _sealed + 1 THEN
                RETURN QUERY SELECT 'chain'::text, _s.seal_id, _s.first_event_id, _s.last_event_id, NULL::bigint,
                    NULL::bigint, NULL::text, format('seal %s starts at event %s, not %s', _s.seal_id, _s.first_event_id, _sealed + 1);
            END IF;
            IF _s.last_event_id >= _s.first_event_id THEN  -- (an entry sealing late rows only has none)
                _ids := _ids || _s.seal_id;
                _firsts := _firsts || _s.first_event_id;
                _sizes := _sizes || _s.chunk_size;
                _lasts := _lasts || _s.last_event_id;
                _formats := _formats || coalesce((_s.extra ->> 'format')::integer, 1);
                _sealed := _s.last_event_id;
            END IF;
            _rows := _rows + _s.row_count;
            _opens := ARRAY(SELECT o FROM unnest(_opens) AS o
                             WHERE NOT coalesce(_s.extra -> 'closes' @> to_jsonb(o), false));
            IF jsonb_array_length(coalesce(_s.extra -> 'pending', '[]')) > 0 THEN
                _opens := _opens || _s.seal_id;
            END IF;
        ELSE
            _rows := _rows - _s.row_count;
            -- Only a partition whose whole range had ended a day before went by retention;
            -- entries of format 1 carry no range, only the partition's name.
            _upper := CASE WHEN _s.extra IS NOT NULL THEN (_s.extra -> 'range' ->> 1)::timestamp with time zone
                           ELSE to_date(substring(_s.partition_name FROM '_[0-9]{{8}}_([0-9]{{8}})$'), 'YYYYMMDD')::timestamp AT TIME ZONE 'UTC' END;
            IF (_s.extra IS NOT NULL OR _upper IS NOT NULL) AND (_upper IS NULL OR _upper > _s.sealed_at - {min_retention}) THEN
                RETURN QUERY SELECT 'removed'::text, _s.seal_id, _s.first_event_id, _s.last_event_id, _s.row_count,
                    0::bigint, _s.partition_name,
                    format('%s rows were %s at %s as retention, but the partition''s range ends %s, not %s or more before: it had not expired',
                           _s.row_count, CASE WHEN _s.kind = 'drop' THEN 'dropped' ELSE 'detached' END, _s.sealed_at,
                           coalesce('at ' || _upper::text, 'never'), {min_retention});
            ELSE
                RETURN QUERY SELECT 'retired'::text, _s.seal_id, _s.first_event_id, _s.last_event_id, _s.row_count,
                    NULL::bigint, _s.partition_name,
                    format('%s rows %s by retention at %s', _s.row_count,
                           CASE WHEN _s.kind = 'drop' THEN 'dropped' ELSE 'detached' END, _s.sealed_at);
            END IF;
        END IF;
        _previous := _s.digest;
        _next := _s.seal_id + 1;
    END LOOP;
    _head := CASE WHEN _next > 1 THEN _previous END;
    IF expect IS NOT NULL AND NOT EXISTS (SELECT FROM {seals} s WHERE s.digest = expect) THEN
        RETURN QUERY SELECT 'head'::text, NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint, NULL::text,
            format('the head kept outside the database, %s, is not in the chain: the seals were rewritten or cut short', encode(expect, 'hex'));
    END IF;
    -- Seals whose open transactions may still add late rows: a chunk of theirs that differs
    -- only by rows of those transactions is as sealed.
    _open := _opens;
    _skip := ARRAY(SELECT DISTINCT x::bigint FROM {seals} s, jsonb_array_elements_text(s.extra -> 'pending') AS x
                    WHERE s.seal_id = ANY (_open));
    IF _ids IS NOT NULL THEN
        RETURN QUERY
        WITH expected AS (
            SELECT DISTINCT ON (c.cs, c.k) c.cs, c.k, c.n, c.d, c.p
              FROM {seals} s, unnest(s.chunk_seal, s.chunk_index, s.chunk_rows, s.chunk_digest, s.chunk_partitions) AS c(cs, k, n, d, p)
             WHERE s.seal_id <> ALL (_skipped)
             ORDER BY c.cs, c.k, s.seal_id DESC
        ), found AS (
            SELECT * FROM {chunks}(_ids, _firsts, _sizes, _formats, _firsts[1], _sealed, NULL, _skip)
        ), compared AS (
            SELECT coalesce(e.cs, f.seal_id) AS cs, coalesce(e.k, f.chunk) AS k,
                   coalesce(e.n, 0) AS n, coalesce(f.row_count, 0) AS found_n,
                   coalesce(nullif(f.partitions, ''), e.p) AS p,
                   e.d IS DISTINCT FROM f.digest
                   AND NOT coalesce(f.seal_id = ANY (_open) AND coalesce(e.n, 0) = f.settled_rows
                                    AND (f.settled_rows = 0 OR e.d = f.settled), false) AS differs,
                   CASE WHEN e.p IS DISTINCT FROM f.partitions AND e.p <> ''
                        THEN format(' (sealed in %s)', e.p) ELSE '' END AS was
              FROM expected e FULL JOIN found f ON f.seal_id = e.cs AND f.chunk = e.k
        )
        SELECT CASE WHEN c.found_n < c.n THEN 'removed' WHEN c.found_n > c.n THEN 'added' ELSE 'changed' END,
               c.cs, b.lo, b.hi, c.n, c.found_n, c.p,
               CASE WHEN c.found_n < c.n THEN format('%s of %s sealed rows are missing', c.n - c.found_n, c.n)
                    WHEN c.found_n > c.n THEN format('%s rows more than the %s sealed', c.found_n - c.n, c.n)
                    ELSE format('%s rows were sealed and %s are there, but their contents differ', c.n, c.found_n)
               END || c.was
          FROM compared c
          CROSS JOIN LATERAL (SELECT array_position(_ids, c.cs) AS i) AS x
          CROSS JOIN LATERAL (SELECT _firsts[x.i] + c.k::bigint * _sizes[x.i] AS lo,
                                     least(_lasts[x.i], _firsts[x.i] + (c.k::bigint + 1) * _sizes[x.i] - 1) AS hi) AS b
         WHERE c.differs AND NOT (c.n = 0 AND c.found_n = 0)
         ORDER BY b.lo;
    END IF;
    -- Rows with ids no seal can cover: below the first or empty.
    RETURN QUERY
    SELECT 'added'::text, NULL::bigint, min(e.{event}), max(e.{event}), 0::bigint, count(*),
           string_agg(DISTINCT e.tableoid::regclass::text, ' '), format('%s rows with an event id below 1 or none', count(*))
      FROM {table} e
     WHERE _ids IS NOT NULL AND (e.{event} < 1 OR e.{event} IS NULL)
    HAVING count(*) > 0;
    RETURN QUERY SELECT 'summary'::text, _next - 1, _firsts[1], _sealed, _rows, NULL::bigint, NULL::text, encode(_head, 'hex');
END
$fn$;
"""
)


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


def create_functions(layout: Layout, schema: str) -> Composable:
    """The sealing functions of ``layout`` and the helpers they share, schema-qualified."""
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
    return Composed([SQL(_HELPERS).format(**names), SQL(_FUNCTIONS).format(**names)])


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
