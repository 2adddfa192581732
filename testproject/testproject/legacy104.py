"""The audit tables as django-partitioned-audit 1.0.4 created them, partitions left out.

For tests and benchmarks of the upgrade that need a large 1.0.4 table quickly; the
upgrade test proper (tests/test_upgrade_from_104.py) runs 1.0.4 itself.
"""

SIMPLE_TABLE = """
CREATE TABLE audit_simple (
    object_table character varying(63) NOT NULL,
    object_payload jsonb NOT NULL,
    audit_entry_created timestamp with time zone NOT NULL DEFAULT now(),
    audit_entry_created_statement_timestamp timestamp with time zone NOT NULL DEFAULT statement_timestamp(),
    audit_txid_current bigint NOT NULL,
    audit_operation character varying(1) NOT NULL
) PARTITION BY RANGE (audit_entry_created);
"""

ADVANCED_TABLE = """
CREATE EXTENSION IF NOT EXISTS hstore;
CREATE TABLE logged_actions (
    event_id bigserial NOT NULL, schema_name text NOT NULL, table_name text NOT NULL,
    relid oid NOT NULL, session_user_name text, action_tstamp_tx timestamptz NOT NULL,
    action_tstamp_stm timestamptz NOT NULL, action_tstamp_clk timestamptz NOT NULL,
    transaction_id bigint, application_name text, client_addr inet, client_port integer,
    client_query text, action text NOT NULL CHECK (action IN ('I', 'D', 'U', 'T')),
    row_data hstore, changed_fields hstore, statement_only boolean NOT NULL
) PARTITION BY RANGE (action_tstamp_tx);
"""
