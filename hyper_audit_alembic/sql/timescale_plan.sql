-- TimescaleDB options of the audit hypertable: the chunk interval, compression after an
-- age (segmented by table_oid, ordered by ts) and retention (drop chunks older than an
-- age, recorded in the seal chain: a job of audit.apply_retention()); and the conversion of a plain audit table into a hypertable, keeping every row.
--
-- Used by op.install_audit(timescale={...}), op.convert_audit_to_hypertable() and
-- op.set_audit_timescale_policy(). The decisions are made here, by the server, when the
-- SQL runs (also from offline output): a pure function computes the statements from the
-- state the DO block reads, then the block runs them. The function lives in pg_temp for
-- the length of the operation only.
--
-- This file: the function (created before the operation's blocks) and its removal (after
-- them). timescale_policy.sql: the block, a template (sql.filled()).

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

drop function pg_temp.hyper_audit_timescale_plan(
    text, text, name, text, text, text, text[], text[], boolean, interval, interval, interval,
    boolean, interval, boolean, interval, boolean, interval
);
