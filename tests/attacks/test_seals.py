"""Sealed rows and the seals themselves, attacked by the application role and by the owner.

The application role holds nothing on the seal tables or the sealing functions. The owner
(an ordinary role, not a superuser) holds every privilege on its tables, yet the freeze
refuses its UPDATE, DELETE and TRUNCATE of sealed rows, and the seal table refuses every
change and any INSERT not made by a sealing function. What the owner can still do (take the
triggers off its own tables) is caught by ``verify``: see tests/test_sealing.py.
"""

from __future__ import annotations

from typing import Any

from partitioned_audit import install, objects, sealing
from partitioned_audit.partitioning.maintenance import Maintainer
from tests.attacks.conftest import TwoRoles, refused


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
            f"{layout.seal_function('chunks')}('{{1}}', '{{1}}', '{{1}}', 1, 9, NULL)",
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


def forge(setup: TwoRoles, first: str, last: str, kind: str = "seal", partition: str = "NULL") -> str:
    """An INSERT of seal entry 2 that re-digests chunk 0 of seal 1 as the rows are now,
    chained from seal 1 with a correct digest; ``first`` and ``last`` are its range, as SQL
    over seal 1 (``s``)."""
    layout = setup.layout
    size = "s.chunk_size" if kind == "seal" else "NULL::integer"
    fields = (
        f"2, '{kind}', now(), {first}, {last}, c.row_count, {size}, {partition}::text,"
        " ARRAY[c.seal_id], ARRAY[c.chunk], ARRAY[c.row_count], ARRAY[c.digest], ARRAY[c.partitions]"
    )
    return (
        "SELECT set_config('partitioned_audit.sealing', 'on', true);"
        f" INSERT INTO public.{layout.seal_table} (seal_id, kind, sealed_at, first_event_id, last_event_id,"
        " row_count, chunk_size, partition_name, chunk_seal, chunk_index, chunk_rows, chunk_digest,"
        " chunk_partitions, previous, digest)"
        f" SELECT {fields}, s.digest, public.dpa_seal_link(s.digest, {fields})"
        f" FROM public.{layout.seal_table} s, public.{layout.seal_function('chunks')}(ARRAY[1::bigint],"
        " ARRAY[s.first_event_id], ARRAY[s.chunk_size], s.first_event_id, s.last_event_id, NULL) c"
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
