-- dpa_seal_entry_problem, shared by both layouts: what an entry of the seal table claims
-- that it may not (NULL when nothing), from the entry and the earlier counted seals its
-- caller passes in (it reads no table: IMMUTABLE). The seal table's trigger asks it before
-- taking an entry, and verify asks it again of every entry, so an entry slipped past the
-- trigger is reported and not counted. The DROPs remove its earlier signatures (a new
-- argument is a new function, which CREATE OR REPLACE would add beside the old one).
-- Deployed from the next line on, byte for byte: a change is a new object version.
DROP FUNCTION IF EXISTS {entry_problem}(bigint, text, bigint, bigint, bigint, integer, bigint[], integer[], bigint[],
    bytea[], text[], bigint[], bigint[], bigint[], integer[]);
DROP FUNCTION IF EXISTS {entry_problem}(bigint, text, bigint, bigint, bigint, integer, bigint[], integer[], bigint[],
    bytea[], text[], jsonb, bigint[], bigint[], bigint[], integer[], bigint[], bigint);
-- What an entry claims that it may not, given the earlier counted seals (ids, firsts, lasts,
-- sizes: those covering ids), the seals among them still open (opens: pending transactions,
-- not closed yet), the rows the chunks of earlier seals it carries had (late_before), and
-- the highest format of the earlier counted seals with the first seal of that format
-- (top_format, top_seal; NULL before any): a seal's format never goes down along the chain,
-- since an earlier format hashes less of a row (format 2 not its context row), so a seal
-- of one after a later one would leave rows sealed since open to a rewrite it cannot see.
CREATE OR REPLACE FUNCTION {entry_problem}(seal_id bigint, kind text, first_event_id bigint, last_event_id bigint,
    row_count bigint, chunk_size integer, chunk_seal bigint[], chunk_index integer[], chunk_rows bigint[],
    chunk_digest bytea[], chunk_partitions text[], extra jsonb, ids bigint[], firsts bigint[], lasts bigint[],
    sizes integer[], opens bigint[], late_before bigint, top_format integer, top_seal bigint)
RETURNS text LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    _closes bigint[] := '{{}}';
BEGIN
    IF extra IS NOT NULL AND (jsonb_typeof(extra) <> 'object'
                              OR NOT coalesce((extra -> 'format') IN ({extra_formats}), false)) THEN
        RETURN format('its format %s is unknown', CASE WHEN jsonb_typeof(extra) = 'object' THEN extra -> 'format' END);
    END IF;
    IF kind = 'seal' AND extra IS NOT NULL THEN
        IF jsonb_typeof(extra -> 'pending') IS DISTINCT FROM 'array' OR jsonb_typeof(extra -> 'closes') IS DISTINCT FROM 'array'
           OR EXISTS (SELECT FROM jsonb_array_elements(extra -> 'pending') AS x WHERE x::text !~ '^[0-9]{{1,18}}$')
           OR EXISTS (SELECT FROM jsonb_array_elements(extra -> 'closes') AS x WHERE x::text !~ '^[0-9]{{1,18}}$') THEN
            RETURN 'its pending transactions and the seals it closes are not lists of ids';
        END IF;
        _closes := ARRAY(SELECT x::text::bigint FROM jsonb_array_elements(extra -> 'closes') AS x);
    END IF;
    IF kind = 'seal' AND coalesce((extra ->> 'format')::numeric, 1) < top_format THEN
        RETURN format('its format %s is lower than format %s of seal %s before it',
                      coalesce(extra -> 'format', '1'), top_format, top_seal);
    END IF;
    RETURN CASE
        -- (an entry that seals late rows only covers no new id: first is last + 1)
        WHEN kind IS NULL OR first_event_id IS NULL OR last_event_id IS NULL
          OR first_event_id > last_event_id + CASE WHEN cardinality(_closes) > 0 THEN 1 ELSE 0 END
            THEN format('it covers events %s..%s, which end before they start', first_event_id, last_event_id)
        WHEN coalesce(cardinality(chunk_seal), -1) <> coalesce(cardinality(chunk_index), -1)
          OR coalesce(cardinality(chunk_seal), -1) <> coalesce(cardinality(chunk_rows), -1)
          OR coalesce(cardinality(chunk_seal), -1) <> coalesce(cardinality(chunk_digest), -1)
          OR coalesce(cardinality(chunk_seal), -1) <> coalesce(cardinality(chunk_partitions), -1)
            THEN 'its chunk arrays differ in length'
        WHEN EXISTS (SELECT FROM unnest(chunk_rows, chunk_digest) AS c(n, d) WHERE c.n IS NULL OR c.n < 0 OR c.d IS NULL)
            THEN 'it holds a chunk without a row count or a digest'
        WHEN kind = 'seal' AND (chunk_size IS NULL OR chunk_size < 1) THEN 'its chunk size is not 1 or more'
        -- A seal closes only earlier seals still open, each once.
        WHEN kind = 'seal' AND EXISTS (SELECT FROM unnest(_closes) AS c WHERE c <> ALL (coalesce(opens, '{{}}')))
            THEN format('it closes seal %s, which has no open transactions to close',
                        (SELECT c FROM unnest(_closes) AS c WHERE c <> ALL (coalesce(opens, '{{}}')) LIMIT 1))
        WHEN kind = 'seal' AND (SELECT count(DISTINCT c) FROM unnest(_closes) AS c) <> cardinality(_closes)
            THEN 'it closes a seal twice'
        -- A seal holds its own chunks, in order, then chunks of the seals it closes (their
        -- late rows), in order: each once, within its seal's range.
        WHEN kind = 'seal' AND EXISTS (
                SELECT FROM unnest(chunk_seal, chunk_index) WITH ORDINALITY AS c(s, k, o)
                  LEFT JOIN unnest(chunk_seal, chunk_index) WITH ORDINALITY AS p(s, k, o) ON p.o = c.o - 1
                  LEFT JOIN unnest(ids, firsts, lasts, sizes) AS x(i, f, l, z)
                         ON x.i = c.s AND x.i < seal_id AND x.i = ANY (_closes)
                 WHERE c.s IS NULL OR c.k IS NULL OR c.k < 0
                    OR (c.s = seal_id AND (last_event_id < first_event_id OR c.k > (last_event_id - first_event_id) / chunk_size))
                    OR (c.s IS DISTINCT FROM seal_id AND (x.i IS NULL OR c.k > (x.l - x.f) / x.z))
                    OR (p.o IS NOT NULL AND ROW(p.s IS DISTINCT FROM seal_id, p.s, p.k) >= ROW(c.s IS DISTINCT FROM seal_id, c.s, c.k)))
            THEN 'it holds chunks that are not its own'
        WHEN kind = 'seal' AND row_count IS DISTINCT FROM
                (SELECT coalesce(sum(n), 0) FROM unnest(chunk_rows) AS n) - coalesce(late_before, 0)
            THEN 'its row count is not the sum of its chunks'
        -- Retention replaces chunks of earlier seals only, each once.
        WHEN kind IN ('detach', 'drop') AND EXISTS (
                SELECT FROM unnest(chunk_seal, chunk_index) AS c(s, k)
                  LEFT JOIN unnest(ids, firsts, lasts, sizes) AS x(i, f, l, z) ON x.i = c.s AND x.i < seal_id
                 WHERE x.i IS NULL OR c.k IS NULL OR c.k < 0 OR c.k > (x.l - x.f) / x.z)
            THEN 'it retires chunks no earlier seal holds'
        WHEN kind IN ('detach', 'drop') AND (SELECT count(DISTINCT (c.s, c.k)) FROM unnest(chunk_seal, chunk_index) AS c(s, k))
                                            <> cardinality(chunk_seal)
            THEN 'it retires a chunk twice'
        WHEN kind NOT IN ('seal', 'detach', 'drop') THEN format('its kind %s is unknown', kind)
    END;
END
$fn$;
