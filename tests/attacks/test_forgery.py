"""The application role tries to append rows that look like another table's history."""

from __future__ import annotations

from partitioned_audit.layouts import NEW_TABLE
from tests.attacks.conftest import TwoRoles, refused


def test_app_role_cannot_attach_the_capture_function_to_a_table_of_its_own(two_roles: TwoRoles):
    before = two_roles.trail()
    app = two_roles.session(two_roles.app)
    try:
        app.cursor().execute("CREATE TEMP TABLE invoice (id int PRIMARY KEY, amount numeric)")
        error = refused(
            app,
            f"CREATE TRIGGER forge AFTER INSERT ON pg_temp.invoice REFERENCING NEW TABLE AS {NEW_TABLE}"
            f" FOR EACH STATEMENT EXECUTE FUNCTION public.{two_roles.layout.function}"
            "('{id}', '{}', '{}')",
        )
        # PostgreSQL 15 names the function schema-qualified, older versions do not.
        assert error.startswith("permission denied for function ") and error.endswith(
            two_roles.layout.function
        )
        # Nor can it call the helpers the capture function uses.
        for call in ("public.dpa_pk_text('{}'::jsonb, '{}')", "public.dpa_redact('{}'::jsonb, '{}', '{}')"):
            assert refused(app, f"SELECT {call}").startswith("permission denied for function ")
    finally:
        app.close()
    assert two_roles.trail() == before
