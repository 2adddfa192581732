"""Sealed rows and the seals themselves, attacked by the application role and by the owner.

The application role holds nothing on the seal tables or the sealing functions. The owner
(an ordinary role, not a superuser) holds every privilege on its tables, yet the freeze
refuses its UPDATE, DELETE and TRUNCATE of sealed rows, and the seal table refuses every
change and any INSERT not made by a sealing function. What the owner can still do (take the
triggers off its own tables) is caught by ``verify``: see tests/test_sealing.py.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from partitioned_audit import ADVANCED, SIMPLE, install, objects, sealing
from partitioned_audit.partitioning.maintenance import Maintainer
from partitioned_audit.partitioning.ranges import PartitionInfo
from tests.attacks.conftest import TwoRoles, refused, setup_id


def sealed_state(setup: TwoRoles) -> tuple[Any, ...]:
    """Seal as the owner; return (the trail, the seals, verify's head and rows)."""
    conn = setup.session(setup.owner)
    conn.autocommit = True
    try:
        m = Maintainer(conn, setup.layout)
        m.seal()
        result = m.verify()
        assert result.ok
        cur = conn.cursor()
        cur.execute(f"SELECT * FROM public.{setup.layout.seal_table} ORDER BY seal_id")
        return setup.trail(), cur.fetchall(), result.head, result.rows
    finally:
        conn.close()


def seal_attempts(setup: TwoRoles) -> list[str]:
    seals = f"public.{setup.layout.seal_table}"
    return [
        f"UPDATE {seals} SET row_count = 0",
        f"DELETE FROM {seals}",
        f"TRUNCATE {seals}",
        f"INSERT INTO {seals} SELECT * FROM {seals}",
    ]


def test_the_app_role_cannot_touch_the_seals_or_call_the_sealing_functions(two_roles: TwoRoles):
    layout = two_roles.layout
    before = sealed_state(two_roles)
    app = two_roles.session(two_roles.app)
    try:
        for relation in (layout.seal_table, layout.mark_table):
            for statement in (
                f"SELECT * FROM public.{relation}",
                f"INSERT INTO public.{relation} SELECT * FROM public.{relation}",
                f"UPDATE public.{relation} SET last_event_id = 0",
                f"DELETE FROM public.{relation}",
                f"TRUNCATE public.{relation}",
            ):
                assert refused(app, statement).startswith("permission denied for table "), statement
        for call in (
            f"{layout.seal_function('seal')}(1000, 0)",
            f"{layout.seal_function('verify')}(NULL)",
            f"{layout.seal_function('retire')}('public.{layout.default_partition}', true)",
            f"{layout.seal_function('chunks')}('{{1}}', '{{1}}', '{{1}}', '{{2}}', 1, 9, NULL, '{{}}')",
        ):
            assert refused(app, f"SELECT * FROM public.{call}").startswith("permission denied for function ")
    finally:
        app.close()
    assert sealed_state(two_roles)[:2] == before[:2]


def test_the_owner_cannot_change_delete_or_truncate_sealed_rows(two_roles: TwoRoles):
    layout = two_roles.layout
    before = sealed_state(two_roles)
    owner = two_roles.session(two_roles.owner)
    try:
        for statement in (
            f"UPDATE public.{layout.table} SET {layout.table_column} = 'forged'",
            f"UPDATE public.{layout.default_partition} SET {layout.table_column} = 'forged'",
            f"DELETE FROM public.{layout.table}",
            f"DELETE FROM public.{layout.default_partition}",
            # the maintenance setting lets only the engine's own DEFAULT-partition moves through
            "SELECT set_config('partitioned_audit.maintenance', 'on', true);"
            f" UPDATE public.{layout.default_partition} SET {layout.table_column} = 'forged'",
            f"TRUNCATE public.{layout.table}",
        ):
            message = refused(owner, statement)
            assert message.startswith("partitioned_audit: ") and "refused" in message, statement
        for statement in seal_attempts(two_roles):
            assert refused(owner, statement).startswith(
                f"partitioned_audit: {layout.seal_table} is append-only"
            )
    finally:
        owner.close()
    after = sealed_state(two_roles)
    assert after[:2] == before[:2] and after[2] == before[2]


def test_rows_written_after_a_seal_stay_writable_by_the_owner_until_the_next_seal(two_roles: TwoRoles):
    """The freeze covers sealed rows only: the rows after the last seal are not frozen yet."""
    layout = two_roles.layout
    sealed_state(two_roles)
    two_roles.run(two_roles.app, "INSERT INTO invoice VALUES (2, 20)")
    (count,) = two_roles.run(
        two_roles.owner,
        f"SELECT count(*) FROM public.{layout.table} WHERE {layout.event_column} >"
        f" (SELECT max(last_event_id) FROM public.{layout.seal_table})",
    )[0]
    assert count >= 1
    assert sealing.FREEZE_TRIGGER in {
        name
        for (name,) in two_roles.run(None, "SELECT tgname FROM pg_trigger WHERE tgname LIKE 'dpa_seal_%'")
    }


# ---------------------------------------------------------------------------------------
# F5: rows rewritten behind a detached partition, then a forged seal entry to cover them
# ---------------------------------------------------------------------------------------


def forge(
    setup: TwoRoles,
    first: str,
    last: str,
    kind: str = "seal",
    partition: str = "NULL",
    extra: str | None = None,
    rows: str = "c.row_count",
) -> str:
    """An INSERT of seal entry 2 that re-digests chunk 0 of seal 1 as the rows are now,
    chained from seal 1 with a correct digest; ``first`` and ``last`` are its range, as SQL
    over seal 1 (``s``), ``extra`` its jsonb ``extra`` (by default a seal's of the current
    format, a retention entry's of format 1: NULL), ``rows`` its row count."""
    layout = setup.layout
    if extra is None:
        extra = (
            f"""'{{"format": {sealing.FORMAT}, "pending": [], "closes": []}}'""" if kind == "seal" else "NULL"
        )
    size = "s.chunk_size" if kind == "seal" else "NULL::integer"
    fields = (
        f"2, '{kind}', now(), {first}, {last}, {rows}, {size}, {partition}::text,"
        " ARRAY[c.seal_id], ARRAY[c.chunk], ARRAY[c.row_count], ARRAY[c.digest], ARRAY[c.partitions]"
    )
    return (
        f"INSERT INTO public.{layout.seal_table} (seal_id, kind, sealed_at, first_event_id, last_event_id,"
        " row_count, chunk_size, partition_name, chunk_seal, chunk_index, chunk_rows, chunk_digest,"
        " chunk_partitions, extra, previous, digest)"
        f" SELECT {fields}, {extra}::jsonb, s.digest, public.dpa_seal_link(s.digest, {fields}, {extra}::jsonb)"
        f" FROM public.{layout.seal_table} s, public.{layout.seal_function('chunks')}(ARRAY[1::bigint],"
        " ARRAY[s.first_event_id], ARRAY[s.chunk_size], ARRAY[2], s.first_event_id, s.last_event_id, NULL,"
        " '{}') c"
        " WHERE s.seal_id = 1 AND c.chunk = 0"
    )


def verify_both(setup: TwoRoles, head: str, capsys: Any) -> list[tuple[int, str, str]]:
    """``verify --expect HEAD`` as the owner, inside the database and offline."""
    results = []
    for extra in ([], ["--offline"]):
        status = setup.cli("verify", "--expect", head, *extra)
        captured = capsys.readouterr()
        results.append((status, captured.out, captured.err))
    return results


def test_rows_rewritten_behind_a_detached_partition_are_caught_even_with_a_forged_seal(
    two_roles: TwoRoles, capsys: Any
):
    layout = two_roles.layout
    two_roles.run(two_roles.app, "INSERT INTO invoice SELECT g, g FROM generate_series(2, 8) g")
    _, _, head, _ = sealed_state(two_roles)
    event = layout.event_column
    ids = [row[layout.column_names.index(event)] for row in two_roles.trail()]
    payload = "object_payload" if layout.name == "simple" else "row_data"
    table, default = f"public.{layout.table}", f"public.{layout.default_partition}"
    # The owner takes the partition out (its cloned freeze trigger goes with it), edits, and
    # puts it back.
    two_roles.run(
        two_roles.owner,
        f"ALTER TABLE {table} DETACH PARTITION {default}",
        f"UPDATE {default} SET {payload} = {payload} || '{{\"amount\": 0}}' WHERE {event} = {ids[1]}",
        f"DELETE FROM {default} WHERE {event} = {ids[2]}",
        f"ALTER TABLE {table} ATTACH PARTITION {default} DEFAULT",
    )
    sealed = f"seal 1 events 1..{max(ids)} in {default}: 1 of {len(ids)} sealed rows are missing"
    # The seal table takes no entry that claims chunks of an earlier seal, setting or not.
    owner = two_roles.session(two_roles.owner)
    try:
        message = refused(owner, forge(two_roles, "s.last_event_id + 1", "s.last_event_id"))
    finally:
        owner.close()
    assert message == (
        f"partitioned_audit: {layout.seal_table} is append-only: seal 2 is refused: it covers events "
        f"{max(ids) + 1}..{max(ids)}, which end before they start"
    )
    # Nor a retention entry for the partition, now that its rows no longer match their seal
    # (else the owner could detach it again, rename it and attach it under the new name).
    owner = two_roles.session(two_roles.owner)
    try:
        message = refused(owner, forge(two_roles, "1", "s.last_event_id", "detach", f"'{default}'"))
    finally:
        owner.close()
    assert message == (
        f"partitioned_audit: {layout.seal_table} is append-only: seal 2 is refused: chunk 0 of seal 1 "
        "no longer matches its seal"
    )
    assert (
        verify_both(two_roles, head, capsys)
        == [(1, "", f"partitioned-audit: verify failed: removed: {sealed}\n")] * 2
    )
    # The owner can still drop that trigger and insert the entry: verify counts it for nothing,
    # the layout's status says the trigger is gone, and install puts it back.
    two_roles.run(
        two_roles.owner,
        f"DROP TRIGGER {sealing.APPEND_ONLY_TRIGGER} ON public.{layout.seal_table}",
        forge(two_roles, "s.last_event_id + 1", "s.last_event_id + 1"),
    )
    owner = two_roles.session(two_roles.owner)
    try:
        cur = owner.cursor()
        assert objects.seal_trigger_problems(cur, layout) == {sealing.APPEND_ONLY_TRIGGER: "it is missing"}
        assert install(cur, layout) is objects.Status.OUTDATED
        assert objects.layout_status(cur, layout).status is objects.Status.INSTALLED
        owner.commit()
    finally:
        owner.close()
    assert (
        verify_both(two_roles, head, capsys)
        == [
            (
                1,
                f"also: removed: {sealed}\n",
                f"partitioned-audit: verify failed: chain: seal 2 events {max(ids) + 1}..{max(ids) + 1}: seal 2 is "
                "not counted: it holds chunks that are not its own (and 1 more finding(s) listed above)\n",
            )
        ]
        * 2
    )


def test_a_forged_entry_closing_a_seal_cannot_re_digest_rows_other_than_its_late_rows(
    two_roles: TwoRoles, capsys: Any
):
    """F5 with late rows: an entry carries chunks of an earlier seal only as late rows of the
    transactions that seal recorded open, closing it once they have all ended; the seal
    table's trigger recomputes those chunks, so a sealed row rewritten behind a detached
    partition cannot be re-digested that way, and the seal that closes it leaves it out."""
    setup, layout = two_roles, two_roles.layout
    setup.run(setup.app, "INSERT INTO invoice SELECT g, g FROM generate_series(2, 8) g")
    held = setup.session(setup.app)
    cur = held.cursor()
    cur.execute("INSERT INTO invoice VALUES (20, 20)")
    cur.execute("SELECT txid_current()")
    (txid,) = cur.fetchone()
    setup.run(setup.app, "INSERT INTO invoice VALUES (21, 21)")
    conn = setup.session(setup.owner)
    conn.autocommit = True
    try:
        first = Maintainer(conn, layout).seal(wait_ms=0)
    finally:
        conn.close()
    assert first.sealed and first.pending == [txid]
    closing = forge(
        setup,
        "s.last_event_id + 1",
        "s.last_event_id",
        extra=f"""'{{"closes": [1], "format": {sealing.FORMAT}, "pending": []}}'""",
        rows="c.row_count - s.chunk_rows[1]",
    )
    prefix = f"partitioned_audit: {layout.seal_table} is append-only: seal 2 is refused: "
    owner = setup.session(setup.owner)
    try:
        assert (
            refused(owner, closing) == f"{prefix}it closes seal 1 while its transaction {txid} is still open"
        )
    finally:
        owner.close()
    held.commit()
    held.close()
    event = layout.event_column
    ids = [row[layout.column_names.index(event)] for row in setup.trail()]
    payload = "object_payload" if layout.name == "simple" else "row_data"
    table, default = f"public.{layout.table}", f"public.{layout.default_partition}"
    setup.run(
        setup.owner,
        f"ALTER TABLE {table} DETACH PARTITION {default}",
        f"UPDATE {default} SET {payload} = {payload} || '{{\"amount\": 0}}' WHERE {event} = {ids[1]}",
        f"ALTER TABLE {table} ATTACH PARTITION {default} DEFAULT",
    )
    owner = setup.session(setup.owner)
    try:
        assert refused(owner, closing) == (
            f"{prefix}chunk 0 of seal 1 changed beyond the late rows of the transactions it closes"
        )
    finally:
        owner.close()
    conn = setup.session(setup.owner)
    conn.autocommit = True
    try:
        m = Maintainer(conn, layout)
        late = m.seal(wait_ms=0)
        assert late.sealed and late.late_rows == 0 and late.seal_id == 2
        results = [m.verify(), m.verify(offline=True)]
    finally:
        conn.close()
    assert results[0] == results[1]
    assert [(p.kind, p.seal_id, p.expected_rows, p.found_rows) for p in results[0].problems] == [
        ("added", 1, len(ids) - 1, len(ids))
    ]


def fingerprint(setup: TwoRoles, big: bool = False) -> list[tuple[Any, ...]]:
    """Every audit row as (event id, then the SHA-256 of each column's text), read as the
    owner. With ``big``, the stored size of each column instead, which reads no value: the
    trail compared without bringing rows of hundreds of megabytes into Python, nor printing
    them again."""
    layout = setup.layout
    each = "pg_column_size({})" if big else "encode(sha256(convert_to(format('%s', {}), 'UTF8')), 'hex')"
    columns = ", ".join(each.format(c) for c in layout.column_names)
    return setup.run(
        setup.owner, f"SELECT {layout.event_column}, {columns} FROM public.{layout.table} ORDER BY 1"
    )


# Each layout once, one at each capture level: the seal reads the stored row, which both
# levels write alike, and each run takes 25-50 s.
@pytest.mark.parametrize("two_roles", [(SIMPLE, False), (ADVANCED, True)], ids=setup_id, indirect=True)
def test_a_row_too_big_to_print_with_its_neighbours_is_sealed(two_roles: TwoRoles):
    """F8: a payload whose text is 960 MB (160 million control characters, each written
    ``\\u0001`` in JSON) fits PostgreSQL's 1 GB limit alone, but not once quoted into a row's
    line; sealing hashes each field apart, so the seal goes through, and the row is in it.
    (About 25 s a layout: the seal hashes the 960 MB once.)"""
    setup, layout = two_roles, two_roles.layout
    setup.run(setup.owner, "ALTER TABLE invoice ADD COLUMN note text")
    setup.run(setup.app, "INSERT INTO invoice VALUES (2, 1, repeat(chr(1), 160000000))")
    setup.run(setup.app, "INSERT INTO invoice VALUES (3, 1, 'small')")
    before = fingerprint(setup, big=True)
    conn = setup.session(setup.owner)
    conn.autocommit = True
    try:
        sealed = Maintainer(conn, layout).seal(chunk_size=1_000_000)
        assert sealed.sealed and sealed.rows == len(before) and sealed.last_event_id == before[-1][0]
    finally:
        conn.close()
    assert fingerprint(setup, big=True) == before
    # The big row is sealed: once a superuser deletes it, verify finds it missing.
    big = max(before, key=lambda row: sum(size or 0 for size in row[1:]))[0]
    setup.run(
        None,
        "SELECT set_config('partitioned_audit.maintenance', 'on', false)",
        f"ALTER TABLE public.{layout.table} DISABLE TRIGGER {sealing.FREEZE_TRIGGER}",
        f"DELETE FROM public.{layout.table} WHERE {layout.event_column} = {big}",
        f"ALTER TABLE public.{layout.table} ENABLE ALWAYS TRIGGER {sealing.FREEZE_TRIGGER}",
    )
    conn = setup.session(setup.owner)
    try:
        problems = Maintainer(conn, layout).verify().problems
    finally:
        conn.close()
    assert [(p.kind, p.first_event_id, p.expected_rows, p.found_rows) for p in problems] == [
        ("removed", 1, len(before), len(before) - 1)
    ]


def test_an_open_transaction_does_not_stall_sealing_nor_leave_later_rows_open_to_change(
    two_roles: TwoRoles, capsys: pytest.CaptureFixture[str]
):
    """F9: the application holds one audited write open; the rows committed after it are
    sealed around it (and so frozen against the owner), the seal and check name its backend
    and fail past --max-stall, and its row is sealed late once it commits."""
    setup, layout = two_roles, two_roles.layout
    assert setup.cli("create") == 0
    held = setup.session(setup.app)
    cur = held.cursor()
    cur.execute("INSERT INTO invoice VALUES (2, 20)")
    cur.execute("SELECT pg_backend_pid(), txid_current()")
    pid, txid = cur.fetchone()
    setup.run(setup.app, "INSERT INTO invoice VALUES (3, 30)")
    conn = setup.session(setup.owner)
    conn.autocommit = True
    try:
        m = Maintainer(conn, layout)
        sealed = m.seal(wait_ms=0)
        after = fingerprint(setup)
        assert sealed.sealed and sealed.pending == [txid] and sealed.last_event_id == after[-1][0]
        assert [(h.pid, h.xid) for h in m.holders()] == [(pid, txid)]
    finally:
        conn.close()
    owner = setup.session(setup.owner)
    try:
        last = after[-1][0]
        message = refused(
            owner,
            f"UPDATE public.{layout.table} SET {layout.table_column} = 'forged' WHERE {layout.event_column} = {last}",
        )
        assert message == f"partitioned_audit: audit event {last} is sealed: UPDATE refused"
    finally:
        owner.close()
    assert fingerprint(setup) == after
    capsys.readouterr()
    assert setup.cli("seal", "--wait", "0", "--max-stall", "0") == 1
    err = capsys.readouterr().err
    assert err.startswith(
        f"partitioned-audit: seal failed: backend pid {pid}, transaction {txid}, open since "
    )
    assert err.endswith(
        " has held audit rows open for more than --max-stall 0 s; its rows stay unsealed until it ends:"
        " end it (pg_terminate_backend) or find why it waits\n"
    )
    assert setup.cli("check", "--max-stall", "0") == 1
    assert capsys.readouterr().err.startswith(f"partitioned-audit: check failed: backend pid {pid}, ")
    assert setup.cli("check") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith(
        f"1 transaction(s) hold audit rows not sealed yet: backend pid {pid}, transaction {txid}, "
    )
    held.commit()
    held.close()
    conn = setup.session(setup.owner)
    conn.autocommit = True
    try:
        m = Maintainer(conn, layout)
        late = m.seal(wait_ms=0)
        assert late.sealed and late.late_rows == 1 and not late.pending
        result = m.verify()
        assert result.ok and result.rows == len(fingerprint(setup)) == len(after) + 1
    finally:
        conn.close()


def test_the_owner_cannot_retire_the_current_month_as_retention(two_roles: TwoRoles):
    """F6: retire refuses a partition whose range has not ended a day before now, and the
    partition dropped anyway is reported removed, not retired."""
    setup, layout = two_roles, two_roles.layout
    (start,) = setup.run(None, "SELECT date_trunc('month', now() AT TIME ZONE 'UTC')::date")[0]
    end = (start + dt.timedelta(days=32)).replace(day=1)
    month = PartitionInfo.create(layout.table, start, end)
    conn = setup.session(setup.owner)
    conn.autocommit = True
    try:
        m = Maintainer(conn, layout)
        m.create([month])
        setup.run(setup.app, "INSERT INTO invoice VALUES (2, 20)")
        sealed = m.seal()
        assert m.verify().ok
    finally:
        conn.close()
    before = setup.trail()
    seals = setup.run(setup.owner, f"SELECT * FROM public.{layout.seal_table} ORDER BY seal_id")
    owner = setup.session(setup.owner)
    try:
        message = refused(
            owner, f"SELECT public.{layout.seal_function('retire')}('public.{month.partition}', true)"
        )
        assert message.startswith(
            f"partitioned_audit: refusing to retire public.{month.partition}: it holds sealed rows and its"
            f" range (FOR VALUES FROM ('{start} 00:00:00+00') TO ('{end} 00:00:00+00')) did not end 1 day"
            " or more before now ("
        )
    finally:
        owner.close()
    assert setup.trail() == before
    assert setup.run(setup.owner, f"SELECT * FROM public.{layout.seal_table} ORDER BY seal_id") == seals
    setup.run(
        setup.owner,
        f"ALTER TABLE public.{layout.table} DETACH PARTITION public.{month.partition}",
        f"DROP TABLE public.{month.partition}",
    )
    conn = setup.session(setup.owner)
    try:
        result = Maintainer(conn, layout).verify(expect=sealed.head)
    finally:
        conn.close()
    assert not result.retired
    assert [(p.kind, p.expected_rows, p.found_rows) for p in result.problems] == [("removed", len(before), 0)]
    assert f"(sealed in public.{month.partition})" in result.problems[0].detail


# ---------------------------------------------------------------------------------------
# The simple layout's login role column, on rows sealed before it existed
# ---------------------------------------------------------------------------------------


def stored_and_recomputed(setup: TwoRoles) -> tuple[bytes, bytes]:
    """Chunk 0 of seal 1 as the seal table holds it, and as the verifier written from the
    docs alone (tests/spec_verifier.py) recomputes it from the rows."""
    from tests import spec_verifier
    from tests.engine_db import connect

    conn = connect(setup.dbname, autocommit=True)
    try:
        _, digests = spec_verifier.recompute(conn.cursor(), setup.layout.table)
        cur = conn.cursor()
        cur.execute(f"SELECT chunk_digest[1] FROM public.{setup.layout.seal_table} WHERE seal_id = 1")  # noqa: S608
        return bytes(cur.fetchone()[0]), digests[(1, 0)]
    finally:
        conn.close()


def append_seal(setup: TwoRoles, seal_format: int, first: str | None = None) -> str:
    """An INSERT of the chain's next entry: a seal of ``seal_format`` over the audit rows
    from ``first`` (an SQL expression over the audit table; by default the event after the
    last one sealed) to the newest, hashed by the installed chunks function in that format's
    encoding and linked as the seal function links."""
    layout = setup.layout
    table, seals = f"public.{layout.table}", f"public.{layout.seal_table}"
    fields = (
        "s.id, 'seal', now(), s.first, s.last, c.row_count, 1000, NULL::text, ARRAY[c.seal_id], ARRAY[c.chunk],"
        " ARRAY[c.row_count], ARRAY[c.digest], ARRAY[c.partitions]"
    )
    extra = (
        f"""'{{"format": {seal_format}, "pending": [], "closes": []}}'::jsonb"""
        if seal_format > 1
        else "NULL::jsonb"
    )
    first = first or f"(SELECT coalesce(max(last_event_id), 0) + 1 FROM {seals} WHERE kind = 'seal')"
    return (
        f"INSERT INTO {seals} (seal_id, kind, sealed_at, first_event_id, last_event_id,"  # noqa: S608
        " row_count, chunk_size, partition_name, chunk_seal, chunk_index, chunk_rows, chunk_digest,"
        " chunk_partitions, extra, previous, digest)"
        f" SELECT {fields}, {extra}, s.previous, public.dpa_seal_link(s.previous, {fields}, {extra})"
        f" FROM (SELECT (SELECT coalesce(max(seal_id), 0) + 1 FROM {seals}) AS id,"
        f" coalesce((SELECT digest FROM {seals} ORDER BY seal_id DESC LIMIT 1), decode(repeat('00', 32), 'hex'))"
        f" AS previous, {first} AS first, max({layout.event_column}) AS last FROM {table}) s,"
        f" public.{layout.seal_function('chunks')}(ARRAY[s.id], ARRAY[s.first], ARRAY[1000],"
        f" ARRAY[{seal_format}], s.first, s.last, NULL, '{{}}') c"
    )


def past_the_trigger(setup: TwoRoles, statement: str) -> list[str]:
    """``statement`` between the owner taking the seal table's trigger off and putting it
    back as install leaves it (enabled ALWAYS)."""
    seals = f"public.{setup.layout.seal_table}"
    return [
        f"ALTER TABLE {seals} DISABLE TRIGGER {sealing.APPEND_ONLY_TRIGGER}",
        statement,
        f"ALTER TABLE {seals} ENABLE ALWAYS TRIGGER {sealing.APPEND_ONLY_TRIGGER}",
    ]


def append_first_seal(setup: TwoRoles, seal_format: int, first: str) -> None:
    """A seal of ``seal_format``, the chain's first entry, as an earlier version's seal
    function wrote it (see :func:`append_seal`). The seal table takes a seal only in the
    current format now (an owner's entry of an earlier one is refused: see
    test_the_owner_cannot_append_a_seal_of_an_earlier_format), so it goes in past the
    trigger, as the tables of an install made before the upgrade hold it."""
    setup.run(setup.owner, *past_the_trigger(setup, append_seal(setup, seal_format, first)))


@pytest.mark.parametrize(
    "two_roles", [(SIMPLE, False), (SIMPLE, True)], ids=["simple-statement", "simple-row"], indirect=True
)
@pytest.mark.parametrize("seal_format", [1, 2, 3])
@pytest.mark.parametrize("before_column", [True, False], ids=["before-column", "appended-old-format"])
def test_a_login_role_written_into_a_row_sealed_before_the_column_is_found(
    two_roles: TwoRoles, seal_format: int, before_column: bool, capsys: Any
):
    """A row sealed in format 3 or earlier was written before the simple layout had
    ``session_user_name``, so it holds NULL there, and the seal did not hash the column.
    Where the row has no context row (a 1.0.4 row, or one written before the context table)
    the read view shows the row's own column: an owner who writes a login role into it, behind
    a detached partition, must not pass ``verify``, inside the database or offline, even
    though the format-3 digest never covered the column.

    The owner can also slip an entry of format 1, 2 or 3 past the seal table's trigger as
    the chain's first (no seal of a later format before it for verify to hold it to): a row
    written since, sealed so, must not be open to the same rewrite either."""
    setup, layout = two_roles, two_roles.layout
    table, default = f"public.{layout.table}", f"public.{layout.default_partition}"
    # The fixture's row, written outside any context (no context row), as an install before
    # the column left it (no login role of its own), or as written now.
    if before_column:
        setup.run(setup.owner, f"UPDATE {table} SET session_user_name = NULL")  # noqa: S608
    assert setup.run(setup.owner, f"SELECT count(*) FROM public.{layout.context_table}") == [(0,)]  # noqa: S608
    # A seal of the earlier format over it: the entry that install's seal function wrote,
    # or one the owner inserts itself.
    append_first_seal(setup, seal_format, first=f"min({layout.event_column})")
    conn = setup.session(setup.owner)
    conn.autocommit = True
    try:
        result = Maintainer(conn, layout).verify()
    finally:
        conn.close()
    assert result.ok and result.rows == 1, [p.describe() for p in result.problems]
    head = result.head
    assert [status for status, _, _ in verify_both(setup, head, capsys)] == [0, 0]
    stored, recomputed = stored_and_recomputed(setup)
    assert recomputed == stored
    # The freeze refuses the change; the owner takes the partition out, writes, puts it back.
    setup.run(
        setup.owner,
        f"ALTER TABLE {table} DETACH PARTITION {default}",
        f"UPDATE {default} SET session_user_name = '{setup.owner}'",  # noqa: S608
        f"ALTER TABLE {table} ATTACH PARTITION {default} DEFAULT",
    )
    assert setup.run(setup.owner, f"SELECT session_user_name FROM {layout.view}") == [(setup.owner,)]  # noqa: S608
    results = verify_both(setup, head, capsys)
    assert [status for status, _, _ in results] == [1, 1], results
    assert all("verify failed: changed: seal 1 events" in err for _, _, err in results), results
    stored, recomputed = stored_and_recomputed(setup)
    assert recomputed != stored


def test_the_views_show_the_login_role_every_seal_format_covers(two_roles: TwoRoles, capsys: Any):
    """A row written inside a context holds its login role twice: on the audit row and on its
    context row. A seal of format 2 (one made before the upgrade, or the chain's first entry
    slipped past the seal table's trigger) covers the row's own column (it holds a value) but not the context row; the owner then
    rewrites the context row's login role behind a detached partition, and ``verify`` cannot
    see it. The views must show the row's own, sealed, login role."""
    setup, layout = two_roles, two_roles.layout
    contexts, default = f"public.{layout.context_table}", f"public.{layout.context_default_partition}"
    setup.run(
        setup.app,
        """SET LOCAL partitioned_audit.context = '{"user_id": 1}'""",
        "INSERT INTO invoice VALUES (2, 20)",
    )
    append_first_seal(setup, 2, first="1::bigint")
    conn = setup.session(setup.owner)
    conn.autocommit = True
    try:
        head = Maintainer(conn, layout).verify().head
    finally:
        conn.close()
    setup.run(
        setup.owner,
        f"ALTER TABLE {contexts} DETACH PARTITION {default}",
        f"UPDATE {default} SET session_user_name = '{setup.owner}'",  # noqa: S608
        f"ALTER TABLE {contexts} ATTACH PARTITION {default} DEFAULT",
    )
    assert setup.run(setup.owner, f"SELECT session_user_name FROM {contexts}") == [(setup.owner,)]  # noqa: S608
    for view in (layout.view, layout.context_view):
        assert setup.run(setup.owner, f"SELECT DISTINCT session_user_name FROM {view}") == [(setup.app,)]  # noqa: S608
    # (format 2 does not cover the context row: the rewrite itself goes unseen)
    assert [status for status, _, _ in verify_both(setup, head, capsys)] == [0, 0]


# ---------------------------------------------------------------------------------------
# Seals of an earlier format after a later one
# ---------------------------------------------------------------------------------------


def seal_table(setup: TwoRoles) -> list[tuple[Any, ...]]:
    return setup.run(setup.owner, f"SELECT * FROM public.{setup.layout.seal_table} ORDER BY seal_id")  # noqa: S608


@pytest.mark.parametrize("seal_format", [1, 2, 3])
def test_the_owner_cannot_append_a_seal_of_an_earlier_format(two_roles: TwoRoles, seal_format: int):
    """An earlier format hashes less of a row (formats 1 and 2 not its context row, format 3
    not the simple layout's login role column), so a seal of one appended after a seal of
    the current format would leave the rows it covers open to a rewrite no seal sees. The
    seal table takes a seal only in the format the seal function writes: the owner's entry
    is refused as the chain's first and after a seal, and nothing changes."""
    setup, layout = two_roles, two_roles.layout
    prefix = f"partitioned_audit: {layout.seal_table} is append-only: "
    owner = setup.session(setup.owner)
    try:
        message = refused(owner, append_seal(setup, seal_format))
    finally:
        owner.close()
    assert (
        message
        == f"{prefix}seal 1 is refused: its format {seal_format} is not 4, the one seals are written in"
    )
    assert seal_table(setup) == []
    trail, seals, head, _ = sealed_state(setup)
    assert [s[-1]["format"] for s in seals] == [sealing.FORMAT]
    setup.run(
        setup.app,
        """SET LOCAL partitioned_audit.context = '{"user_id": 1}'""",
        "INSERT INTO invoice VALUES (2, 20)",
    )
    written = setup.trail()
    owner = setup.session(setup.owner)
    try:
        message = refused(owner, append_seal(setup, seal_format))
    finally:
        owner.close()
    assert message == (
        f"{prefix}seal 2 is refused: its format {seal_format} is lower than format {sealing.FORMAT} of seal 1 before it"
    )
    assert seal_table(setup) == seals and setup.trail() == written and written[: len(trail)] == trail
    # The seal function seals those rows in the current format, chaining on.
    conn = setup.session(setup.owner)
    conn.autocommit = True
    try:
        m = Maintainer(conn, layout)
        assert m.seal().seal_id == 2
        assert m.verify(expect=head).ok
    finally:
        conn.close()


@pytest.mark.parametrize("seal_format", [1, 2])
def test_a_seal_of_an_earlier_format_slipped_past_the_trigger_is_not_counted(
    two_roles: TwoRoles, seal_format: int, capsys: Any
):
    """The owner drops the seal table's trigger and appends, after a seal of the current
    format, a seal of format 1 or 2 (which hash no context row) over rows written since, then
    rewrites what their context row declares behind a detached partition. Verify, inside
    the database and offline, does not count that entry, even given its digest as the head
    kept outside, and the verifier written from the docs does not recompute its chunks."""
    from tests import spec_verifier
    from tests.engine_db import connect

    setup, layout = two_roles, two_roles.layout
    sealed_state(setup)
    setup.run(
        setup.app,
        """SET LOCAL partitioned_audit.context = '{"user_id": 1}'""",
        "INSERT INTO invoice VALUES (2, 20)",
    )
    seals = f"public.{layout.seal_table}"
    setup.run(
        setup.owner,
        f"DROP TRIGGER {sealing.APPEND_ONLY_TRIGGER} ON {seals}",
        append_seal(setup, seal_format),
    )
    ((first, last, head),) = setup.run(
        setup.owner,
        f"SELECT first_event_id, last_event_id, encode(digest, 'hex') FROM {seals} WHERE seal_id = 2",  # noqa: S608
    )
    contexts, default = f"public.{layout.context_table}", f"public.{layout.context_default_partition}"
    setup.run(
        setup.owner,
        f"ALTER TABLE {contexts} DETACH PARTITION {default}",
        f"""UPDATE {default} SET context = '{{"user_id": 99}}'""",  # noqa: S608
        f"ALTER TABLE {contexts} ATTACH PARTITION {default} DEFAULT",
    )
    assert setup.run(setup.owner, f"SELECT DISTINCT context ->> 'user_id' FROM {contexts}") == [("99",)]  # noqa: S608
    finding = (
        f"chain: seal 2 events {first}..{last}: seal 2 is not counted: its format {seal_format} is lower than"
        f" format {sealing.FORMAT} of seal 1 before it"
    )
    assert verify_both(setup, head, capsys) == [(1, "", f"partitioned-audit: verify failed: {finding}\n")] * 2
    conn = connect(setup.dbname, autocommit=True)
    try:
        _, digests = spec_verifier.recompute(conn.cursor(), layout.table)
    finally:
        conn.close()
    assert {seal for seal, _ in digests} == {1}
