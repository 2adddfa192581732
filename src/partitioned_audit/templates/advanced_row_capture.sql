-- The advanced layout's row-level capture: AFTER INSERT, UPDATE or DELETE ... FOR EACH ROW.
-- One call and one INSERT ... VALUES per row (docs/performance.md). It records what the
-- statement-level capture records for the same rows but two columns: client_query is kept
-- on every row, as the row knows no other row of its statement (as 1.0.4's row trigger
-- kept it), and statement_id is NULL. TRUNCATE and the old key of a key-changing UPDATE
-- stay with the statement capture and the key capture. Every name is schema-qualified
-- (_QUALIFIED_NOTE in layouts.py). The trigger's arguments are
-- TableSpec.row_trigger_args(partition=True): TG_ARGV[5], [6] always name the table the
-- rows are filed under.
CREATE OR REPLACE FUNCTION {row_function}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $fn$
DECLARE
    _pk pg_catalog.text[] := TG_ARGV[0]::pg_catalog.text[];
    _excluded pg_catalog.text[] := CASE WHEN TG_ARGV[7] IS NULL THEN TG_ARGV[1]::pg_catalog.text[]
                                        ELSE pg_catalog.array_cat(TG_ARGV[1]::pg_catalog.text[], TG_ARGV[7]::pg_catalog.text[]) END;
    _masked pg_catalog.text[] := TG_ARGV[2]::pg_catalog.text[];
    _plain boolean := pg_catalog.cardinality(_excluded) OPERATOR(pg_catalog.=) 0
                      AND pg_catalog.cardinality(_masked) OPERATOR(pg_catalog.=) 0;
    -- Raises unless converting a row to jsonb runs only trusted code: 't' nothing to check,
    -- 'c' the casts to json (the guard refuses new ones), else the owners of the table's types.
    _casts_checked boolean := TG_ARGV[3] OPERATOR(pg_catalog.=) 't'
                              OR CASE WHEN TG_ARGV[3] OPERATOR(pg_catalog.=) 'c' THEN {check_json_casts}(TG_RELID)
                                      ELSE {check_type_owners}(TG_RELID) END;
    _row pg_catalog.jsonb;
    _new pg_catalog.jsonb;
    _changed pg_catalog.jsonb;
    _key pg_catalog.text;
    _txid bigint;
    _context pg_catalog.jsonb;
    _actor bigint;
    _marked pg_catalog.text;  -- (set_config's result, unused)
BEGIN
    IF TG_OP OPERATOR(pg_catalog.=) 'UPDATE' THEN
        _row := pg_catalog.to_jsonb(OLD);
        _new := pg_catalog.to_jsonb(NEW);
        -- A changed field is one whose old value is missing or not equal: the new value of
        -- jsonb_each() is never NULL. An UPDATE that changed none is not recorded.
        _changed := (SELECT pg_catalog.jsonb_object_agg(
                                e.key,
                                CASE WHEN e.key OPERATOR(pg_catalog.=) ANY (_masked)
                                          AND e.value OPERATOR(pg_catalog.<>) 'null'::pg_catalog.jsonb
                                     THEN '"[masked]"'::pg_catalog.jsonb ELSE e.value END)
                       FROM pg_catalog.jsonb_each(_new) AS e
                      WHERE NOT e.key OPERATOR(pg_catalog.=) ANY (_excluded)
                        AND ((_row OPERATOR(pg_catalog.->) e.key) OPERATOR(pg_catalog.=) e.value) IS NOT TRUE);
        IF _changed IS NULL THEN
            RETURN NULL;
        END IF;
    ELSIF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN
        _row := pg_catalog.to_jsonb(OLD);
        _new := _row;
    ELSE
        _row := pg_catalog.to_jsonb(NEW);
        _new := _row;
    END IF;
    -- The key after the change, as the statement-level capture files it.
    IF pg_catalog.cardinality(_pk) OPERATOR(pg_catalog.=) 1 THEN
        _key := _new OPERATOR(pg_catalog.->>) _pk[1];
    ELSE
        _key := {pk_text}(_new, _pk);
    END IF;
    IF NOT _plain THEN
        _row := {redact}(_row, _excluded, _masked);
    END IF;
    -- A missing context row is made with a plain INSERT, planned once per session: a
    -- dynamic statement would be planned anew in each single-row transaction.
    _txid := pg_catalog.txid_current();
    _context := {context};
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
                         action_tstamp_tx, action_tstamp_stm, action_tstamp_clk, transaction_id,
                         application_name, client_addr, client_port, client_query, action,
                         statement_only, statement_id, audit_context_id)
    VALUES (_row, _changed, _key, coalesce(TG_ARGV[5], TG_TABLE_SCHEMA), coalesce(TG_ARGV[6], TG_TABLE_NAME),
            TG_RELID, session_user::pg_catalog.text, current_timestamp, pg_catalog.statement_timestamp(), pg_catalog.clock_timestamp(), _txid,
            pg_catalog.current_setting('application_name'), pg_catalog.inet_client_addr(),
            pg_catalog.inet_client_port(),
            -- The query text carries the values it writes: never kept for tables with
            -- excluded or masked columns. It holds no value of a virtual column (TG_ARGV[7]).
            CASE WHEN _plain OR (TG_ARGV[7] IS NOT NULL
                                 AND pg_catalog.cardinality(TG_ARGV[1]::pg_catalog.text[]) OPERATOR(pg_catalog.=) 0
                                 AND pg_catalog.cardinality(_masked) OPERATOR(pg_catalog.=) 0)
                 THEN pg_catalog.current_query() END,
            pg_catalog.left(TG_OP, 1), false, NULL,
            _actor);
    RETURN NULL;
END
$fn$;
