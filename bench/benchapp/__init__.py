"""A tiny Django app whose models map the benchmark tables."""

#: The unaudited baseline, then each audited variant.
VARIANTS = ("baseline", "simple", "simple_gin", "advanced", "simple_ctx", "advanced_ctx")
