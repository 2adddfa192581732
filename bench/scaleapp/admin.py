from django.contrib import admin

from django_partitioned_audit.admin import AuditHistoryAdminMixin

from .models import ScaleCustomer, ScaleItem, ScaleOrder


@admin.register(ScaleOrder, ScaleCustomer, ScaleItem)
class ScaleAdmin(AuditHistoryAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    pass
