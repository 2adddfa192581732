"""A role that owns a type in an audited row tries to run its code with the owner's rights.

to_jsonb() calls a non-built-in type's cast to json. Inside the SECURITY DEFINER capture
function that call would run as the audit owner, so the type's owner could make it erase
the trail. The capture function must refuse the write instead, and name the cast.
"""

from __future__ import annotations

from partitioned_audit import TableSpec, enable
from partitioned_audit.objects import trigger_problems
from tests.attacks.conftest import TwoRoles, refused

EVIL_CAST = """
CREATE FUNCTION app_types.mood_json(m app_types.mood) RETURNS json LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM public.{table};
    RETURN to_json(m::text);
END $$
"""


def give_the_table_a_column_of_the_app_roles_type(setup: TwoRoles) -> None:
    """The owner's change to the table, then what migrate does after it."""
    setup.run(None, f"CREATE SCHEMA app_types AUTHORIZATION {setup.app}")
    setup.run(
        setup.app,
        "CREATE TYPE app_types.mood AS ENUM ('calm', 'angry')",
        f"GRANT USAGE ON SCHEMA app_types TO {setup.owner}",
    )
    setup.run(setup.owner, "ALTER TABLE invoice ADD COLUMN mood app_types.mood")
    reenable(setup)


def reenable(setup: TwoRoles, outdated: bool = True) -> None:
    conn = setup.session(setup.owner)
    try:
        spec = TableSpec("public", "invoice", ("id",))
        # Until then the check reports the triggers as outdated when the table gained a
        # type another role owns.
        problems = trigger_problems(conn.cursor(), setup.layout, "public", [spec])
        assert len(problems) == (5 if outdated else 0) and all("is outdated" in p for _, p in problems)
        assert enable(conn.cursor(), setup.layout, spec) is outdated
        conn.commit()
    finally:
        conn.close()


def test_a_cast_of_another_role_is_never_run_by_the_capture_function(two_roles: TwoRoles):
    give_the_table_a_column_of_the_app_roles_type(two_roles)
    two_roles.run(
        two_roles.app,
        EVIL_CAST.format(table=two_roles.layout.table),
        "CREATE CAST (app_types.mood AS json) WITH FUNCTION app_types.mood_json(app_types.mood)",
    )
    before = two_roles.trail()
    assert before
    app = two_roles.session(two_roles.app)
    try:
        for statement in (
            "INSERT INTO invoice VALUES (2, 20, 'angry')",
            "UPDATE invoice SET amount = 12",
            "DELETE FROM invoice",
        ):
            error = refused(app, statement)
            assert error.startswith(
                "partitioned_audit: refusing to audit a write to public.invoice: the cast from app_types.mood to json runs app_types.mood_json(app_types.mood) of role dpa_app_"
            ), error
    finally:
        app.close()
    assert two_roles.trail() == before
    assert two_roles.run(two_roles.owner, "SELECT count(*) FROM invoice") == [(1,)]


def test_casts_of_trusted_roles_run_and_unrelated_tables_keep_working(two_roles: TwoRoles):
    """The guard is precise: the owner's own cast is used, and another role's cast on a type
    no audited column uses stops nothing."""
    give_the_table_a_column_of_the_app_roles_type(two_roles)
    two_roles.run(
        two_roles.app,
        "CREATE TYPE app_types.unused AS ENUM ('x')",
        "CREATE FUNCTION app_types.unused_json(u app_types.unused) RETURNS json LANGUAGE sql AS $$ SELECT '1'::json $$",
        "CREATE CAST (app_types.unused AS json) WITH FUNCTION app_types.unused_json(app_types.unused)",
    )
    two_roles.run(
        two_roles.owner,
        "CREATE TYPE level AS ENUM ('low', 'high')",
        "CREATE FUNCTION level_json(l level) RETURNS json LANGUAGE sql AS $$ SELECT json_build_object('is', l::text) $$",
        "CREATE CAST (level AS json) WITH FUNCTION level_json(level)",
        "ALTER TABLE invoice ADD COLUMN level level",
    )
    reenable(two_roles, outdated=False)  # level belongs to the owner
    app = two_roles.session(two_roles.app)
    try:
        app.cursor().execute("INSERT INTO invoice VALUES (2, 20, 'angry', 'high')")
        app.commit()
    finally:
        app.close()
    payload = "object_payload" if two_roles.layout.name == "simple" else "row_data"
    rows = two_roles.run(
        two_roles.owner,
        f"SELECT {payload} FROM {two_roles.layout.table} ORDER BY {two_roles.layout.event_column} DESC LIMIT 1",
    )
    assert rows == [({"id": 2, "amount": 20, "mood": "angry", "level": {"is": "high"}},)]
