-- dpa_seal_link, shared by both layouts: the digest of one entry of the seal table, the link
-- of the chain. SHA-256 over the previous entry's digest, this entry's header, its chunks
-- (one line each) and its extra document (formats 2 and later), so that changing, removing
-- or inserting an entry breaks every digest after it. The seal table's trigger, seal, retire
-- and verify all take an entry's digest from here; docs/tamper-evidence.md specifies these
-- bytes and offline.link_digest() recomputes them in Python.
-- Like every sealing function that turns rows or seals into text, it fixes the settings
-- that text depends on (search_path, TimeZone, DateStyle, IntervalStyle, extra_float_digits).
-- The DROP removes the signature it had before the extra column.
-- Deployed from the next line on, byte for byte: a change is a new object version.

DROP FUNCTION IF EXISTS {link}(bytea, bigint, text, timestamp with time zone, bigint, bigint, bigint, integer, text,
    bigint[], integer[], bigint[], bytea[], text[]);
CREATE OR REPLACE FUNCTION {link}(previous bytea, seal_id bigint, kind text, sealed_at timestamp with time zone,
    first_event_id bigint, last_event_id bigint, row_count bigint, chunk_size integer, partition_name text,
    chunk_seal bigint[], chunk_index integer[], chunk_rows bigint[], chunk_digest bytea[], chunk_partitions text[],
    extra jsonb)
RETURNS bytea LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp SET "TimeZone" = 'UTC' SET "DateStyle" = 'ISO, YMD'
SET "IntervalStyle" = 'postgres' SET extra_float_digits = '1' AS $fn$
    SELECT sha256(convert_to(
        encode(previous, 'hex') || E'\n'
        || ROW(seal_id, kind, sealed_at, first_event_id, last_event_id, row_count, chunk_size, partition_name)::text
        || E'\n'
        || coalesce((SELECT string_agg(ROW(c.s, c.k, c.n, encode(c.d, 'hex'), c.p)::text || E'\n', '' ORDER BY c.o)
                       FROM unnest(chunk_seal, chunk_index, chunk_rows, chunk_digest, chunk_partitions)
                            WITH ORDINALITY AS c(s, k, n, d, p, o)), '')
        || coalesce(extra::text || E'\n', ''),
        'UTF8'))
$fn$;
