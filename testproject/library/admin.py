from django.contrib import admin

from django_partitioned_audit.admin import AuditHistoryAdminMixin

from .models import Book


@admin.register(Book)
class BookAdmin(AuditHistoryAdminMixin, admin.ModelAdmin):
    list_display = ("isbn", "title")
