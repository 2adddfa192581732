-- dpa_context_object, shared by both layouts: the writer's context (the setting
-- CONTEXT_SETTING in layouts.py, which a writer sets with SET LOCAL) as a JSON object, as
-- the capture functions record it. STABLE, as jsonb_build_object is, so that the planner
-- inlines it into the capture's expression that reads the context: it inlines no IMMUTABLE
-- function whose body calls a STABLE one, and a SQL function left a call builds its plan
-- again in every transaction (tens of microseconds on each single-row write). Every name
-- is schema-qualified, as it runs under the caller's search_path.
-- Deployed from the next line on, byte for byte: a change is a new object version.
-- The context as a JSON object: one set by hand as another JSON value is wrapped in one.
CREATE OR REPLACE FUNCTION {context_object}(c jsonb) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
    SELECT CASE WHEN c IS NULL OR pg_catalog.jsonb_typeof(c) OPERATOR(pg_catalog.=) 'object' THEN c
                ELSE pg_catalog.jsonb_build_object('value', c) END
$fn$;
