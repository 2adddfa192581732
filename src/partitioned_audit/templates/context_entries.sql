-- <audit table>_context_entries, one function per layout (Layout.context_function in
-- layouts.py): the context view's rows whose context contains one of the given objects,
-- what filter_context() reads for a key without a B-tree of its own (request_id, job, ...),
-- by a plan each connection keeps.
-- Such a search names no time, so a plan of the context view keeps every partition of the
-- context table (a probe of each one's GIN) and, for the LATERAL probe of each context
-- row's audit rows, every partition of the audit table: planning it took about 1 ms at 13
-- monthly partitions, as long as running it (docs/performance.md, "One request's entries
-- without planning"). Nothing in it can prune at plan time, so the generic plan is the
-- plan PostgreSQL makes for any search: a bitmap of each context partition's GIN and, per
-- context row found, one probe of the audit table's context id index in the partition of
-- its time, the others pruned when it runs. A PL/pgSQL function keeps its statements'
-- plans for the life of the connection (of each server connection, behind a pooler).
-- plan_cache_mode = force_generic_plan makes that plan the generic one from the first call.
-- The generic plan cannot know how many contexts an array of objects matches; PostgreSQL
-- guesses a tenth of each partition, where a sequential scan looks cheaper than the GIN:
-- enable_seqscan = off keeps it on the index, the way every such search is served.
-- Parallel workers and JIT are off for it, as for any read of a few rows.
-- The objects come as one jsonb array (a Django JSON parameter on every driver), made a
-- jsonb[] once per call: the statement compares against a variable, a parameter of its
-- generic plan. An empty array finds nothing.
-- SECURITY INVOKER (the default): it reads the context view with the caller's rights, so a
-- role reads through it exactly what it may read from the views, and it is granted EXECUTE
-- where the views are granted SELECT. It returns the read view's row type (the context
-- view's columns are the read view's), so it is dropped before the views and created after
-- them (drop_views() and create_view() in ddl.py).
-- Deployed from the next line on, byte for byte: a change is a new object version.
CREATE FUNCTION {function}(any_of jsonb)
    RETURNS SETOF {view} LANGUAGE plpgsql STABLE ROWS 10
    SET plan_cache_mode = force_generic_plan
    SET enable_seqscan = off
    SET max_parallel_workers_per_gather = 0
    SET jit = off
AS $fn$
DECLARE
    objects jsonb[] := ARRAY(SELECT pg_catalog.jsonb_array_elements(any_of));
BEGIN
    RETURN QUERY SELECT v.* FROM {context_view} AS v
     WHERE v.audit_context OPERATOR(pg_catalog.@>) ANY (objects);
END
$fn$
