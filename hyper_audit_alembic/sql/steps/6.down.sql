-- Audit schema version 6 -> 5, keeping every recorded row and value.
--
-- Version 5 knows no Citus: while the audit table is distributed (op.distribute_audit())
-- or a table is tracked by audit.citus_row_change, the downgrade refuses before changing
-- anything. Otherwise the index record_version_table_oid goes back to (table_oid) alone,
-- except on a hypertable, whose index was (table_oid, ts) in version 5 already.
-- released/5.sql, run after this file, restores version 5's functions; the Citus
-- functions, which version 6's other functions name, go after it (citus_remove.sql).
-- The text holds no '%' and no ':name'.

-- (version_guard.sql runs before this step: the installed version must be 6.)
do $$
declare
    hypertable boolean := false;
    distributed boolean := false;
begin
    if pg_catalog.to_regclass('pg_catalog.pg_dist_partition') is not null then
        execute 'select exists (select from pg_catalog.pg_dist_partition p '
            || 'where p.logicalrelid = pg_catalog.to_regclass(''audit.record_version''))'
            into distributed;
    end if;
    if distributed or exists (
        select from pg_catalog.pg_trigger t
        where t.tgfoid = pg_catalog.to_regprocedure('audit.citus_row_change()')
    ) then
        raise exception using
            errcode = 'object_not_in_prerequisite_state',
            message = 'audit schema downgrade to version 5: the audit trail is distributed '
                || 'with Citus (op.distribute_audit()), which version 5 cannot keep',
            hint = 'Keep version 6, or undo op.distribute_audit() by hand first '
                || '(docs/layouts-and-scaling.md, Citus).';
    end if;
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
