-- <audit table>_object_entries, one function per layout (Layout.object_function in
-- layouts.py): the read view's rows of one object, what filter_object() and history() read,
-- by a plan each connection keeps.
-- One object's entries name no time, so a plan of the read view keeps every partition of
-- the audit table and, through the join, every partition of the context table: planning it
-- took 0.6-1.1 ms at 13 monthly partitions (15 per table with the next month and DEFAULT),
-- 4-5 times its execution, and grows by about 0.1 ms per pair of partitions
-- (docs/performance.md, "One object's history without planning"). Nothing in such a query
-- can prune at plan time, so the generic plan (the object's table and key as parameters) is
-- the plan PostgreSQL makes for any object: a probe of the (table, key) index in each audit
-- partition and, per entry found, one probe of the context table's (txid, context id) index
-- in the partition of the entry's time, the others pruned when it runs. A PL/pgSQL function
-- keeps its statements' plans for the life of the connection (of each server connection,
-- behind a pooler): the first call plans, every later one runs the kept plan.
-- plan_cache_mode = force_generic_plan makes that plan the generic one from the first call;
-- left to choose, PostgreSQL compares the generic plan's estimate (a context probe counted in
-- every partition) with a custom plan's and plans anew at every call. Parallel workers and
-- JIT are off for it, as for any read of a few rows: the planner, which costs a context
-- probe in every partition for each entry it expects, could start workers for an object it
-- expects many entries of.
-- SECURITY INVOKER (the default): it reads the read view with the caller's rights, so a role
-- reads through it exactly what it may read from the view, and it is granted EXECUTE where
-- the views are granted SELECT. It returns the view's row type, so it is dropped before the
-- views and created after them (drop_views() and create_view() in ddl.py).
-- Of the table of_table in of_schema (a 1.0.4 simple row, which has no schema, counting as
-- public), whose key is of_key.
-- Deployed from the next line on, byte for byte: a change is a new object version.
CREATE FUNCTION {function}(of_table text, of_schema text, of_key text)
    RETURNS SETOF {view} LANGUAGE plpgsql STABLE ROWS 10
    SET plan_cache_mode = force_generic_plan
    SET max_parallel_workers_per_gather = 0
    SET jit = off
AS $fn$
BEGIN
    RETURN QUERY SELECT v.* FROM {view} AS v
     WHERE v.{table_column} OPERATOR(pg_catalog.=) of_table
       AND (v.{schema_column} OPERATOR(pg_catalog.=) of_schema
            OR (of_schema OPERATOR(pg_catalog.=) 'public' AND v.{schema_column} IS NULL))
       AND v.object_pk OPERATOR(pg_catalog.=) of_key;
END
$fn$
