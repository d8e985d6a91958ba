-- Audit schema version 5 -> 6: one table's history over a time window reads only that
-- window (issue 16).
--
-- The index record_version_table_oid becomes (table_oid, ts), as a hypertable's always
-- was. Measured on 2,000,000 audit rows (docs/layouts-and-scaling.md, "What each index
-- costs and earns"): it costs an audited write what (table_oid) cost, and the newest
-- changes of one table, or a busy table's last hour, are read from the window alone
-- instead of from every row of the table. Its entries go to the end of each table's
-- range, so it does not make the WAL grow with the history (the record-id indexes do).
-- The trigger functions (the write path) do not change.
--
-- Idempotent: every install runs it after steps/5.sql (a fresh install has no such index
-- yet: indexes.sql makes it afterwards). Over a large plain audit table, build the new
-- index beforehand without blocking writes, and this step uses it:
--     create index concurrently record_version_table_oid_ts
--         on audit.record_version (table_oid, ts);
-- The text holds no '%' and no ':name'.

-- (version_guard.sql runs before this step: the installed version must be 5.)
do $$
begin
    if exists (
        select from pg_catalog.pg_index i
        where i.indexrelid = pg_catalog.to_regclass('audit.record_version_table_oid')
            and i.indnatts = 1
    ) then
        -- On a partitioned audit table this makes the index of every partition too.
        create index if not exists record_version_table_oid_ts
            on audit.record_version (table_oid, ts);
        drop index audit.record_version_table_oid;
        alter index audit.record_version_table_oid_ts rename to record_version_table_oid;
    end if;
end
$$;

delete from audit.schema_version;

insert into audit.schema_version (version) values (6);
