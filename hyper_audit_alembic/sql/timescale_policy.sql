-- The TimescaleDB options of the audit hypertable, applied by the plan of
-- timescale_plan.sql (which runs around this block): a template whose values the operation
-- fills in (sql.filled()).
do $hyper_audit$
declare
    caller constant text := :'caller';
    phase constant text := :'phase';
    set_chunk_interval constant boolean := :'set_chunk_interval';
    new_chunk_interval constant interval := :'chunk_interval';
    set_compress_after constant boolean := :'set_compress_after';
    new_compress_after constant interval := :'compress_after';
    set_retention constant boolean := :'set_retention';
    new_retention constant interval := :'retention';
    -- The indexes that indexes.sql drops and makes again, composite with
    -- ts, around its conversion; a plain table's other indexes stay as they are.
    managed_indexes constant text[] := :'managed_indexes';
    timescale_schema name;
    extension_version text;
    kind "char";
    layout text;
    plain_keys text[];
    plain_indexes text[];
    compression_enabled boolean;
    current_chunk_interval interval;
    current_compress_after interval;
    current_retention interval;
    statement text;
begin
    select n.nspname, e.extversion into timescale_schema, extension_version
    from pg_catalog.pg_extension e
    join pg_catalog.pg_namespace n on n.oid = e.extnamespace
    where e.extname = 'timescaledb';
    kind := (
        select c.relkind from pg_catalog.pg_class c
        where c.oid = pg_catalog.to_regclass('audit.record_version')
    );
    layout := case when kind is null then 'missing' when kind = 'p' then 'partitioned' else 'plain' end;

    if layout = 'plain' then
        plain_keys := array(
            select pg_catalog.quote_ident(k.conname::text) from pg_catalog.pg_constraint k
            where k.conrelid = 'audit.record_version'::regclass and k.contype in ('p', 'u', 'x')
            order by k.conname
        );
        plain_indexes := array(
            select pg_catalog.quote_ident(c.relname::text)
            from pg_catalog.pg_index i
            join pg_catalog.pg_class c on c.oid = i.indexrelid
            where i.indrelid = 'audit.record_version'::regclass
                and not exists (
                    select from pg_catalog.pg_constraint k where k.conindid = i.indexrelid
                )
                and c.relname::text = any (managed_indexes)
            order by c.relname
        );
    end if;

    -- TimescaleDB's views exist only with the extension: read only then.
    if timescale_schema is not null and layout = 'plain' then
        select h.compression_enabled into compression_enabled
        from timescaledb_information.hypertables h
        where h.hypertable_schema = 'audit' and h.hypertable_name = 'record_version';
        if found then
            layout := 'hypertable';
            select d.time_interval into current_chunk_interval
            from timescaledb_information.dimensions d
            where d.hypertable_schema = 'audit' and d.hypertable_name = 'record_version'
                and d.column_name = 'ts';
            select (j.config ->> 'compress_after')::interval into current_compress_after
            from timescaledb_information.jobs j
            where j.proc_name = 'policy_compression'
                and j.hypertable_schema = 'audit' and j.hypertable_name = 'record_version';
            -- The retention: the job of audit.apply_retention() (audit schema version 5),
            -- or TimescaleDB's own policy where one is left from an earlier release.
            select (j.config ->> 'drop_after')::interval into current_retention
            from timescaledb_information.jobs j
            where (j.proc_schema = 'audit' and j.proc_name = 'apply_retention')
                or (j.proc_name = 'policy_retention'
                    and j.hypertable_schema = 'audit' and j.hypertable_name = 'record_version')
            order by j.proc_schema = 'audit' desc, j.job_id
            limit 1;
        end if;
    end if;

    foreach statement in array pg_temp.hyper_audit_timescale_plan(
        caller, phase, timescale_schema, extension_version,
        pg_catalog.current_setting('timescaledb.license', true), layout,
        plain_keys, plain_indexes, compression_enabled,
        current_chunk_interval, current_compress_after, current_retention,
        set_chunk_interval, new_chunk_interval,
        set_compress_after, new_compress_after,
        set_retention, new_retention
    ) loop
        execute statement;
    end loop;
end
$hyper_audit$;
