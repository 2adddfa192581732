-- dpa_context_fixed, shared by both layouts: the function of the context table's triggers
-- (protect_context_table() in ddl.py creates them, enabled ALWAYS). It refuses to update,
-- delete or truncate a context row, but for the engine's own maintenance (MAINTENANCE_ALLOWED
-- in ddl.py), which moves the rows of the DEFAULT partition into a new partition.
-- Deployed from the next line on, byte for byte: a change is a new object version.
-- Keeps the context rows as the capture wrote them: they go with their partition only, and
-- the engine's maintenance moves them out of the DEFAULT partition unchanged.
CREATE OR REPLACE FUNCTION {context_fixed}() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    IF {maintenance_allowed} THEN
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    RAISE EXCEPTION 'partitioned_audit: the rows of % are never changed nor removed but with their partition', TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$fn$;
