"""Benchmarks of django-partitioned-audit: run ``make bench`` or ``make bench-quick``."""
