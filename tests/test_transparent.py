"""Registering every model of a project, contrib and many-to-many tables included, breaks nothing."""

from __future__ import annotations

from contextlib import ExitStack

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.db import connection

from django_partitioned_audit.models import SimpleAuditEntry
from django_partitioned_audit.sync import sync
from partitioned_audit import catalog
from tests.conftest import BOTH_LEVELS
from tests.test_install import READINGS
from tests.test_registration import app_attr


@pytest.mark.parametrize("level", BOTH_LEVELS)
def test_every_model_of_the_project_can_be_audited(db, settings, level):
    settings.DPA_CAPTURE_LEVEL = level
    with ExitStack() as stack:
        expected = set()
        for config in apps.get_app_configs():
            models = [m for m in config.get_models(include_auto_created=True) if not m._meta.proxy]
            if not models or config.label == "django_partitioned_audit":
                continue
            disabled = tuple(getattr(config, "audit_disabled", ()))
            names = tuple(m.__name__ for m in models if m.__name__ not in disabled)
            stack.enter_context(app_attr(config.label, trigger_audit_models=names))
            expected |= {m._meta.db_table.split('"."')[-1] for m in models if m.__name__ not in disabled}
        sync("default", verbosity=0)
        with connection.cursor() as cursor:
            audited = {t.table for t in catalog.audit_triggers(cursor)}
        assert audited == expected | READINGS  # the partitions of the unmanaged Reading table
        assert {"auth_user_groups", "auth_group_permissions", "django_session", "django_admin_log"} <= audited

        user = User.objects.create_user("ann", password="pw")  # noqa: S106
        group = Group.objects.create(name="staff")
        user.groups.add(group)  # the auto-created through table
        user.groups.clear()
        entries = SimpleAuditEntry.objects.filter(object_table="auth_user_groups")
        assert [e.audit_operation for e in entries] == ["I", "D"]
        assert entries[0].get_row_data()["group_id"] == group.pk
        call_command("check")  # no system check complains
