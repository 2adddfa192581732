-- The advanced layout's key capture: AFTER UPDATE ... FOR EACH ROW WHEN the key changed.
-- The statement's capture (or the row capture) files the change under the new key; this
-- files it under the old one too, so the history of either key shows it.
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
    -- skips the lookup. The login role goes on the audit row itself (session_user_name,
    -- 1.0.4's column), so a write outside any context makes no context row.
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
    INSERT INTO {table} (row_data, changed_fields, object_pk, schema_name, table_name, relid, session_user_name,
                         action_tstamp_tx, action_tstamp_stm,
                         action_tstamp_clk, transaction_id, application_name, client_addr,
                         client_port, action, statement_only, audit_context_id)
    SELECT {redact}(_old, _excluded, _masked),
           (SELECT pg_catalog.jsonb_object_agg(
                       e.key,
                       CASE WHEN e.key OPERATOR(pg_catalog.=) ANY (_masked)
                                 AND e.value OPERATOR(pg_catalog.<>) 'null'::pg_catalog.jsonb
                            THEN '"[masked]"'::pg_catalog.jsonb ELSE e.value END)
              FROM pg_catalog.jsonb_each(_new) AS e
             WHERE NOT e.key OPERATOR(pg_catalog.=) ANY (_excluded)
               AND ((_old OPERATOR(pg_catalog.->) e.key) OPERATOR(pg_catalog.=) e.value) IS NOT TRUE),
           {pk_text}(_old, _pk), coalesce(TG_ARGV[5], TG_TABLE_SCHEMA),
           coalesce(TG_ARGV[6], TG_TABLE_NAME), TG_RELID, session_user::pg_catalog.text, current_timestamp,
           pg_catalog.statement_timestamp(), pg_catalog.clock_timestamp(), _txid,
           pg_catalog.current_setting('application_name'), pg_catalog.inet_client_addr(),
           pg_catalog.inet_client_port(), 'U', false, _actor;
    RETURN NULL;
END
$fn$;
