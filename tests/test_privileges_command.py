"""``manage.py audit_privileges``: the Django face of the privileges action."""

from __future__ import annotations

import io
import json
import uuid

import pytest
from django.core.management import CommandError, call_command

from tests.helpers import sql


@pytest.fixture
def app_role(db):
    name = f"dpa_cmd_{uuid.uuid4().hex[:8]}"
    sql(f"CREATE ROLE {name}")
    sql(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {name}")
    yield name
    sql(f"DROP OWNED BY {name}")
    sql(f"DROP ROLE {name}")


def test_audit_privileges_closes_the_trail_and_is_idempotent(app_role):
    out = io.StringIO()
    call_command("audit_privileges", "--app-role", app_role, "--read", stdout=out)
    text = out.getvalue()
    assert f"on table public.audit_simple from {app_role}" in text
    assert text.rstrip().endswith(
        f"Role {app_role} has no privilege on the audit objects and may read the views."
    )
    allowed = sql(
        "SELECT has_table_privilege(%s, 'audit_simple', 'INSERT'), has_table_privilege(%s, 'audit_simple_view', 'SELECT'),"
        " has_table_privilege(%s, 'library_book', 'INSERT')",
        [app_role, app_role, app_role],
    )
    assert allowed == [(False, True, True)]  # the application's own tables keep their grants
    out = io.StringIO()
    call_command("audit_privileges", "--app-role", app_role, "--read", "--json", stdout=out)
    assert json.loads(out.getvalue()) == {
        "action": "privileges",
        "role": app_role,
        "read": True,
        "changes": [],
    }


def test_audit_privileges_needs_a_real_role(db):
    with pytest.raises(CommandError, match="role 'nobody_here' does not exist"):
        call_command("audit_privileges", "--app-role", "nobody_here")
    with pytest.raises(CommandError, match="the following arguments are required: --app-role"):
        call_command("audit_privileges")
