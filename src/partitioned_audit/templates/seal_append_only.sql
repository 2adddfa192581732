-- dpa_seal_append_only, shared by both layouts: the function of the seal table's triggers
-- (create_append_only() in sealing.py creates them, enabled ALWAYS). It refuses every
-- UPDATE, DELETE and TRUNCATE, and an INSERT unless the entry chains from the last one and
-- claims only what it may, whoever inserts it; the comment below says what it checks.
-- A seal entry is taken only in the format the seal function of this version writes
-- (sealing.FORMAT): an entry of an earlier format hashes less of a row, no function of this
-- version makes one, and those in the table were made by earlier versions before an upgrade.
-- Deployed from the next line on, byte for byte: a change is a new object version.
-- The seal table takes INSERTs only, and only of an entry that chains from the last one
-- and claims only what it may (whoever inserts it: no setting lets an entry through),
-- a seal only in the format the seal function writes.
-- TG_ARGV[0] is the audit table, whose partitions retention entries name; TG_ARGV[1] its
-- chunks function. An entry that replaces digests of earlier seals' chunks is checked
-- against the rows, since nobody can check it later: a retention entry (nobody can
-- recompute what it replaces once the partition is gone) is taken only while the chunks it
-- replaces still match their seals, and only if its digests are those of their rows outside
-- the partition; a seal closing earlier seals only once all their pending transactions have
-- ended, and only with chunks whose rows, without those transactions' (the late rows),
-- still match the digest they had, with the digests of all their rows now.
CREATE OR REPLACE FUNCTION {append_only}() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    _last bigint;
    _previous bytea;
    _sealed bigint;
    _ids bigint[];
    _firsts bigint[];
    _lasts bigint[];
    _sizes integer[];
    _formats integer[];
    _opens bigint[];
    _top_format integer;
    _top_seal bigint;
    _late_before bigint;
    _problem text;
    _lo bigint;
    _hi bigint;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        RAISE EXCEPTION 'partitioned_audit: % is append-only: seals are written by the sealing functions and never changed', TG_TABLE_NAME
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    EXECUTE format('SELECT max(s.seal_id), (array_agg(s.digest ORDER BY s.seal_id DESC))[1],
                           max(s.last_event_id) FILTER (WHERE s.kind = ''seal''),
                           array_agg(s.seal_id ORDER BY s.seal_id) FILTER (WHERE s.kind = ''seal'' AND s.last_event_id >= s.first_event_id),
                           array_agg(s.first_event_id ORDER BY s.seal_id) FILTER (WHERE s.kind = ''seal'' AND s.last_event_id >= s.first_event_id),
                           array_agg(s.last_event_id ORDER BY s.seal_id) FILTER (WHERE s.kind = ''seal'' AND s.last_event_id >= s.first_event_id),
                           array_agg(s.chunk_size ORDER BY s.seal_id) FILTER (WHERE s.kind = ''seal'' AND s.last_event_id >= s.first_event_id),
                           array_agg(coalesce((s.extra ->> ''format'')::integer, 1) ORDER BY s.seal_id)
                               FILTER (WHERE s.kind = ''seal'' AND s.last_event_id >= s.first_event_id),
                           coalesce(array_agg(s.seal_id ORDER BY s.seal_id)
                               FILTER (WHERE s.kind = ''seal'' AND jsonb_array_length(coalesce(s.extra -> ''pending'', ''[]'')) > 0
                                         AND NOT EXISTS (SELECT FROM %1$I.%2$I c WHERE c.extra -> ''closes'' @> to_jsonb(s.seal_id))), ''{{}}''),
                           max(coalesce((s.extra ->> ''format'')::integer, 1)) FILTER (WHERE s.kind = ''seal''),
                           (array_agg(s.seal_id ORDER BY coalesce((s.extra ->> ''format'')::integer, 1) DESC, s.seal_id)
                               FILTER (WHERE s.kind = ''seal''))[1]
                      FROM %1$I.%2$I s', TG_TABLE_SCHEMA, TG_TABLE_NAME)
       INTO _last, _previous, _sealed, _ids, _firsts, _lasts, _sizes, _formats, _opens, _top_format, _top_seal;
    -- The rows the chunks of earlier seals a seal carries had: those of the newest entry naming each.
    EXECUTE format('SELECT sum(x.n)::bigint FROM unnest($1, $2) AS c(s, k)
                      CROSS JOIN LATERAL (SELECT e.n FROM %1$I.%2$I s, unnest(s.chunk_seal, s.chunk_index, s.chunk_rows) AS e(cs, k, n)
                                           WHERE e.cs = c.s AND e.k = c.k ORDER BY s.seal_id DESC LIMIT 1) AS x
                     WHERE c.s IS DISTINCT FROM $3', TG_TABLE_SCHEMA, TG_TABLE_NAME)
       INTO _late_before USING NEW.chunk_seal, NEW.chunk_index, NEW.seal_id;
    _problem := CASE
        WHEN NEW.seal_id IS DISTINCT FROM coalesce(_last, 0) + 1
            THEN format('its id is %s where the chain goes on with %s', NEW.seal_id, coalesce(_last, 0) + 1)
        WHEN NEW.previous IS DISTINCT FROM coalesce(_previous, {genesis}) THEN 'it does not chain from the last entry'
        WHEN NEW.digest IS DISTINCT FROM {link}(NEW.previous, NEW.seal_id, NEW.kind, NEW.sealed_at, NEW.first_event_id,
                NEW.last_event_id, NEW.row_count, NEW.chunk_size, NEW.partition_name, NEW.chunk_seal, NEW.chunk_index,
                NEW.chunk_rows, NEW.chunk_digest, NEW.chunk_partitions, NEW.extra)
            THEN 'its digest does not match its contents'
        WHEN NEW.kind = 'seal' AND NEW.first_event_id IS DISTINCT FROM coalesce(_sealed, 0) + 1
            THEN format('it starts at event %s, not %s', NEW.first_event_id, coalesce(_sealed, 0) + 1)
        -- Retention appends its entry before the partition leaves the audit table.
        WHEN NEW.kind <> 'seal' AND NOT EXISTS (
                SELECT FROM pg_inherits i WHERE i.inhparent = TG_ARGV[0]::regclass
                   AND i.inhrelid::regclass::text = NEW.partition_name)
            THEN format('it retires %s, which is not a partition of %s', NEW.partition_name, TG_ARGV[0])
        ELSE coalesce({entry_problem}(NEW.seal_id, NEW.kind, NEW.first_event_id, NEW.last_event_id, NEW.row_count,
                NEW.chunk_size, NEW.chunk_seal, NEW.chunk_index, NEW.chunk_rows, NEW.chunk_digest, NEW.chunk_partitions,
                NEW.extra, _ids, _firsts, _lasts, _sizes, _opens, _late_before, _top_format, _top_seal),
            CASE WHEN NEW.kind = 'seal' AND NEW.extra ->> 'format' IS DISTINCT FROM {format}::text
                THEN format('its format %s is not %s, the one seals are written in', coalesce(NEW.extra -> 'format', '1'), {format})
            END)
    END;
    IF _problem IS NULL AND NEW.kind = 'seal' AND jsonb_array_length(coalesce(NEW.extra -> 'closes', '[]')) > 0 THEN
        -- (pg_xact_status: committed, aborted, or NULL once too old to tell, all ended)
        EXECUTE format($q$
            SELECT format('it closes seal %%s while its transaction %%s is still open', s.seal_id, x)
              FROM %1$I.%2$I s, jsonb_array_elements_text(s.extra -> 'pending') AS x
             WHERE s.extra -> 'pending' IS NOT NULL AND $1 -> 'closes' @> to_jsonb(s.seal_id)
               AND pg_xact_status(x::xid8) = 'in progress'
             ORDER BY s.seal_id LIMIT 1$q$, TG_TABLE_SCHEMA, TG_TABLE_NAME)
          INTO _problem USING NEW.extra;
    END IF;
    IF _problem IS NULL AND NEW.kind = 'seal' AND EXISTS (SELECT FROM unnest(NEW.chunk_seal) AS c WHERE c <> NEW.seal_id) THEN
        -- Each chunk of a closed seal: its rows without the pending transactions' are what
        -- the newest entry naming it holds, and all its rows are what this entry says.
        EXECUTE format($q$
            SELECT CASE WHEN coalesce(x.n, 0) <> coalesce(f.settled_rows, 0) OR (coalesce(f.settled_rows, 0) > 0 AND x.d IS DISTINCT FROM f.settled)
                        THEN format('chunk %%s of seal %%s changed beyond the late rows of the transactions it closes', c.k, c.s)
                        ELSE format('chunk %%s of seal %%s does not hold what its rows hash to', c.k, c.s) END
              FROM unnest($1, $2, $3, $4) WITH ORDINALITY AS c(s, k, n, d, o)
              JOIN %2$I.%3$I s ON s.seal_id = c.s
              LEFT JOIN LATERAL %1$s(ARRAY[s.seal_id], ARRAY[s.first_event_id], ARRAY[s.chunk_size],
                                     ARRAY[coalesce((s.extra ->> 'format')::integer, 1)],
                                     s.first_event_id + c.k::bigint * s.chunk_size,
                                     least(s.last_event_id, s.first_event_id + (c.k::bigint + 1) * s.chunk_size - 1), NULL,
                                     ARRAY(SELECT p::bigint FROM jsonb_array_elements_text(s.extra -> 'pending') AS p)) AS f ON true
              LEFT JOIN LATERAL (SELECT e.n, e.d FROM %2$I.%3$I s2, unnest(s2.chunk_seal, s2.chunk_index, s2.chunk_rows, s2.chunk_digest) AS e(cs, k, n, d)
                                  WHERE e.cs = c.s AND e.k = c.k ORDER BY s2.seal_id DESC LIMIT 1) AS x ON true
             WHERE c.s <> $5
               AND (coalesce(x.n, 0) <> coalesce(f.settled_rows, 0) OR (coalesce(f.settled_rows, 0) > 0 AND x.d IS DISTINCT FROM f.settled)
                    OR c.n <> coalesce(f.row_count, 0) OR c.d IS DISTINCT FROM f.digest)
             ORDER BY c.o LIMIT 1$q$, TG_ARGV[1], TG_TABLE_SCHEMA, TG_TABLE_NAME)
          INTO _problem
          USING NEW.chunk_seal, NEW.chunk_index, NEW.chunk_rows, NEW.chunk_digest, NEW.seal_id;
    END IF;
    IF _problem IS NULL AND NEW.kind <> 'seal' THEN
        SELECT min(x.f + c.k::bigint * x.z), max(least(x.l, x.f + (c.k::bigint + 1) * x.z - 1)) INTO _lo, _hi
          FROM unnest(NEW.chunk_seal, NEW.chunk_index) AS c(s, k) JOIN unnest(_ids, _firsts, _lasts, _sizes) AS x(i, f, l, z) ON x.i = c.s;
        EXECUTE format($q$
            SELECT CASE WHEN x.d IS DISTINCT FROM a.digest OR coalesce(x.n, 0) <> coalesce(a.row_count, 0)
                        THEN format('chunk %%s of seal %%s no longer matches its seal', c.k, c.s)
                        ELSE 'its chunks are not what they keep without the partition' END
              FROM unnest($6, $7, $8, $9) AS c(s, k, n, d)
              LEFT JOIN %1$s($1, $2, $3, $11, $4, $5, NULL, '{{}}') AS a ON a.seal_id = c.s AND a.chunk = c.k
              LEFT JOIN %1$s($1, $2, $3, $11, $4, $5, $10::regclass, '{{}}') AS b ON b.seal_id = c.s AND b.chunk = c.k
              LEFT JOIN LATERAL (SELECT e.n, e.d FROM %2$I.%3$I s, unnest(s.chunk_seal, s.chunk_index, s.chunk_rows, s.chunk_digest) AS e(cs, k, n, d)
                                  WHERE e.cs = c.s AND e.k = c.k ORDER BY s.seal_id DESC LIMIT 1) AS x ON true
             WHERE x.d IS DISTINCT FROM a.digest OR coalesce(x.n, 0) <> coalesce(a.row_count, 0)
                OR c.n <> coalesce(b.row_count, 0) OR c.d <> coalesce(b.digest, sha256(''::bytea))
             ORDER BY 1 LIMIT 1$q$, TG_ARGV[1], TG_TABLE_SCHEMA, TG_TABLE_NAME)
          INTO _problem
          USING _ids, _firsts, _sizes, _lo, _hi, NEW.chunk_seal, NEW.chunk_index, NEW.chunk_rows, NEW.chunk_digest,
                NEW.partition_name, _formats;
    END IF;
    IF _problem IS NOT NULL THEN
        RAISE EXCEPTION 'partitioned_audit: % is append-only: seal % is refused: %', TG_TABLE_NAME, NEW.seal_id, _problem
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Seals are written by the seal and retire functions (manage_partition_tables seal, detach, drop).';
    END IF;
    RETURN NEW;
END
$fn$;
