-- dpa_context_object, shared by both layouts: the writer's context (the setting
-- CONTEXT_SETTING in layouts.py, which a writer sets with SET LOCAL) as a JSON object, as
-- the capture functions record it. Inlined into them, as dpa_pk_text is: every name is
-- schema-qualified.
-- Deployed from the next line on, byte for byte: a change is a new object version.
-- The context as a JSON object: a statement's first row holds an object, and its other rows
-- a number that refers to it, so a context set by hand as another JSON value is wrapped.
CREATE OR REPLACE FUNCTION {context_object}(c jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT CASE WHEN c IS NULL OR pg_catalog.jsonb_typeof(c) OPERATOR(pg_catalog.=) 'object' THEN c
                ELSE pg_catalog.jsonb_build_object('value', c) END
$fn$;
