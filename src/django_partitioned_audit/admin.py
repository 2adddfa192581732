"""Read-only admin for the audit entries (1.0.4 shipped ``TriggerAuditEntryAdmin``)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin


class TriggerAuditEntryAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Lists audit entries; nobody can add, change or delete them from the admin."""

    list_display = ("audit_entry_created", "object_table", "audit_operation")
    list_filter = ("object_table", "audit_operation")

    def has_add_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False
