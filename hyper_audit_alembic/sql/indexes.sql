-- The lookup indexes of audit.record_version for its layout, run by every install after
-- the steps, and by op.convert_audit_to_hypertable() after its conversion. Idempotent.
-- (An index a later version adds goes into its step, for the installs it upgrades.)
--
-- TimescaleDB: a hypertable on ts. It cannot keep a primary key without ts, so the key
-- on id goes and the lookup indexes carry ts as their second column. Without it:
-- plain indexes and a BRIN index on ts.
do $$
declare
    timescale_schema name;
begin
    select n.nspname into timescale_schema
    from pg_catalog.pg_extension e
    join pg_catalog.pg_namespace n on n.oid = e.extnamespace
    where e.extname = 'timescaledb';

    -- A natively partitioned audit table (op.install_audit(partitioned=...)) stays so:
    -- TimescaleDB cannot convert it, and its partitioned indexes have these names already.
    if (
        select c.relkind from pg_catalog.pg_class c
        where c.oid = pg_catalog.to_regclass('audit.record_version')
    ) = 'p' then
        timescale_schema := null;
    end if;

    if timescale_schema is not null then
        if not exists (
            select from timescaledb_information.hypertables
            where hypertable_schema = 'audit' and hypertable_name = 'record_version'
        ) then
            -- An audit installed before TimescaleDB has the plain indexes under the same
            -- names: drop them so that they come back composite, after the rows moved.
            -- No default index on ts either: chunk exclusion covers time ranges, and every
            -- index costs each audited write.
            alter table audit.record_version drop constraint if exists record_version_pkey;
            drop index if exists audit.record_version_ts;
            drop index if exists audit.record_version_record_id;
            drop index if exists audit.record_version_old_record_id;
            drop index if exists audit.record_version_table_oid;
            execute 'select ' || pg_catalog.quote_ident(timescale_schema)
                || '.create_hypertable(''audit.record_version'', ''ts'', '
                || 'create_default_indexes => false, migrate_data => true)';
        end if;
        create index if not exists record_version_record_id
            on audit.record_version (record_id, ts) where record_id is not null;
        create index if not exists record_version_old_record_id
            on audit.record_version (old_record_id, ts) where old_record_id is not null;
        create index if not exists record_version_table_oid
            on audit.record_version (table_oid, ts);
    else
        create index if not exists record_version_record_id
            on audit.record_version (record_id) where record_id is not null;
        create index if not exists record_version_old_record_id
            on audit.record_version (old_record_id) where old_record_id is not null;
        create index if not exists record_version_ts
            on audit.record_version using brin (ts);
        -- (table_oid, ts) since version 6: one table's history over a time window.
        create index if not exists record_version_table_oid
            on audit.record_version (table_oid, ts);
    end if;
end
$$;
