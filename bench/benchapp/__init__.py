"""A tiny Django app whose models map the benchmark tables."""

#: The unaudited baseline, then each audited variant: this project's layouts, then its peers.
VARIANTS = (
    "baseline",
    "simple",
    "simple_gin",
    "advanced",
    "simple_ctx",
    "advanced_ctx",
    "simple_row",
    "advanced_row",
    "pgh_row",
    "pgh_stmt",
    "auditrum",
    "dual",
)
#: django-pghistory's two trigger levels, by variant.
PGHISTORY_LEVELS = {"pgh_row": "Row", "pgh_stmt": "Statement"}
#: auditrum's variant: its row triggers, registered in ``bench/benchapp/audit.py``.
AUDITRUM = "auditrum"
#: The tables of a variant that its write workloads use, by prefix.
PREFIXES = ("pgb", "bulk", "orm", "store")
#: pgbench's TPC-B tables and their keys.
TPCB_TABLES = {
    "pgbench_accounts": "aid",
    "pgbench_branches": "bid",
    "pgbench_tellers": "tid",
    "pgbench_history": "id",
}
