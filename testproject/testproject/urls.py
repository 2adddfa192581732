"""The admin, for the admin tests and the screenshots in docs/admin.md."""

from django.contrib import admin
from django.urls import path

urlpatterns = [path("admin/", admin.site.urls)]
