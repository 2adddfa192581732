-- dpa_<layout>_freeze: the trigger function that refuses to change or delete a sealed row,
-- whoever asks (create_freeze() in sealing.py puts its row trigger on the audit table, which
-- clones it onto every partition, enabled ALWAYS), and to TRUNCATE the audit table while it
-- holds sealed rows. Creating a partition moves rows out of the DEFAULT partition under the
-- maintenance setting, which stays allowed ({maintenance_allowed}).
-- Deployed from the next line on, byte for byte: a change is a new object version.

CREATE OR REPLACE FUNCTION {freeze}() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    IF TG_LEVEL = 'STATEMENT' THEN
        IF EXISTS (SELECT FROM {seals} s WHERE s.kind = 'seal') AND NOT ({maintenance_allowed}) THEN
            RAISE EXCEPTION 'partitioned_audit: TRUNCATE of % is refused: it holds sealed audit rows', TG_TABLE_NAME
                USING ERRCODE = 'insufficient_privilege',
                      HINT = 'Retire old partitions with manage_partition_tables detach or drop.';
        END IF;
        RETURN NULL;
    END IF;
    IF OLD.{event} <= (SELECT s.last_event_id FROM {seals} s WHERE s.kind = 'seal' ORDER BY s.seal_id DESC LIMIT 1)
       AND NOT (TG_OP = 'DELETE' AND TG_TABLE_NAME = {default_partition} AND ({maintenance_allowed})) THEN
        RAISE EXCEPTION 'partitioned_audit: audit event % is sealed: % refused', OLD.{event}, TG_OP
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Sealed audit rows never change; retention detaches or drops whole partitions.';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$fn$;
