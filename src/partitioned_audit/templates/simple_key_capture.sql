-- The simple layout's key capture: AFTER UPDATE ... FOR EACH ROW WHEN the key changed
-- (whether the statement named a key column or a BEFORE trigger changed NEW's). The
-- statement's capture (or the row capture) files the change under the new key; this files
-- it under the old one too, so the history of either key shows it.
-- The function text below is deployed byte for byte: a change is a new object version.

CREATE OR REPLACE FUNCTION {key_function}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $fn$
DECLARE
    _pk pg_catalog.text[] := TG_ARGV[0]::pg_catalog.text[];
    _excluded pg_catalog.text[] := CASE WHEN TG_ARGV[7] IS NULL THEN TG_ARGV[1]::pg_catalog.text[]
                                        ELSE pg_catalog.array_cat(TG_ARGV[1]::pg_catalog.text[], TG_ARGV[7]::pg_catalog.text[]) END;
    _masked pg_catalog.text[] := TG_ARGV[2]::pg_catalog.text[];
    -- Raises unless converting a row to jsonb runs only trusted code: 't' nothing to check,
    -- 'c' the casts to json (the guard refuses new ones), else the owners of the table's types.
    _casts_checked boolean := TG_ARGV[3] OPERATOR(pg_catalog.=) 't'
                              OR CASE WHEN TG_ARGV[3] OPERATOR(pg_catalog.=) 'c' THEN {check_json_casts}(TG_RELID)
                                      ELSE {check_type_owners}(TG_RELID) END;
    _old pg_catalog.jsonb := pg_catalog.to_jsonb(OLD);
    _new pg_catalog.jsonb := pg_catalog.to_jsonb(NEW);
    _txid bigint := pg_catalog.txid_current();
    _context pg_catalog.jsonb := {context};
    _actor bigint;
    _marked pg_catalog.text;  -- (set_config's result, unused)
BEGIN
    -- The transaction's context row (_CONTEXT_NOTE in layouts.py), where a context is set:
    -- looked up only once this transaction has made one (the setting {context_made} then
    -- holds its id), made when missing. A single-statement transaction, the commonest,
    -- skips the lookup. The login role goes on the audit row itself (session_user_name),
    -- so a write outside any context makes no context row.
    IF _context IS NOT NULL
       AND pg_catalog.current_setting({context_made}, true) OPERATOR(pg_catalog.=) _txid::pg_catalog.text THEN
        _actor := (SELECT c.context_id FROM {contexts} AS c
                    WHERE c.txid OPERATOR(pg_catalog.=) _txid
                      AND c.created OPERATOR(pg_catalog.=) pg_catalog.now()
                      AND c.session_user_name OPERATOR(pg_catalog.=) session_user::pg_catalog.text
                      AND c.context OPERATOR(pg_catalog.=) _context  -- never NULL here
                    LIMIT 1);
    END IF;
    IF _actor IS NULL AND _context IS NOT NULL THEN
        INSERT INTO {contexts} (created, txid, session_user_name, context)
        VALUES (pg_catalog.now(), _txid, session_user::pg_catalog.text, _context)
        RETURNING context_id INTO _actor;
        -- (an assignment, which plpgsql evaluates without the executor; PERFORM runs a query)
        _marked := pg_catalog.set_config({context_made}, _txid::pg_catalog.text, true);
    END IF;
    INSERT INTO {table} (object_table, object_schema, object_pk, object_payload,
                         audit_txid_current, audit_operation, audit_context_id, session_user_name)
    VALUES (coalesce(TG_ARGV[6], TG_TABLE_NAME), coalesce(TG_ARGV[5], TG_TABLE_SCHEMA),
            {pk_text}(_old, _pk), {redact}(_new, _excluded, _masked), _txid, 'U', _actor,
            session_user::pg_catalog.text);
    RETURN NULL;
END
$fn$;
