-- The simple layout's statement-level capture: AFTER INSERT, UPDATE, DELETE or TRUNCATE ...
-- FOR EACH STATEMENT, with transition tables (dpa_new, dpa_old). One call and one
-- INSERT ... SELECT per statement: the row after the change (before it, for a DELETE), one
-- audit row per row, each holding the login role and, inside a context, pointing at the
-- transaction's context row (_CONTEXT_NOTE in layouts.py). Every name is schema-qualified (_QUALIFIED_NOTE); plpgsql wants a transition
-- table's name written out, so each branch has its own INSERT.
--
-- OFFSET 0 keeps the planner from flattening a subquery, which would run to_jsonb() once
-- per reference to r.j (the key and the payload): twice per row.
-- An UPDATE with TableSpec.skip_unchanged (TG_ARGV[4]) records the rows of NEW whose
-- values, excluded columns aside, differ from their OLD row, paired by position as the
-- advanced capture pairs them (a FULL JOIN, for the same reason). A masked column that
-- changed is a change. jsonb_delete() is the function behind jsonb - text[]; OPERATOR()
-- binds before IS.
-- The function text below is deployed byte for byte: a change is a new object version.

CREATE OR REPLACE FUNCTION {function}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $fn$
DECLARE
    _pk pg_catalog.text[] := TG_ARGV[0]::pg_catalog.text[];
    _excluded pg_catalog.text[] := CASE WHEN TG_ARGV[7] IS NULL THEN TG_ARGV[1]::pg_catalog.text[]
                                        ELSE pg_catalog.array_cat(TG_ARGV[1]::pg_catalog.text[], TG_ARGV[7]::pg_catalog.text[]) END;
    _masked pg_catalog.text[] := TG_ARGV[2]::pg_catalog.text[];
    _plain boolean := pg_catalog.cardinality(_excluded) OPERATOR(pg_catalog.=) 0
                      AND pg_catalog.cardinality(_masked) OPERATOR(pg_catalog.=) 0;
    _pk1 pg_catalog.text := CASE WHEN pg_catalog.cardinality(_pk) OPERATOR(pg_catalog.=) 1 THEN _pk[1] END;
    -- Raises unless converting a row to jsonb runs only trusted code: 't' nothing to check,
    -- 'c' the casts to json (the guard refuses new ones), else the owners of the table's types.
    _casts_checked boolean := TG_ARGV[3] OPERATOR(pg_catalog.=) 't'
                              OR CASE WHEN TG_ARGV[3] OPERATOR(pg_catalog.=) 'c' THEN {check_json_casts}(TG_RELID)
                                      ELSE {check_type_owners}(TG_RELID) END;
    -- TG_ARGV[4]: TableSpec.skip_unchanged, read by the simple capture.
    -- A partition's trigger files its rows under the audited (root) table; a table with
    -- virtual columns names itself (TableSpec.row_trigger_args).
    _schema pg_catalog.text := coalesce(TG_ARGV[5], TG_TABLE_SCHEMA);
    _table pg_catalog.text := coalesce(TG_ARGV[6], TG_TABLE_NAME);
    _op pg_catalog.text := pg_catalog.left(TG_OP, 1);
    _txid bigint := pg_catalog.txid_current();
    _context pg_catalog.jsonb := {context};
    _user pg_catalog.text := session_user::pg_catalog.text;
    _actor bigint;
    _new_context boolean := false;
    _written bigint;
    _marked pg_catalog.text;  -- (set_config's result, unused)
    -- Record no UPDATE of a row that kept its values (the trigger then passes OLD too).
    _skip_unchanged boolean := TG_ARGV[4] OPERATOR(pg_catalog.=) 't';
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
    -- A new context row's id is drawn now, the row written once this statement has written
    -- an audit row (below): a statement that changed nothing leaves no context row behind.
    IF _actor IS NULL AND _context IS NOT NULL THEN
        _actor := pg_catalog.nextval({context_seq});
        _new_context := true;
    END IF;
    IF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN
        INSERT INTO {table} (object_table, object_schema, object_pk, object_payload,
                             audit_txid_current, audit_operation, audit_context_id, session_user_name)
        SELECT _table, _schema,
               coalesce(r.j OPERATOR(pg_catalog.->>) _pk1, {pk_text}(r.j, _pk)),
               CASE WHEN _plain THEN r.j ELSE {redact}(r.j, _excluded, _masked) END,
               _txid, _op, _actor, _user
          FROM (SELECT pg_catalog.to_jsonb(t.*) AS j FROM dpa_old AS t OFFSET 0) AS r;
    ELSIF TG_OP OPERATOR(pg_catalog.=) 'TRUNCATE' THEN
        INSERT INTO {table} (object_table, object_schema, object_pk, object_payload,
                             audit_txid_current, audit_operation, audit_context_id, session_user_name)
        SELECT _table, _schema, NULL, NULL, _txid, _op, _actor, _user
         WHERE TG_ARGV[6] IS NULL OR NOT EXISTS (
               -- TRUNCATE of the parent also fires its partitions' triggers: record it once.
               SELECT FROM {table} a
                WHERE a.object_table OPERATOR(pg_catalog.=) _table AND a.object_pk IS NULL
                  AND a.object_schema OPERATOR(pg_catalog.=) _schema
                  AND a.audit_txid_current OPERATOR(pg_catalog.=) _txid
                  AND a.audit_operation OPERATOR(pg_catalog.=) 'T'
                  AND a.audit_entry_created_statement_timestamp OPERATOR(pg_catalog.=) pg_catalog.statement_timestamp());
    ELSIF TG_OP OPERATOR(pg_catalog.=) 'UPDATE' AND _skip_unchanged THEN
        INSERT INTO {table} (object_table, object_schema, object_pk, object_payload,
                             audit_txid_current, audit_operation, audit_context_id, session_user_name)
        SELECT _table, _schema,
               coalesce(r.j OPERATOR(pg_catalog.->>) _pk1, {pk_text}(r.j, _pk)),
               CASE WHEN _plain THEN r.j ELSE {redact}(r.j, _excluded, _masked) END,
               _txid, _op, _actor, _user
          FROM (SELECT c.j
                  FROM (SELECT n.j
                          FROM (SELECT pg_catalog.to_jsonb(t.*) AS j, pg_catalog.row_number() OVER () AS n
                                  FROM dpa_old AS t) AS o
                          FULL JOIN (SELECT pg_catalog.to_jsonb(t.*) AS j, pg_catalog.row_number() OVER () AS n
                                       FROM dpa_new AS t) AS n ON o.n OPERATOR(pg_catalog.=) n.n
                         WHERE pg_catalog.jsonb_delete(o.j, VARIADIC _excluded)
                               OPERATOR(pg_catalog.=) pg_catalog.jsonb_delete(n.j, VARIADIC _excluded) IS NOT TRUE
                        OFFSET 0) AS c) AS r;
    ELSE
        INSERT INTO {table} (object_table, object_schema, object_pk, object_payload,
                             audit_txid_current, audit_operation, audit_context_id, session_user_name)
        SELECT _table, _schema,
               coalesce(r.j OPERATOR(pg_catalog.->>) _pk1, {pk_text}(r.j, _pk)),
               CASE WHEN _plain THEN r.j ELSE {redact}(r.j, _excluded, _masked) END,
               _txid, _op, _actor, _user
          FROM (SELECT pg_catalog.to_jsonb(t.*) AS j FROM dpa_new AS t OFFSET 0) AS r;
    END IF;
    IF _new_context THEN
        -- ROW_COUNT of the INSERT just run: nothing else is evaluated after it.
        GET DIAGNOSTICS _written := ROW_COUNT;
        IF _written OPERATOR(pg_catalog.>) 0 THEN
            INSERT INTO {contexts} (context_id, created, txid, session_user_name, context)
            VALUES (_actor, pg_catalog.now(), _txid, session_user::pg_catalog.text, _context);
            -- (an assignment, which plpgsql evaluates without the executor; PERFORM runs a query)
            _marked := pg_catalog.set_config({context_made}, _txid::pg_catalog.text, true);
        END IF;
    END IF;
    RETURN NULL;
END
$fn$;
