-- dpa_<layout>_chunks: the chunks of the rows with event ids in [lo, hi] (and not in table
-- exclude), with their row counts and digests; seal, retire, verify and the seal table's
-- trigger hash rows only here. Each row falls in the seal whose first id is the largest not
-- above its id (width_bucket over firsts), and in chunk (id - first) / size of it. A seal of
-- format 1 hashes its chunk's lines whole; later formats hash each row apart ({row_digest},
-- from the UTF-8 bytes {field_bytes} makes: _row_digest() and _field_bytes() in sealing.py),
-- so a chunk needs 32 bytes a row whatever the rows hold. settled is the digest (and
-- settled_rows the count) without the rows of transactions skip: what a seal saw when they
-- were still open. {columns} (format 1's), {all_columns}, {stray}, {row_digest}, {field_bytes}
-- and {context_join} are made from the layout's columns (a column added since a format adds
-- nothing to the rows of that format's seals, which hold NULL there; a row that holds a
-- value in one ({stray}) is hashed with every column: Layout.stray_columns).
-- Like every sealing function that turns rows or seals into text, it fixes the settings
-- that text depends on (search_path, TimeZone, DateStyle, IntervalStyle, extra_float_digits).
-- The DROP removes the signature it had before formats and skip.
-- Deployed from the next line on, byte for byte: a change is a new object version.

DROP FUNCTION IF EXISTS {chunks}(bigint[], bigint[], integer[], bigint, bigint, oid);
CREATE OR REPLACE FUNCTION {chunks}(seal_ids bigint[], firsts bigint[], sizes integer[], formats integer[],
    lo bigint, hi bigint, exclude oid, skip bigint[])
RETURNS TABLE (seal_id bigint, chunk integer, row_count bigint, digest bytea, settled_rows bigint, settled bytea,
               partitions text, parts oid[])
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp SET "TimeZone" = 'UTC' SET "DateStyle" = 'ISO, YMD'
SET "IntervalStyle" = 'postgres' SET extra_float_digits = '1' SET work_mem = '64MB' AS $fn$
    SELECT seal_ids[r.i], r.k, count(*),
           CASE WHEN formats[r.i] = 1 THEN sha256(convert_to(string_agg(r.line, '' ORDER BY r.id), 'UTF8'))
                ELSE sha256(string_agg(r.d, ''::bytea ORDER BY r.id)) END,
           count(*) FILTER (WHERE NOT r.late),
           sha256(coalesce(string_agg(r.d, ''::bytea ORDER BY r.id) FILTER (WHERE NOT r.late), ''::bytea)),
           array_to_string(ARRAY(SELECT p::regclass::text FROM unnest(array_agg(DISTINCT r.part)) AS p ORDER BY 1), ' '),
           array_agg(DISTINCT r.part)
      FROM (SELECT w.i, ((e.{event} - firsts[w.i]) / sizes[w.i])::integer AS k, e.{event} AS id,
                   CASE WHEN formats[w.i] = 1
                        THEN CASE WHEN {stray} THEN ROW({all_columns})::text ELSE ROW({columns})::text END
                             || E'\n' END AS line,
                   CASE WHEN formats[w.i] <> 1 THEN {row_digest} END AS d,
                   coalesce(e.{txid} = ANY (skip), false) AS late, e.tableoid AS part
              FROM {table} e
              -- (format 3: the row's context row, as the views join it)
              {context_join}
             CROSS JOIN LATERAL (SELECT width_bucket(e.{event}, firsts) AS i) AS w
              -- (OFFSET 0: each field's text is made once, not once a use)
              LEFT JOIN LATERAL (SELECT {field_bytes} WHERE formats[w.i] <> 1 OFFSET 0) AS b ON true
             WHERE e.{event} >= lo AND e.{event} <= hi AND e.tableoid IS DISTINCT FROM exclude) AS r
     GROUP BY r.i, r.k
$fn$;
