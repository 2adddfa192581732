-- dpa_refuse_write, shared by both layouts: the function of the read views' INSTEAD OF
-- trigger (create_view() in ddl.py). A plain view is automatically updatable, and a write
-- through it runs with the view owner's rights: this refuses every such write, whoever
-- makes it and whatever was granted.
-- Deployed from the next line on, byte for byte: a change is a new object version.
CREATE OR REPLACE FUNCTION {refuse_write}() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    RAISE EXCEPTION 'partitioned_audit: % is read-only: audit rows are written by the capture triggers only', TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$fn$;
