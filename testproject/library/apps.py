from django.apps import AppConfig


class LibraryConfig(AppConfig):
    name = "library"
    default_auto_field = "django.db.models.BigAutoField"
    trigger_audit_models = ("Book", "Weird", "Shelved")
    audit_disabled = ("Loan",)
