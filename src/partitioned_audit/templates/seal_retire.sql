-- dpa_<layout>_retire(part, dropped): before retention takes a partition away
-- (sealing.retire()), appends what the chunks holding its sealed rows keep without it, so
-- the chain stays verifiable once its rows are gone. The seal table's trigger takes the
-- entry only while those chunks' rows still match their seals (one pass over the rows:
-- retire itself hashes none); when it refuses, retire names the chunk that no longer
-- matches. A partition holding sealed rows whose range did not end {min_retention}
-- (MIN_RETENTION) or more before now is refused.
-- Like every sealing function that turns rows or seals into text, it fixes the settings
-- that text depends on (search_path, TimeZone, DateStyle, IntervalStyle, extra_float_digits).
-- Deployed from the next line on, byte for byte: a change is a new object version.

CREATE OR REPLACE FUNCTION {retire}(part regclass, dropped boolean) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET "TimeZone" = 'UTC' SET "DateStyle" = 'ISO, YMD'
SET "IntervalStyle" = 'postgres' SET extra_float_digits = '1' AS $fn$
DECLARE
    _sealed bigint;
    _lo bigint;
    _hi bigint;
    _ids bigint[];
    _firsts bigint[];
    _sizes integer[];
    _formats integer[];
    _bounds text;
    _lower timestamp with time zone;
    _upper timestamp with time zone;
    _bad record;
    _e {seals}%ROWTYPE;
BEGIN
    SELECT s.last_event_id INTO _sealed FROM {seals} s WHERE s.kind = 'seal' ORDER BY s.seal_id DESC LIMIT 1;
    IF _sealed IS NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE format('SELECT min(%1$I), max(%1$I), count(*) FROM %2$s WHERE %1$I <= $1', {event_name}, part)
       INTO _e.first_event_id, _e.last_event_id, _e.row_count USING _sealed;
    IF _e.row_count = 0 THEN
        RETURN NULL;
    END IF;
    -- Retention takes only a partition whose whole range ended a day or more before now
    -- (MIN_RETENTION): the current month, a future one, MAXVALUE or the DEFAULT partition never go.
    SELECT pg_get_expr(c.relpartbound, c.oid) INTO _bounds FROM pg_class c WHERE c.oid = part;
    _lower := substring(_bounds FROM 'FROM \(''([^'']*)''\)')::timestamp with time zone;
    _upper := substring(_bounds FROM 'TO \(''([^'']*)''\)')::timestamp with time zone;
    IF _upper IS NULL OR _upper > now() - {min_retention} THEN
        RAISE EXCEPTION 'partitioned_audit: refusing to retire %: it holds sealed rows and its range (%) did not end % or more before now (%)', part, coalesce(_bounds, 'no bounds'), {min_retention}, now()
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Retention detaches or drops a partition only once its whole range has expired.';
    END IF;
    SELECT array_agg(s.seal_id ORDER BY s.seal_id), array_agg(s.first_event_id ORDER BY s.seal_id),
           array_agg(s.chunk_size ORDER BY s.seal_id), array_agg(coalesce((s.extra ->> 'format')::integer, 1) ORDER BY s.seal_id)
      INTO _ids, _firsts, _sizes, _formats FROM {seals} s WHERE s.kind = 'seal' AND s.last_event_id >= s.first_event_id;
    -- Whole chunks around the partition's rows.
    _lo := _firsts[width_bucket(_e.first_event_id, _firsts)];
    _lo := _lo + (_e.first_event_id - _lo) / _sizes[width_bucket(_e.first_event_id, _firsts)] * _sizes[width_bucket(_e.first_event_id, _firsts)];
    -- (into the next chunk, whose rows are all past the partition's and so left out below)
    _hi := least(_sealed, _e.last_event_id + _sizes[width_bucket(_e.last_event_id, _firsts)]);
    -- The chunks holding a sealed row of the partition (read from its event-id index, no row
    -- hashed), and what each holds once the partition is gone (the rows of other partitions).
    -- The seal table's trigger hashes the chunks' rows and takes the entry only if they still
    -- match their seals.
    EXECUTE format('SELECT array_agg(c.s ORDER BY c.s, c.k), array_agg(c.k ORDER BY c.s, c.k),
                           array_agg(coalesce(r.row_count, 0) ORDER BY c.s, c.k),
                           array_agg(coalesce(r.digest, sha256(''''::bytea)) ORDER BY c.s, c.k),
                           array_agg(coalesce(r.partitions, '''') ORDER BY c.s, c.k)
                      FROM (SELECT DISTINCT $1[w.i] AS s, ((e.%1$I - $2[w.i]) / $3[w.i])::integer AS k
                              FROM %2$s e CROSS JOIN LATERAL (SELECT width_bucket(e.%1$I, $2) AS i) AS w
                             WHERE e.%1$I >= $5 AND e.%1$I <= $6 AND w.i > 0) AS c
                      LEFT JOIN %3$s($1, $2, $3, $4, $5, $6, $7, ''{{}}'') AS r ON r.seal_id = c.s AND r.chunk = c.k',
                   {event_name}, part, {chunks_name})
       INTO _e.chunk_seal, _e.chunk_index, _e.chunk_rows, _e.chunk_digest, _e.chunk_partitions
      USING _ids, _firsts, _sizes, _formats, _lo, _hi, part;
    SELECT s.seal_id + 1, s.digest INTO _e.seal_id, _e.previous FROM {seals} s ORDER BY s.seal_id DESC LIMIT 1;
    _e.kind := CASE WHEN dropped THEN 'drop' ELSE 'detach' END;
    _e.sealed_at := now();
    _e.partition_name := part::text;
    _e.extra := jsonb_build_object('format', {format}, 'range', jsonb_build_array(_lower, _upper));
BEGIN
    _e.digest := {link}(_e.previous, _e.seal_id, _e.kind, _e.sealed_at, _e.first_event_id, _e.last_event_id,
                        _e.row_count, _e.chunk_size, _e.partition_name, _e.chunk_seal, _e.chunk_index,
                        _e.chunk_rows, _e.chunk_digest, _e.chunk_partitions, _e.extra);
    INSERT INTO {seals} SELECT _e.*;
    EXCEPTION WHEN insufficient_privilege THEN
        -- The trigger refused the entry: when a chunk holding a row of the partition no
        -- longer matches its seal (the usual reason), say which, and how.
        SELECT f.seal_id, f.chunk, x.n AS expected, f.row_count AS found INTO _bad
          FROM {chunks}(_ids, _firsts, _sizes, _formats, _lo, _hi, NULL, '{{}}') AS f
          LEFT JOIN LATERAL (SELECT c.n, c.d FROM {seals} s,
                                    unnest(s.chunk_seal, s.chunk_index, s.chunk_rows, s.chunk_digest) AS c(cs, k, n, d)
                              WHERE c.cs = f.seal_id AND c.k = f.chunk ORDER BY s.seal_id DESC LIMIT 1) AS x ON true
         WHERE part = ANY (f.parts) AND (x.n IS DISTINCT FROM f.row_count OR x.d IS DISTINCT FROM f.digest)
         ORDER BY f.seal_id, f.chunk
         LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'partitioned_audit: refusing to retire %: chunk % of seal % no longer matches its seal (% rows sealed, % found); run verify', part, _bad.chunk, _bad.seal_id, _bad.expected, _bad.found
                USING ERRCODE = 'data_corrupted';
        END IF;
        RAISE;
    END;
    RETURN jsonb_build_object('seal_id', _e.seal_id, 'kind', _e.kind, 'partition', _e.partition_name,
                              'first_event_id', _e.first_event_id, 'last_event_id', _e.last_event_id,
                              'rows', _e.row_count, 'head', encode(_e.digest, 'hex'));
END
$fn$;
