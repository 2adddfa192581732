"""A second verifier, written from docs/tamper-evidence.md ("The bytes hashed") alone.

It shares nothing with ``partitioned_audit.offline``: a DB-API cursor, the table names and
the column list from the docs, ``hashlib``; the four formats (1: rows' lines, 2: rows hashed
apart, 3: as 2 with the row's context reference and its context row's role and context, 4: as
3 with the columns format 4 added to the row's, which a row of an earlier format hashes too
where it holds a value in one; an entry's ``extra`` ends its digest's text). A seal of a
format lower than an earlier seal's counts for nothing: its chunks are not recomputed. It
returns the head it recomputes and the digest of each stored chunk as the rows now hash; the
caller compares them with the chain.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

COLUMNS = {
    "audit_simple": "object_table, object_payload, audit_entry_created, audit_entry_created_statement_timestamp,"
    " audit_txid_current, audit_operation, audit_event_id, object_schema, object_pk, audit_context",
    "logged_actions": "event_id, schema_name, table_name, relid, session_user_name, action_tstamp_tx,"
    " action_tstamp_stm, action_tstamp_clk, transaction_id, application_name, client_addr, client_port,"
    " client_query, action, row_data, changed_fields, statement_only, object_pk, statement_id, audit_context",
}
#: Format 4: the columns it hashes after those above, before the context fields.
FORMAT_4_COLUMNS = {"audit_simple": "session_user_name", "logged_actions": ""}
EVENT = {"audit_simple": "audit_event_id", "logged_actions": "event_id"}
#: Format 3: how a row finds its context row (transaction id, time).
CONTEXT_KEY = {
    "audit_simple": ("audit_txid_current", "audit_entry_created"),
    "logged_actions": ("transaction_id", "action_tstamp_tx"),
}


def r(values: list[Any]) -> str:
    """R(v1, ..., vn): NULL is nothing; quoted when empty or holding " \\ ( ) , or ASCII space."""
    fields = []
    for v in values:
        if v is None:
            fields.append("")
            continue
        v = str(v)
        if v == "" or any(ch in '"\\(), \t\n\r\v\f' for ch in v):
            v = '"' + v.replace('"', '""').replace("\\", "\\\\") + '"'
        fields.append(v)
    return "(" + ",".join(fields) + ")"


def piece(v: str | None) -> bytes:
    """Format 2: a field's piece, 0x00 / 0x01 + length + bytes / 0x02 + SHA-256."""
    if v is None:
        return b"\x00"
    data = v.encode("utf-8")
    if len(data) <= 65536:
        return b"\x01" + len(data).to_bytes(4, "big") + data
    return b"\x02" + hashlib.sha256(data).digest()


def recompute(cur: Any, table: str) -> tuple[str, dict[tuple[int, int], bytes]]:
    """(the head, {(seal, chunk): digest of its rows now}) for ``public.<table>``."""
    for setting in ("TimeZone = 'UTC'", "DateStyle = 'ISO, YMD'", "IntervalStyle = 'postgres'"):
        cur.execute("SET " + setting)
    cur.execute("SET extra_float_digits = 1")
    cur.execute(
        "SELECT seal_id, kind, format('%s', sealed_at), first_event_id, last_event_id, row_count, chunk_size,"
        " partition_name, chunk_seal, chunk_index, chunk_rows, chunk_digest, chunk_partitions,"
        f" CASE WHEN extra IS NOT NULL THEN format('%s', extra) END FROM {table}_seal ORDER BY seal_id"
    )
    previous, seals, top = "0" * 64, [], 1
    for *header, cs, ks, ns, ds, ps, extra in cur.fetchall():
        text = previous + "\n" + r(header) + "\n"
        text += "".join(
            r([s, k, n, bytes(d).hex(), p]) + "\n" for s, k, n, d, p in zip(cs, ks, ns, ds, ps, strict=True)
        )
        if extra is not None:
            text += extra + "\n"
        previous = hashlib.sha256(text.encode("utf-8")).hexdigest()
        if header[1] == "seal":
            fmt = 1 if extra is None else json.loads(extra)["format"]
            if fmt >= top:  # (a seal's format never goes down along the chain)
                top = fmt
                seals.append(
                    (header[0], header[3], header[4], header[6], fmt)
                )  # id, first, last, size, format
    names = [f"e.{c}" for c in COLUMNS[table].split(", ")]
    added = [f"e.{c}" for c in FORMAT_4_COLUMNS[table].split(", ") if c]
    names += [*added, "e.audit_context_id", "c.session_user_name", "c.context"]
    columns = ", ".join(f"CASE WHEN {c} IS NOT NULL THEN format('%s', {c}) END" for c in names)
    txid, time = CONTEXT_KEY[table]
    cur.execute(
        f"SELECT e.{EVENT[table]}, {columns} FROM {table} e LEFT JOIN {table}_context c"  # noqa: S608
        f" ON c.txid = e.{txid} AND c.created = e.{time} AND c.context_id = e.audit_context_id ORDER BY 1"
    )
    data: dict[tuple[int, int], bytes] = {}
    for event_id, *fields in cur.fetchall():
        width = len(fields) - 3 - len(added)
        values, more, context = fields[:width], fields[width:-3], fields[-3:]
        for seal_id, first, last, size, fmt in seals:
            if first <= event_id <= last:
                key = (seal_id, (event_id - first) // size)
                # (a row of a format before 4 holding a value in a column format 4 added
                # is hashed with those columns too)
                row = [*values, *more] if fmt >= 4 or any(v is not None for v in more) else values
                if fmt == 1:
                    part = (r(row) + "\n").encode("utf-8")
                else:
                    hashed = row if fmt == 2 else [*row, *context]
                    part = hashlib.sha256(b"".join(piece(v) for v in hashed)).digest()
                data[key] = data.get(key, b"") + part
    return previous, {key: hashlib.sha256(text).digest() for key, text in data.items()}
