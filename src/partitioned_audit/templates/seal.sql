-- dpa_<layout>_seal(chunk_size, wait_ms): seals every row after the last seal up to the
-- last id handed out, around the transactions still open (the safe horizon: see the
-- docstring of sealing.py), and the late rows of earlier seals whose open transactions have
-- all ended since. It appends one entry (the seal table's trigger checks it) and returns
-- what it did as jsonb, which sealing.seal() reads. {writers} lists the transactions holding
-- a write lock on the audit table, {xid_of} the full transaction id of one of them, and
-- {full_xid} widens a 32-bit id of pg_locks (_writers_query() and _FULL_XID in sealing.py).
-- Like every sealing function that turns rows or seals into text, it fixes the settings
-- that text depends on (search_path, TimeZone, DateStyle, IntervalStyle, extra_float_digits).
-- Deployed from the next line on, byte for byte: a change is a new object version.

CREATE OR REPLACE FUNCTION {seal}(chunk_size integer, wait_ms integer) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET "TimeZone" = 'UTC' SET "DateStyle" = 'ISO, YMD'
SET "IntervalStyle" = 'postgres' SET extra_float_digits = '1' AS $fn$
DECLARE
    _chain bigint;
    _previous bytea;
    _last bigint;
    _allocated bigint;
    _writers text[];
    _held text[];
    _next bigint;
    _xids bigint[];
    _snapshot pg_snapshot;
    _live bigint[];
    _open record;
    _late record;
    _closes bigint[] := '{{}}';
    _late_rows bigint := 0;
    _late_chunks integer := 0;
    _deadline timestamp with time zone := clock_timestamp() + make_interval(secs => wait_ms / 1000.0);
    _e {seals}%ROWTYPE;
BEGIN
    IF chunk_size IS NULL OR chunk_size < 1 OR chunk_size > {max_chunk} OR wait_ms IS NULL OR wait_ms < 0 THEN
        RAISE EXCEPTION 'partitioned_audit: seal needs a chunk size from 1 to % and a wait of 0 ms or more, got % and %', {max_chunk}, chunk_size, wait_ms
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'partitioned_audit: seal must run at READ COMMITTED (this transaction is %): an older snapshot would miss committed rows', current_setting('transaction_isolation')
            USING ERRCODE = 'invalid_transaction_state';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext({lock_key}));
    IF to_regclass({backfill_seq}) IS NOT NULL OR EXISTS (
            SELECT FROM pg_attribute a WHERE a.attrelid = {table_reg} AND NOT a.attisdropped
               AND right(a.attname, 7) = '_hstore') THEN
        RAISE EXCEPTION 'partitioned_audit: % still has 1.0.4 rows waiting for the end of the upgrade; nothing was sealed', {table_text}
            USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'Run migrate, which finishes it.';
    END IF;
    IF (SELECT q.seqcache FROM pg_sequence q WHERE q.seqrelid = {seq}::regclass) > 1 THEN
        RAISE EXCEPTION 'partitioned_audit: sequence % caches ids, so they are not handed out in order; nothing was sealed', {seq}::regclass
            USING ERRCODE = 'object_not_in_prerequisite_state', HINT = format('ALTER SEQUENCE %s CACHE 1', {seq}::regclass);
    END IF;
    IF NOT EXISTS (SELECT FROM pg_trigger t WHERE t.tgrelid = {table_reg} AND t.tgname = {freeze_trigger} AND t.tgenabled = 'A') THEN
        RAISE EXCEPTION 'partitioned_audit: trigger % on % is missing or not always enabled; nothing was sealed', {freeze_trigger}, {table_text}
            USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'Run migrate, which recreates it.';
    END IF;
    SELECT s.seal_id, s.digest INTO _chain, _previous FROM {seals} s ORDER BY s.seal_id DESC LIMIT 1;
    SELECT s.last_event_id INTO _last FROM {seals} s WHERE s.kind = 'seal' ORDER BY s.seal_id DESC LIMIT 1;
    _chain := coalesce(_chain, 0);
    _previous := coalesce(_previous, {genesis});
    _last := coalesce(_last, 0);
    -- First the last id handed out, then who may still hold ids up to it, and their
    -- transaction ids (a writer has one before it takes an event id: its audited write).
    _allocated := coalesce(pg_sequence_last_value({seq}::regclass), 0);
    _next := pg_snapshot_xmax(pg_current_snapshot())::text::bigint;
    _writers := {writers};
    LOOP
        _xids := ARRAY(SELECT {xid_of} FROM unnest(_writers) AS w);
        EXIT WHEN cardinality(_writers) = 0 OR clock_timestamp() >= _deadline;
        PERFORM pg_sleep(0.005);
        _held := {writers};
        _writers := ARRAY(SELECT w FROM unnest(_writers) AS w WHERE w = ANY (_held));
    END LOOP;
    IF array_position(_xids, NULL) IS NOT NULL THEN
        -- A transaction holds the write lock without a transaction id: which ids it holds
        -- cannot be told apart from forged ones later, so nothing is sealed past the last seal.
        RETURN jsonb_build_object('sealed', false, 'seal_id', _chain, 'last_event_id', _last,
                                  'allocated', _allocated, 'waiting_for', to_jsonb(_writers), 'pending', '[]'::jsonb,
                                  'head', CASE WHEN _chain > 0 THEN encode(_previous, 'hex') END);
    END IF;
    _e.seal_id := _chain + 1;
    _e.kind := 'seal';
    _e.sealed_at := now();
    _e.first_event_id := _last + 1;
    _e.last_event_id := greatest(_allocated, _last);
    _e.chunk_size := chunk_size;
    -- One statement, one snapshot: the new chunks, and which writers it still saw open.
    SELECT coalesce(sum(c.row_count), 0), coalesce(array_agg(c.seal_id ORDER BY c.chunk), '{{}}'),
           coalesce(array_agg(c.chunk ORDER BY c.chunk), '{{}}'), coalesce(array_agg(c.row_count ORDER BY c.chunk), '{{}}'),
           coalesce(array_agg(c.digest ORDER BY c.chunk), '{{}}'), coalesce(array_agg(c.partitions ORDER BY c.chunk), '{{}}'),
           pg_current_snapshot()
      INTO _e.row_count, _e.chunk_seal, _e.chunk_index, _e.chunk_rows, _e.chunk_digest, _e.chunk_partitions, _snapshot
      FROM {chunks}(ARRAY[_e.seal_id], ARRAY[_e.first_event_id], ARRAY[chunk_size], ARRAY[{format}], _e.first_event_id,
                    _e.last_event_id, NULL, '{{}}') AS c;
    _xids := ARRAY(SELECT x FROM unnest(_xids) AS x WHERE NOT pg_visible_in_snapshot(x::text::xid8, _snapshot) ORDER BY 1);
    -- Earlier seals whose open transactions have all ended since: what they added to the
    -- sealed range (late rows) is sealed now, chunk by chunk, if it is all they changed. A
    -- chunk is hashed in the format of the seal it belongs to, here as everywhere: an open
    -- seal made before an upgrade keeps its format when a seal of this one closes it.
    _live := ARRAY(SELECT {full_xid} FROM pg_locks t
                    WHERE t.locktype = 'transactionid' AND t.mode = 'ExclusiveLock' AND t.granted);
    FOR _open IN
        SELECT s.seal_id, s.first_event_id, s.last_event_id, s.chunk_size,
               coalesce((s.extra ->> 'format')::integer, 1) AS format,
               ARRAY(SELECT x::bigint FROM jsonb_array_elements_text(s.extra -> 'pending') AS x) AS pending
          FROM {seals} s
         WHERE s.kind = 'seal' AND jsonb_array_length(coalesce(s.extra -> 'pending', '[]')) > 0
           AND NOT EXISTS (SELECT FROM {seals} c WHERE c.extra -> 'closes' @> to_jsonb(s.seal_id))
         ORDER BY s.seal_id
    LOOP
        CONTINUE WHEN _open.pending && _live;
        _closes := _closes || _open.seal_id;
        FOR _late IN
            SELECT f.*, x.n AS sealed_rows, x.d AS sealed_digest
              FROM {chunks}(ARRAY[_open.seal_id], ARRAY[_open.first_event_id], ARRAY[_open.chunk_size], ARRAY[_open.format],
                            _open.first_event_id, _open.last_event_id, NULL, _open.pending) AS f
              LEFT JOIN LATERAL (SELECT c.n, c.d FROM {seals} s,
                                        unnest(s.chunk_seal, s.chunk_index, s.chunk_rows, s.chunk_digest) AS c(cs, k, n, d)
                                  WHERE c.cs = f.seal_id AND c.k = f.chunk ORDER BY s.seal_id DESC LIMIT 1) AS x ON true
             WHERE (x.n IS DISTINCT FROM f.row_count OR x.d IS DISTINCT FROM f.digest)
               AND coalesce(x.n, 0) = f.settled_rows AND (f.settled_rows = 0 OR x.d = f.settled)
             ORDER BY f.chunk
        LOOP
            _e.chunk_seal := _e.chunk_seal || _late.seal_id;
            _e.chunk_index := _e.chunk_index || _late.chunk;
            _e.chunk_rows := _e.chunk_rows || _late.row_count;
            _e.chunk_digest := _e.chunk_digest || _late.digest;
            _e.chunk_partitions := _e.chunk_partitions || _late.partitions;
            _late_rows := _late_rows + _late.row_count - coalesce(_late.sealed_rows, 0);
            _late_chunks := _late_chunks + 1;
        END LOOP;
    END LOOP;
    IF _e.last_event_id <= _last AND cardinality(_closes) = 0 THEN
        RETURN jsonb_build_object('sealed', false, 'seal_id', _chain, 'last_event_id', _last,
                                  'allocated', _allocated, 'waiting_for', to_jsonb(_writers), 'pending', to_jsonb(_xids),
                                  'head', CASE WHEN _chain > 0 THEN encode(_previous, 'hex') END);
    END IF;
    _e.row_count := _e.row_count + _late_rows;
    _e.previous := _previous;
    _e.extra := jsonb_build_object('format', {format}, 'pending', to_jsonb(_xids), 'closes', to_jsonb(_closes));
    _e.digest := {link}(_e.previous, _e.seal_id, _e.kind, _e.sealed_at, _e.first_event_id, _e.last_event_id,
                        _e.row_count, _e.chunk_size, _e.partition_name, _e.chunk_seal, _e.chunk_index,
                        _e.chunk_rows, _e.chunk_digest, _e.chunk_partitions, _e.extra);
    INSERT INTO {seals} SELECT _e.*;
    RETURN jsonb_build_object('sealed', true, 'seal_id', _e.seal_id, 'first_event_id', _e.first_event_id,
                              'last_event_id', _e.last_event_id, 'rows', _e.row_count,
                              'chunks', cardinality(_e.chunk_index), 'late_rows', _late_rows, 'late_chunks', _late_chunks,
                              'closes', to_jsonb(_closes), 'allocated', _allocated,
                              'waiting_for', to_jsonb(_writers), 'pending', to_jsonb(_xids), 'head', encode(_e.digest, 'hex'));
END
$fn$;
