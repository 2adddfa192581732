"""A role that owns a type in an audited row tries to run its code with the owner's rights.

to_jsonb() calls a non-built-in type's cast to json. Inside the SECURITY DEFINER capture
function that call would run as the audit owner, so the type's owner could make it erase
the trail. Where a superuser installed the guard, it refuses such a cast (and an ALTER TABLE
that would make the triggers' trust in the table's types stale); without it, the capture
refuses every write to a table holding a type another role owns. The race between a write
and a cast created while it runs is in test_cast_race.py.
"""

from __future__ import annotations

from partitioned_audit import enable
from partitioned_audit.objects import trigger_problems
from tests.attacks.conftest import SuperuserAudit, TwoRoles, refused
from tests.engine_db import connect

EVIL_CAST = """
CREATE FUNCTION app_types.mood_json(m app_types.mood) RETURNS json LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM public.{table};
    RETURN to_json(m::text);
END $$
"""
CREATE_CAST = "CREATE CAST (app_types.mood AS json) WITH FUNCTION app_types.mood_json(app_types.mood)"


def the_app_roles_type(setup: TwoRoles) -> None:
    """An enum the application role owns, in a schema of its own the owner may use."""
    setup.run(None, f"CREATE SCHEMA app_types AUTHORIZATION {setup.app}")
    setup.run(
        setup.app,
        "CREATE TYPE app_types.mood AS ENUM ('calm', 'angry')",
        f"GRANT USAGE ON SCHEMA app_types TO {setup.owner}",
    )


def give_the_table_a_column_of_the_app_roles_type(setup: TwoRoles) -> None:
    """The owner's change to the table: a column of a type the application role owns."""
    the_app_roles_type(setup)
    setup.run(setup.owner, "ALTER TABLE invoice ADD COLUMN mood app_types.mood")


def problems(setup: TwoRoles) -> list[str]:
    conn = setup.owner_session()
    try:
        return [p for _, p in trigger_problems(conn.cursor(), setup.layout, "public", [setup.spec()])]
    finally:
        conn.close()


def refused_writes(setup: TwoRoles, inserted: str = "'angry'") -> list[str]:
    """The errors of an INSERT (its third column ``inserted``), an UPDATE and a DELETE by the app role."""
    app = setup.session(setup.app)
    try:
        return [
            refused(app, statement)
            for statement in (
                f"INSERT INTO invoice VALUES (2, 20, {inserted})",
                "UPDATE invoice SET amount = 12",
                "DELETE FROM invoice",
            )
        ]
    finally:
        app.close()


def ownership_refusal(setup: TwoRoles) -> str:
    return (
        "partitioned_audit: refusing to audit a write to public.invoice: type app_types.mood belongs to role "
        f"{setup.app}, which could give it a cast to json that would run with the rights of the audit "
        "owner, and no guard refuses such a cast"
    )


def cast_refusal(setup: TwoRoles) -> str:
    return (
        "partitioned_audit: refusing to audit a write to public.invoice: the cast from app_types.mood to json runs "
        f"app_types.mood_json(app_types.mood) of role {setup.app}, which would run with the rights of the "
        "audit owner"
    )


def test_without_the_guard_a_type_of_another_role_stops_every_write(two_roles: TwoRoles):
    """Nothing stops its owner from giving it a cast at any moment, so the capture does not
    wait for one: it refuses the write while the type belongs to another role."""
    assert two_roles.casts_mode() == {"o"}
    give_the_table_a_column_of_the_app_roles_type(two_roles)
    # The triggers' argument vouches for nothing without the guard: no staleness to report.
    assert problems(two_roles) == []
    before = two_roles.trail()
    assert refused_writes(two_roles) == [ownership_refusal(two_roles)] * 3
    two_roles.run(two_roles.app, EVIL_CAST.format(table=two_roles.layout.table), CREATE_CAST)
    assert refused_writes(two_roles) == [ownership_refusal(two_roles)] * 3
    assert two_roles.trail() == before
    assert two_roles.run(two_roles.owner, "SELECT count(*) FROM invoice") == [(1,)]


def test_without_the_guard_handing_the_type_over_keeps_its_cast_refused(two_roles: TwoRoles):
    """A cast outlives a change of its type's owner: the check still looks at the casts."""
    give_the_table_a_column_of_the_app_roles_type(two_roles)
    two_roles.run(two_roles.app, EVIL_CAST.format(table=two_roles.layout.table), CREATE_CAST)
    two_roles.run(None, f"ALTER TYPE app_types.mood OWNER TO {two_roles.owner}")
    before = two_roles.trail()
    assert refused_writes(two_roles) == [cast_refusal(two_roles)] * 3
    assert two_roles.trail() == before


def test_with_the_guard_the_app_role_cannot_create_a_cast_to_json(two_roles: TwoRoles):
    give_the_table_a_column_of_the_app_roles_type(two_roles)
    two_roles.install_guard()
    assert two_roles.casts_mode() == {"c"}  # the type is another role's: casts checked per statement
    assert problems(two_roles) == []
    two_roles.run(
        two_roles.app,
        EVIL_CAST.format(table=two_roles.layout.table),
        EVIL_CAST.format(table=two_roles.layout.table).replace("json", "jsonb"),
    )
    app = two_roles.session(two_roles.app)
    try:
        for target in ("json", "jsonb"):
            assert refused(
                app,
                f"CREATE CAST (app_types.mood AS {target}) WITH FUNCTION app_types.mood_{target}(app_types.mood)",
            ) == (
                f"partitioned_audit: refusing CREATE CAST (app_types.mood AS {target}): role {two_roles.app}, "
                "which creates it, is neither the audit owner nor a superuser, and the capture would run "
                f"app_types.mood_{target}(app_types.mood) with the rights of the audit owner"
            )
    finally:
        app.close()
    # Nor can a superuser give it one whose function the application role owns (and can replace).
    su_error = refused_as_superuser(two_roles, CREATE_CAST)
    assert su_error == (
        f"partitioned_audit: refusing CREATE CAST (app_types.mood AS json): role {two_roles.app}, which owns "
        "the function of it, is neither the audit owner nor a superuser, and the capture would run "
        "app_types.mood_json(app_types.mood) with the rights of the audit owner"
    )
    two_roles.run(two_roles.app, "INSERT INTO invoice VALUES (2, 20, 'angry')")
    payload = "object_payload" if two_roles.layout.name == "simple" else "row_data"
    rows = two_roles.run(
        two_roles.owner,
        f"SELECT {payload} FROM {two_roles.layout.table} ORDER BY {two_roles.layout.event_column}",
    )
    assert rows == [({"id": 1, "amount": 10},), ({"id": 2, "amount": 20, "mood": "angry"},)]


def test_with_the_guard_a_cast_made_before_it_is_still_refused_per_statement(two_roles: TwoRoles):
    give_the_table_a_column_of_the_app_roles_type(two_roles)
    two_roles.run(two_roles.app, EVIL_CAST.format(table=two_roles.layout.table), CREATE_CAST)
    two_roles.install_guard()
    before = two_roles.trail()
    assert refused_writes(two_roles) == [cast_refusal(two_roles)] * 3
    assert two_roles.trail() == before


def test_the_guard_going_away_is_reported_and_migrate_recomputes_the_argument(two_roles: TwoRoles):
    two_roles.install_guard()
    assert two_roles.casts_mode() == {"t"}  # the owner's table of built-in types: nothing to check
    two_roles.run(None, "DROP EVENT TRIGGER dpa_guard_cast")
    found = problems(two_roles)
    assert len(found) == 5 and all(p.endswith(" is outdated or belongs to another layout") for p in found)
    # The rest of the guard refuses the owner's DROP TRIGGER: a superuser runs migrate.
    conn = connect(two_roles.dbname)
    try:
        assert enable(conn.cursor(), two_roles.layout, two_roles.spec()) is True
        conn.commit()
    finally:
        conn.close()
    assert two_roles.casts_mode() == {"o"}
    assert problems(two_roles) == []


def test_casts_of_trusted_roles_run_and_unrelated_casts_stop_nothing(two_roles: TwoRoles):
    """The owner's own cast is used, and another role's cast on a type no audited column
    uses stops nothing (without the guard, which would refuse that cast)."""
    two_roles.run(None, f"CREATE SCHEMA app_types AUTHORIZATION {two_roles.app}")
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
    # PostgreSQL lets only a type's owner (or a superuser) create a cast from it.
    app = two_roles.session(two_roles.app)
    try:
        assert (
            refused(app, "CREATE CAST (level AS json) WITH INOUT")
            == "must be owner of type level or type json"
        )
    finally:
        app.close()
    two_roles.run(two_roles.app, "INSERT INTO invoice VALUES (2, 20, 'high')")
    payload = "object_payload" if two_roles.layout.name == "simple" else "row_data"
    rows = two_roles.run(
        two_roles.owner,
        f"SELECT {payload} FROM {two_roles.layout.table} ORDER BY {two_roles.layout.event_column} DESC LIMIT 1",
    )
    assert rows == [({"id": 2, "amount": 20, "level": {"is": "high"}},)]


def refused_as_superuser(setup: TwoRoles, statement: str) -> str:
    conn = connect(setup.dbname)
    try:
        return refused(conn, statement)
    finally:
        conn.close()


# F3: the owner of an audited table, where a superuser installed the audit objects and the
# guard, gives its table a column of its own type with a cast that makes it a superuser.
F3_TYPE = "CREATE TYPE mood AS ENUM ('ok')"
F3_FUNCTION = """
CREATE FUNCTION mood_json(mood) RETURNS json LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE 'ALTER ROLE {role} SUPERUSER';
    RETURN to_json($1::text);
END $$
"""
F3_CAST = "CREATE CAST (mood AS json) WITH FUNCTION mood_json(mood)"
F3_COLUMN = "ALTER TABLE invoice ADD COLUMN m mood DEFAULT 'ok'"


def is_superuser(setup: TwoRoles) -> bool:
    rows = setup.run(None, f"SELECT rolsuper FROM pg_roles WHERE rolname = '{setup.app}'")
    return bool(rows[0][0])


def test_the_owner_of_an_audited_table_cannot_become_superuser(superuser_audit: SuperuserAudit):
    setup = superuser_audit
    assert setup.casts_mode() == {"t"}
    before = setup.trail()
    setup.run(setup.app, F3_TYPE, F3_FUNCTION.format(role=setup.app))
    owner = setup.session(setup.app)
    try:
        assert refused(owner, F3_CAST) == (
            f"partitioned_audit: refusing CREATE CAST (public.mood AS json): role {setup.app}, which creates it, "
            "is neither the audit owner nor a superuser, and the capture would run public.mood_json(public.mood) "
            "with the rights of the audit owner"
        )
        # Without a cast, the column alone would leave the triggers trusting a type the
        # table's owner owns: refused too, so their argument is never stale.
        assert refused(owner, F3_COLUMN) == (
            "partitioned_audit: refusing ALTER TABLE on public.invoice: its rows would hold type public.mood, "
            f"which belongs to role {setup.app}, while its capture triggers trust that only the audit owner or "
            "a superuser owns its types"
        )
    finally:
        owner.close()
    # A superuser making the cast with the table owner's function is refused as well.
    assert refused_as_superuser(setup, F3_CAST) == (
        f"partitioned_audit: refusing CREATE CAST (public.mood AS json): role {setup.app}, which owns the "
        "function of it, is neither the audit owner nor a superuser, and the capture would run "
        "public.mood_json(public.mood) with the rights of the audit owner"
    )
    setup.run(setup.app, "INSERT INTO invoice VALUES (2, 20)")
    assert not is_superuser(setup)
    after = setup.trail()
    assert after[:-1] == before and len(after) == len(before) + 1


def test_schema_changes_of_built_in_or_trusted_types_pass_the_guard(superuser_audit: SuperuserAudit):
    setup = superuser_audit
    # What Django's AddField writes for a CharField with a default.
    setup.run(
        setup.app,
        'ALTER TABLE "invoice" ADD COLUMN "note" varchar(20) DEFAULT \'\' NOT NULL',
        'ALTER TABLE "invoice" ALTER COLUMN "note" DROP DEFAULT',
    )
    setup.run(None, "CREATE TYPE level AS ENUM ('low', 'high')")  # the audit owner's type
    setup.run(setup.app, "ALTER TABLE invoice ADD COLUMN level level")
    setup.run(setup.app, "INSERT INTO invoice VALUES (2, 20, 'n', 'high')")
    payload = "object_payload" if setup.layout.name == "simple" else "row_data"
    rows = setup.run(
        None, f"SELECT {payload} FROM {setup.layout.table} ORDER BY {setup.layout.event_column} DESC LIMIT 1"
    )
    assert rows == [({"id": 2, "amount": 20, "note": "n", "level": "high"},)]
    assert setup.casts_mode() == {"t"}


def test_without_the_guard_the_f3_sequence_goes_through_but_never_runs(superuser_audit: SuperuserAudit):
    """A superuser dropped the guard and migrate ran again: the table owner may create its
    cast and column, and the capture then refuses its writes."""
    setup = superuser_audit
    setup.run(None, "DROP EVENT TRIGGER dpa_guard_cast", "DROP EVENT TRIGGER dpa_guard_alter")
    conn = setup.owner_session()
    enable(conn.cursor(), setup.layout, setup.spec())
    conn.commit()
    conn.close()
    assert setup.casts_mode() == {"o"}
    before = setup.trail()
    setup.run(setup.app, F3_TYPE, F3_FUNCTION.format(role=setup.app), F3_CAST, F3_COLUMN)
    owner = setup.session(setup.app)
    try:
        assert refused(owner, "INSERT INTO invoice VALUES (2, 20)") == (
            "partitioned_audit: refusing to audit a write to public.invoice: type public.mood belongs to role "
            f"{setup.app}, which could give it a cast to json that would run with the rights of the audit "
            "owner, and no guard refuses such a cast"
        )
    finally:
        owner.close()
    assert not is_superuser(setup)
    assert setup.trail() == before


def test_a_type_of_the_owner_with_a_cast_of_another_role_is_not_trusted(two_roles: TwoRoles):
    """The owner gave its own type a cast whose function the application role owns (and can
    replace), before the guard: the triggers do not skip the check for it."""
    two_roles.run(None, f"CREATE SCHEMA app_types AUTHORIZATION {two_roles.app}")
    two_roles.run(
        two_roles.owner,
        "CREATE TYPE level AS ENUM ('low', 'high')",
    )
    two_roles.run(
        two_roles.app,
        f"GRANT USAGE ON SCHEMA app_types TO {two_roles.owner}",
        "CREATE FUNCTION app_types.level_json(l level) RETURNS json LANGUAGE plpgsql AS"
        f" $$ BEGIN DELETE FROM public.{two_roles.layout.table}; RETURN to_json(l::text); END $$",
    )
    two_roles.run(
        two_roles.owner,
        "CREATE CAST (level AS json) WITH FUNCTION app_types.level_json(level)",
        "ALTER TABLE invoice ADD COLUMN level level",
    )
    two_roles.install_guard()
    assert two_roles.casts_mode() == {"c"}
    before = two_roles.trail()
    app = two_roles.session(two_roles.app)
    try:
        assert refused(app, "INSERT INTO invoice VALUES (2, 20, 'high')") == (
            "partitioned_audit: refusing to audit a write to public.invoice: the cast from public.level to json"
            f" runs app_types.level_json(public.level) of role {two_roles.app}, which would run with the rights"
            " of the audit owner"
        )
    finally:
        app.close()
    assert two_roles.trail() == before


# The app role's type reached only through a domain (the owner's) over an array of a
# composite type (the owner's): every check follows it to the same type.
NESTED_TYPES = (
    "CREATE TYPE feeling AS (at timestamptz, mood app_types.mood)",
    "CREATE DOMAIN feelings AS feeling[]",
)
NESTED_COLUMN = "ALTER TABLE invoice ADD COLUMN feelings feelings"


def nested_types(setup: TwoRoles) -> None:
    """The app role's enum, and the owner's composite type and domain over it."""
    the_app_roles_type(setup)
    setup.run(setup.owner, *NESTED_TYPES)


#: A value of the nested column, for an INSERT.
NESTED_VALUE = "ARRAY[ROW(now(), 'angry')::feeling]::feelings"


def test_a_type_reached_through_a_domain_over_an_array_of_a_composite_is_found_by_every_check(
    two_roles: TwoRoles,
):
    """dpa_foreign_type() (no guard), dpa_check_json_casts() (the guard on) and the guard's
    ALTER TABLE check follow the same types (dpa_types_reached): each finds the app role's
    enum behind the owner's domain, array and composite type."""
    nested_types(two_roles)
    two_roles.run(two_roles.owner, NESTED_COLUMN)
    before = two_roles.trail()
    # Without the guard: the type's owner.
    assert two_roles.casts_mode() == {"o"}
    assert refused_writes(two_roles, NESTED_VALUE) == [ownership_refusal(two_roles)] * 3
    # With the guard, a cast made before it: the cast.
    two_roles.run(two_roles.app, EVIL_CAST.format(table=two_roles.layout.table), CREATE_CAST)
    two_roles.install_guard()
    assert two_roles.casts_mode() == {"c"}
    assert refused_writes(two_roles, NESTED_VALUE) == [cast_refusal(two_roles)] * 3
    assert two_roles.trail() == before
    # The guard, for a table whose triggers trust its types: the column that would reach it.
    two_roles.run(two_roles.owner, "ALTER TABLE invoice DROP COLUMN feelings")
    two_roles.install_guard()
    assert two_roles.casts_mode() == {"t"}
    owner = two_roles.owner_session()
    try:
        assert refused(owner, NESTED_COLUMN) == (
            "partitioned_audit: refusing ALTER TABLE on public.invoice: its rows would hold type app_types.mood, "
            f"which belongs to role {two_roles.app}, while its capture triggers trust that only the audit owner "
            "or a superuser owns its types"
        )
    finally:
        owner.close()
    # Handed over to the owner, the enum passes every check, and its value is recorded.
    two_roles.run(
        None, "DROP CAST (app_types.mood AS json)", f"ALTER TYPE app_types.mood OWNER TO {two_roles.owner}"
    )
    two_roles.run(two_roles.owner, NESTED_COLUMN)
    two_roles.run(
        two_roles.app, "INSERT INTO invoice VALUES (2, 20, ARRAY[ROW(NULL, 'angry')::feeling]::feelings)"
    )
    payload = "object_payload" if two_roles.layout.name == "simple" else "row_data"
    rows = two_roles.run(
        two_roles.owner,
        f"SELECT {payload} FROM {two_roles.layout.table} ORDER BY {two_roles.layout.event_column} DESC LIMIT 1",
    )
    assert rows == [({"id": 2, "amount": 20, "feelings": [{"at": None, "mood": "angry"}]},)]
