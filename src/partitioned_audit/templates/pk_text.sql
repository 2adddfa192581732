-- dpa_pk_text, shared by both layouts: the key of an audited row as the capture stores it in
-- object_pk, from the row as jsonb and the key's columns (TableSpec.pk in layouts.py): the
-- value's text for a one-column key, else a JSON array of the values in key order. The
-- captures call it for composite keys only (a one-column key is read in place). It runs
-- under the caller's search_path: every name in it is schema-qualified (_QUALIFIED_NOTE in
-- layouts.py). The comment opening the deployed text covers the SQL helpers.
-- Deployed from the next line on, byte for byte: a change is a new object version.

-- dpa_context_object is inlined into the capture functions' expression that reads the
-- context; dpa_pk_text and dpa_redact, whose bodies hold a sub-select, run as calls, for
-- composite keys and excluded or masked columns only. Either way they run under the
-- caller's search_path: every name is qualified (see _QUALIFIED_NOTE).
CREATE OR REPLACE FUNCTION {pk_text}(j jsonb, pk text[]) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT CASE WHEN pg_catalog.cardinality(pk) OPERATOR(pg_catalog.=) 1 THEN j OPERATOR(pg_catalog.->>) pk[1]
                ELSE (SELECT pg_catalog.jsonb_agg(j OPERATOR(pg_catalog.->) k ORDER BY o)
                        FROM pg_catalog.unnest(pk) WITH ORDINALITY AS u(k, o))::pg_catalog.text
           END
$fn$;
