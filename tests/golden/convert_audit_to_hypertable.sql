BEGIN;

create or replace function pg_temp.hyper_audit_timescale_plan(
    caller text,
    phase text,                          -- 'install', 'convert' or 'policy'
    timescale_schema name,               -- null: the extension is not installed
    extension_version text,
    license text,                        -- timescaledb.license: 'apache' or 'timescale'
    layout text,                         -- 'missing', 'plain', 'partitioned' or 'hypertable'
    plain_keys text[],                   -- of a plain table: key constraints to drop
    plain_indexes text[],                -- and the indexes indexes.sql makes composite
    compression_enabled boolean,
    current_chunk_interval interval,
    current_compress_after interval,     -- null: no compression policy
    current_retention interval,          -- null: no retention job (or policy)
    set_chunk_interval boolean,
    new_chunk_interval interval,
    set_compress_after boolean,
    new_compress_after interval,
    set_retention boolean,
    new_retention interval
)
returns text[]
language plpgsql
immutable
as $$
declare
    functions constant text := quote_ident(timescale_schema) || '.';
    statements text[] := '{}';
    setting text;
    value interval;
    needs_license boolean;
begin
    -- The values asked for first: a wrong one fails before anything changes.
    foreach setting in array array['chunk_interval', 'compress_after', 'retention'] loop
        value := case setting
            when 'chunk_interval' then case when set_chunk_interval then new_chunk_interval end
            when 'compress_after' then case when set_compress_after then new_compress_after end
            else case when set_retention then new_retention end
        end;
        if value <= interval '0' then
            raise exception using
                errcode = 'invalid_parameter_value',
                message = caller || ': ' || setting || ' must be a positive interval, not '
                    || value::text;
        end if;
    end loop;
    if set_chunk_interval and new_chunk_interval is null then
        raise exception using
            errcode = 'invalid_parameter_value',
            message = caller || ': chunk_interval cannot be None; a hypertable always has one';
    end if;

    if timescale_schema is null then
        raise exception using
            errcode = 'feature_not_supported',
            message = caller || ': the timescaledb extension is not installed in this database',
            hint = 'Create it first (op.execute("create extension if not exists timescaledb") '
                || 'before this step), or leave out the TimescaleDB options.';
    end if;
    if layout = 'partitioned' then
        raise exception using
            errcode = 'feature_not_supported',
            message = caller || ': audit.record_version is natively partitioned (the layout of '
                || 'op.install_audit(partitioned=...)), so it cannot be a hypertable',
            hint = 'Keep the partitioned layout and its audit.maintain_partitions(), or move the '
                || 'history into a new audit table by hand.';
    end if;
    if layout = 'missing' and phase <> 'install' then
        raise exception using
            errcode = 'undefined_table',
            message = caller || ': the audit trail is not installed in this database',
            hint = 'Run op.install_audit() first: where the timescaledb extension is installed '
                || 'it makes audit.record_version a hypertable itself.';
    end if;
    if layout = 'plain' and phase = 'policy' then
        raise exception using
            errcode = 'object_not_in_prerequisite_state',
            message = caller || ': audit.record_version is not a hypertable',
            hint = 'op.convert_audit_to_hypertable() converts it, keeping every row.';
    end if;

    needs_license := (set_compress_after and new_compress_after is not null)
        or (set_retention and new_retention is not null);
    if needs_license and license = 'apache' then
        raise exception using
            errcode = 'feature_not_supported',
            message = caller || ': compression and retention of the audit hypertable need the '
                || 'TimescaleDB community license, but this server runs the Apache-licensed '
                || 'edition (timescaledb.license = apache)',
            hint = 'Set timescaledb.license = ''timescale'' in postgresql.conf (or with ALTER '
                || 'SYSTEM) and restart the server: the community license is free for '
                || 'self-hosting. Or leave out compress_after and retention; chunk_interval '
                || 'works under either license.';
    end if;

    if phase in ('install', 'convert') then
        if layout = 'plain' then
            -- A hypertable keeps no key or index without ts: indexes.sql creates the
            -- composite indexes once the rows have moved into chunks.
            statements := statements || array(
                select 'alter table audit.record_version drop constraint ' || k
                from unnest(plain_keys) k
            ) || array(
                select 'drop index audit.' || i from unnest(plain_indexes) i
            ) || (
                'select ' || functions || 'create_hypertable(''audit.record_version'', ''ts'', '
                || case when set_chunk_interval
                    then 'chunk_time_interval => interval ' || quote_literal(new_chunk_interval::text) || ', '
                    else '' end
                || 'create_default_indexes => false, migrate_data => true)'
            );
        end if;
        return statements;
    end if;

    if set_chunk_interval and new_chunk_interval::text is distinct from current_chunk_interval::text then
        statements := statements || (
            'select ' || functions || 'set_chunk_time_interval(''audit.record_version'', interval '
            || quote_literal(new_chunk_interval::text) || ')'
        );
    end if;

    if set_compress_after and new_compress_after::text is distinct from current_compress_after::text then
        if current_compress_after is not null then
            statements := statements || (
                'select ' || functions
                || 'remove_compression_policy(''audit.record_version'', if_exists => true)'
            );
        end if;
        if new_compress_after is not null then
            if not coalesce(compression_enabled, false) then
                statements := statements || (
                    'alter table audit.record_version set (timescaledb.compress, '
                    || 'timescaledb.compress_segmentby = ''table_oid'', '
                    || 'timescaledb.compress_orderby = ''ts'''
                    || case
                        when string_to_array(split_part(extension_version, '-', 1), '.')::integer[]
                            >= array[2, 22]
                        then ', timescaledb.sparse_index = ''bloom(record_id), bloom(old_record_id)'''
                        else ''
                    end
                    || ')'
                );
            end if;
            statements := statements || (
                'select ' || functions || 'add_compression_policy(''audit.record_version'', '
                || 'compress_after => interval ' || quote_literal(new_compress_after::text) || ')'
            );
        end if;
    end if;

    -- Retention is a job of audit.apply_retention() (functions/apply_retention.sql), which
    -- records each chunk in the seal chain before it drops it; TimescaleDB's own retention
    -- policy would drop chunks with no record. Removing the retention removes both.
    if set_retention and new_retention::text is distinct from current_retention::text then
        if current_retention is not null then
            statements := statements || (
                'select ' || functions || 'delete_job(j.job_id) '
                || 'from timescaledb_information.jobs j '
                || 'where j.proc_schema = ''audit'' and j.proc_name = ''apply_retention'''
            ) || (
                'select ' || functions
                || 'remove_retention_policy(''audit.record_version'', if_exists => true)'
            );
        end if;
        if new_retention is not null then
            statements := statements || (
                'select ' || functions || 'add_job(''audit.apply_retention'', interval ''1 day'', '
                || 'config => pg_catalog.jsonb_build_object(''drop_after'', '
                || quote_literal(new_retention::text) || '))'
            );
        end if;
    end if;
    return statements;
end
$$;

do $hyper_audit$
declare
    caller constant text := 'op.convert_audit_to_hypertable';
    phase constant text := 'convert';
    set_chunk_interval constant boolean := true;
    new_chunk_interval constant interval := '1 day';
    set_compress_after constant boolean := false;
    new_compress_after constant interval := null;
    set_retention constant boolean := false;
    new_retention constant interval := null;
    -- The indexes that indexes.sql drops and makes again, composite with
    -- ts, around its conversion; a plain table's other indexes stay as they are.
    managed_indexes constant text[] := array['record_version_ts', 'record_version_record_id', 'record_version_old_record_id', 'record_version_table_oid']::text[];
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

do $hyper_audit$
declare
    caller constant text := 'op.convert_audit_to_hypertable';
    phase constant text := 'policy';
    set_chunk_interval constant boolean := true;
    new_chunk_interval constant interval := '1 day';
    set_compress_after constant boolean := false;
    new_compress_after constant interval := null;
    set_retention constant boolean := false;
    new_retention constant interval := null;
    -- The indexes that indexes.sql drops and makes again, composite with
    -- ts, around its conversion; a plain table's other indexes stay as they are.
    managed_indexes constant text[] := array['record_version_ts', 'record_version_record_id', 'record_version_old_record_id', 'record_version_table_oid']::text[];
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

drop function pg_temp.hyper_audit_timescale_plan(
    text, text, name, text, text, text, text[], text[], boolean, interval, interval, interval,
    boolean, interval, boolean, interval, boolean, interval
);

COMMIT;

