-- The hyper_audit audit schema, version 1.
--
-- Every statement is idempotent: install_audit() may run over an audit schema whose
-- functions were removed by uninstall_audit(keep_history=True) and must keep every
-- recorded row. The text holds no '%' and no ':name' so that Alembic's offline mode
-- and SQLAlchemy's text() pass it through unchanged.

create schema if not exists audit;

revoke all on schema audit from public;

-- The record id is a UUID v5 from the contrib extension uuid-ossp. The extension may
-- already live in any schema (public, extensions on Supabase), so the call is bound to
-- that schema once, here, and every other function calls audit.uuid_v5.
do $$
declare
    ext_schema name;
begin
    select n.nspname into ext_schema
    from pg_catalog.pg_extension e
    join pg_catalog.pg_namespace n on n.oid = e.extnamespace
    where e.extname = 'uuid-ossp';

    if ext_schema is null then
        if not exists (
            select from pg_catalog.pg_available_extensions where name = 'uuid-ossp'
        ) then
            raise exception using
                errcode = 'feature_not_supported',
                message = 'install_audit: the PostgreSQL extension "uuid-ossp" is not available on this server',
                hint = 'Install the PostgreSQL contrib package for this server version '
                    '(Debian/Ubuntu: postgresql-contrib), then run the migration again.';
        end if;
        create extension "uuid-ossp";
        select n.nspname into ext_schema
        from pg_catalog.pg_extension e
        join pg_catalog.pg_namespace n on n.oid = e.extnamespace
        where e.extname = 'uuid-ossp';
    end if;

    execute 'create or replace function audit.uuid_v5(namespace uuid, name text) '
        || 'returns uuid language sql immutable strict parallel safe as '
        || pg_catalog.quote_literal(
            'select ' || pg_catalog.quote_ident(ext_schema) || '.uuid_generate_v5(namespace, name)'
        );
end
$$;

do $$
begin
    if to_regtype('audit.operation') is null then
        create type audit.operation as enum ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE');
    end if;
end
$$;

create table if not exists audit.record_version (
    id bigserial primary key,
    record_id uuid,
    old_record_id uuid,
    op audit.operation not null,
    ts timestamptz not null default now(),
    table_oid oid not null,
    table_schema name not null,
    table_name name not null,
    record jsonb,
    old_record jsonb,
    constraint record_version_has_record_id check (
        coalesce(record_id, old_record_id) is not null or op = 'TRUNCATE'
    ),
    constraint record_version_record_id_when_new check (
        (op in ('INSERT', 'UPDATE')) = (record_id is not null)
    ),
    constraint record_version_record_when_new check (
        (op in ('INSERT', 'UPDATE')) = (record is not null)
    ),
    constraint record_version_old_record_id_when_old check (
        (op in ('UPDATE', 'DELETE')) = (old_record_id is not null)
    ),
    constraint record_version_old_record_when_old check (
        (op in ('UPDATE', 'DELETE')) = (old_record is not null)
    )
);

revoke all on audit.record_version from public;

-- Supabase: who made the change, when auth.uid() and auth.role() exist.
do $$
begin
    if (select prorettype from pg_catalog.pg_proc where oid = to_regprocedure('auth.uid()'))
            = 'uuid'::regtype
        and (select prorettype from pg_catalog.pg_proc where oid = to_regprocedure('auth.role()'))
            = 'text'::regtype
    then
        alter table audit.record_version
            add column if not exists auth_uid uuid default auth.uid(),
            add column if not exists auth_role text default auth.role();
    end if;
end
$$;

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
        create index if not exists record_version_table_oid
            on audit.record_version (table_oid);
    end if;
end
$$;

-- Which version of this file is installed; later releases upgrade from it.
create table if not exists audit.schema_version (
    version integer not null check (version > 0),
    installed_at timestamptz not null default now()
);

revoke all on audit.schema_version from public;

delete from audit.schema_version;

insert into audit.schema_version (version) values (1);

-- The primary-key columns of a table, in column-number order.
create or replace function audit.primary_key_columns(table_oid oid)
returns text[]
language sql
stable
set search_path = pg_catalog, pg_temp
as $$
    select coalesce(array_agg(a.attname::text order by a.attnum), '{}')
    from pg_index i
    join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any (i.indkey)
    where i.indrelid = table_oid and i.indisprimary
$$;

-- The stable record id: UUID v5 of the jsonb text '["<table oid>", "<pk1>", ...]'.
-- A plain immutable SQL function, so the planner inlines it into the trigger.
create or replace function audit.to_record_id(table_oid oid, pkey_cols text[], rec jsonb)
returns uuid
language sql
immutable
parallel safe
as $$
    select case
        when rec is null then null
        else audit.uuid_v5(
            'fd62bc3d-8d6e-43c2-919c-802ba3762271'::uuid,
            (
                pg_catalog.jsonb_build_array(table_oid::text)
                || (
                    select pg_catalog.jsonb_agg(rec ->> k.col order by k.ord)
                    from pg_catalog.unnest(pkey_cols) with ordinality as k (col, ord)
                )
            )::text
        )
    end
$$;

-- One audit row per changed row. The primary-key columns arrive as trigger arguments,
-- resolved once by enable_tracking, so no catalog lookup happens per row.
create or replace function audit.record_row_change()
returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    new_rec jsonb;
    old_rec jsonb;
begin
    if tg_op <> 'DELETE' then
        new_rec := to_jsonb(new);
    end if;
    if tg_op <> 'INSERT' then
        old_rec := to_jsonb(old);
    end if;

    insert into audit.record_version (
        record_id, old_record_id, op, table_oid, table_schema, table_name, record, old_record
    )
    values (
        audit.to_record_id(tg_relid, tg_argv, new_rec),
        audit.to_record_id(tg_relid, tg_argv, old_rec),
        tg_op::audit.operation,
        tg_relid,
        tg_table_schema,
        tg_table_name,
        new_rec,
        old_rec
    );
    return null;
end
$$;

create or replace function audit.record_truncate()
returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    insert into audit.record_version (op, table_oid, table_schema, table_name)
    values ('TRUNCATE', tg_relid, tg_table_schema, tg_table_name);
    return null;
end
$$;

-- The trigger arguments enable_tracking gives a table with these key columns, in
-- pg_trigger.tgargs form, so a tracked table can be compared without parsing bytea.
create or replace function audit.trigger_arguments(pkey_cols text[])
returns bytea
language sql
immutable
as $$
    select pg_catalog.string_agg(
        pg_catalog.convert_to(k.col, 'UTF8') || '\x00'::bytea, ''::bytea order by k.ord
    )
    from pg_catalog.unnest(pkey_cols) with ordinality as k (col, ord)
$$;

create or replace function audit.enable_tracking(target regclass)
returns void
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    relation_kind "char";
    pkey_cols text[];
    tracked_args bytea;
begin
    select c.relkind into relation_kind from pg_class c where c.oid = target;
    if relation_kind is distinct from 'r' then
        raise exception using
            errcode = 'wrong_object_type',
            message = 'audit.enable_tracking: ' || target::text || ' is '
                || case relation_kind
                    when 'v' then 'a view'
                    when 'm' then 'a materialized view'
                    when 'f' then 'a foreign table'
                    when 'p' then 'a partitioned table'
                    else 'not an ordinary table'
                end,
            hint = 'Only ordinary tables can be tracked: track the table that stores the rows.';
    end if;

    pkey_cols := audit.primary_key_columns(target);
    if cardinality(pkey_cols) = 0 then
        raise exception using
            errcode = 'invalid_table_definition',
            message = 'audit.enable_tracking: table ' || target::text || ' has no primary key',
            hint = 'Add a primary key to ' || target::text
                || ': the audit trail identifies each record by its primary key.';
    end if;

    select t.tgargs into tracked_args
    from pg_trigger t
    where t.tgrelid = target and t.tgname = 'audit_row_change';

    if tracked_args is not distinct from audit.trigger_arguments(pkey_cols)
        and exists (select from pg_trigger t where t.tgrelid = target and t.tgname = 'audit_truncate')
    then
        return;
    end if;

    execute 'drop trigger if exists audit_row_change on ' || target::text;
    execute 'drop trigger if exists audit_truncate on ' || target::text;
    execute 'create trigger audit_row_change after insert or update or delete on '
        || target::text
        || ' for each row execute function audit.record_row_change('
        || (select string_agg(quote_literal(c), ', ') from unnest(pkey_cols) as c)
        || ')';
    execute 'create trigger audit_truncate after truncate on ' || target::text
        || ' for each statement execute function audit.record_truncate()';
end
$$;

create or replace function audit.disable_tracking(target regclass)
returns void
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
begin
    if not exists (
        select from pg_trigger t
        where t.tgrelid = target and t.tgname in ('audit_row_change', 'audit_truncate')
    ) then
        raise notice using message = 'audit.disable_tracking: ' || target::text || ' was not tracked';
        return;
    end if;
    execute 'drop trigger if exists audit_row_change on ' || target::text;
    execute 'drop trigger if exists audit_truncate on ' || target::text;
end
$$;

-- Keeps the key columns in the triggers right when a tracked table's primary key is
-- changed or renamed, and refuses to leave a tracked table without one.
create or replace function audit.follow_primary_key_changes()
returns event_trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    changed regclass;
begin
    for changed in
        select distinct c.objid::regclass
        from pg_event_trigger_ddl_commands() c
        join pg_trigger t on t.tgrelid = c.objid and t.tgname = 'audit_row_change'
        where c.classid = 'pg_class'::regclass
    loop
        if cardinality(audit.primary_key_columns(changed)) = 0 then
            raise exception using
                errcode = 'invalid_table_definition',
                message = 'table ' || changed::text
                    || ' is tracked by the audit trail and must keep a primary key',
                hint = 'Call audit.disable_tracking(''' || changed::text
                    || ''') (op.disable_tracking in a migration) first, or replace the key in the same ALTER TABLE statement.';
        end if;
        perform audit.enable_tracking(changed);
    end loop;
end
$$;

-- Event triggers need a superuser. Without one, a changed primary key is picked up by
-- the next audit.enable_tracking() call (autogenerate proposes it).
do $$
begin
    if not exists (
        select from pg_catalog.pg_event_trigger where evtname = 'audit_follow_primary_key_changes'
    ) then
        if (select rolsuper from pg_catalog.pg_roles where rolname = current_user) then
            create event trigger audit_follow_primary_key_changes
                on ddl_command_end when tag in ('ALTER TABLE')
                execute function audit.follow_primary_key_changes();
        else
            raise warning using
                message = 'install_audit: not a superuser, so primary-key changes of tracked tables '
                    || 'are not followed automatically',
                hint = 'After changing the primary key of a tracked table, call op.enable_tracking() for it again.';
        end if;
    end if;
end
$$;

revoke all on all functions in schema audit from public;

grant execute on function audit.uuid_v5(uuid, text), audit.to_record_id(oid, text[], jsonb)
    to public;
