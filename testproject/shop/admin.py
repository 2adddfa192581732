from django.contrib import admin

from django_partitioned_audit.admin import AuditHistoryAdminMixin

from .models import Customer, Order


@admin.register(Customer)
class CustomerAdmin(AuditHistoryAdminMixin, admin.ModelAdmin):
    list_display = ("name",)


@admin.register(Order)
class OrderAdmin(AuditHistoryAdminMixin, admin.ModelAdmin):
    list_display = ("id", "customer", "status", "total")
