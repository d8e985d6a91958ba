-- A tracked table as it stood just before its audit row `before_id` (audit.rebuilt_table
-- says how): the audit rows of the table with a smaller id count, whatever their ts. What
-- undoing a TRUNCATE puts back: the TRUNCATE's ts is its transaction's start, which the
-- changes that transaction made before it share, so a time cannot say "just before".
-- SQLSTATE HA001 where the trail is not complete then; invalid_parameter_value when
-- `before_id` is not an audit row of the table. Runs as its caller.
create or replace function audit.table_before(target regclass, before_id bigint)
returns table (record_id uuid, version_id bigint, record jsonb, dropped jsonb)
language sql
stable
set search_path = pg_catalog, pg_temp
as $$
    select r.record_id, r.version_id, r.record, r.dropped
    from audit.rebuilt_table(target, null, before_id) as r
$$;

revoke all on function audit.table_before(regclass, bigint) from public;

grant execute on function audit.table_before(regclass, bigint) to public;
