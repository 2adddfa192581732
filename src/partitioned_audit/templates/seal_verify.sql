-- dpa_<layout>_verify(expect): recomputes every chunk and the chain; one row per finding
-- (sealing.Finding), then a 'summary' row, which sealing.verify() reads. expect is a head
-- kept outside the database, which the chain must contain. STABLE: every query in it reads
-- the snapshot of the statement that called it, so rows and seals are compared as of one
-- instant.
-- Like every sealing function that turns rows or seals into text, it fixes the settings
-- that text depends on (search_path, TimeZone, DateStyle, IntervalStyle, extra_float_digits).
-- Deployed from the next line on, byte for byte: a change is a new object version.

CREATE OR REPLACE FUNCTION {verify}(expect bytea) RETURNS TABLE (
    kind text, seal_id bigint, first_event_id bigint, last_event_id bigint,
    expected_rows bigint, found_rows bigint, partitions text, detail text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp SET "TimeZone" = 'UTC' SET "DateStyle" = 'ISO, YMD'
SET "IntervalStyle" = 'postgres' SET extra_float_digits = '1' SET work_mem = '64MB' AS $fn$
DECLARE
    _s record;
    _previous bytea := {genesis};
    _next bigint := 1;
    _ids bigint[];
    _firsts bigint[];
    _sizes integer[];
    _lasts bigint[];
    _formats integer[];
    _open bigint[];
    _skip bigint[];
    _upper timestamp with time zone;
    _sealed bigint := 0;
    _head bytea;
    _rows bigint := 0;
    _skipped bigint[] := '{{}}';
    _opens bigint[] := '{{}}';
    _top_format integer;
    _top_seal bigint;
    _late_before bigint;
    _problem text;
BEGIN
    FOR _s IN SELECT * FROM {seals} ORDER BY 1 LOOP
        IF _s.seal_id <> _next THEN
            RETURN QUERY SELECT 'chain'::text, _s.seal_id, NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint, NULL::text,
                format('seals %s to %s are missing', _next, _s.seal_id - 1);
        ELSIF _s.previous <> _previous THEN
            RETURN QUERY SELECT 'chain'::text, _s.seal_id, NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint, NULL::text,
                format('seal %s does not chain from seal %s', _s.seal_id, _s.seal_id - 1);
        END IF;
        IF {link}(_s.previous, _s.seal_id, _s.kind, _s.sealed_at, _s.first_event_id, _s.last_event_id, _s.row_count,
                  _s.chunk_size, _s.partition_name, _s.chunk_seal, _s.chunk_index, _s.chunk_rows, _s.chunk_digest,
                  _s.chunk_partitions, _s.extra) IS DISTINCT FROM _s.digest THEN
            RETURN QUERY SELECT 'chain'::text, _s.seal_id, _s.first_event_id, _s.last_event_id, NULL::bigint, NULL::bigint,
                NULL::text, format('seal %s was altered: its digest does not match its contents', _s.seal_id);
        END IF;
        -- A retired partition attached again (restored from its archive) is back: its rows
        -- are checked against the seals that held them before the retention entry.
        IF _s.kind <> 'seal' AND EXISTS (SELECT FROM pg_inherits i WHERE i.inhparent = {table_reg}
                                            AND i.inhrelid::regclass::text = _s.partition_name) THEN
            RETURN QUERY SELECT 'restored'::text, _s.seal_id, _s.first_event_id, _s.last_event_id, _s.row_count,
                NULL::bigint, _s.partition_name,
                format('%s rows retired at %s are a partition of %s again, checked against their seals',
                       _s.row_count, _s.sealed_at, {table_text});
            _skipped := _skipped || _s.seal_id;
            _previous := _s.digest;
            _next := _s.seal_id + 1;
            CONTINUE;
        END IF;
        -- Only an entry that claims what it may counts: its own chunks, or a retired partition's.
        _problem := CASE
            WHEN false THEN NULL
            ELSE {entry_problem}(_s.seal_id, _s.kind, _s.first_event_id, _s.last_event_id, _s.row_count, _s.chunk_size,
                    _s.chunk_seal, _s.chunk_index, _s.chunk_rows, _s.chunk_digest, _s.chunk_partitions, _s.extra,
                    _ids, _firsts, _lasts, _sizes, _opens,
                    -- (the rows the chunks of earlier seals it carries had, in the counted entries)
                    CASE WHEN _s.kind = 'seal' AND EXISTS (
                             SELECT FROM unnest(_s.chunk_seal) AS c WHERE c IS DISTINCT FROM _s.seal_id) THEN
                        (SELECT sum(x.n)::bigint FROM unnest(_s.chunk_seal, _s.chunk_index) AS c(s, k)
                           CROSS JOIN LATERAL (SELECT e.n FROM {seals} p, unnest(p.chunk_seal, p.chunk_index, p.chunk_rows) AS e(cs, k, n)
                                                WHERE p.seal_id < _s.seal_id AND p.seal_id <> ALL (_skipped)
                                                  AND e.cs = c.s AND e.k = c.k ORDER BY p.seal_id DESC LIMIT 1) AS x
                          WHERE c.s IS DISTINCT FROM _s.seal_id) END,
                    _top_format, _top_seal)
        END;
        IF _problem IS NOT NULL THEN
            RETURN QUERY SELECT 'chain'::text, _s.seal_id, _s.first_event_id, _s.last_event_id, NULL::bigint, NULL::bigint,
                _s.partition_name, format('seal %s is not counted: %s', _s.seal_id, _problem);
            _skipped := _skipped || _s.seal_id;
            _previous := _s.digest;
            _next := _s.seal_id + 1;
            CONTINUE;
        END IF;
        IF _s.kind = 'seal' THEN
            IF _s.first_event_id <> _sealed + 1 THEN
                RETURN QUERY SELECT 'chain'::text, _s.seal_id, _s.first_event_id, _s.last_event_id, NULL::bigint,
                    NULL::bigint, NULL::text, format('seal %s starts at event %s, not %s', _s.seal_id, _s.first_event_id, _sealed + 1);
            END IF;
            IF _s.last_event_id >= _s.first_event_id THEN  -- (an entry sealing late rows only has none)
                _ids := _ids || _s.seal_id;
                _firsts := _firsts || _s.first_event_id;
                _sizes := _sizes || _s.chunk_size;
                _lasts := _lasts || _s.last_event_id;
                _formats := _formats || coalesce((_s.extra ->> 'format')::integer, 1);
                _sealed := _s.last_event_id;
            END IF;
            _rows := _rows + _s.row_count;
            -- (the first counted seal of the highest format so far: no later one may be lower)
            IF coalesce((_s.extra ->> 'format')::integer, 1) > coalesce(_top_format, 0) THEN
                _top_format := coalesce((_s.extra ->> 'format')::integer, 1);
                _top_seal := _s.seal_id;
            END IF;
            _opens := ARRAY(SELECT o FROM unnest(_opens) AS o
                             WHERE NOT coalesce(_s.extra -> 'closes' @> to_jsonb(o), false));
            IF jsonb_array_length(coalesce(_s.extra -> 'pending', '[]')) > 0 THEN
                _opens := _opens || _s.seal_id;
            END IF;
        ELSE
            _rows := _rows - _s.row_count;
            -- Only a partition whose whole range had ended a day before went by retention;
            -- entries of format 1 carry no range, only the partition's name.
            _upper := CASE WHEN _s.extra IS NOT NULL THEN (_s.extra -> 'range' ->> 1)::timestamp with time zone
                           ELSE to_date(substring(_s.partition_name FROM '_[0-9]{{8}}_([0-9]{{8}})$'), 'YYYYMMDD')::timestamp AT TIME ZONE 'UTC' END;
            IF (_s.extra IS NOT NULL OR _upper IS NOT NULL) AND (_upper IS NULL OR _upper > _s.sealed_at - {min_retention}) THEN
                RETURN QUERY SELECT 'removed'::text, _s.seal_id, _s.first_event_id, _s.last_event_id, _s.row_count,
                    0::bigint, _s.partition_name,
                    format('%s rows were %s at %s as retention, but the partition''s range ends %s, not %s or more before: it had not expired',
                           _s.row_count, CASE WHEN _s.kind = 'drop' THEN 'dropped' ELSE 'detached' END, _s.sealed_at,
                           coalesce('at ' || _upper::text, 'never'), {min_retention});
            ELSE
                RETURN QUERY SELECT 'retired'::text, _s.seal_id, _s.first_event_id, _s.last_event_id, _s.row_count,
                    NULL::bigint, _s.partition_name,
                    format('%s rows %s by retention at %s', _s.row_count,
                           CASE WHEN _s.kind = 'drop' THEN 'dropped' ELSE 'detached' END, _s.sealed_at);
            END IF;
        END IF;
        _previous := _s.digest;
        _next := _s.seal_id + 1;
    END LOOP;
    _head := CASE WHEN _next > 1 THEN _previous END;
    IF expect IS NOT NULL AND NOT EXISTS (SELECT FROM {seals} s WHERE s.digest = expect) THEN
        RETURN QUERY SELECT 'head'::text, NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint, NULL::text,
            format('the head kept outside the database, %s, is not in the chain: the seals were rewritten or cut short', encode(expect, 'hex'));
    END IF;
    -- Seals whose open transactions may still add late rows: a chunk of theirs that differs
    -- only by rows of those transactions is as sealed.
    _open := _opens;
    _skip := ARRAY(SELECT DISTINCT x::bigint FROM {seals} s, jsonb_array_elements_text(s.extra -> 'pending') AS x
                    WHERE s.seal_id = ANY (_open));
    IF _ids IS NOT NULL THEN
        RETURN QUERY
        WITH expected AS (
            SELECT DISTINCT ON (c.cs, c.k) c.cs, c.k, c.n, c.d, c.p
              FROM {seals} s, unnest(s.chunk_seal, s.chunk_index, s.chunk_rows, s.chunk_digest, s.chunk_partitions) AS c(cs, k, n, d, p)
             WHERE s.seal_id <> ALL (_skipped)
             ORDER BY c.cs, c.k, s.seal_id DESC
        ), found AS (
            SELECT * FROM {chunks}(_ids, _firsts, _sizes, _formats, _firsts[1], _sealed, NULL, _skip)
        ), compared AS (
            SELECT coalesce(e.cs, f.seal_id) AS cs, coalesce(e.k, f.chunk) AS k,
                   coalesce(e.n, 0) AS n, coalesce(f.row_count, 0) AS found_n,
                   coalesce(nullif(f.partitions, ''), e.p) AS p,
                   e.d IS DISTINCT FROM f.digest
                   AND NOT coalesce(f.seal_id = ANY (_open) AND coalesce(e.n, 0) = f.settled_rows
                                    AND (f.settled_rows = 0 OR e.d = f.settled), false) AS differs,
                   CASE WHEN e.p IS DISTINCT FROM f.partitions AND e.p <> ''
                        THEN format(' (sealed in %s)', e.p) ELSE '' END AS was
              FROM expected e FULL JOIN found f ON f.seal_id = e.cs AND f.chunk = e.k
        )
        SELECT CASE WHEN c.found_n < c.n THEN 'removed' WHEN c.found_n > c.n THEN 'added' ELSE 'changed' END,
               c.cs, b.lo, b.hi, c.n, c.found_n, c.p,
               CASE WHEN c.found_n < c.n THEN format('%s of %s sealed rows are missing', c.n - c.found_n, c.n)
                    WHEN c.found_n > c.n THEN format('%s rows more than the %s sealed', c.found_n - c.n, c.n)
                    ELSE format('%s rows were sealed and %s are there, but their contents differ', c.n, c.found_n)
               END || c.was
          FROM compared c
          CROSS JOIN LATERAL (SELECT array_position(_ids, c.cs) AS i) AS x
          CROSS JOIN LATERAL (SELECT _firsts[x.i] + c.k::bigint * _sizes[x.i] AS lo,
                                     least(_lasts[x.i], _firsts[x.i] + (c.k::bigint + 1) * _sizes[x.i] - 1) AS hi) AS b
         WHERE c.differs AND NOT (c.n = 0 AND c.found_n = 0)
         ORDER BY b.lo;
    END IF;
    -- Rows with ids no seal can cover: below the first or empty.
    RETURN QUERY
    SELECT 'added'::text, NULL::bigint, min(e.{event}), max(e.{event}), 0::bigint, count(*),
           string_agg(DISTINCT e.tableoid::regclass::text, ' '), format('%s rows with an event id below 1 or none', count(*))
      FROM {table} e
     WHERE _ids IS NOT NULL AND (e.{event} < 1 OR e.{event} IS NULL)
    HAVING count(*) > 0;
    RETURN QUERY SELECT 'summary'::text, _next - 1, _firsts[1], _sealed, _rows, NULL::bigint, NULL::text, encode(_head, 'hex');
END
$fn$;
