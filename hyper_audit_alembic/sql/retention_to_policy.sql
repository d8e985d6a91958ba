-- The job of audit.apply_retention() (the audit hypertable's retention, TimescaleDB) becomes
-- TimescaleDB's retention policy again, with the same drop_after, schedule and state, as
-- before audit schema version 5: the function goes, the retention asked for stays. Run
-- after steps/5.down.sql by a downgrade to version 4, and by remove_functions.sql's
-- callers (uninstall_audit) before it.
do $$
declare
    timescale_schema name;
    job record;
begin
    select n.nspname into timescale_schema
    from pg_catalog.pg_extension e
    join pg_catalog.pg_namespace n on n.oid = e.extnamespace
    where e.extname = 'timescaledb';
    if timescale_schema is null
        or pg_catalog.to_regprocedure('audit.apply_retention(integer, jsonb)') is null
    then
        return;
    end if;
    for job in
        select j.job_id, j.schedule_interval, j.scheduled, j.config ->> 'drop_after' as drop_after
        from timescaledb_information.jobs j
        where j.proc_schema = 'audit' and j.proc_name = 'apply_retention'
    loop
        execute 'select ' || pg_catalog.quote_ident(timescale_schema) || '.delete_job($1)'
            using job.job_id;
        if exists (
            select from timescaledb_information.hypertables h
            where h.hypertable_schema = 'audit' and h.hypertable_name = 'record_version'
        ) then
            execute 'select ' || pg_catalog.quote_ident(timescale_schema)
                || '.alter_job(' || pg_catalog.quote_ident(timescale_schema)
                || '.add_retention_policy(''audit.record_version'', drop_after => $1::interval, '
                || 'schedule_interval => $2), scheduled => $3)'
                using job.drop_after, job.schedule_interval, job.scheduled;
        end if;
    end loop;
end
$$;

drop function if exists audit.apply_retention(integer, jsonb);
