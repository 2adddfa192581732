-- The advanced layout's statement-level capture: AFTER INSERT, UPDATE, DELETE or TRUNCATE
-- ... FOR EACH STATEMENT, with transition tables (dpa_new, dpa_old). Every name is
-- schema-qualified (_QUALIFIED_NOTE in layouts.py).
--
-- INSERT and DELETE write one row per row of their transition table, with the query text
-- on the first. UPDATE pairs the n-th rows of OLD and NEW: PostgreSQL fills both in step,
-- one pair per updated row, so they belong together even when the key itself changed. Both
-- have the same n, so a FULL JOIN pairs them as an inner join would; it is written FULL
-- because PostgreSQL runs a full join only as a hash or merge join. A session's cached plan
-- for this INSERT may have been made for a one-row UPDATE, and an inner join planned then
-- is a nested loop, which pairs the rows of a later bulk UPDATE in quadratic time (5 000
-- rows: 53 s instead of 0.4 s). A changed field is one whose old value is missing or not
-- equal: the new value of jsonb_each() is never NULL.
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
    -- The login role, on every row (read once: a function call in the SELECT runs per row).
    _user pg_catalog.text := session_user::pg_catalog.text;
    _txid bigint := pg_catalog.txid_current();
    _context pg_catalog.jsonb := {context};
    _actor bigint;
    _new_context boolean := false;
    _written bigint;
    _marked pg_catalog.text;  -- (set_config's result, unused)
    _app pg_catalog.text := pg_catalog.current_setting('application_name');
    _addr pg_catalog.inet := pg_catalog.inet_client_addr();
    _port integer := pg_catalog.inet_client_port();
    -- The query text carries the values it writes: never keep it for tables with
    -- excluded or masked columns. It holds no value of a virtual column (TG_ARGV[7]).
    _query pg_catalog.text := CASE WHEN _plain OR (TG_ARGV[7] IS NOT NULL
                                                   AND pg_catalog.cardinality(TG_ARGV[1]::pg_catalog.text[]) OPERATOR(pg_catalog.=) 0
                                                   AND pg_catalog.cardinality(_masked) OPERATOR(pg_catalog.=) 0)
                                   THEN pg_catalog.current_query() END;
    _stmt bigint := pg_catalog.nextval({seq});
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
    -- A new context row's id is drawn now, the row written once this statement has written
    -- an audit row (below): a statement that changed nothing leaves no context row behind.
    IF _actor IS NULL AND _context IS NOT NULL THEN
        _actor := pg_catalog.nextval({context_seq});
        _new_context := true;
    END IF;
    IF TG_OP OPERATOR(pg_catalog.=) 'INSERT' THEN
        INSERT INTO {table} (row_data, object_pk, schema_name, table_name, relid, session_user_name,
                             action_tstamp_tx, action_tstamp_stm, action_tstamp_clk, transaction_id,
                             application_name, client_addr, client_port, client_query, action,
                             statement_only, statement_id, audit_context_id)
        SELECT CASE WHEN _plain THEN r.j ELSE {redact}(r.j, _excluded, _masked) END,
               coalesce(r.j OPERATOR(pg_catalog.->>) _pk1, {pk_text}(r.j, _pk)),
               _schema, _table, TG_RELID, _user,
               current_timestamp, pg_catalog.statement_timestamp(), pg_catalog.clock_timestamp(), _txid,
               _app, _addr, _port, CASE WHEN r.n OPERATOR(pg_catalog.=) 1 THEN _query END, _op,
               false, _stmt, _actor
          FROM (SELECT pg_catalog.to_jsonb(t.*) AS j, pg_catalog.row_number() OVER () AS n
                  FROM dpa_new AS t) AS r;
    ELSIF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN
        INSERT INTO {table} (row_data, object_pk, schema_name, table_name, relid, session_user_name,
                             action_tstamp_tx, action_tstamp_stm, action_tstamp_clk, transaction_id,
                             application_name, client_addr, client_port, client_query, action,
                             statement_only, statement_id, audit_context_id)
        SELECT CASE WHEN _plain THEN r.j ELSE {redact}(r.j, _excluded, _masked) END,
               coalesce(r.j OPERATOR(pg_catalog.->>) _pk1, {pk_text}(r.j, _pk)),
               _schema, _table, TG_RELID, _user,
               current_timestamp, pg_catalog.statement_timestamp(), pg_catalog.clock_timestamp(), _txid,
               _app, _addr, _port, CASE WHEN r.n OPERATOR(pg_catalog.=) 1 THEN _query END, _op,
               false, _stmt, _actor
          FROM (SELECT pg_catalog.to_jsonb(t.*) AS j, pg_catalog.row_number() OVER () AS n
                  FROM dpa_old AS t) AS r;
    ELSIF TG_OP OPERATOR(pg_catalog.=) 'UPDATE' THEN
        INSERT INTO {table} (row_data, changed_fields, object_pk, schema_name, table_name, relid, session_user_name,
                             action_tstamp_tx, action_tstamp_stm,
                             action_tstamp_clk, transaction_id, application_name, client_addr,
                             client_port, client_query, action, statement_only, statement_id,
                             audit_context_id)
        SELECT d.old_j, d.changed, coalesce(d.new_j OPERATOR(pg_catalog.->>) _pk1, {pk_text}(d.new_j, _pk)),
               _schema, _table, TG_RELID, _user,
               current_timestamp, pg_catalog.statement_timestamp(), pg_catalog.clock_timestamp(), _txid,
               _app, _addr, _port, CASE WHEN pg_catalog.row_number() OVER () OPERATOR(pg_catalog.=) 1 THEN _query END,
               _op, false, _stmt, _actor
          FROM (
                SELECT CASE WHEN _plain THEN o.j ELSE {redact}(o.j, _excluded, _masked) END AS old_j,
                       n.j AS new_j,
                       (SELECT pg_catalog.jsonb_object_agg(
                                   e.key,
                                   CASE WHEN e.key OPERATOR(pg_catalog.=) ANY (_masked)
                                             AND e.value OPERATOR(pg_catalog.<>) 'null'::pg_catalog.jsonb
                                        THEN '"[masked]"'::pg_catalog.jsonb ELSE e.value END)
                          FROM pg_catalog.jsonb_each(n.j) AS e
                         WHERE NOT e.key OPERATOR(pg_catalog.=) ANY (_excluded)
                           AND ((o.j OPERATOR(pg_catalog.->) e.key) OPERATOR(pg_catalog.=) e.value) IS NOT TRUE
                       ) AS changed
                  FROM (SELECT pg_catalog.to_jsonb(t.*) AS j, pg_catalog.row_number() OVER () AS n
                          FROM dpa_old AS t) AS o
                  FULL JOIN (SELECT pg_catalog.to_jsonb(t.*) AS j, pg_catalog.row_number() OVER () AS n
                               FROM dpa_new AS t) AS n ON o.n OPERATOR(pg_catalog.=) n.n
                OFFSET 0  -- else the changed fields are computed twice: for WHERE and for the row
               ) AS d
         WHERE d.changed IS NOT NULL;
    ELSE
        INSERT INTO {table} (schema_name, table_name, relid, session_user_name, action_tstamp_tx,
                             action_tstamp_stm, action_tstamp_clk, transaction_id, application_name,
                             client_addr, client_port, client_query, action, statement_only,
                             statement_id, audit_context_id)
        SELECT _schema, _table, TG_RELID, _user, current_timestamp,
               pg_catalog.statement_timestamp(), pg_catalog.clock_timestamp(), _txid, _app, _addr, _port,
               _query, _op, true, _stmt, _actor
         WHERE TG_ARGV[6] IS NULL OR NOT EXISTS (
               -- TRUNCATE of the parent also fires its partitions' triggers: record it once.
               SELECT FROM {table} a
                WHERE a.table_name OPERATOR(pg_catalog.=) _table AND a.object_pk IS NULL
                  AND a.schema_name OPERATOR(pg_catalog.=) _schema
                  AND a.transaction_id OPERATOR(pg_catalog.=) _txid
                  AND a.action OPERATOR(pg_catalog.=) 'T'
                  AND a.action_tstamp_stm OPERATOR(pg_catalog.=) pg_catalog.statement_timestamp());
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
