BEGIN;

do $hyper_audit$
declare
    -- 'upgrade' or 'downgrade'
    direction constant text := 'downgrade';
    -- the version the step makes, and the version it starts from
    target constant integer := 2;
    expected constant integer := 3;
    installed integer;
begin
    if pg_catalog.to_regclass('audit.schema_version') is not null then
        select max(v.version) into installed from audit.schema_version v;
    end if;
    if installed is distinct from expected then
        raise exception using
            errcode = 'object_not_in_prerequisite_state',
            message = 'audit schema ' || direction || ' to version ' || target
                || ': the installed audit schema is '
                || coalesce('version ' || installed::text, 'missing') || ', not version '
                || expected,
            hint = case
                when installed is null and direction = 'upgrade' then
                    'Install the audit trail with op.install_audit(): it installs the latest version.'
                when installed is null then
                    'There is no audit schema to downgrade in this database.'
                when installed = target then
                    'The audit schema is at version ' || target || ' already: there is nothing to '
                        || direction || '.'
                when direction = 'upgrade' and installed > target then
                    'This database has a newer audit schema than this step expects: '
                        || 'downgrade it first, or leave out this step.'
                when direction = 'upgrade' then
                    'Upgrade to version ' || expected || ' first.'
                else
                    'Downgrade to version ' || expected || ' first.'
            end;
    end if;
end
$hyper_audit$;

do $$
declare
    using_it text;
begin
    select pg_catalog.string_agg(t.tgrelid::regclass::text, ', ' order by t.tgrelid::regclass::text)
    into using_it
    from (
        select distinct tr.tgrelid from pg_catalog.pg_trigger tr
        where audit.is_tracking_function(tr.tgfoid)
            and 'on_replica' operator(pg_catalog.=) any (audit.tracking_options(tr.tgrelid))
    ) t;
    if using_it is not null then
        raise exception using
            errcode = 'object_not_in_prerequisite_state',
            message = 'audit schema downgrade to version 2: tables tracked with on_replica: '
                || using_it,
            hint = 'Version 2 cannot record changes applied by logical replication: track '
                || 'them without on_replica first (op.alter_tracking(..., on_replica=False)).';
    end if;
end
$$;

drop table if exists audit.key_change_state;

drop function if exists audit.enable_tracking(regclass, text[], boolean, boolean);

drop function if exists audit.enable_tracking_keys(regclass, text[]);

drop function if exists audit.tracking_trigger_sql(regclass, text, text[]);

drop function if exists audit.refuse_squatted_trigger_names(regclass, text[]);

drop function if exists audit.is_tracking_function(oid);

delete from audit.schema_version;

insert into audit.schema_version (version) values (2);

create schema if not exists audit;

revoke all on schema audit from public;

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
        create index if not exists record_version_table_oid
            on audit.record_version (table_oid);
    end if;
end
$$;

create table if not exists audit.schema_version (
    version integer not null check (version > 0),
    installed_at timestamptz not null default now()
);

revoke all on audit.schema_version from public;

delete from audit.schema_version;

insert into audit.schema_version (version) values (1);

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

create or replace function audit.record_id_text_any(table_oid oid, pkey_cols text[], rec jsonb)
returns text
language sql
stable
parallel safe
as $$
    select (
        pg_catalog.jsonb_build_array(table_oid::text)
        operator(pg_catalog.||) (
            select pg_catalog.jsonb_agg(rec operator(pg_catalog.->>) k.col order by k.ord)
            from pg_catalog.unnest(pkey_cols) with ordinality as k (col, ord)
        )
    )::text
$$;

create or replace function audit.record_id_text(table_oid oid, pkey_cols text[], rec jsonb)
returns text
language sql
stable
parallel safe
as $$
    select case
        when pg_catalog.cardinality(pkey_cols) operator(pg_catalog.=) 1 then
            pg_catalog.jsonb_build_array(
                table_oid::text,
                rec operator(pg_catalog.->>) pkey_cols[pg_catalog.array_lower(pkey_cols, 1)]
            )::text
        when pg_catalog.cardinality(pkey_cols) operator(pg_catalog.=) 2 then
            pg_catalog.jsonb_build_array(
                table_oid::text,
                rec operator(pg_catalog.->>) pkey_cols[pg_catalog.array_lower(pkey_cols, 1)],
                rec operator(pg_catalog.->>)
                    pkey_cols[pg_catalog.array_lower(pkey_cols, 1) operator(pg_catalog.+) 1]
            )::text
        when pg_catalog.cardinality(pkey_cols) operator(pg_catalog.=) 3 then
            pg_catalog.jsonb_build_array(
                table_oid::text,
                rec operator(pg_catalog.->>) pkey_cols[pg_catalog.array_lower(pkey_cols, 1)],
                rec operator(pg_catalog.->>)
                    pkey_cols[pg_catalog.array_lower(pkey_cols, 1) operator(pg_catalog.+) 1],
                rec operator(pg_catalog.->>)
                    pkey_cols[pg_catalog.array_lower(pkey_cols, 1) operator(pg_catalog.+) 2]
            )::text
        else audit.record_id_text_any(table_oid, pkey_cols, rec)
    end
$$;

create or replace function audit.to_record_id(table_oid oid, pkey_cols text[], rec jsonb)
returns uuid
language sql
stable
parallel safe
as $$
    select case when rec is not null then audit.uuid_v5(
        'fd62bc3d-8d6e-43c2-919c-802ba3762271'::uuid,
        audit.record_id_text(table_oid, pkey_cols, rec)
    ) end
$$;

create or replace function audit.record_row_change()
returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
set enable_nestloop = off
set enable_mergejoin = off
set jit = off
as $$
declare
    new_rec jsonb;
    old_rec jsonb;
    marker text;
    first_key_change bigint;
    written bigint;
begin
    if tg_level = 'ROW' then
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
    end if;

    if tg_op = 'INSERT' then
        insert into audit.record_version (
            record_id, op, table_oid, table_schema, table_name, record
        )
        select
            audit.to_record_id(tg_relid, tg_argv, n.rec),
            'INSERT', tg_relid, tg_table_schema, tg_table_name, n.rec
        from (select to_jsonb(r) as rec from audit_new as r offset 0) as n;
    elsif tg_op = 'DELETE' then
        insert into audit.record_version (
            old_record_id, op, table_oid, table_schema, table_name, old_record
        )
        select
            audit.to_record_id(tg_relid, tg_argv, o.rec),
            'DELETE', tg_relid, tg_table_schema, tg_table_name, o.rec
        from (select to_jsonb(r) as rec from audit_old as r offset 0) as o;
    else
        -- Did audit_key_change write rows for this statement? It notes the id of its
        -- first audit row under a name of this table and trigger depth: the statement's
        -- row and statement triggers run at the same depth, nested statements deeper.
        marker := 'audit.key_change_' || tg_relid::text || '_' || pg_trigger_depth()::text;
        first_key_change := nullif(current_setting(marker, true), '')::bigint;
        if first_key_change is null then
            -- The common single-row UPDATE: its one old and one new row are the same row,
            -- and its key did not change.
            insert into audit.record_version (
                record_id, old_record_id, op, table_oid, table_schema, table_name,
                record, old_record
            )
            select p.id, p.id, 'UPDATE', tg_relid, tg_table_schema, tg_table_name, p.rec, p.old_rec
            from (
                select audit.to_record_id(tg_relid, tg_argv, n.rec) as id, n.rec, o.rec as old_rec
                from (select to_jsonb(r) as rec from audit_new as r offset 0) as n
                cross join (select to_jsonb(r) as rec from audit_old as r offset 0) as o
                where (select count(*) from audit_old) = 1
                offset 0
            ) as p;
            get diagnostics written = row_count;
            if written = 1 then
                return null;
            end if;
            if not exists (select from audit_old) then
                return null;
            end if;
        else
            perform set_config(marker, '', true);
        end if;
        -- Several rows. Rows whose key changed were written by audit_key_change: they are
        -- the audit rows from first_key_change on whose old and new record are an old and
        -- a new row of this statement, and their old and new rows are left out; every
        -- other old row pairs with the new row of the same key. Planned anew for each
        -- statement (EXECUTE): a plan cached for one number of rows is poor for another.
        execute '
            with
                old_rows as materialized (
                    select s.rec, audit.record_id_text($1, $2, s.rec) as key
                    from (select pg_catalog.to_jsonb(r) as rec from audit_old as r offset 0) as s
                ),
                new_rows as materialized (
                    select s.rec, audit.record_id_text($1, $2, s.rec) as key
                    from (select pg_catalog.to_jsonb(r) as rec from audit_new as r offset 0) as s
                ),
                key_changes as materialized (
                    select v.old_record, v.record
                    from audit.record_version as v
                    where $5 is not null
                        and v.id >= $5
                        and v.ts >= pg_catalog.now()
                        and v.table_oid = $1
                        and v.op = ''UPDATE''
                        and v.old_record in (select rec from old_rows)
                        and v.record in (select rec from new_rows)
                )
            insert into audit.record_version (
                record_id, old_record_id, op, table_oid, table_schema, table_name,
                record, old_record
            )
            select p.id, p.id, ''UPDATE'', $1, $3, $4, p.rec, p.old_rec
            from (
                select
                    audit.uuid_v5(''fd62bc3d-8d6e-43c2-919c-802ba3762271''::uuid, n.key) as id,
                    n.rec,
                    o.rec as old_rec
                from new_rows as n
                join old_rows as o on o.key = n.key
                where not exists (select from key_changes as k where k.old_record = o.rec)
                    and not exists (select from key_changes as k where k.record = n.rec)
                offset 0
            ) as p'
        using tg_relid, tg_argv, tg_table_schema, tg_table_name, first_key_change;
    end if;
    return null;
end
$$;

create or replace function audit.record_key_change()
returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    new_rec jsonb := to_jsonb(new);
    old_rec jsonb := to_jsonb(old);
    written bigint;
    marker text;
begin
    insert into audit.record_version (
        record_id, old_record_id, op, table_oid, table_schema, table_name, record, old_record
    )
    values (
        audit.to_record_id(tg_relid, tg_argv, new_rec),
        audit.to_record_id(tg_relid, tg_argv, old_rec),
        'UPDATE',
        tg_relid,
        tg_table_schema,
        tg_table_name,
        new_rec,
        old_rec
    )
    returning id into written;
    marker := 'audit.key_change_' || tg_relid::text || '_' || pg_trigger_depth()::text;
    if coalesce(current_setting(marker, true), '') = '' then
        perform set_config(marker, written::text, true);
    end if;
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

create or replace function audit.key_change_function(pkey_cols text[], create_it boolean)
returns regprocedure
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    function_name text := 'key_changed_'
        || left(encode(sha256(audit.trigger_arguments(pkey_cols)), 'hex'), 40);
    found regprocedure;
begin
    found := to_regprocedure('audit.' || function_name || '(anyelement, anyelement)');
    if found is null and create_it then
        execute 'create function audit.' || function_name
            || '(old_row anyelement, new_row anyelement) returns boolean'
            || ' language sql stable parallel safe as '
            || quote_literal(
                'select ' || (
                    select string_agg(
                        '(old_row).' || quote_ident(c) || '::text operator(pg_catalog.<>) '
                            || '(new_row).' || quote_ident(c) || '::text',
                        ' or '
                    )
                    from unnest(pkey_cols) as c
                )
            );
        -- Whoever writes a tracked table evaluates the WHEN clause, so it calls this (the
        -- same privileges as install_audit gives it).
        execute 'revoke all on function audit.' || function_name
            || '(anyelement, anyelement) from public';
        execute 'grant execute on function audit.' || function_name
            || '(anyelement, anyelement) to public';
        execute 'comment on function audit.' || function_name || '(anyelement, anyelement) is '
            || quote_literal(
                'hyper_audit: did the primary key ('
                || array_to_string(pkey_cols, ', ')
                || ') change? Used by audit_key_change triggers.'
            );
        found := to_regprocedure('audit.' || function_name || '(anyelement, anyelement)');
    end if;
    return found;
end
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
    args bytea;
    arg_list text;
    key_changed regprocedure;
    statement_level boolean;
    wanted text[];
    truncate_comment text;
    unsafe record;
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
    args := audit.trigger_arguments(pkey_cols);

    -- to_jsonb() in the triggers (which run as the audit's owner) converts a value of a
    -- non-built-in type with the type's cast to json when one exists. A cast whose function
    -- a non-superuser owns would run that role's code with the audit owner's rights, so no
    -- such cast may reach the table's values: through its columns, the base types of
    -- domains, the element types of arrays and the fields of composite types.
    select r.column_name::text as column_name, c.castsource::regtype::text as source,
        c.casttarget::regtype::text as target, c.castfunc::regprocedure::text as function,
        o.rolname::text as owner
    into unsafe
    from (
        with recursive reached (column_name, type_oid) as (
            select a.attname, a.atttypid
            from pg_attribute a
            where a.attrelid = target and a.attnum > 0 and not a.attisdropped
            union
            select r.column_name, next_type.type_oid
            from reached r
            join pg_type t on t.oid = r.type_oid
            cross join lateral (
                select t.typbasetype where t.typtype = 'd'
                union all
                select t.typelem where t.typelem <> 0
                union all
                select a.atttypid from pg_attribute a
                where t.typrelid <> 0 and a.attrelid = t.typrelid and a.attnum > 0
                    and not a.attisdropped
            ) as next_type (type_oid)
        )
        select column_name, type_oid from reached
    ) as r
    join pg_cast c on c.castsource = r.type_oid
        and c.casttarget in ('json'::regtype, 'jsonb'::regtype)
    join pg_proc p on p.oid = c.castfunc
    join pg_roles o on o.oid = p.proowner
    where not o.rolsuper
    order by r.column_name, c.casttarget
    limit 1;
    if found then
        raise exception using
            errcode = 'insufficient_privilege',
            message = 'audit.enable_tracking: column ' || quote_ident(unsafe.column_name)
                || ' of table ' || target::text || ' is converted to json with the cast ('
                || unsafe.source || ' as ' || unsafe.target || '), whose function '
                || unsafe.function || ' is owned by ' || quote_ident(unsafe.owner)
                || ', not a superuser: the audit triggers would run it with their owner''s rights',
            hint = 'Drop the cast (drop cast (' || unsafe.source || ' as ' || unsafe.target
                || ')) or have a superuser own ' || unsafe.function || ', then track '
                || target::text || ' again.';
    end if;

    -- Statement-level triggers pair old and new rows by the primary key. That needs each
    -- key once among a statement's old rows and once among its new rows: a key that is
    -- not deferrable, and no foreign key of the table whose action updates its rows (ON
    -- UPDATE CASCADE / SET NULL / SET DEFAULT, ON DELETE SET NULL / SET DEFAULT): such
    -- updates join the transition tables of the statement that caused them, where a row
    -- may then appear twice. And the table's statements must touch exactly its own rows
    -- (no inheritance, not a partition). Other tables are tracked row by row.
    statement_level := not exists (
            select from pg_inherits i where i.inhrelid = target or i.inhparent = target
        )
        and not exists (
            select from pg_constraint k
            where k.conrelid = target and k.contype = 'p' and k.condeferrable
        )
        and not exists (
            select from pg_constraint f
            where f.conrelid = target and f.contype = 'f'
                and (f.confupdtype in ('c', 'n', 'd') or f.confdeltype in ('n', 'd'))
        );

    -- The triggers wanted, as name/type/function/old table/new table, each with the key
    -- columns as arguments (audit_truncate has none). tgtype bits: 1 row, 4 insert,
    -- 8 delete, 16 update, 32 truncate; all AFTER.
    if statement_level then
        key_changed := audit.key_change_function(pkey_cols, false);
        wanted := array[
            'audit_delete/8/audit.record_row_change/audit_old/',
            'audit_insert/4/audit.record_row_change//audit_new',
            'audit_key_change/17/audit.record_key_change//',
            'audit_truncate/32/audit.record_truncate//',
            'audit_update/16/audit.record_row_change/audit_old/audit_new'
        ];
    else
        wanted := array[
            'audit_row_change/29/audit.record_row_change//',
            'audit_truncate/32/audit.record_truncate//'
        ];
    end if;

    -- Already so (with the key-change condition of these key columns)? Nothing to do.
    if (
        select array_agg(
            t.tgname || '/' || t.tgtype || '/' || t.tgfoid::regproc::text || '/'
                || coalesce(t.tgoldtable, '') || '/' || coalesce(t.tgnewtable, '')
            order by t.tgname
        )
        from pg_trigger t
        where t.tgrelid = target
            and t.tgname in (
                'audit_row_change', 'audit_insert', 'audit_update', 'audit_delete',
                'audit_key_change', 'audit_truncate'
            )
            and (t.tgname = 'audit_truncate' or t.tgargs = args)
    ) is not distinct from wanted
        and (
            not statement_level
            or exists (
                select from pg_trigger t
                join pg_depend d on d.classid = 'pg_trigger'::regclass and d.objid = t.oid
                where t.tgrelid = target and t.tgname = 'audit_key_change'
                    and d.refclassid = 'pg_proc'::regclass and d.refobjid = key_changed
            )
        )
    then
        return;
    end if;

    -- The comment op.enable_tracking() leaves on audit_truncate (tracked by a migration)
    -- stays when the triggers are made anew.
    truncate_comment := (
        select obj_description(t.oid, 'pg_trigger') from pg_trigger t
        where t.tgrelid = target and t.tgname = 'audit_truncate'
    );
    perform audit.drop_tracking_triggers(target);

    arg_list := (select string_agg(quote_literal(c), ', ') from unnest(pkey_cols) as c);
    if statement_level then
        key_changed := audit.key_change_function(pkey_cols, true);
        execute 'create trigger audit_insert after insert on ' || target::text
            || ' referencing new table as audit_new'
            || ' for each statement execute function audit.record_row_change(' || arg_list || ')';
        execute 'create trigger audit_update after update on ' || target::text
            || ' referencing old table as audit_old new table as audit_new'
            || ' for each statement execute function audit.record_row_change(' || arg_list || ')';
        execute 'create trigger audit_delete after delete on ' || target::text
            || ' referencing old table as audit_old'
            || ' for each statement execute function audit.record_row_change(' || arg_list || ')';
        execute 'create trigger audit_key_change after update on ' || target::text
            || ' for each row when (audit.' || quote_ident(
                (select p.proname from pg_proc p where p.oid = key_changed)
            ) || '(old, new))'
            || ' execute function audit.record_key_change(' || arg_list || ')';
    else
        execute 'create trigger audit_row_change after insert or update or delete on '
            || target::text
            || ' for each row execute function audit.record_row_change(' || arg_list || ')';
    end if;
    execute 'create trigger audit_truncate after truncate on ' || target::text
        || ' for each statement execute function audit.record_truncate()';
    if truncate_comment is not null then
        execute 'comment on trigger audit_truncate on ' || target::text || ' is '
            || quote_literal(truncate_comment);
    end if;
end
$$;

create or replace function audit.drop_tracking_triggers(target regclass)
returns boolean
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    trigger_name name;
    unused regprocedure;
    found_one boolean := false;
begin
    for trigger_name in
        select t.tgname from pg_trigger t
        where t.tgrelid = target
            and t.tgname in (
                'audit_row_change', 'audit_insert', 'audit_update', 'audit_delete',
                'audit_key_change', 'audit_truncate'
            )
        order by t.tgname
    loop
        execute 'drop trigger ' || quote_ident(trigger_name) || ' on ' || target::text;
        found_one := true;
    end loop;
    for unused in
        select p.oid::regprocedure from pg_proc p
        where p.pronamespace = 'audit'::regnamespace
            and left(p.proname, 12) = 'key_changed_'
            and not exists (
                select from pg_depend d
                where d.classid = 'pg_trigger'::regclass
                    and d.refclassid = 'pg_proc'::regclass and d.refobjid = p.oid
            )
    loop
        execute 'drop function ' || unused::text;
    end loop;
    return found_one;
end
$$;

create or replace function audit.disable_tracking(target regclass)
returns void
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
begin
    if not audit.drop_tracking_triggers(target) then
        raise notice using message = 'audit.disable_tracking: ' || target::text || ' was not tracked';
    end if;
end
$$;

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
        with touched as (
            select c.objid as relid
            from pg_event_trigger_ddl_commands() c
            where c.classid = 'pg_class'::regclass
        )
        select distinct r.relid::regclass
        from (
            select relid from touched
            union all
            select i.inhparent from touched join pg_inherits i on i.inhrelid = touched.relid
            union all
            select i.inhrelid from touched join pg_inherits i on i.inhparent = touched.relid
        ) as r
        join pg_trigger t on t.tgrelid = r.relid and t.tgfoid = 'audit.record_row_change()'::regprocedure
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

do $$
begin
    if (select rolsuper from pg_catalog.pg_roles where rolname = current_user) then
        if exists (
            select from pg_catalog.pg_event_trigger
            where evtname = 'audit_follow_primary_key_changes'
                and evttags is distinct from array['ALTER TABLE', 'CREATE TABLE']
        ) then
            drop event trigger audit_follow_primary_key_changes;
        end if;
        if not exists (
            select from pg_catalog.pg_event_trigger
            where evtname = 'audit_follow_primary_key_changes'
        ) then
            create event trigger audit_follow_primary_key_changes
                on ddl_command_end when tag in ('ALTER TABLE', 'CREATE TABLE')
                execute function audit.follow_primary_key_changes();
        end if;
    elsif not exists (
        select from pg_catalog.pg_event_trigger where evtname = 'audit_follow_primary_key_changes'
    ) then
        raise warning using
            message = 'install_audit: not a superuser, so primary-key changes of tracked tables '
                || 'are not followed automatically',
            hint = 'After changing the primary key of a tracked table, call op.enable_tracking() for it again.';
    end if;
end
$$;

create or replace function audit.refuse_unsafe_json_casts()
returns event_trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
    unsafe record;
begin
    select c.castsource::regtype::text as source, c.casttarget::regtype::text as target,
        c.castfunc::regprocedure::text as function, o.rolname::text as owner
    into unsafe
    from pg_event_trigger_ddl_commands() d
    join pg_cast c on (d.classid = 'pg_cast'::regclass and c.oid = d.objid)
        or (d.classid = 'pg_proc'::regclass and c.castfunc = d.objid)
    join pg_proc p on p.oid = c.castfunc
    join pg_roles o on o.oid = p.proowner
    where c.casttarget in ('json'::regtype, 'jsonb'::regtype) and not o.rolsuper
    order by c.castsource, c.casttarget
    limit 1;
    if found then
        raise exception using
            errcode = 'insufficient_privilege',
            message = 'the cast (' || unsafe.source || ' as ' || unsafe.target
                || ') uses the function ' || unsafe.function || ' owned by '
                || quote_ident(unsafe.owner) || ', not a superuser: the audit triggers'
                || ' would run it with their owner''s rights',
            hint = 'While the audit trail is installed, a cast to json or jsonb may only use a'
                || ' function owned by a superuser: drop the cast (drop cast ('
                || unsafe.source || ' as ' || unsafe.target || ')) or have a superuser own '
                || unsafe.function || '.';
    end if;
end
$$;

do $$
begin
    if (select rolsuper from pg_catalog.pg_roles where rolname = current_user) then
        if not exists (
            select from pg_catalog.pg_event_trigger
            where evtname = 'audit_refuse_unsafe_json_casts'
        ) then
            create event trigger audit_refuse_unsafe_json_casts
                on ddl_command_end when tag in ('CREATE CAST', 'ALTER FUNCTION', 'ALTER ROUTINE')
                execute function audit.refuse_unsafe_json_casts();
        end if;
    elsif not exists (
        select from pg_catalog.pg_event_trigger where evtname = 'audit_refuse_unsafe_json_casts'
    ) then
        raise warning using
            message = 'install_audit: not a superuser, so casts to json that run code of other '
                || 'roles are only refused when a table is tracked',
            hint = 'The audit triggers run as the role that installed the audit trail: '
                || 'give it no more rights than it needs.';
    end if;
end
$$;

revoke all on all functions in schema audit from public;

grant execute on function
    audit.uuid_v5(uuid, text),
    audit.to_record_id(oid, text[], jsonb),
    audit.record_id_text(oid, text[], jsonb),
    audit.record_id_text_any(oid, text[], jsonb)
    to public;

do $$
declare
    condition regprocedure;
begin
    for condition in
        select p.oid::regprocedure from pg_catalog.pg_proc p
        where p.pronamespace = 'audit'::regnamespace
            and pg_catalog.left(p.proname, 12) = 'key_changed_'
    loop
        execute 'grant execute on function ' || condition::text || ' to public';
    end loop;
end
$$;

do $$
declare
    installed integer;
begin
    if pg_catalog.to_regclass('audit.schema_version') is not null then
        select max(v.version) into installed from audit.schema_version v;
    end if;
    if installed is distinct from 1 then
        raise exception using
            errcode = 'object_not_in_prerequisite_state',
            message = 'audit schema upgrade to version 2: the installed audit schema is '
                || coalesce('version ' || installed::text, 'missing') || ', not version 1',
            hint = case
                when installed is null then
                    'Install the audit trail with op.install_audit(): it installs the latest version.'
                when installed = 2 then
                    'The audit schema is at version 2 already: there is nothing to upgrade.'
                when installed > 2 then
                    'This database has a newer audit schema than this step expects: '
                        || 'downgrade it first, or leave out this step.'
                else
                    'Upgrade to version 1 first.'
            end;
    end if;
    if pg_catalog.current_setting('server_version_num')::integer < 130000 then
        raise exception using
            errcode = 'feature_not_supported',
            message = 'audit schema upgrade to version 2: PostgreSQL '
                || pg_catalog.current_setting('server_version')
                || ' has no xid8 transaction ids (pg_current_xact_id())',
            hint = 'Audit schema version 2 needs PostgreSQL 13 or later.';
    end if;
end
$$;

alter table audit.record_version
    add column if not exists actor text,
    add column if not exists context jsonb,
    add column if not exists transaction_id xid8;

alter table audit.record_version
    alter column actor set default coalesce(
        nullif(pg_catalog.current_setting('hyper_audit.actor', true), ''),
        nullif(pg_catalog.current_setting('role'), 'none'),
        session_user::text
    ),
    alter column context set default
        nullif(pg_catalog.current_setting('hyper_audit.context', true), '')::jsonb,
    alter column transaction_id set default pg_catalog.pg_current_xact_id();

create index if not exists record_version_transaction_id
    on audit.record_version (transaction_id) where transaction_id is not null;

create or replace function audit.trigger_argument_list(args bytea)
returns text[]
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
declare
    rest bytea := args;
    found text[] := '{}';
    pos integer;
begin
    while rest is not null and length(rest) > 0 loop
        pos := position('\x00'::bytea in rest);
        found := found || convert_from(substring(rest from 1 for pos - 1), 'UTF8');
        rest := substring(rest from pos + 1);
    end loop;
    return found;
end
$$;

create or replace function audit.tracking_options(target regclass)
returns text[]
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
    found text[];
    pos integer;
begin
    found := audit.trigger_argument_list((
        select t.tgargs from pg_trigger t
        where t.tgrelid = target and t.tgname in ('audit_row_change', 'audit_insert')
        order by t.tgname
        limit 1
    ));
    pos := array_position(found, '');
    if pos is null then
        return '{}';
    end if;
    return found[pos+1:cardinality(found)];
end
$$;

create or replace function audit.set_tracking_options(target regclass, options text[])
returns void
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    trigger_row record;
    definition text;
    call text;
    new_args text[];
    sep integer;
begin
    for trigger_row in
        select t.oid, t.tgname, t.tgfoid, t.tgargs from pg_trigger t
        where t.tgrelid = target
            and t.tgname in (
                'audit_row_change', 'audit_insert', 'audit_update', 'audit_delete',
                'audit_key_change'
            )
        order by t.tgname
    loop
        new_args := audit.trigger_argument_list(trigger_row.tgargs);
        sep := array_position(new_args, '');
        if sep is not null then
            new_args := new_args[1:sep-1];
        end if;
        if cardinality(options) > 0 then
            new_args := new_args || array[''] || options;
        end if;
        if audit.trigger_arguments(new_args) is not distinct from trigger_row.tgargs then
            continue;
        end if;
        definition := pg_get_triggerdef(trigger_row.oid);
        call := ' EXECUTE FUNCTION ' || trigger_row.tgfoid::regproc::text || '(';
        -- The definition up to its last such call (the call ends it).
        definition := left(
            definition,
            length(definition) - strpos(reverse(definition), reverse(call)) - length(call) + 1
        );
        execute 'drop trigger ' || quote_ident(trigger_row.tgname) || ' on ' || target::text;
        execute definition || call
            || (select string_agg(quote_literal(a), ', ') from unnest(new_args) as a) || ')';
    end loop;
end
$$;

drop function if exists audit.enable_tracking_keys(regclass);

alter function audit.enable_tracking(regclass) rename to enable_tracking_keys;

create or replace function audit.enable_tracking(
    target regclass, exclude text[], skip_unchanged boolean
)
returns void
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    options text[] := '{}';
    wrong text;
begin
    if exclude is null or skip_unchanged is null then
        raise exception using
            errcode = 'null_value_not_allowed',
            message = 'audit.enable_tracking: exclude and skip_unchanged must not be null',
            hint = 'Pass ''{}'' and false for the defaults.';
    end if;
    if array_position(exclude, null) is not null or '' = any (exclude) then
        raise exception using
            errcode = 'invalid_parameter_value',
            message = 'audit.enable_tracking: exclude holds a null or empty column name';
    end if;
    wrong := (
        select string_agg(quote_ident(c), ', ' order by c)
        from unnest(exclude) as c
        where c = any (audit.primary_key_columns(target))
    );
    if wrong is not null then
        raise exception using
            errcode = 'invalid_parameter_value',
            message = 'audit.enable_tracking: cannot exclude ' || wrong || ' of table '
                || target::text || ': primary-key columns identify each record',
            hint = 'Leave the primary-key columns out of exclude.';
    end if;
    wrong := (
        select string_agg(quote_ident(c), ', ' order by c)
        from unnest(exclude) as c
        where not exists (
            select from pg_attribute a
            where a.attrelid = target and a.attname = c and a.attnum > 0 and not a.attisdropped
        )
    );
    if wrong is not null then
        raise exception using
            errcode = 'undefined_column',
            message = 'audit.enable_tracking: cannot exclude ' || wrong || ': table '
                || target::text || ' has no such column';
    end if;
    options := array(
        select 'exclude=' || d.c from (select distinct c from unnest(exclude) as c) as d
        order by d.c
    );
    if skip_unchanged then
        options := options || 'skip_unchanged'::text;
    end if;
    -- Version 1's triggers first (made anew or kept as they are), then the options.
    perform audit.set_tracking_options(target, '{}');
    perform audit.enable_tracking_keys(target);
    perform audit.set_tracking_options(target, options);
end
$$;

create or replace function audit.enable_tracking(target regclass)
returns void
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    options text[] := audit.tracking_options(target);
begin
    perform audit.set_tracking_options(target, '{}');
    perform audit.enable_tracking_keys(target);
    perform audit.set_tracking_options(target, options);
end
$$;

revoke all on function
    audit.trigger_argument_list(bytea),
    audit.tracking_options(regclass),
    audit.set_tracking_options(regclass, text[]),
    audit.enable_tracking_keys(regclass),
    audit.enable_tracking(regclass, text[], boolean),
    audit.enable_tracking(regclass)
    from public;

create or replace function audit.record_row_change()
returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
set enable_nestloop = off
set enable_mergejoin = off
set jit = off
as $$
declare
    new_rec jsonb;
    old_rec jsonb;
    marker text;
    first_key_change bigint;
    written bigint;
    sep integer;
    keys text[];
    excluded text[];
    skip_unchanged boolean;
begin
    -- Options (version 2): the trigger arguments after the key columns and an empty
    -- separator argument. Without them (the usual case) the path below is version 1's.
    sep := array_position(tg_argv, '');
    if sep is not null then
        keys := tg_argv[0:sep-1];
        excluded := array(
            select substr(a.arg, 9) from unnest(tg_argv[sep+1:tg_nargs]) as a (arg)
            where left(a.arg, 8) = 'exclude='
        );
        skip_unchanged := 'skip_unchanged' = any (tg_argv[sep+1:tg_nargs]);
        if tg_level = 'ROW' then
            if tg_op <> 'DELETE' then
                new_rec := to_jsonb(new) - excluded;
            end if;
            if tg_op <> 'INSERT' then
                old_rec := to_jsonb(old) - excluded;
            end if;
            if skip_unchanged and tg_op = 'UPDATE' and new_rec = old_rec then
                return null;
            end if;
            insert into audit.record_version (
                record_id, old_record_id, op, table_oid, table_schema, table_name,
                record, old_record
            )
            values (
                audit.to_record_id(tg_relid, keys, new_rec),
                audit.to_record_id(tg_relid, keys, old_rec),
                tg_op::audit.operation,
                tg_relid,
                tg_table_schema,
                tg_table_name,
                new_rec,
                old_rec
            );
            return null;
        end if;
        if tg_op = 'INSERT' then
            insert into audit.record_version (
                record_id, op, table_oid, table_schema, table_name, record
            )
            select
                audit.to_record_id(tg_relid, keys, n.rec),
                'INSERT', tg_relid, tg_table_schema, tg_table_name, n.rec
            from (select to_jsonb(r) - excluded as rec from audit_new as r offset 0) as n;
        elsif tg_op = 'DELETE' then
            insert into audit.record_version (
                old_record_id, op, table_oid, table_schema, table_name, old_record
            )
            select
                audit.to_record_id(tg_relid, keys, o.rec),
                'DELETE', tg_relid, tg_table_schema, tg_table_name, o.rec
            from (select to_jsonb(r) - excluded as rec from audit_old as r offset 0) as o;
        else
            -- Pairs old and new rows by key like the several-rows path below, with the
            -- excluded columns left out and, with skip_unchanged, the pairs whose recorded
            -- values are equal left out.
            marker := 'audit.key_change_' || tg_relid::text || '_' || pg_trigger_depth()::text;
            first_key_change := nullif(current_setting(marker, true), '')::bigint;
            if first_key_change is not null then
                perform set_config(marker, '', true);
            end if;
            execute '
                with
                    old_rows as materialized (
                        select s.rec, audit.record_id_text($1, $2, s.rec) as key
                        from (
                            select pg_catalog.to_jsonb(r) operator(pg_catalog.-) $6 as rec
                            from audit_old as r offset 0
                        ) as s
                    ),
                    new_rows as materialized (
                        select s.rec, audit.record_id_text($1, $2, s.rec) as key
                        from (
                            select pg_catalog.to_jsonb(r) operator(pg_catalog.-) $6 as rec
                            from audit_new as r offset 0
                        ) as s
                    ),
                    key_changes as materialized (
                        select v.old_record, v.record
                        from audit.record_version as v
                        where $5 is not null
                            and v.id >= $5
                            and v.ts >= pg_catalog.now()
                            and v.table_oid = $1
                            and v.op = ''UPDATE''
                            and v.old_record in (select rec from old_rows)
                            and v.record in (select rec from new_rows)
                    )
                insert into audit.record_version (
                    record_id, old_record_id, op, table_oid, table_schema, table_name,
                    record, old_record
                )
                select p.id, p.id, ''UPDATE'', $1, $3, $4, p.rec, p.old_rec
                from (
                    select
                        audit.uuid_v5(''fd62bc3d-8d6e-43c2-919c-802ba3762271''::uuid, n.key) as id,
                        n.rec,
                        o.rec as old_rec
                    from new_rows as n
                    join old_rows as o on o.key = n.key
                    where not exists (select from key_changes as k where k.old_record = o.rec)
                        and not exists (select from key_changes as k where k.record = n.rec)
                        and not ($7 and n.rec operator(pg_catalog.=) o.rec)
                    offset 0
                ) as p'
            using tg_relid, keys, tg_table_schema, tg_table_name, first_key_change, excluded,
                skip_unchanged;
        end if;
        return null;
    end if;

    if tg_level = 'ROW' then
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
    end if;

    if tg_op = 'INSERT' then
        insert into audit.record_version (
            record_id, op, table_oid, table_schema, table_name, record
        )
        select
            audit.to_record_id(tg_relid, tg_argv, n.rec),
            'INSERT', tg_relid, tg_table_schema, tg_table_name, n.rec
        from (select to_jsonb(r) as rec from audit_new as r offset 0) as n;
    elsif tg_op = 'DELETE' then
        insert into audit.record_version (
            old_record_id, op, table_oid, table_schema, table_name, old_record
        )
        select
            audit.to_record_id(tg_relid, tg_argv, o.rec),
            'DELETE', tg_relid, tg_table_schema, tg_table_name, o.rec
        from (select to_jsonb(r) as rec from audit_old as r offset 0) as o;
    else
        -- Did audit_key_change write rows for this statement? It notes the id of its
        -- first audit row under a name of this table and trigger depth: the statement's
        -- row and statement triggers run at the same depth, nested statements deeper.
        marker := 'audit.key_change_' || tg_relid::text || '_' || pg_trigger_depth()::text;
        first_key_change := nullif(current_setting(marker, true), '')::bigint;
        if first_key_change is null then
            -- The common single-row UPDATE: its one old and one new row are the same row,
            -- and its key did not change.
            insert into audit.record_version (
                record_id, old_record_id, op, table_oid, table_schema, table_name,
                record, old_record
            )
            select p.id, p.id, 'UPDATE', tg_relid, tg_table_schema, tg_table_name, p.rec, p.old_rec
            from (
                select audit.to_record_id(tg_relid, tg_argv, n.rec) as id, n.rec, o.rec as old_rec
                from (select to_jsonb(r) as rec from audit_new as r offset 0) as n
                cross join (select to_jsonb(r) as rec from audit_old as r offset 0) as o
                where (select count(*) from audit_old) = 1
                offset 0
            ) as p;
            get diagnostics written = row_count;
            if written = 1 then
                return null;
            end if;
            if not exists (select from audit_old) then
                return null;
            end if;
        else
            perform set_config(marker, '', true);
        end if;
        -- Several rows. Rows whose key changed were written by audit_key_change: they are
        -- the audit rows from first_key_change on whose old and new record are an old and
        -- a new row of this statement, and their old and new rows are left out; every
        -- other old row pairs with the new row of the same key. Planned anew for each
        -- statement (EXECUTE): a plan cached for one number of rows is poor for another.
        execute '
            with
                old_rows as materialized (
                    select s.rec, audit.record_id_text($1, $2, s.rec) as key
                    from (select pg_catalog.to_jsonb(r) as rec from audit_old as r offset 0) as s
                ),
                new_rows as materialized (
                    select s.rec, audit.record_id_text($1, $2, s.rec) as key
                    from (select pg_catalog.to_jsonb(r) as rec from audit_new as r offset 0) as s
                ),
                key_changes as materialized (
                    select v.old_record, v.record
                    from audit.record_version as v
                    where $5 is not null
                        and v.id >= $5
                        and v.ts >= pg_catalog.now()
                        and v.table_oid = $1
                        and v.op = ''UPDATE''
                        and v.old_record in (select rec from old_rows)
                        and v.record in (select rec from new_rows)
                )
            insert into audit.record_version (
                record_id, old_record_id, op, table_oid, table_schema, table_name,
                record, old_record
            )
            select p.id, p.id, ''UPDATE'', $1, $3, $4, p.rec, p.old_rec
            from (
                select
                    audit.uuid_v5(''fd62bc3d-8d6e-43c2-919c-802ba3762271''::uuid, n.key) as id,
                    n.rec,
                    o.rec as old_rec
                from new_rows as n
                join old_rows as o on o.key = n.key
                where not exists (select from key_changes as k where k.old_record = o.rec)
                    and not exists (select from key_changes as k where k.record = n.rec)
                offset 0
            ) as p'
        using tg_relid, tg_argv, tg_table_schema, tg_table_name, first_key_change;
    end if;
    return null;
end
$$;

create or replace function audit.record_key_change()
returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    new_rec jsonb := to_jsonb(new);
    old_rec jsonb := to_jsonb(old);
    written bigint;
    marker text;
    keys text[] := tg_argv;
    sep integer := array_position(tg_argv, '');
    excluded text[];
begin
    -- Options (version 2): the key columns are the arguments before the empty one; the
    -- excluded columns are left out of both records.
    if sep is not null then
        keys := tg_argv[0:sep-1];
        excluded := array(
            select substr(a.arg, 9) from unnest(tg_argv[sep+1:tg_nargs]) as a (arg)
            where left(a.arg, 8) = 'exclude='
        );
        new_rec := new_rec - excluded;
        old_rec := old_rec - excluded;
    end if;
    insert into audit.record_version (
        record_id, old_record_id, op, table_oid, table_schema, table_name, record, old_record
    )
    values (
        audit.to_record_id(tg_relid, keys, new_rec),
        audit.to_record_id(tg_relid, keys, old_rec),
        'UPDATE',
        tg_relid,
        tg_table_schema,
        tg_table_name,
        new_rec,
        old_rec
    )
    returning id into written;
    marker := 'audit.key_change_' || tg_relid::text || '_' || pg_trigger_depth()::text;
    if coalesce(current_setting(marker, true), '') = '' then
        perform set_config(marker, written::text, true);
    end if;
    return null;
end
$$;

delete from audit.schema_version;

insert into audit.schema_version (version) values (2);

COMMIT;

