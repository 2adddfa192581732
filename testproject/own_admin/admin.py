"""A project that registers the audit entries itself, as 1.0.4 projects did."""

from django.contrib import admin

from django_partitioned_audit.admin import TriggerAuditEntryAdmin
from django_partitioned_audit.models import SimpleAuditEntry


class OwnAuditAdmin(TriggerAuditEntryAdmin):
    list_per_page = 7


admin.site.register(SimpleAuditEntry, OwnAuditAdmin)
