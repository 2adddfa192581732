"""Django integration of django-partitioned-audit: a thin layer over the ``partitioned_audit`` engine."""

__version__ = "2.0.0.dev0"
