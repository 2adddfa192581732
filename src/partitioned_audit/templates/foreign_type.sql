-- dpa_foreign_type, shared by both layouts: the first type a row of a table reaches
-- (dpa_types_reached, templates/types_reached.sql) that belongs to neither a superuser nor
-- the role given, with its owner. dpa_check_json_casts() refuses a write over such a type
-- when no guard keeps its owner from giving it a cast to json (_CASTS_NOTE in layouts.py).
-- Deployed from the next line on, byte for byte: a change is a new object version.
-- The first type dpa_types_reached() (templates/types_reached.sql) finds in a row of rel
-- that belongs to neither a superuser nor role trusted, as ARRAY[type, owner]; NULL if none.
CREATE OR REPLACE FUNCTION {foreign_type}(rel oid, trusted name) RETURNS text[]
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT ARRAY[types.oid::regtype::text, o.rolname::text]
      FROM {types_reached}(rel) AS types(oid)
      JOIN pg_type ty ON ty.oid = types.oid JOIN pg_roles o ON o.oid = ty.typowner
     WHERE NOT o.rolsuper AND o.rolname <> trusted
     ORDER BY types.oid
     LIMIT 1
$fn$;
