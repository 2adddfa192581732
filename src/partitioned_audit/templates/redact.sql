-- dpa_redact, shared by both layouts: a row as the trail keeps it, from the row as jsonb:
-- the excluded columns left out (TableSpec.excluded in layouts.py; the capture adds the
-- table's virtual generated columns, _VIRTUAL_NOTE), the masked ones (TableSpec.masked)
-- holding "[masked]" where they hold a value (a JSON null stays null). Inlined into the
-- capture functions, as dpa_pk_text is: every name is schema-qualified.
-- Deployed from the next line on, byte for byte: a change is a new object version.
CREATE OR REPLACE FUNCTION {redact}(j jsonb, excluded text[], masked text[]) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT (j OPERATOR(pg_catalog.-) excluded) OPERATOR(pg_catalog.||) coalesce(
        (SELECT pg_catalog.jsonb_object_agg(
                    k, CASE WHEN (j OPERATOR(pg_catalog.->) k) OPERATOR(pg_catalog.=) 'null'::pg_catalog.jsonb
                            THEN 'null'::pg_catalog.jsonb ELSE '"[masked]"'::pg_catalog.jsonb END)
           FROM pg_catalog.unnest(masked) AS k
          WHERE j OPERATOR(pg_catalog.?) k AND NOT k OPERATOR(pg_catalog.=) ANY (excluded)),
        '{{}}'::pg_catalog.jsonb)
$fn$;
