-- The guard: the event trigger function that keeps the capture objects as the engine made
-- them, and its two helpers; installed only by a superuser (create_guard() in layouts.py
-- says what it refuses), after its third helper (templates/types_reached.sql). The function texts below are deployed byte for byte: a change is
-- a new object version.
-- Whether query, the statement text the client sent, is one ALTER TABLE of rel (or of a
-- table it is a partition of) whose every USING is a plain cast of the column it converts
-- to the type it names: ALTER COLUMN c TYPE t [COLLATE x] USING c::t, as Django writes it.
-- Text can only be read conservatively: a statement run by a function (its text is not
-- the client's), several statements in one string, or a USING that is not such a cast,
-- answer false, and the rewrite is refused.
CREATE OR REPLACE FUNCTION {plain_casts}(query text, rel oid) RETURNS boolean
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    _ident constant text := '(?:"(?:[^"]|"")+"|[[:alpha:]_][[:alnum:]_$]*)';
    _type constant text := _ident || '(?:\.' || _ident || ')?(?:\s+' || _ident || ')*'
                           || '(?:\s*\([0-9\s,]*\))?(?:\s+' || _ident || ')*(?:\s*\[\s*\])*';
    _text text := btrim(query, E' \t\r\n;');
    _target text[];
    _cast text[];
    _plain int := 0;
BEGIN
    IF position(';' in _text) > 0 THEN
        RETURN false;
    END IF;
    -- The table the statement names, matched by name: this function's search_path is not
    -- the session's, so the name is not resolved. rel itself, or a table it is a partition of.
    _target := regexp_match(_text, '^ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?(?:(' || _ident
                                   || ')\s*\.\s*)?(' || _ident || ')\s', 'i');
    IF _target IS NULL OR NOT EXISTS (
        SELECT FROM (SELECT rel AS relid UNION ALL SELECT a.relid FROM pg_partition_ancestors(rel) AS a) AS t
          JOIN pg_class c ON c.oid = t.relid JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relname = {identifier}(_target[2])
           AND (_target[1] IS NULL OR n.nspname = {identifier}(_target[1]))) THEN
        RETURN false;
    END IF;
    FOR _cast IN SELECT regexp_matches(_text,
            '\mALTER\s+(?:COLUMN\s+)?(' || _ident || ')\s+(?:SET\s+DATA\s+)?TYPE\s+(' || _type
            || ')\s+USING\s+(' || _ident || ')\s*::\s*(' || _type || ')\s*(?=,|$)', 'gi') LOOP
        IF {identifier}(_cast[1]) = {identifier}(_cast[3])
           AND regexp_replace(regexp_replace(_cast[2], '\s+COLLATE\s+.*$', '', 'i'), '\s+', ' ', 'g')
               = regexp_replace(_cast[4], '\s+', ' ', 'g') THEN
            _plain := _plain + 1;
        END IF;
    END LOOP;
    RETURN _plain = (SELECT count(*) FROM regexp_matches(_text, '\mUSING\M', 'gi'));
END
$fn$;
-- The name an identifier as written denotes: a quoted one as it is, another in lower case.
CREATE OR REPLACE FUNCTION {identifier}(written text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT CASE WHEN left(written, 1) = '"' THEN replace(substr(written, 2, length(written) - 2), '""', '"')
                ELSE lower(written) END
$fn$;
CREATE OR REPLACE FUNCTION {guard}() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    _obj record;
    _refused text;
    _rel oid;
    -- Whom the capture trusts with a cast to json: the owners of our capture functions.
    _audit_owners oid[] := ARRAY(SELECT p.proowner FROM pg_proc p
                                  WHERE p.pronamespace = (SELECT oid FROM pg_namespace WHERE nspname = {schema})
                                    AND p.proname = ANY ({capture_functions}));
    _cast record;
    _stale record;
BEGIN
    IF {maintenance_allowed} THEN
        RETURN;
    END IF;
    IF TG_TAG = 'CREATE CAST' THEN
        -- A cast to json of a role other than the audit owner or a superuser, whether it
        -- creates the cast or owns its function (which it can replace), would run in the
        -- capture with the audit owner's rights (see _CASTS_NOTE). PostgreSQL consults only
        -- casts to json; casts to jsonb are refused too, in case a later version does.
        SELECT k.castsource::regtype AS source, k.casttarget::regtype AS target,
               k.castfunc::regprocedure AS func, r.rolname AS role,
               CASE WHEN r.rolname = current_user THEN 'creates' ELSE 'owns the function of' END AS does
          INTO _cast
          FROM pg_event_trigger_ddl_commands() AS c
          JOIN pg_cast k ON k.oid = c.objid
          JOIN pg_proc p ON p.oid = k.castfunc
          JOIN pg_roles r ON r.rolname = current_user OR r.oid = p.proowner
         WHERE c.classid = 'pg_cast'::regclass AND k.casttarget IN ('json'::regtype, 'jsonb'::regtype)
           AND NOT r.rolsuper AND NOT r.oid = ANY (_audit_owners)
         ORDER BY r.rolname = current_user DESC
         LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'partitioned_audit: refusing CREATE CAST (% AS %): role %, which % it, is neither the audit owner nor a superuser, and the capture would run % with the rights of the audit owner',
                _cast.source, _cast.target, _cast.role, _cast.does, _cast.func
                USING ERRCODE = 'insufficient_privilege',
                      HINT = format('Have a superuser or role %s create the cast, with a function that role owns.',
                                    (SELECT string_agg(DISTINCT rolname, ' or ') FROM pg_roles WHERE oid = ANY (_audit_owners)));
        END IF;
        RETURN;
    END IF;
    IF TG_TAG = 'ALTER TABLE' THEN
        -- An audited table whose triggers trust its types (their fourth argument is 't': see
        -- _CASTS_NOTE) must not start holding a type another role owns: that role could not
        -- give it a cast while the guard is on, but the triggers would go on trusting it
        -- once the guard is gone.
        -- The types a row holds, as the guard's own copy of dpa_types_reached() follows them:
        -- the table's owner runs this, who must run no code of the audit owner.
        WITH audited(rel, owner) AS (
                SELECT DISTINCT c.objid, r.oid
                  FROM pg_event_trigger_ddl_commands() AS c
                  JOIN pg_trigger t ON t.tgrelid = c.objid AND starts_with(t.tgname, 'dpa_audit_')
                  JOIN pg_proc p ON p.oid = t.tgfoid
                  JOIN pg_roles r ON r.oid = p.proowner
                 WHERE c.classid = 'pg_class'::regclass
                   AND encode(t.tgargs, 'hex') ~ '^(?:(?:0[1-9a-f]|[1-9a-f][0-9a-f])*00){{3}}7400'
        )
        SELECT audited.rel::regclass AS rel, types.oid::regtype AS type, o.rolname AS type_owner,
               (SELECT rolname FROM pg_roles WHERE oid = audited.owner) AS audit_owner
          INTO _stale
          FROM audited CROSS JOIN LATERAL {types_reached}(audited.rel) AS types(oid)
          JOIN pg_type ty ON ty.oid = types.oid JOIN pg_roles o ON o.oid = ty.typowner
         WHERE NOT o.rolsuper AND o.oid <> audited.owner
         ORDER BY types.oid
         LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'partitioned_audit: refusing ALTER TABLE on %: its rows would hold type %, which belongs to role %, while its capture triggers trust that only the audit owner or a superuser owns its types',
                _stale.rel, _stale.type, _stale.type_owner
                USING ERRCODE = 'insufficient_privilege',
                      HINT = format('Have role %s own the type (ALTER TYPE %s OWNER TO %s), then run the ALTER TABLE again.',
                                    _stale.audit_owner, _stale.type, _stale.audit_owner);
        END IF;
    END IF;
    IF TG_EVENT = 'sql_drop' THEN
        SELECT o.object_identity INTO _refused
          FROM pg_event_trigger_dropped_objects() AS o
         WHERE (o.object_type = 'trigger' AND (starts_with(o.address_names[3], 'dpa_audit_')
                                                OR starts_with(o.address_names[3], 'dpa_seal_'))
                AND NOT EXISTS (SELECT FROM pg_event_trigger_dropped_objects() AS t
                                 WHERE t.object_type = 'table' AND t.address_names = o.address_names[1:2]))
            OR (o.object_type = 'function' AND o.address_names[1] = {schema} AND o.address_names[2] = ANY ({functions}))
            OR (o.object_type = 'table' AND o.address_names[1] = {schema} AND o.address_names[2] = ANY ({seal_tables}))
         LIMIT 1;
    ELSIF TG_EVENT = 'table_rewrite' THEN
        -- A column's type changes (reason bit 4) on a table with capture triggers: the rows
        -- get new values with no audit row. Let it pass only for plain casts of each column
        -- to its new type, written in the one ALTER TABLE statement sent, on that table.
        _rel := pg_event_trigger_table_rewrite_oid();
        IF pg_event_trigger_table_rewrite_reason() & 4 <> 0
           AND EXISTS (SELECT FROM pg_trigger t WHERE t.tgrelid = _rel AND starts_with(t.tgname, 'dpa_audit_'))
           AND NOT {plain_casts}(current_query(), _rel) THEN
            RAISE EXCEPTION 'partitioned_audit: refusing % on %: a USING expression that is not a plain cast of the altered column (column::type) would change audited values without an audit row', TG_TAG,
                (SELECT format('%s.%s', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.oid = _rel)
                USING ERRCODE = 'insufficient_privilege',
                      HINT = 'Change the values with UPDATE, which is audited, then change the type with USING column::type alone, in an ALTER TABLE statement of its own.';
        END IF;
        RETURN;
    ELSE
        SELECT c.object_identity INTO _refused
          FROM pg_event_trigger_ddl_commands() AS c
         WHERE (c.command_tag = 'CREATE TRIGGER' AND c.classid = 'pg_trigger'::regclass AND EXISTS (
                    -- A trigger named like ours: only a new one (no comment yet: CREATE OR
                    -- REPLACE keeps the replaced trigger's) that executes a capture function,
                    -- as enable() makes for a table it starts auditing.
                    SELECT FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
                     WHERE t.oid = c.objid
                       AND (starts_with(t.tgname, 'dpa_audit_') OR starts_with(t.tgname, 'dpa_seal_'))
                       AND (obj_description(t.oid, 'pg_trigger') IS NOT NULL
                            OR p.pronamespace <> (SELECT oid FROM pg_namespace WHERE nspname = {schema})
                            OR NOT p.proname = ANY ({functions}))))
            OR (c.classid = 'pg_class'::regclass AND EXISTS (
                    SELECT FROM pg_trigger t WHERE t.tgrelid = c.objid
                       AND (starts_with(t.tgname, 'dpa_audit_') OR starts_with(t.tgname, 'dpa_seal_'))
                       AND t.tgenabled <> 'A'))
            OR (c.classid = 'pg_trigger'::regclass AND EXISTS (
                    SELECT FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
                     WHERE t.oid = c.objid AND NOT starts_with(t.tgname, 'dpa_audit_')
                       AND NOT starts_with(t.tgname, 'dpa_seal_')
                       AND p.pronamespace = (SELECT oid FROM pg_namespace WHERE nspname = {schema})
                       AND p.proname = ANY ({functions})))
         LIMIT 1;
    END IF;
    IF _refused IS NOT NULL THEN
        RAISE EXCEPTION 'partitioned_audit: refusing % on %: the audit trail depends on it', TG_TAG, _refused
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Audit objects change through migrate (or the engine''s enable, disable, uninstall).';
    END IF;
END
$fn$;
