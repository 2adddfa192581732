"""F4: a cast to json created while a write is inside the capture, after its check.

The capture checks once per statement, then converts every row; to_jsonb() looks the cast
up per row. Session A (the application role) writes a row; the owner holds the audit table
locked, so A's capture stops on its INSERT into the trail: after the check, before the
first conversion (the window a large audit context opens too, for a second or so). Session
B, the owner of a type the row holds, then creates a cast to json whose function records the
role it runs as and deletes the trail, and commits; the owner lets A go on. The cast must
never run as the owner, whether a superuser installed the guard or not.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tests.attacks.conftest import TwoRoles

RECORDING_CAST = """
CREATE FUNCTION app_types.mood_json(m app_types.mood) RETURNS json LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO app_types.ran VALUES (current_user);
    DELETE FROM public.{table};
    RETURN to_json(m::text);
END $$
"""
CREATE_CAST = "CREATE CAST (app_types.mood AS json) WITH FUNCTION app_types.mood_json(app_types.mood)"
#: How long any step may wait: the whole race stays well under 30 s.
PATIENCE = 10.0


def set_up(setup: TwoRoles, type_owner: str) -> None:
    """invoice gains a column of app_types.mood, owned by ``type_owner``, and the application
    role a table its cast function fills (anyone may insert)."""
    setup.run(None, f"CREATE SCHEMA app_types AUTHORIZATION {setup.app}")
    setup.run(
        setup.app,
        "CREATE TABLE app_types.ran (role name)",
        "GRANT INSERT ON app_types.ran TO PUBLIC",
        f"GRANT USAGE, CREATE ON SCHEMA app_types TO {setup.owner}",
    )
    setup.run(type_owner, "CREATE TYPE app_types.mood AS ENUM ('calm', 'angry')")
    setup.run(setup.owner, "ALTER TABLE invoice ADD COLUMN mood app_types.mood")


def write_while_b_creates_a_cast(setup: TwoRoles, b_role: str) -> tuple[str | None, str | None, bool]:
    """Race A's INSERT against B's CREATE CAST; return (A's error, B's error, whether B was
    done while A was held inside the capture)."""
    locker = setup.owner_session()
    locker.cursor().execute(f"LOCK TABLE public.{setup.layout.table} IN ACCESS EXCLUSIVE MODE")
    a = setup.session(setup.app)
    a_cur = a.cursor()
    a_cur.execute(f"SET lock_timeout = '{int(PATIENCE)}s'")
    a_cur.execute("SELECT pg_backend_pid()")
    a_pid = a_cur.fetchone()[0]
    a.commit()
    outcome: dict[str, Any] = {}

    def session_a() -> None:
        try:
            a_cur.execute("INSERT INTO invoice VALUES (2, 20, 'angry')")
            a.commit()
            outcome["a"] = None
        except Exception as exc:  # noqa: BLE001 - whichever driver's error class
            a.rollback()
            outcome["a"] = str(exc).splitlines()[0]

    thread = threading.Thread(target=session_a)
    thread.start()
    try:
        # Held inside the capture: A waits for the audit table's lock (or failed before it).
        deadline = time.monotonic() + PATIENCE
        while thread.is_alive() and time.monotonic() < deadline:
            waiting = setup.run(None, f"SELECT count(*) FROM pg_locks WHERE pid = {a_pid} AND NOT granted")
            if waiting[0][0]:
                break
            time.sleep(0.02)
        held = thread.is_alive()
        b = setup.session(b_role)
        try:
            b.cursor().execute(RECORDING_CAST.format(table=setup.layout.table))
            b.commit()
            b.cursor().execute(CREATE_CAST)
            b.commit()
            b_error = None
        except Exception as exc:  # noqa: BLE001 - whichever driver's error class
            b.rollback()
            b_error = str(exc).splitlines()[0]
        finally:
            b.close()
        b_done_while_held = held and thread.is_alive()
    finally:
        locker.rollback()  # A goes on
        locker.close()
        thread.join(PATIENCE)
        a.close()
    assert not thread.is_alive()
    return outcome["a"], b_error, b_done_while_held


def ran(setup: TwoRoles) -> list[tuple[Any, ...]]:
    return setup.run(None, "SELECT role FROM app_types.ran")


@pytest.mark.parametrize("guard", [True, False], ids=["guard", "no-guard"])
def test_a_cast_created_during_a_write_never_runs_as_the_owner(two_roles: TwoRoles, guard: bool):
    set_up(two_roles, type_owner=two_roles.app)
    if guard:
        two_roles.install_guard()
    before = two_roles.trail()
    a_error, b_error, raced = write_while_b_creates_a_cast(two_roles, b_role=two_roles.app)
    assert ran(two_roles) == []
    if guard:
        # A passed the check (no cast yet) and was held inside the capture while B tried.
        assert raced
        assert b_error == (
            f"partitioned_audit: refusing CREATE CAST (app_types.mood AS json): role {two_roles.app}, which "
            "creates it, is neither the audit owner nor a superuser, and the capture would run "
            "app_types.mood_json(app_types.mood) with the rights of the audit owner"
        )
        assert a_error is None
        after = two_roles.trail()
        assert after[:-1] == before and len(after) == len(before) + 1
    else:
        # Without the guard the capture does not wait for a cast: the type is another role's.
        assert a_error == (
            "partitioned_audit: refusing to audit a write to public.invoice: type app_types.mood belongs to "
            f"role {two_roles.app}, which could give it a cast to json that would run with the rights of the "
            "audit owner, and no guard refuses such a cast"
        )
        assert b_error is None  # nothing stops the type's owner from creating it
        assert two_roles.trail() == before


def test_without_the_guard_a_type_of_the_owner_leaves_the_app_role_no_cast(two_roles: TwoRoles):
    """The owner's type passes the check; B cannot create a cast from it while A is held."""
    set_up(two_roles, type_owner=two_roles.owner)
    before = two_roles.trail()
    a_error, b_error, raced = write_while_b_creates_a_cast(two_roles, b_role=two_roles.app)
    assert raced
    assert b_error == "must be owner of type app_types.mood or type json"
    assert a_error is None
    after = two_roles.trail()
    assert after[:-1] == before and len(after) == len(before) + 1
    assert ran(two_roles) == []
