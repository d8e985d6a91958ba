-- A tracked table as it stood at `as_of`, rebuilt from its audit trail (audit.rebuilt_table
-- says how): per record the last change with ts <= as_of (in the order of the audit rows'
-- ids), deletes, key changes and the last TRUNCATE applied, under today's column names.
-- SQLSTATE HA001 where the trail is not complete at `as_of`. Runs as its caller.
create or replace function audit.table_as_of(target regclass, as_of timestamptz)
returns table (record_id uuid, version_id bigint, record jsonb, dropped jsonb)
language sql
stable
set search_path = pg_catalog, pg_temp
as $$
    select r.record_id, r.version_id, r.record, r.dropped
    from audit.rebuilt_table(target, as_of, null) as r
$$;

revoke all on function audit.table_as_of(regclass, timestamptz) from public;

grant execute on function audit.table_as_of(regclass, timestamptz) to public;
