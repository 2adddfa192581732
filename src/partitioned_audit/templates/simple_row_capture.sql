-- The simple layout's row-level capture: AFTER INSERT, UPDATE or DELETE ... FOR EACH ROW.
-- One call and one INSERT ... VALUES per row, the cheapest statement plpgsql runs, where
-- the statement-level capture pays a call and an INSERT ... SELECT over a transition
-- table per statement (docs/performance.md). It records what the statement-level capture
-- records for the same rows; TRUNCATE and the old key of a key-changing UPDATE stay with
-- the statement capture and the key capture. Every name is schema-qualified, as in the
-- statement-level capture (_QUALIFIED_NOTE in layouts.py). The trigger's arguments are
-- TableSpec.row_trigger_args(partition=True): TG_ARGV[5], [6] always name the table the
-- rows are filed under.
CREATE OR REPLACE FUNCTION {row_function}() RETURNS trigger
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
    _j pg_catalog.jsonb;
    _key pg_catalog.text;
    _payload pg_catalog.jsonb;
    _txid bigint;
    _context pg_catalog.jsonb;
    _actor bigint;
    _marked pg_catalog.text;  -- (set_config's result, unused)
BEGIN
    IF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN
        _j := pg_catalog.to_jsonb(OLD);
    ELSE
        _j := pg_catalog.to_jsonb(NEW);
        -- TG_ARGV[4]: TableSpec.skip_unchanged, no UPDATE of a row that kept its values.
        IF TG_OP OPERATOR(pg_catalog.=) 'UPDATE' AND TG_ARGV[4] OPERATOR(pg_catalog.=) 't'
           AND pg_catalog.jsonb_delete(pg_catalog.to_jsonb(OLD), VARIADIC _excluded)
               OPERATOR(pg_catalog.=) pg_catalog.jsonb_delete(_j, VARIADIC _excluded) THEN
            RETURN NULL;
        END IF;
    END IF;
    -- Kept apart from the INSERT: an expression with a subquery is no simple expression,
    -- which plpgsql evaluates through the executor.
    IF pg_catalog.cardinality(_pk) OPERATOR(pg_catalog.=) 1 THEN
        _key := _j OPERATOR(pg_catalog.->>) _pk[1];
    ELSE
        _key := {pk_text}(_j, _pk);
    END IF;
    IF pg_catalog.cardinality(_excluded) OPERATOR(pg_catalog.=) 0
       AND pg_catalog.cardinality(_masked) OPERATOR(pg_catalog.=) 0 THEN
        _payload := _j;
    ELSE
        _payload := {redact}(_j, _excluded, _masked);
    END IF;
    -- A missing context row is made with a plain INSERT, planned once per session: a
    -- dynamic statement would be planned anew in each single-row transaction.
    _txid := pg_catalog.txid_current();
    _context := {context};
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
    VALUES (coalesce(TG_ARGV[6], TG_TABLE_NAME), coalesce(TG_ARGV[5], TG_TABLE_SCHEMA), _key, _payload,
            _txid, pg_catalog.left(TG_OP, 1),
            _actor, session_user::pg_catalog.text);
    RETURN NULL;
END
$fn$;
