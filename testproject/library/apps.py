import django
from django.apps import AppConfig


class LibraryConfig(AppConfig):
    name = "library"
    default_auto_field = "django.db.models.BigAutoField"
    trigger_audit_models = ("Book", "Weird", "Shelved", "Reading") + (
        ("Copy",) if django.VERSION >= (5, 2) else ()
    )
    audit_disabled = ("Loan",)
