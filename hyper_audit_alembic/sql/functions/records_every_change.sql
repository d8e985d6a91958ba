-- Whether a table's audit triggers record every change made to it now (version 4): an
-- enabled audit trigger (ENABLE or ENABLE ALWAYS; not DISABLE, and not ENABLE REPLICA,
-- which fires only in a replica session) for each of INSERT, UPDATE, DELETE and TRUNCATE,
-- and, where rows are recorded per statement, the row-level trigger that records key
-- changes. A table owner may drop an audit trigger (DROP TRIGGER, which no event trigger
-- here follows) or make one fire only on replicas: from then on changes go unrecorded, so
-- audit.trail_complete_since must not vouch for the table (note_trail_start clears the mark
-- when tracking is made whole again, table_as_of and snapshot_batch refuse meanwhile).
-- Catalog facts only (the audit trigger functions of audit.is_tracking_function, named
-- here so that a reader of audit.table_as_of needs no right on that one).
-- audit.citus_row_change (Citus) records INSERT and DELETE per statement and UPDATE per row.
-- tgtype bits: 1 row, 4 insert, 8 delete, 16 update, 32 truncate.
create or replace function audit.records_every_change(target regclass)
returns boolean
language sql
stable
set search_path = pg_catalog, pg_temp
as $$
    select coalesce(bool_and(t.tgenabled in ('O', 'A')), false)
        and coalesce(bit_or(t.tgtype::integer) filter (
            where t.tgfoid in ('audit.record_row_change()'::regprocedure,
                'audit.citus_row_change()'::regprocedure)), 0) & 28 = 28
        and bool_or(t.tgfoid = 'audit.record_truncate()'::regprocedure
            and t.tgtype::integer & 32 = 32)
        and coalesce(
            bool_and(t.tgtype::integer & 1 = 1)
                filter (where t.tgfoid = 'audit.record_row_change()'::regprocedure)
            or bool_or(t.tgfoid = 'audit.record_key_change()'::regprocedure
                and t.tgtype::integer & 17 = 17)
            or bool_or(t.tgfoid = 'audit.citus_row_change()'::regprocedure
                and t.tgtype::integer & 17 = 17),
            false
        )
    from pg_trigger t
    where t.tgrelid = target and not t.tgisinternal
        and t.tgfoid in (
            'audit.record_row_change()'::regprocedure,
            'audit.citus_row_change()'::regprocedure,
            'audit.record_key_change()'::regprocedure,
            'audit.record_truncate()'::regprocedure
        )
$$;

-- It reads only what pg_trigger shows everyone; audit.table_as_of runs as its caller.
revoke all on function audit.records_every_change(regclass) from public;

grant execute on function audit.records_every_change(regclass) to public;
