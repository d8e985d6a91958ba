-- Audit schema version 6 -> 5, keeping every recorded row and value.
--
-- The index record_version_table_oid goes back to (table_oid) alone, except on a
-- hypertable, whose index was (table_oid, ts) in version 5 already. released/5.sql, run
-- after this file, restores version 5's functions. The text holds no '%' and no ':name'.

-- (version_guard.sql runs before this step: the installed version must be 6.)
do $$
declare
    hypertable boolean := false;
begin
    if pg_catalog.to_regclass('_timescaledb_catalog.hypertable') is not null then
        execute 'select exists (select from _timescaledb_catalog.hypertable h '
            || 'where h.schema_name = ''audit'' and h.table_name = ''record_version'')'
            into hypertable;
    end if;
    if not hypertable and exists (
        select from pg_catalog.pg_index i
        where i.indexrelid = pg_catalog.to_regclass('audit.record_version_table_oid')
            and i.indnatts = 2
    ) then
        create index if not exists record_version_table_oid_single
            on audit.record_version (table_oid);
        drop index audit.record_version_table_oid;
        alter index audit.record_version_table_oid_single rename to record_version_table_oid;
    end if;
end
$$;

delete from audit.schema_version;

insert into audit.schema_version (version) values (5);
