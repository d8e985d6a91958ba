-- The primary-key columns of a table, in column-number order.
create or replace function audit.primary_key_columns(table_oid oid)
returns text[]
language sql
stable
set search_path = pg_catalog, pg_temp
as $$
    select coalesce(array_agg(a.attname::text order by a.attnum), '{}')
    from pg_index i
    join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any (i.indkey)
    where i.indrelid = table_oid and i.indisprimary
$$;

revoke all on function audit.primary_key_columns(oid) from public;
