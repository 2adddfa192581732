from django.apps import AppConfig


class ScaleAppConfig(AppConfig):
    name = "bench.scaleapp"
    label = "scaleapp"
    default_auto_field = "django.db.models.BigAutoField"
    trigger_audit_models = ("ScaleCustomer", "ScaleOrder", "ScaleItem")
