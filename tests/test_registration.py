"""Registration mistakes give system checks with ids and a readable failure at migrate."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command

from django_partitioned_audit.checks import check_registration, check_settings
from django_partitioned_audit.sync import sync


@contextmanager
def app_attr(label: str, **values: Any) -> Iterator[None]:
    config = apps.get_app_config(label)
    missing = object()
    saved = {name: config.__dict__.get(name, missing) for name in values}
    for name, value in values.items():
        setattr(config, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is missing:
                delattr(config, name)
            else:
                setattr(config, name, value)


def _ids(messages: list[Any]) -> list[str]:
    return [m.id for m in messages]


def test_clean_project_has_no_errors():
    assert check_registration() == [] and check_settings() == []


def test_unknown_model_name():
    with app_attr("library", trigger_audit_models=("Book", "Bok")):
        (error,) = check_registration()
    assert error.id == "partitioned_audit.E001"
    assert (
        error.msg
        == "library.apps.LibraryConfig.trigger_audit_models names 'Bok', which is not a model of app 'library'."
    )


def test_proxy_models_are_refused_and_unmanaged_ones_accepted(settings):
    from django.db import models

    class BookProxy(apps.get_model("library", "Book")):  # type: ignore[misc]
        class Meta:
            proxy = True
            app_label = "library"

    class External(models.Model):
        class Meta:
            managed = False
            app_label = "library"

    try:
        with app_attr("library", trigger_audit_models=("BookProxy", "External")):
            messages = check_registration()
    finally:
        del apps.all_models["library"]["bookproxy"], apps.all_models["library"]["external"]
        apps.clear_cache()
    assert _ids(messages) == ["partitioned_audit.E002"]
    assert "'BookProxy', a proxy model" in messages[0].msg


def test_model_in_both_lists():
    with app_attr("library", audit_disabled=("Book",)):
        (error,) = check_registration()
    assert error.id == "partitioned_audit.E003"
    assert error.msg == "library.Book is listed in both trigger_audit_models and audit_disabled."


def test_string_instead_of_tuple_is_understood():
    with app_attr("library", trigger_audit_models="Book"):
        assert check_registration() == []


def test_bad_column_settings(settings):
    settings.DPA_MASKED_COLUMNS = {"shop.customer": ["pasword"], "shop.nothing": ["x"]}
    assert sorted(_ids(check_registration())) == ["partitioned_audit.E004", "partitioned_audit.E005"]
    settings.DPA_MASKED_COLUMNS = ["shop.customer"]
    (error,) = check_settings()
    assert error.id == "partitioned_audit.E010" and "DPA_MASKED_COLUMNS must map" in error.msg


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("DPA_AUDIT_TABLE_MANAGER", "no.such.Manager", "cannot be imported"),
        ("DPA_AUDIT_TABLE_MANAGER", "django.db.models.Model", "is not an AuditTableManager subclass"),
        ("DPA_AUDIT_SCHEMA", "", "audit schema must be a non-empty name"),
        ("DPA_AUDIT_SCHEMA", "x" * 64, "at most 63 bytes"),
        ("DPA_PAYLOAD_GIN_INDEX", "yes", "must be True or False"),
    ],
)
def test_bad_settings_are_reported(settings, name, value, fragment):
    setattr(settings, name, value)
    (error,) = check_settings()
    assert error.id == "partitioned_audit.E010"
    assert name in error.msg and fragment in error.msg


def test_a_mistyped_manager_stops_migrate_with_e010_only(db, settings):
    """The database check used to raise ImproperlyConfigured, a long traceback, before the
    system check framework could report E010."""
    from django.core.management.base import SystemCheckError

    settings.DPA_AUDIT_TABLE_MANAGER = "no.such.Manager"
    with pytest.raises(SystemCheckError) as info:
        call_command("migrate", "--plan", skip_checks=False, stdout=io.StringIO())
    assert "(partitioned_audit.E010) DPA_AUDIT_TABLE_MANAGER='no.such.Manager' cannot be imported" in str(
        info.value
    )


def test_migrate_fails_readably_and_changes_nothing(db):
    from django.db import connection

    from partitioned_audit import catalog

    with connection.cursor() as cursor:
        before = catalog.audit_triggers(cursor)
    with app_attr("library", trigger_audit_models=("Book", "Bok")):
        with pytest.raises(ImproperlyConfigured) as info:
            call_command("migrate", verbosity=0)
    assert str(info.value) == (
        "django-partitioned-audit cannot install triggers:\n"
        "  partitioned_audit.E001: library.apps.LibraryConfig.trigger_audit_models names 'Bok', "
        "which is not a model of app 'library'. Check the spelling; abstract models have no table "
        "and cannot be audited."
    )
    with connection.cursor() as cursor:
        assert catalog.audit_triggers(cursor) == before


def test_sync_skips_models_whose_table_does_not_exist_yet(db):
    import io

    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE library_book RENAME TO library_book_later")
    out = io.StringIO()
    sync("default", verbosity=1, stdout=out)
    assert "Auditing library.Book postponed: table 'library_book' does not exist yet" in out.getvalue()
