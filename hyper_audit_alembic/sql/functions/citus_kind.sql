-- What Citus makes of a table: null where Citus is not installed or the table is not in
-- its metadata (a plain local table), else 'distributed' (hash-distributed, or a
-- single-shard distributed table), 'reference' (a copy on every node) or 'local' (a
-- Citus managed local table, or another kind). Read from pg_dist_partition, which exists
-- only with Citus (so the query is built at run time; the table is a regclass).
-- enable_tracking_keys takes the Citus write path (citus_row_change.sql) where
-- audit.record_version is 'distributed', and refuses tables it cannot track.
create or replace function audit.citus_kind(target regclass)
returns text
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
    kind text;
begin
    if to_regclass('pg_catalog.pg_dist_partition') is null then
        return null;
    end if;
    execute 'select case'
        || ' when p.partmethod = ''h'' then ''distributed'''
        || ' when p.repmodel = ''t'' then ''reference'''
        || ' when p.partmethod = ''n'' and p.colocationid <> 0 then ''distributed'''
        || ' else ''local'' end'
        || ' from pg_catalog.pg_dist_partition p where p.logicalrelid = $1'
        into kind using target;
    return kind;
end
$$;

revoke all on function audit.citus_kind(regclass) from public;
