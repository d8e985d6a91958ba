-- Audit schema version 5 -> 4, keeping every recorded row and value.
--
-- Version 4 has no REDACT rows (its rules refuse them) and no seal chain: while any REDACT
-- row or any link of the chain exists, the downgrade refuses before changing anything, as
-- both are history (of erasures, and of what was sealed) that would be lost. Otherwise
-- version 4's rule comes back and the empty chain tables go. The label REDACT stays in
-- audit.operation (PostgreSQL cannot remove an enum label; no row uses it).
-- released/4.sql, run after this file, restores version 4's functions. The text holds no
-- '%' and no ':name'.

-- (version_guard.sql runs before this step: the installed version must be 5.)
do $$
declare
    links bigint := 0;
begin
    if exists (select from audit.record_version v where v.op::text = 'REDACT') then
        raise exception using
            errcode = 'object_not_in_prerequisite_state',
            message = 'audit schema downgrade to version 4: audit.record_version holds REDACT '
                || 'rows, which version 4 cannot keep',
            hint = 'Keep version 5: the REDACT rows are the record of lawful erasures.';
    end if;
    if pg_catalog.to_regclass('audit.seal_log') is not null then
        select pg_catalog.count(*) into links from audit.seal_log;
    end if;
    if links > 0 then
        raise exception using
            errcode = 'object_not_in_prerequisite_state',
            message = 'audit schema downgrade to version 4: audit.seal_log holds ' || links
                || ' links of the seal chain, which version 4 cannot keep or extend',
            hint = 'Keep version 5, or delete the chain yourself first (delete from '
                || 'audit.seal_salt; delete from audit.seal_segment; delete from audit.seal_log): '
                || 'the history is then no longer sealed.';
    end if;
end
$$;

alter table audit.record_version
    drop constraint if exists record_version_record_id_when_new,
    add constraint record_version_record_id_when_new
        check ((op in ('INSERT', 'UPDATE') or op::text = 'SNAPSHOT') = (record_id is not null));

-- The job of audit.apply_retention() (the audit hypertable's retention, TimescaleDB) becomes
-- TimescaleDB's retention policy again, with the same drop_after, schedule and state, as
-- before audit schema version 5: the function goes, the retention asked for stays. (The
-- same block is in remove_functions.sql.)
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

-- Functions version 5 added (released/4.sql restores version 4's own).
drop function if exists audit.note_expiry(regclass);
drop function if exists audit.redact(regclass, jsonb, text[], text);
drop function if exists audit.set_seal_mac(bigint, bytea);
drop function if exists audit.verify(bigint, bigint);
drop function if exists audit.seal();
drop function if exists audit.segment_state(bigint, bytea);
drop function if exists audit.append_seal_link(bigint, text, jsonb);
drop function if exists audit.lock_seal_chain();
drop function if exists audit.seal_link_text(bigint);
drop function if exists audit.canonical_row_sql(text);

drop table if exists audit.seal_salt;
drop table if exists audit.seal_segment;
drop table if exists audit.seal_log;

delete from audit.schema_version;

insert into audit.schema_version (version) values (4);
