-- Statistics that say a table is empty while it is not (#16; README ›
-- Sustained load, docs/PRODUCTION.md › "PostgreSQL: statistics"). A VACUUM
-- or ANALYZE that finds a table's pages but no live row in them (rows rolled
-- back; retention that removed every row of an idle deployment) records
-- pages and zero rows, and from then on every plan on the table counts on
-- one row at most, however the table grows: recording a try reads a whole
-- index, and a claim walks the whole table searching the due tries again at
-- each row. Autovacuum's next ANALYZE ends it, 50 changed rows later; where
-- autovacuum is off nothing did.
--
-- Each replica calls this every few seconds (`postgres/statistics.rs`). A
-- table of schema hook whose statistics, scaled to its size now as the
-- planner scales them, count fewer than a tenth of its live rows (and it
-- holds 1,000 or more) is analyzed, and its name answered. A table never
-- analyzed (reltuples -1) is left alone: the planner assumes a size for it.
-- ANALYZE is the owner's to run, so the function runs with its owner's
-- rights; it takes no argument and touches only the statistics of this
-- schema's tables whose statistics are that wrong, so a second call finds
-- nothing to do. A lock held by a VACUUM of the table is not waited for.
CREATE FUNCTION hook.refresh_stale_statistics()
RETURNS SETOF TEXT
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '200ms'
AS $$
DECLARE
    stale TEXT;
BEGIN
    FOR stale IN
        SELECT c.relname FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid
        WHERE c.relnamespace = 'hook'::regnamespace AND c.relkind = 'r'
          AND c.relpages > 0 AND c.reltuples >= 0 AND s.n_live_tup >= 1000
          AND c.reltuples / c.relpages
              * (pg_relation_size(c.oid) / current_setting('block_size')::bigint)
              < s.n_live_tup / 10.0
    LOOP
        EXECUTE format('ANALYZE hook.%I', stale);
        RETURN NEXT stale;
    END LOOP;
END $$;
REVOKE ALL ON FUNCTION hook.refresh_stale_statistics() FROM PUBLIC;
