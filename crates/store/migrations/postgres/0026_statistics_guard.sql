-- Statistics that say a table is empty while it is not (#16; README ›
-- Sustained load, docs/PRODUCTION.md › "PostgreSQL: statistics"). A VACUUM
-- or ANALYZE that finds a table's pages but no live row in them (rows rolled
-- back; retention that removed every row of an idle deployment) records
-- pages and zero rows, and from then on every plan on the table counts on
-- one row at most, however the table grows: recording a try reads a whole
-- index, and a claim walks the whole table searching the due tries again at
-- each row. A plan kept from statistics taken while the table had no page
-- at all can do the same as it grows. Autovacuum's next ANALYZE ends it,
-- 50 changed rows later; where autovacuum is off nothing did.
--
-- Each replica calls this every 10 s (`postgres/statistics.rs`). A table
-- of schema hook holding 1,000 live rows or more whose statistics count
-- fewer than a tenth of them is analyzed, and its name answered. The count
-- is the rows per recorded page times the pages the table has now, as the
-- planner scales them; where the statistics record no page (a table
-- analyzed while it had none) it is the rows they record, none: a plan
-- made afresh then estimates from the rows' width, but one kept from
-- then counted no row and survives the table's growth. A table never analyzed (reltuples -1) is left alone: the planner
-- assumes a size for it.
--
-- ANALYZE is the owner's to run, so the function runs with its owner's
-- rights. It takes no argument and only analyzes this schema's tables
-- whose statistics are that wrong and that its owner may analyze (one it
-- may not would be named at every call and never mended). One replica at
-- a time (the others' calls return at once); a table whose lock is held
-- (a VACUUM, CREATE INDEX CONCURRENTLY) is skipped for the next call
-- rather than waited for. After an ANALYZE the statistics and the live
-- count agree, so the next call finds nothing to do.
CREATE FUNCTION hook.refresh_stale_statistics()
RETURNS SETOF TEXT
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '200ms'
AS $$
DECLARE
    stale TEXT;
    page_size CONSTANT BIGINT := current_setting('block_size')::bigint;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('hook.refresh_stale_statistics'), 0) THEN
        RETURN;
    END IF;
    FOR stale IN
        SELECT c.relname FROM pg_class c
        WHERE c.relnamespace = 'hook'::regnamespace AND c.relkind = 'r'
          AND c.reltuples >= 0
          AND pg_has_role(c.relowner, 'USAGE')
          AND pg_stat_get_live_tuples(c.oid) >= 1000
          AND CASE WHEN c.relpages = 0 THEN c.reltuples
                   ELSE c.reltuples / c.relpages * (pg_relation_size(c.oid) / page_size) END
              < pg_stat_get_live_tuples(c.oid) / 10.0
    LOOP
        BEGIN
            EXECUTE format('ANALYZE hook.%I', stale);
            RETURN NEXT stale;
        EXCEPTION WHEN lock_not_available THEN
            NULL;
        END;
    END LOOP;
END $$;
REVOKE ALL ON FUNCTION hook.refresh_stale_statistics() FROM PUBLIC;
