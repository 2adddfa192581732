-- The types a row of rel holds that are not built in (oid 16384 and above): its columns'
-- types, the base type of a domain, the element type of an array, the attributes of a
-- composite type, at any depth; a built-in type holds only built-in ones, so the search
-- stops there. The one place this is written: made as the audit helper dpa_types_reached,
-- which dpa_foreign_type() and dpa_check_json_casts() follow, and as the guard's own
-- dpa_guard_types_reached, which its ALTER TABLE check follows (GUARD_TYPES_REACHED in
-- layouts.py says why it is another function). The function text below is deployed byte
-- for byte under both names: a change is a new object version.
-- No SET clause: the planner then inlines it into the query that names it in FROM, a
-- function call less per check. So every name is schema-qualified (_QUALIFIED_NOTE in
-- layouts.py), and its callers set their search_path anyway.
CREATE OR REPLACE FUNCTION {types_reached}(rel oid) RETURNS SETOF oid
LANGUAGE sql STABLE AS $fn$
    WITH RECURSIVE types(oid) AS (
            SELECT a.atttypid FROM pg_catalog.pg_attribute a
             WHERE a.attrelid OPERATOR(pg_catalog.=) rel AND a.attnum OPERATOR(pg_catalog.>) 0
               AND NOT a.attisdropped AND a.atttypid OPERATOR(pg_catalog.>=) 16384
        UNION
            SELECT inner_type.oid
              FROM types JOIN pg_catalog.pg_type ty ON ty.oid OPERATOR(pg_catalog.=) types.oid
             CROSS JOIN LATERAL (
                    SELECT ty.typbasetype
                    UNION ALL SELECT ty.typelem
                    UNION ALL SELECT a.atttypid FROM pg_catalog.pg_attribute a
                               WHERE a.attrelid OPERATOR(pg_catalog.=) ty.typrelid
                                 AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
                   ) AS inner_type(oid)
             WHERE inner_type.oid OPERATOR(pg_catalog.>=) 16384  -- no base type or element: 0
    )
    SELECT types.oid FROM types
$fn$;
