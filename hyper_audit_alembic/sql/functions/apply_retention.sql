-- The retention of the audit hypertable (TimescaleDB), run by a job of TimescaleDB that
-- op.install_audit(timescale={"retention": ...}) / op.set_audit_timescale_policy() add
-- (add_job('audit.apply_retention', ..., config => {"drop_after": "5 years"})). For each
-- chunk of audit.record_version whose range ends drop_after or longer ago, oldest first:
-- lock it (no row arrives between the count and the drop), record it in the seal chain
-- (audit.note_expiry: an 'expiry' link, so verify reports its rows as expired, not
-- missing), drop it. TimescaleDB's own retention policy (policy_retention) drops chunks
-- with no record; this job replaces it. One transaction: a chunk is dropped with its link
-- or not at all (a failed run changes nothing; the next one does it).
--
-- Runs with the rights of its caller (TimescaleDB runs a job as the job's owner, who owns
-- the hypertable); execute is granted to nobody else. The configuration is the job's own,
-- written by that owner.
create or replace function audit.apply_retention(job_id integer, config jsonb)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
set TimeZone = 'UTC'
as $$
declare
    drop_after interval;
    chunk regclass;
begin
    begin
        drop_after := (config ->> 'drop_after')::interval;
    exception when others then
        drop_after := null;
    end;
    if drop_after is null or drop_after <= interval '0' then
        raise exception using
            errcode = 'invalid_parameter_value',
            message = 'audit.apply_retention: the job''s config needs drop_after, a positive '
                || 'interval, not ' || coalesce(config::text, 'null'),
            hint = 'op.set_audit_timescale_policy(retention=...) sets it.';
    end if;
    if pg_catalog.to_regclass('timescaledb_information.chunks') is null then
        raise exception using
            errcode = 'object_not_in_prerequisite_state',
            message = 'audit.apply_retention: the timescaledb extension is not installed in '
                || 'this database';
    end if;
    for chunk in
        select (pg_catalog.quote_ident(c.chunk_schema::text) || '.'
            || pg_catalog.quote_ident(c.chunk_name::text))::pg_catalog.regclass
        from timescaledb_information.chunks c
        where c.hypertable_schema = 'audit' and c.hypertable_name = 'record_version'
            and c.range_end <= pg_catalog.now() - drop_after
        order by c.range_start
    loop
        execute 'lock table ' || chunk::text || ' in share mode';
        perform audit.note_expiry(chunk);
        execute 'drop table ' || chunk::text;
    end loop;
end
$$;

revoke all on function audit.apply_retention(integer, jsonb) from public;

-- A retention policy of TimescaleDB on the audit hypertable (what op.install_audit(
-- timescale={"retention": ...}) added before audit schema version 5) becomes the job of
-- audit.apply_retention() above, with the same drop_after, schedule and state. It lives
-- here, not in steps/5.sql: a step may not create functions, and TimescaleDB's add_job
-- needs the function to exist. Every install and upgrade replays this file; where there is
-- no such policy (or no TimescaleDB) it does nothing.
do $$
declare
    timescale_schema name;
    policy record;
begin
    select n.nspname into timescale_schema
    from pg_catalog.pg_extension e
    join pg_catalog.pg_namespace n on n.oid = e.extnamespace
    where e.extname = 'timescaledb';
    if timescale_schema is null then
        return;
    end if;
    for policy in
        select j.job_id, j.schedule_interval, j.scheduled, j.config ->> 'drop_after' as drop_after
        from timescaledb_information.jobs j
        where j.proc_name = 'policy_retention'
            and j.hypertable_schema = 'audit' and j.hypertable_name = 'record_version'
    loop
        execute 'select ' || pg_catalog.quote_ident(timescale_schema) || '.add_job('
            || '''audit.apply_retention''::pg_catalog.regproc, $1, config => $2, scheduled => $3)'
            using policy.schedule_interval,
                pg_catalog.jsonb_build_object('drop_after', policy.drop_after),
                policy.scheduled;
        execute 'select ' || pg_catalog.quote_ident(timescale_schema) || '.delete_job($1)'
            using policy.job_id;
    end loop;
end
$$;
