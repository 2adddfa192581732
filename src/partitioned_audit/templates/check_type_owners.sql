-- dpa_check_type_owners, shared by both layouts: what the capture functions call per
-- statement on a table whose triggers pass 'o' as their fourth argument (no guard, see
-- TableSpec.casts_mode and _CASTS_NOTE in layouts.py). One catalog lookup clears a table
-- of built-in types; any other goes to dpa_check_json_casts().
-- Deployed from the next line on, byte for byte: a change is a new object version.
-- Without the guard, what the capture calls per statement (see _CASTS_NOTE): a table of
-- built-in types only reaches no cast at all, which one lookup tells, with no SET clause
-- (every name is qualified, as in the capture: see _QUALIFIED_NOTE); any other table is
-- checked by dpa_check_json_casts(), which then checks its types' owners too.
CREATE OR REPLACE FUNCTION {check_type_owners}(rel oid) RETURNS boolean
LANGUAGE plpgsql STABLE AS $fn$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_attribute a
                    WHERE a.attrelid OPERATOR(pg_catalog.=) rel AND a.attnum OPERATOR(pg_catalog.>) 0
                      AND a.atttypid OPERATOR(pg_catalog.>=) 16384 AND NOT a.attisdropped) THEN
        RETURN true;
    END IF;
    RETURN {check_json_casts}(rel);
END
$fn$;
