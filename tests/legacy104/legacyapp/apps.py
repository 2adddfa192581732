from django.apps import AppConfig


class LegacyConfig(AppConfig):
    name = "legacyapp"
    trigger_audit_models = ("Item",)
