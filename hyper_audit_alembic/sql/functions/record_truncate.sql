-- A TRUNCATE of a tracked table: one audit row without records.
create or replace function audit.record_truncate()
returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    insert into audit.record_version (op, table_oid, table_schema, table_name)
    values ('TRUNCATE', tg_relid, tg_table_schema, tg_table_name);
    return null;
end
$$;

revoke all on function audit.record_truncate() from public;
