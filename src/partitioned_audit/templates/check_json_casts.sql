-- dpa_check_json_casts, shared by both layouts: what the capture functions call per
-- statement on a table whose triggers pass 'c' as their fourth argument (the guard is on,
-- some type of the table belongs to another role), and dpa_check_type_owners() for a table
-- of types that are not built in (_CASTS_NOTE in layouts.py). It raises rather than let a
-- conversion of a row to jsonb run code of another role with the audit owner's rights.
-- Deployed from the next line on, byte for byte: a change is a new object version.
-- Raises if converting a row of rel to jsonb could run code of a role other than the audit
-- owner (current_user in the capture) or a superuser. Without the guard's event trigger
-- refusing such casts, a type's owner can create one at any moment, so every type a row
-- holds must belong to the audit owner or a superuser, which no other role can then give
-- one; and in any case no cast to json of such a role may exist from one of them.
CREATE OR REPLACE FUNCTION {check_json_casts}(rel oid) RETURNS boolean
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    _cast record;
    _type text[];
BEGIN
    IF NOT EXISTS (SELECT FROM pg_event_trigger WHERE evtname = {cast_guard} AND evtenabled <> 'D') THEN
        _type := {foreign_type}(rel, current_user);
        IF _type IS NOT NULL THEN
            RAISE EXCEPTION 'partitioned_audit: refusing to audit a write to %: type % belongs to role %, which could give it a cast to json that would run with the rights of the audit owner, and no guard refuses such a cast',
                rel::regclass, _type[1], _type[2]
                USING ERRCODE = 'insufficient_privilege',
                      HINT = format('Run migrate once as a superuser, which installs the guard, or have role %s own the type (ALTER TYPE %s OWNER TO %s).',
                                    current_user, _type[1], current_user);
        END IF;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_cast c JOIN pg_proc p ON p.oid = c.castfunc
                     JOIN pg_roles o ON o.oid = p.proowner
                    WHERE c.castsource >= 16384 AND c.casttarget = 'json'::regtype
                      AND NOT o.rolsuper AND o.rolname <> current_user) THEN
        RETURN true;  -- no cast to json of an untrusted role anywhere
    END IF;
    -- The types to_jsonb() meets in a row of rel that may have a cast of their own.
    SELECT c.castsource::regtype AS source, c.castfunc::regprocedure AS func, o.rolname AS owner
      INTO _cast
      FROM {types_reached}(rel) AS types(oid)
      JOIN pg_cast c ON c.castsource = types.oid AND c.casttarget = 'json'::regtype
      JOIN pg_proc p ON p.oid = c.castfunc
      JOIN pg_roles o ON o.oid = p.proowner
     WHERE NOT o.rolsuper AND o.rolname <> current_user
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'partitioned_audit: refusing to audit a write to %: the cast from % to json runs % of role %, which would run with the rights of the audit owner',
            rel::regclass, _cast.source, _cast.func, _cast.owner
            USING ERRCODE = 'insufficient_privilege',
                  HINT = format('Drop the cast (DROP CAST (%s AS json)), or have role %s own its function.',
                                _cast.source, current_user);
    END IF;
    RETURN true;
END
$fn$;
