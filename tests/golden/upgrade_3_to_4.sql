BEGIN;

do $hyper_audit$
declare
    -- 'upgrade' or 'downgrade'
    direction constant text := 'upgrade';
    -- the version the step makes, and the version it starts from
    target constant integer := 4;
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
begin
    if not exists (
        select from pg_catalog.pg_enum e
        where e.enumtypid = 'audit.operation'::pg_catalog.regtype and e.enumlabel = 'SNAPSHOT'
    ) then
        alter type audit.operation add value 'SNAPSHOT';
    end if;
end
$$;

do $$
begin
    if not exists (
        select from pg_catalog.pg_constraint k
        where k.conrelid = 'audit.record_version'::pg_catalog.regclass
            and k.conname = 'record_version_record_id_when_new'
            and pg_catalog.strpos(pg_catalog.pg_get_constraintdef(k.oid), 'SNAPSHOT') > 0
    ) then
        alter table audit.record_version
            drop constraint if exists record_version_record_id_when_new,
            add constraint record_version_record_id_when_new
                check ((op in ('INSERT', 'UPDATE') or op::text = 'SNAPSHOT') = (record_id is not null)),
            drop constraint if exists record_version_record_when_new,
            add constraint record_version_record_when_new
                check ((op in ('INSERT', 'UPDATE') or op::text = 'SNAPSHOT') = (record is not null));
    end if;
end
$$;

create table if not exists audit.trail_complete_since (
    table_oid oid primary key,
    since timestamptz not null,
    after_id bigint not null,
    how text not null check (how in ('snapshot', 'empty'))
);

revoke all on audit.trail_complete_since from public;

create table if not exists audit.snapshot_progress (
    table_oid oid primary key,
    start_id bigint not null,
    started_at timestamptz not null,
    file_node oid not null,
    next_page bigint not null,
    end_page bigint not null,
    written bigint not null
);

revoke all on audit.snapshot_progress from public;

create table if not exists audit.tracked_column (
    table_oid oid not null,
    attnum smallint not null,
    name name not null,
    primary key (table_oid, attnum)
);

revoke all on audit.tracked_column from public;

create table if not exists audit.column_change (
    id bigserial primary key,
    step bigint not null,
    table_oid oid not null,
    attnum smallint not null,
    kind text not null check (kind in ('rename', 'drop')),
    old_name name not null,
    new_name name,
    before_id bigint not null,
    changed_at timestamptz not null default now(),
    check ((kind = 'rename') = (new_name is not null))
);

create index if not exists column_change_table_oid on audit.column_change (table_oid, before_id);

revoke all on audit.column_change from public;

insert into audit.tracked_column (table_oid, attnum, name)
select a.attrelid, a.attnum, a.attname
from pg_catalog.pg_attribute a
where a.attnum > 0 and not a.attisdropped
    and a.attrelid in (
        select t.tgrelid from pg_catalog.pg_trigger t
        where t.tgfoid = pg_catalog.to_regprocedure('audit.record_row_change()')
    )
on conflict do nothing;

delete from audit.schema_version;

insert into audit.schema_version (version) values (4);

create schema if not exists audit;

revoke all on schema audit from public;

do $$
begin
    if to_regtype('audit.operation') is null then
        -- SNAPSHOT (version 4, steps/4.sql) is a label from the start in a fresh install:
        -- PostgreSQL refuses a label that ALTER TYPE ... ADD VALUE added until its
        -- transaction commits, and a new database's first migration may write SNAPSHOT
        -- rows (op.enable_tracking(..., snapshot=True)) in the transaction of the install.
        create type audit.operation as enum ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'SNAPSHOT');
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
    old_record jsonb
);

do $$
declare
    names constant text[] := array[
        'record_version_has_record_id',
        'record_version_record_id_when_new',
        'record_version_record_when_new',
        'record_version_old_record_id_when_old',
        'record_version_old_record_when_old'
    ];
    conditions constant text[] := array[
        $c$coalesce(record_id, old_record_id) is not null or op = 'TRUNCATE'$c$,
        $c$(op in ('INSERT', 'UPDATE')) = (record_id is not null)$c$,
        $c$(op in ('INSERT', 'UPDATE')) = (record is not null)$c$,
        $c$(op in ('UPDATE', 'DELETE')) = (old_record_id is not null)$c$,
        $c$(op in ('UPDATE', 'DELETE')) = (old_record is not null)$c$
    ];
    -- Check constraints of other names: the reference's, to compare with.
    others constant boolean := exists (
        select from pg_catalog.pg_constraint k
        where k.conrelid = 'audit.record_version'::pg_catalog.regclass and k.contype = 'c'
            and k.conname::text <> all (names)
    );
    existing name;
begin
    if others then
        create temporary table hyper_audit_adopt_probe (
            record_id uuid,
            old_record_id uuid,
            op audit.operation not null,
            record jsonb,
            old_record jsonb
        ) on commit drop;
    end if;
    for i in 1 .. pg_catalog.cardinality(names) loop
        continue when exists (
            select from pg_catalog.pg_constraint k
            where k.conrelid = 'audit.record_version'::pg_catalog.regclass
                and k.conname = names[i]
        );
        existing := null;
        if others then
            execute 'alter table pg_temp.hyper_audit_adopt_probe add constraint '
                || pg_catalog.quote_ident(names[i]) || ' check (' || conditions[i] || ')';
            select k.conname into existing
            from pg_catalog.pg_constraint k
            join pg_catalog.pg_constraint p
                on p.conrelid = 'pg_temp.hyper_audit_adopt_probe'::pg_catalog.regclass
                and p.conname = names[i]
            where k.conrelid = 'audit.record_version'::pg_catalog.regclass
                and k.contype = 'c'
                and pg_catalog.pg_get_constraintdef(k.oid) = pg_catalog.pg_get_constraintdef(p.oid)
            order by k.conname
            limit 1;
        end if;
        if existing is not null then
            execute 'alter table audit.record_version rename constraint '
                || pg_catalog.quote_ident(existing) || ' to ' || pg_catalog.quote_ident(names[i]);
        else
            execute 'alter table audit.record_version add constraint '
                || pg_catalog.quote_ident(names[i]) || ' check (' || conditions[i] || ')';
        end if;
    end loop;
    if others then
        drop table pg_temp.hyper_audit_adopt_probe;
    end if;
end
$$;

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

create table if not exists audit.schema_version (
    version integer not null check (version > 0),
    installed_at timestamptz not null default now()
);

revoke all on audit.schema_version from public;

delete from audit.schema_version;

insert into audit.schema_version (version) values (1);

do $$
begin
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

delete from audit.schema_version;

insert into audit.schema_version (version) values (2);

create unlogged table if not exists audit.key_change_state (
    backend_pid integer not null,
    table_oid oid not null,
    depth integer not null,
    first_id bigint,
    primary key (backend_pid, table_oid, depth)
);

revoke all on audit.key_change_state from public;

comment on table audit.key_change_state is
    'hyper_audit: the first audit row audit_key_change wrote in the running statement, per '
    'backend, table and trigger depth (for audit_update; null between statements).';

delete from audit.schema_version;

insert into audit.schema_version (version) values (3);

do $$
begin
    if not exists (
        select from pg_catalog.pg_enum e
        where e.enumtypid = 'audit.operation'::pg_catalog.regtype and e.enumlabel = 'SNAPSHOT'
    ) then
        alter type audit.operation add value 'SNAPSHOT';
    end if;
end
$$;

do $$
begin
    if not exists (
        select from pg_catalog.pg_constraint k
        where k.conrelid = 'audit.record_version'::pg_catalog.regclass
            and k.conname = 'record_version_record_id_when_new'
            and pg_catalog.strpos(pg_catalog.pg_get_constraintdef(k.oid), 'SNAPSHOT') > 0
    ) then
        alter table audit.record_version
            drop constraint if exists record_version_record_id_when_new,
            add constraint record_version_record_id_when_new
                check ((op in ('INSERT', 'UPDATE') or op::text = 'SNAPSHOT') = (record_id is not null)),
            drop constraint if exists record_version_record_when_new,
            add constraint record_version_record_when_new
                check ((op in ('INSERT', 'UPDATE') or op::text = 'SNAPSHOT') = (record is not null));
    end if;
end
$$;

create table if not exists audit.trail_complete_since (
    table_oid oid primary key,
    since timestamptz not null,
    after_id bigint not null,
    how text not null check (how in ('snapshot', 'empty'))
);

revoke all on audit.trail_complete_since from public;

create table if not exists audit.snapshot_progress (
    table_oid oid primary key,
    start_id bigint not null,
    started_at timestamptz not null,
    file_node oid not null,
    next_page bigint not null,
    end_page bigint not null,
    written bigint not null
);

revoke all on audit.snapshot_progress from public;

create table if not exists audit.tracked_column (
    table_oid oid not null,
    attnum smallint not null,
    name name not null,
    primary key (table_oid, attnum)
);

revoke all on audit.tracked_column from public;

create table if not exists audit.column_change (
    id bigserial primary key,
    step bigint not null,
    table_oid oid not null,
    attnum smallint not null,
    kind text not null check (kind in ('rename', 'drop')),
    old_name name not null,
    new_name name,
    before_id bigint not null,
    changed_at timestamptz not null default now(),
    check ((kind = 'rename') = (new_name is not null))
);

create index if not exists column_change_table_oid on audit.column_change (table_oid, before_id);

revoke all on audit.column_change from public;

insert into audit.tracked_column (table_oid, attnum, name)
select a.attrelid, a.attnum, a.attname
from pg_catalog.pg_attribute a
where a.attnum > 0 and not a.attisdropped
    and a.attrelid in (
        select t.tgrelid from pg_catalog.pg_trigger t
        where t.tgfoid = pg_catalog.to_regprocedure('audit.record_row_change()')
    )
on conflict do nothing;

delete from audit.schema_version;

insert into audit.schema_version (version) values (4);

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

revoke all on function audit.uuid_v5(uuid, text) from public;

grant execute on function audit.uuid_v5(uuid, text) to public;

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

revoke all on function audit.primary_key_columns(oid) from public;

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

revoke all on function audit.record_id_text_any(oid, text[], jsonb) from public;

grant execute on function audit.record_id_text_any(oid, text[], jsonb) to public;

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

revoke all on function audit.record_id_text(oid, text[], jsonb) from public;

grant execute on function audit.record_id_text(oid, text[], jsonb) to public;

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

revoke all on function audit.to_record_id(oid, text[], jsonb) from public;

grant execute on function audit.to_record_id(oid, text[], jsonb) to public;

create or replace function audit.record_row_change()
returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
set extra_float_digits = 1
set bytea_output = 'hex'
set DateStyle = 'ISO, MDY'
set IntervalStyle = 'postgres'
set TimeZone = 'UTC'
set lc_monetary = 'C'
set enable_nestloop = off
set enable_mergejoin = off
set jit = off
as $$
declare
    new_rec jsonb;
    old_rec jsonb;
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
            -- The id of the first audit row audit_key_change wrote for this statement,
            -- taken from audit.key_change_state (see the several-rows path below).
            select k.first_id into first_key_change from audit.key_change_state as k
            where k.backend_pid = pg_backend_pid() and k.table_oid = tg_relid
                and k.depth = pg_trigger_depth();
            if first_key_change is not null then
                update audit.key_change_state as k set first_id = null
                where k.backend_pid = pg_backend_pid() and k.table_oid = tg_relid
                    and k.depth = pg_trigger_depth();
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
                    join old_rows as o on o.key = n.key collate "C"
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
        -- The common single-row UPDATE whose key text did not change: its one old and
        -- one new row are the same row, and audit_key_change wrote nothing for it
        -- (record_key_change writes only rows whose key text changed), so no state is read.
        insert into audit.record_version (
            record_id, old_record_id, op, table_oid, table_schema, table_name,
            record, old_record
        )
        select p.id, p.id, 'UPDATE', tg_relid, tg_table_schema, tg_table_name, p.rec, p.old_rec
        from (
            select
                audit.to_record_id(tg_relid, tg_argv, n.rec) as id,
                n.rec,
                o.rec as old_rec,
                audit.record_id_text(tg_relid, tg_argv, n.rec) collate "C"
                    = audit.record_id_text(tg_relid, tg_argv, o.rec) collate "C" as same_key
            from (select to_jsonb(r) as rec from audit_new as r offset 0) as n
            cross join (select to_jsonb(r) as rec from audit_old as r offset 0) as o
            where not exists (select from audit_old offset 1)
            offset 0
        ) as p
        -- Tested after the join (offset 0 above), which stays a plain nested loop over one
        -- row each (as a join condition, the key comparison would build a hash table).
        where p.same_key;
        get diagnostics written = row_count;
        if written = 1 then
            return null;
        end if;
        if not exists (select from audit_old) then
            return null;
        end if;
        -- Key changes or several rows: did audit_key_change write rows for this statement?
        -- It noted the id of its first audit row in audit.key_change_state for this
        -- backend, table and trigger depth (the statement's row and statement triggers run
        -- at the same depth, nested statements deeper; only the audit owner writes there).
        -- Taken and cleared here; null if it wrote none.
        select k.first_id into first_key_change from audit.key_change_state as k
        where k.backend_pid = pg_backend_pid() and k.table_oid = tg_relid
            and k.depth = pg_trigger_depth();
        if first_key_change is not null then
            update audit.key_change_state as k set first_id = null
            where k.backend_pid = pg_backend_pid() and k.table_oid = tg_relid
                and k.depth = pg_trigger_depth();
        end if;
        if not exists (select from audit_old offset 1) then
            return null;  -- one row whose key changed: audit_key_change wrote it
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
                join old_rows as o on o.key = n.key collate "C"
                where not exists (select from key_changes as k where k.old_record = o.rec)
                    and not exists (select from key_changes as k where k.record = n.rec)
                offset 0
            ) as p'
        using tg_relid, tg_argv, tg_table_schema, tg_table_name, first_key_change;
    end if;
    return null;
end
$$;

revoke all on function audit.record_row_change() from public;

create or replace function audit.record_key_change()
returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
set extra_float_digits = 1
set bytea_output = 'hex'
set DateStyle = 'ISO, MDY'
set IntervalStyle = 'postgres'
set TimeZone = 'UTC'
set lc_monetary = 'C'
as $$
declare
    new_rec jsonb := to_jsonb(new);
    old_rec jsonb := to_jsonb(old);
    written bigint;
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
    -- The WHEN clause compares binary images: a key whose bytes changed but whose text did
    -- not (an array's lower bound, say) changed no record id; the statement trigger pairs
    -- that row by its key text.
    if audit.record_id_text(tg_relid, keys, new_rec) collate "C"
            = audit.record_id_text(tg_relid, keys, old_rec) collate "C" then
        return null;
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
    -- The first key-change row of this statement (the statement's row and statement
    -- triggers run at the same depth, nested statements deeper).
    insert into audit.key_change_state as s (backend_pid, table_oid, depth, first_id)
    values (pg_backend_pid(), tg_relid, pg_trigger_depth(), written)
    on conflict (backend_pid, table_oid, depth) do update set first_id = excluded.first_id
        where s.first_id is null;
    return null;
end
$$;

revoke all on function audit.record_key_change() from public;

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

revoke all on function audit.record_truncate() from public;

create or replace function audit.is_tracking_function(function_oid oid)
returns boolean
language sql
stable
set search_path = pg_catalog, pg_temp
as $$
    select function_oid in (
        'audit.record_row_change()'::regprocedure,
        'audit.record_key_change()'::regprocedure,
        'audit.record_truncate()'::regprocedure
    )
$$;

revoke all on function audit.is_tracking_function(oid) from public;

create or replace function audit.records_every_change(target regclass)
returns boolean
language sql
stable
set search_path = pg_catalog, pg_temp
as $$
    select coalesce(bool_and(t.tgenabled in ('O', 'A')), false)
        and coalesce(bit_or(t.tgtype::integer) filter (
            where t.tgfoid = 'audit.record_row_change()'::regprocedure), 0) & 28 = 28
        and bool_or(t.tgfoid = 'audit.record_truncate()'::regprocedure
            and t.tgtype::integer & 32 = 32)
        and (
            bool_and(t.tgtype::integer & 1 = 1)
                filter (where t.tgfoid = 'audit.record_row_change()'::regprocedure)
            or bool_or(t.tgfoid = 'audit.record_key_change()'::regprocedure
                and t.tgtype::integer & 17 = 17)
        )
    from pg_trigger t
    where t.tgrelid = target and not t.tgisinternal
        and t.tgfoid in (
            'audit.record_row_change()'::regprocedure,
            'audit.record_key_change()'::regprocedure,
            'audit.record_truncate()'::regprocedure
        )
$$;

revoke all on function audit.records_every_change(regclass) from public;

grant execute on function audit.records_every_change(regclass) to public;

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

revoke all on function audit.trigger_arguments(text[]) from public;

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

revoke all on function audit.trigger_argument_list(bytea) from public;

create or replace function audit.key_change_function(pkey_cols text[], create_it boolean)
returns regprocedure
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    function_name text := 'key_changed_'
        || left(encode(sha256(audit.trigger_arguments(pkey_cols)), 'hex'), 40);
    body text := 'select pg_catalog.record_image_ne(row('
        || (select string_agg('(old_row).' || quote_ident(c), ', ') from unnest(pkey_cols) as c)
        || '), row('
        || (select string_agg('(new_row).' || quote_ident(c), ', ') from unnest(pkey_cols) as c)
        || '))';
    -- The function's name, schema-qualified and quoted, and its signature.
    signature text := 'audit.' || quote_ident(function_name) || '(anyelement, anyelement)';
    found regprocedure;
begin
    found := to_regprocedure(signature);
    if found is null and not create_it then
        return null;
    end if;
    if found is not null
            and (select p.prosrc from pg_catalog.pg_proc as p where p.oid = found) = body then
        return found;
    end if;
    execute 'create or replace function ' || 'audit.' || quote_ident(function_name)
        || '(old_row anyelement, new_row anyelement) returns boolean'
        || ' language sql immutable parallel safe as ' || quote_literal(body);
    if found is null then
        -- Whoever writes a tracked table evaluates the WHEN clause, so it calls this (the
        -- same privileges as install_audit gives it).
        execute 'revoke all on function ' || signature || ' from public';
        execute 'grant execute on function ' || signature || ' to public';
        execute 'comment on function ' || signature || ' is '
            || quote_literal(
                'hyper_audit: did the primary key ('
                || array_to_string(pkey_cols, ', ')
                || ') change? Used by audit_key_change triggers.'
            );
    end if;
    return to_regprocedure(signature);
end
$$;

revoke all on function audit.key_change_function(text[], boolean) from public;

do $$
declare
    keys text[];
begin
    for keys in
        select distinct a.args[1:coalesce(pg_catalog.array_position(a.args, '') - 1, a.n)]
        from pg_catalog.pg_trigger as t
        cross join lateral (
            select audit.trigger_argument_list(t.tgargs) as args, t.tgnargs as n
        ) as a
        where t.tgfoid = 'audit.record_key_change()'::pg_catalog.regprocedure
    loop
        perform audit.key_change_function(keys, false);
    end loop;
end
$$;

create or replace function audit.tracking_trigger_sql(
    target regclass, trigger_name text, args text[]
)
returns text
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    arg_list text := coalesce(
        (select string_agg(quote_literal(a.arg), ', ' order by a.ord)
        from unnest(args) with ordinality as a (arg, ord)),
        ''
    );
    keys text[] := args[1:coalesce(array_position(args, '') - 1, cardinality(args))];
    key_changed regprocedure;
    key_changed_name text;
begin
    if trigger_name = 'audit_key_change' then
        -- Made first (if missing), then looked up: a statement that both made and read it
        -- would not see it.
        key_changed := audit.key_change_function(keys, true);
        key_changed_name := (select p.proname::text from pg_proc p where p.oid = key_changed);
    end if;
    return case trigger_name
        when 'audit_insert' then
            'create trigger audit_insert after insert on ' || target::text
            || ' referencing new table as audit_new'
            || ' for each statement execute function audit.record_row_change(' || arg_list || ')'
        when 'audit_update' then
            'create trigger audit_update after update on ' || target::text
            || ' referencing old table as audit_old new table as audit_new'
            || ' for each statement execute function audit.record_row_change(' || arg_list || ')'
        when 'audit_delete' then
            'create trigger audit_delete after delete on ' || target::text
            || ' referencing old table as audit_old'
            || ' for each statement execute function audit.record_row_change(' || arg_list || ')'
        when 'audit_key_change' then
            'create trigger audit_key_change after update on ' || target::text
            || ' for each row when (audit.' || quote_ident(key_changed_name) || '(old, new))'
            || ' execute function audit.record_key_change(' || arg_list || ')'
        when 'audit_row_change' then
            'create trigger audit_row_change after insert or update or delete on '
            || target::text
            || ' for each row execute function audit.record_row_change(' || arg_list || ')'
        when 'audit_truncate' then
            'create trigger audit_truncate after truncate on ' || target::text
            || ' for each statement execute function audit.record_truncate()'
    end;
end
$$;

revoke all on function audit.tracking_trigger_sql(regclass, text, text[]) from public;

create or replace function audit.refuse_squatted_trigger_names(target regclass, wanted text[])
returns void
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
    squatted record;
begin
    select t.tgname::text as name, t.tgfoid::regprocedure::text as function
    into squatted
    from pg_trigger t
    where t.tgrelid = target and not t.tgisinternal and t.tgname = any (wanted)
        and not audit.is_tracking_function(t.tgfoid)
    order by t.tgname
    limit 1;
    if found then
        raise exception using
            errcode = 'duplicate_object',
            message = 'audit.enable_tracking: table ' || target::text || ' has a trigger '
                || quote_ident(squatted.name) || ' that runs ' || squatted.function
                || ', not the audit trail''s function',
            hint = 'Rename or drop trigger ' || quote_ident(squatted.name) || ' on '
                || target::text || ' (its owner can), then track ' || target::text
                || ' again.';
    end if;
end
$$;

revoke all on function audit.refuse_squatted_trigger_names(regclass, text[]) from public;

create or replace function audit.last_audit_id()
returns bigint
language sql
volatile
set search_path = pg_catalog, pg_temp
as $$
    select coalesce(pg_sequence_last_value((
        select d.refobjid::regclass
        from pg_attrdef ad
        join pg_depend d on d.classid = 'pg_attrdef'::regclass and d.objid = ad.oid
            and d.refclassid = 'pg_class'::regclass
        join pg_class s on s.oid = d.refobjid and s.relkind = 'S'
        where ad.adrelid = 'audit.record_version'::regclass
            and ad.adnum = (
                select a.attnum from pg_attribute a
                where a.attrelid = 'audit.record_version'::regclass and a.attname = 'id'
            )
        limit 1
    )), 0)
$$;

revoke all on function audit.last_audit_id() from public;

create or replace function audit.record_column_changes(target regclass)
returns void
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    step_id bigint;
    before bigint;
begin
    if not exists (
        select from audit.tracked_column c where c.table_oid = target
    ) then
        insert into audit.tracked_column (table_oid, attnum, name)
        select target, a.attnum, a.attname from pg_attribute a
        where a.attrelid = target and a.attnum > 0 and not a.attisdropped;
        return;
    end if;
    if exists (
        select from audit.tracked_column c
        left join pg_attribute a on a.attrelid = c.table_oid and a.attnum = c.attnum
        where c.table_oid = target
            and (a.attnum is null or a.attisdropped or a.attname <> c.name)
    ) then
        step_id := nextval('audit.column_change_id_seq'::regclass);
        before := audit.last_audit_id();
        insert into audit.column_change (
            step, table_oid, attnum, kind, old_name, new_name, before_id
        )
        select step_id, c.table_oid, c.attnum,
            case when a.attnum is null or a.attisdropped then 'drop' else 'rename' end,
            c.name,
            case when a.attnum is null or a.attisdropped then null else a.attname end,
            before
        from audit.tracked_column c
        left join pg_attribute a on a.attrelid = c.table_oid and a.attnum = c.attnum
        where c.table_oid = target
            and (a.attnum is null or a.attisdropped or a.attname <> c.name)
        order by c.attnum;
    elsif not exists (
        select from pg_attribute a
        where a.attrelid = target and a.attnum > 0 and not a.attisdropped
            and not exists (
                select from audit.tracked_column c
                where c.table_oid = target and c.attnum = a.attnum
            )
    ) then
        return;  -- as last seen
    end if;
    delete from audit.tracked_column c where c.table_oid = target;
    insert into audit.tracked_column (table_oid, attnum, name)
    select target, a.attnum, a.attname from pg_attribute a
    where a.attrelid = target and a.attnum > 0 and not a.attisdropped;
end
$$;

revoke all on function audit.record_column_changes(regclass) from public;

create or replace function audit.note_trail_start(target regclass)
returns void
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
set row_security = off
as $$
declare
    empty boolean;
begin
    if not audit.records_every_change(target) then
        delete from audit.trail_complete_since m where m.table_oid = target;
        delete from audit.snapshot_progress p where p.table_oid = target;
        -- enable_tracking keeps a disabled (or replica-only) audit trigger as it is.
        if exists (
            select from pg_trigger t
            where t.tgrelid = target and not t.tgisinternal
                and audit.is_tracking_function(t.tgfoid) and t.tgenabled not in ('O', 'A')
        ) then
            return;
        end if;
    end if;
    if exists (select from audit.trail_complete_since m where m.table_oid = target) then
        return;
    end if;
    begin
        -- Rows seen without the lock: not empty, and no lock taken.
        execute 'select not exists (select from only ' || target::text || ')' into empty;
        if empty then
            execute 'lock table only ' || target::text || ' in share mode';
            execute 'select not exists (select from only ' || target::text || ')' into empty;
        end if;
    exception when insufficient_privilege then
        return;
    end;
    if empty then
        insert into audit.trail_complete_since (table_oid, since, after_id, how)
        values (target, now(), audit.last_audit_id(), 'empty');
    end if;
end
$$;

revoke all on function audit.note_trail_start(regclass) from public;

create or replace function audit.enable_tracking_keys(target regclass, options text[])
returns void
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    relation_kind "char";
    pkey_cols text[];
    on_replica boolean := 'on_replica' = any (options);
    trigger_args text[];
    args bytea;
    wanted_name text;
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
    -- Version 4: the column renames and drops since the table's columns were last seen
    -- (this is also the event trigger's way after ALTER TABLE), and whether its trail is
    -- complete (audit.trail_complete_since): before the triggers are (re)made.
    perform audit.record_column_changes(target);
    perform audit.note_trail_start(target);

    trigger_args := pkey_cols;
    if cardinality(options) > 0 then
        trigger_args := trigger_args || array[''] || options;
    end if;
    args := audit.trigger_arguments(trigger_args);

    -- to_jsonb() in the triggers (which run as the audit's owner) converts a value of a
    -- non-built-in type with the type's cast to json when one exists. A cast whose function
    -- a non-superuser owns would run that role's code with the audit owner's rights, and a
    -- polymorphic function (to_json(anyelement): superuser-owned, but written for no type)
    -- cannot be called by to_jsonb() at all, so that every write of the table would fail.
    -- No such cast may reach the table's values: through its columns, the base types of
    -- domains, the element types of arrays and the fields of composite types.
    select r.column_name::text as column_name, c.castsource::regtype::text as source,
        c.casttarget::regtype::text as target, c.castfunc::regprocedure::text as function,
        o.rolname::text as owner, a.typtype = 'p' as polymorphic
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
    join pg_type a on a.oid = p.proargtypes[0]
    where not o.rolsuper or a.typtype = 'p'
    order by r.column_name, c.casttarget
    limit 1;
    if found and unsafe.polymorphic then
        raise exception using
            errcode = 'insufficient_privilege',
            message = 'audit.enable_tracking: column ' || quote_ident(unsafe.column_name)
                || ' of table ' || target::text || ' is converted to json with the cast ('
                || unsafe.source || ' as ' || unsafe.target || '), whose function '
                || unsafe.function || ' is polymorphic: to_jsonb() in the audit triggers'
                || ' cannot call it, so every write of the table would fail',
            hint = 'Drop the cast (drop cast (' || unsafe.source || ' as ' || unsafe.target
                || ')) or use a function that takes ' || unsafe.source || ' itself, owned by a'
                || ' superuser, then track ' || target::text || ' again.';
    elsif found then
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
    -- On a subscriber (on_replica), only row-level triggers fire.
    statement_level := not on_replica
        and not exists (
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

    -- A name the table needs, held by a trigger that is not the audit's: refused.
    perform audit.refuse_squatted_trigger_names(
        target, array(select split_part(w, '/', 1) from unnest(wanted) as w)
    );

    -- Already so (the audit triggers, with these arguments, enabled as wanted, with the
    -- key-change condition of these key columns)? Nothing to do. This also ends the
    -- event trigger's round that the ALTER TABLE ... ENABLE ALWAYS below starts.
    if (
        select array_agg(
            t.tgname || '/' || t.tgtype || '/' || t.tgfoid::regproc::text || '/'
                || coalesce(t.tgoldtable, '') || '/' || coalesce(t.tgnewtable, '')
            order by t.tgname
        )
        from pg_trigger t
        where t.tgrelid = target and not t.tgisinternal
            and audit.is_tracking_function(t.tgfoid)
            and (t.tgname = 'audit_truncate' or t.tgargs = args)
            and (t.tgenabled = 'A') = on_replica
    ) is not distinct from wanted
        and (
            not statement_level
            or exists (
                select from pg_trigger t
                join pg_depend d on d.classid = 'pg_trigger'::regclass and d.objid = t.oid
                where t.tgrelid = target and t.tgname = 'audit_key_change'
                    and audit.is_tracking_function(t.tgfoid)
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
            and t.tgfoid = 'audit.record_truncate()'::regprocedure
    );
    perform audit.drop_tracking_triggers(target);

    foreach wanted_name in array array(select split_part(w, '/', 1) from unnest(wanted) as w)
    loop
        execute audit.tracking_trigger_sql(
            target,
            wanted_name,
            case when wanted_name = 'audit_truncate' then '{}' else trigger_args end
        );
    end loop;
    if on_replica then
        -- One ALTER TABLE for all: the event trigger it fires finds the table as wanted.
        execute 'alter table ' || target::text || ' ' || (
            select string_agg(
                'enable always trigger ' || quote_ident(split_part(w, '/', 1)), ', '
            )
            from unnest(wanted) as w
        );
    end if;
    if truncate_comment is not null then
        execute 'comment on trigger audit_truncate on ' || target::text || ' is '
            || quote_literal(truncate_comment);
    end if;
end
$$;

revoke all on function audit.enable_tracking_keys(regclass, text[]) from public;

create or replace function audit.enable_tracking_keys(target regclass)
returns void
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
begin
    perform audit.enable_tracking_keys(target, '{}');
end
$$;

revoke all on function audit.enable_tracking_keys(regclass) from public;

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
        where t.tgrelid = target and not t.tgisinternal
            and audit.is_tracking_function(t.tgfoid)
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

revoke all on function audit.drop_tracking_triggers(regclass) from public;

create or replace function audit.disable_tracking(target regclass)
returns void
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
begin
    -- Changes go unrecorded from now on: the trail is no longer complete (version 4), and a
    -- snapshot in progress stops. The column names last seen stay: a rename made while the
    -- table is not tracked is recorded when it is tracked again.
    delete from audit.trail_complete_since m where m.table_oid = target;
    delete from audit.snapshot_progress p where p.table_oid = target;
    if not audit.drop_tracking_triggers(target) then
        raise notice using message = 'audit.disable_tracking: ' || target::text || ' was not tracked';
    end if;
end
$$;

revoke all on function audit.disable_tracking(regclass) from public;

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

revoke all on function audit.follow_primary_key_changes() from public;

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
        c.castfunc::regprocedure::text as function, o.rolname::text as owner,
        a.typtype = 'p' as polymorphic
    into unsafe
    from pg_event_trigger_ddl_commands() d
    join pg_cast c on (d.classid = 'pg_cast'::regclass and c.oid = d.objid)
        or (d.classid = 'pg_proc'::regclass and c.castfunc = d.objid)
    join pg_proc p on p.oid = c.castfunc
    join pg_roles o on o.oid = p.proowner
    join pg_type a on a.oid = p.proargtypes[0]
    where c.casttarget in ('json'::regtype, 'jsonb'::regtype)
        and (not o.rolsuper or a.typtype = 'p')
    order by c.castsource, c.casttarget
    limit 1;
    if found and unsafe.polymorphic then
        raise exception using
            errcode = 'insufficient_privilege',
            message = 'the cast (' || unsafe.source || ' as ' || unsafe.target
                || ') uses the function ' || unsafe.function || ', which is polymorphic:'
                || ' to_jsonb() in the audit triggers cannot call it, and every write of a'
                || ' tracked table using ' || unsafe.source || ' would fail',
            hint = 'While the audit trail is installed, a cast to json or jsonb needs a function'
                || ' owned by a superuser that takes ' || unsafe.source || ' itself: drop the'
                || ' cast (drop cast (' || unsafe.source || ' as ' || unsafe.target || ')).';
    elsif found then
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

revoke all on function audit.refuse_unsafe_json_casts() from public;

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

do $$
declare
    unsafe record;
begin
    for unsafe in
        select c.castsource::pg_catalog.regtype::pg_catalog.text as source,
            c.casttarget::pg_catalog.regtype::pg_catalog.text as target,
            c.castfunc::pg_catalog.regprocedure::pg_catalog.text as function
        from pg_catalog.pg_cast c
        join pg_catalog.pg_proc p on p.oid = c.castfunc
        join pg_catalog.pg_type a on a.oid = p.proargtypes[0]
        where c.casttarget in ('pg_catalog.json'::pg_catalog.regtype,
                'pg_catalog.jsonb'::pg_catalog.regtype)
            and a.typtype operator(pg_catalog.=) 'p'
        order by 1, 2
    loop
        raise warning using
            message = 'install_audit: the cast (' || unsafe.source || ' as ' || unsafe.target
                || ') uses the polymorphic function ' || unsafe.function || ': every write of a'
                || ' tracked table using ' || unsafe.source || ' fails',
            hint = 'Drop the cast (drop cast (' || unsafe.source || ' as ' || unsafe.target
                || ')).';
    end loop;
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
        where t.tgrelid = target
            and t.tgfoid = 'audit.record_row_change()'::regprocedure
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

revoke all on function audit.tracking_options(regclass) from public;

create or replace function audit.set_tracking_options(target regclass, options text[])
returns void
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
begin
    if exists (
        select from pg_trigger t
        where t.tgrelid = target and t.tgfoid = 'audit.record_row_change()'::regprocedure
    ) then
        perform audit.enable_tracking_keys(target, options);
    end if;
end
$$;

revoke all on function audit.set_tracking_options(regclass, text[]) from public;

create or replace function audit.enable_tracking(
    target regclass, exclude text[], skip_unchanged boolean, on_replica boolean
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
    if exclude is null or skip_unchanged is null or on_replica is null then
        raise exception using
            errcode = 'null_value_not_allowed',
            message = 'audit.enable_tracking: exclude, skip_unchanged and on_replica must not'
                || ' be null',
            hint = 'Pass ''{}'', false and false for the defaults.';
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
    if on_replica then
        options := options || 'on_replica'::text;
    end if;
    perform audit.enable_tracking_keys(target, options);
end
$$;

create or replace function audit.enable_tracking(
    target regclass, exclude text[], skip_unchanged boolean
)
returns void
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
begin
    perform audit.enable_tracking(target, exclude, skip_unchanged, false);
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
    options := array(
        select 'exclude=' || d.c
        from (
            select distinct case
                when c.attnum is null then e.name
                when a.attnum is null or a.attisdropped then null
                else a.attname::text
            end as c
            from unnest(options) as o (opt)
            cross join lateral (select substr(o.opt, 9) as name) as e
            left join audit.tracked_column c on c.table_oid = target and c.name = e.name
            left join pg_attribute a on a.attrelid = target and a.attnum = c.attnum
            where left(o.opt, 8) = 'exclude='
        ) as d
        where d.c is not null
        order by d.c
    ) || array(
        select o.opt from unnest(options) with ordinality as o (opt, ord)
        where left(o.opt, 8) <> 'exclude='
        order by o.ord
    );
    perform audit.enable_tracking_keys(target, options);
end
$$;

revoke all on function audit.enable_tracking(regclass, text[], boolean, boolean) from public;

revoke all on function audit.enable_tracking(regclass, text[], boolean) from public;

revoke all on function audit.enable_tracking(regclass) from public;

create or replace function audit.snapshot_batch(
    target regclass, batch_size integer, out written bigint, out complete boolean
)
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
set extra_float_digits = 1
set bytea_output = 'hex'
set DateStyle = 'ISO, MDY'
set IntervalStyle = 'postgres'
set TimeZone = 'UTC'
set lc_monetary = 'C'
set row_security = off
set jit = off
as $$
declare
    acting text := coalesce(nullif(current_setting('role'), 'none'), session_user::text);
    owner_oid oid;
    relation_kind "char";
    schema_name name;
    relation_name name;
    node oid;
    args text[];
    sep integer;
    keys text[];
    excluded text[];
    progress audit.snapshot_progress;
    density double precision;
    upto bigint;
begin
    written := 0;
    complete := false;
    if target is null then
        raise exception using
            errcode = 'null_value_not_allowed',
            message = 'audit.snapshot: the table must not be null';
    end if;
    if batch_size is not null and batch_size < 1 then
        raise exception using
            errcode = 'invalid_parameter_value',
            message = 'audit.snapshot: batch_size must be 1 or more (or null: the whole table), not '
                || batch_size;
    end if;
    if current_setting('transaction_isolation') <> 'read committed' then
        raise exception using
            errcode = 'invalid_transaction_state',
            message = 'audit.snapshot: run it under READ COMMITTED, not '
                || upper(current_setting('transaction_isolation')),
            hint = 'A snapshot taken in an older transaction snapshot could miss changes '
                || 'committed while it waited for its lock on ' || target::text || '.';
    end if;
    -- The label SNAPSHOT, added by an upgrade in this same transaction, cannot be used
    -- before that transaction commits.
    begin
        perform 'SNAPSHOT'::audit.operation;
    exception when unsafe_new_enum_value_usage then
        raise exception using
            errcode = 'HA002',
            message = 'audit.snapshot: the audit schema was upgraded to version 4 in this '
                || 'transaction, and PostgreSQL cannot write the new label SNAPSHOT before '
                || 'that commits',
            hint = 'Commit the upgrade first: op.upgrade_audit() in a migration of its own, '
                || 'run by its own alembic upgrade (or with transaction_per_migration=True), '
                || 'then snapshot ' || target::text || '.';
    end;
    -- Checked before the lock (a role that may not snapshot the table must not lock it) and
    -- again once it is held: while this call waited, the table may have changed owner, lost
    -- or disabled an audit trigger, or been snapshotted by another call (never twice).
    for pass in 1..2 loop
        select c.relowner, c.relkind, n.nspname, c.relname, c.relfilenode
        into owner_oid, relation_kind, schema_name, relation_name, node
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where c.oid = target;
        if not (pg_has_role(acting::name, owner_oid, 'USAGE')
                or pg_has_role(acting::name, current_user, 'USAGE')) then
            raise exception using
                errcode = 'insufficient_privilege',
                message = 'audit.snapshot: role ' || quote_ident(acting) || ' does not own table '
                    || target::text,
                hint = 'Take the snapshot as the owner of ' || target::text
                    || ' or as the role that installed the audit trail.';
        end if;
        args := audit.trigger_argument_list((
            select t.tgargs from pg_trigger t
            where t.tgrelid = target and t.tgfoid = 'audit.record_row_change()'::regprocedure
            order by t.tgname
            limit 1
        ));
        if relation_kind is distinct from 'r' or cardinality(args) = 0
            or not audit.records_every_change(target)
        then
            raise exception using
                errcode = 'object_not_in_prerequisite_state',
                message = 'audit.snapshot: table ' || target::text || ' is not tracked'
                    || case when cardinality(args) > 0
                        then ' (an audit trigger is disabled, replica-only or missing)'
                        else '' end,
                hint = 'Track it first (op.enable_tracking() in a migration, or '
                    || 'audit.enable_tracking(' || quote_literal(target::text)
                    || ')): the snapshot records its rows, the triggers every change after.';
        end if;
        if exists (select from audit.trail_complete_since m where m.table_oid = target) then
            complete := true;
            return;
        end if;
        exit when pass = 2;
        execute 'lock table only ' || target::text || ' in share row exclusive mode';
    end loop;
    sep := array_position(args, '');
    keys := args[1:coalesce(sep - 1, cardinality(args))];
    excluded := array(
        select substr(a.arg, 9) from unnest(args[coalesce(sep, cardinality(args)) + 1:]) as a (arg)
        where left(a.arg, 8) = 'exclude='
    );

    -- A rewrite (while this call waited for the lock, too) gives the table another file.
    node := (select c.relfilenode from pg_class c where c.oid = target);

    select * into progress from audit.snapshot_progress p where p.table_oid = target;
    if not found then
        progress := row(
            target, audit.last_audit_id(), now(), node, 0,
            pg_relation_size(target) / current_setting('block_size')::bigint, 0
        );
        insert into audit.snapshot_progress values (progress.*);
    elsif progress.file_node <> node then
        progress.file_node := node;
        progress.next_page := 0;
        progress.end_page := pg_relation_size(target) / current_setting('block_size')::bigint;
    end if;

    if batch_size is null then
        upto := progress.end_page;
    else
        density := (
            select case when c.relpages > 0 and c.reltuples > 0
                then c.reltuples / c.relpages else 50 end
            from pg_class c where c.oid = target
        );
        upto := least(
            progress.end_page,
            progress.next_page + greatest(1, ceil(batch_size / density))::bigint
        );
    end if;

    if upto > progress.next_page then
        execute '
            insert into audit.record_version (
                record_id, op, table_oid, table_schema, table_name, record
            )
            select s.id, ''SNAPSHOT'', $1, $2, $3, s.rec
            from (
                select audit.to_record_id($1, $4, r.rec) as id, r.rec
                from (
                    select pg_catalog.to_jsonb(t) operator(pg_catalog.-) $5 as rec
                    from only ' || target::text || ' as t
                    where t.ctid >= $6 and t.ctid < $7
                    offset 0
                ) as r
                offset 0
            ) as s
            where not exists (
                select from audit.record_version as v
                where v.table_oid = $1 and v.record_id = s.id and v.id > $8
            )'
        using target::oid, schema_name, relation_name, keys, excluded,
            ('(' || progress.next_page || ',0)')::tid, ('(' || upto || ',0)')::tid,
            progress.start_id;
        get diagnostics written = row_count;
    end if;

    if upto >= progress.end_page then
        insert into audit.trail_complete_since (table_oid, since, after_id, how)
        values (target, now(), progress.start_id, 'snapshot');
        delete from audit.snapshot_progress p where p.table_oid = target;
        complete := true;
    else
        update audit.snapshot_progress p
        set file_node = progress.file_node, next_page = upto, end_page = progress.end_page,
            written = p.written + snapshot_batch.written
        where p.table_oid = target;
    end if;
end
$$;

revoke all on function audit.snapshot_batch(regclass, integer) from public;

create or replace procedure audit.snapshot(target regclass, batch_size integer default 10000)
language plpgsql
as $$
declare
    step record;
begin
    loop
        select * into step from audit.snapshot_batch(target, batch_size);
        commit;
        exit when step.complete;
    end loop;
end
$$;

revoke all on procedure audit.snapshot(regclass, integer) from public;

create or replace function audit.current_names(
    table_oid oid, rec jsonb, version_id bigint, out record jsonb, out dropped jsonb
)
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
    step_id bigint;
    gone jsonb;
begin
    record := rec;
    dropped := null;
    if rec is null or jsonb_typeof(rec) <> 'object' then
        return;
    end if;
    for step_id in
        select distinct c.step from audit.column_change c
        where c.table_oid = current_names.table_oid and c.before_id >= current_names.version_id
        order by c.step
    loop
        select
            coalesce(jsonb_object_agg(coalesce(c.new_name::text, e.key), e.value)
                filter (where c.kind is distinct from 'drop'), '{}'),
            jsonb_object_agg(e.key, e.value) filter (where c.kind = 'drop')
        into record, gone
        from jsonb_each(current_names.record) as e (key, value)
        left join audit.column_change c
            on c.step = step_id and c.table_oid = current_names.table_oid
            and c.old_name = e.key;
        if gone is not null then
            dropped := coalesce(dropped, '{}') || gone;
        end if;
    end loop;
end
$$;

revoke all on function audit.current_names(oid, jsonb, bigint) from public;

grant execute on function audit.current_names(oid, jsonb, bigint) to public;

create or replace function audit.rebuilt_table(
    target regclass, as_of timestamptz, before_id bigint
)
returns table (record_id uuid, version_id bigint, record jsonb, dropped jsonb)
language plpgsql
stable
set search_path = pg_catalog, pg_temp
set TimeZone = 'UTC'
set DateStyle = 'ISO, MDY'
as $$
#variable_conflict use_column
declare
    caller text := case when before_id is null then 'audit.table_as_of' else 'audit.table_before' end;
    mark audit.trail_complete_since;
    at timestamptz := as_of;
    upto timestamptz := coalesce(as_of, 'infinity');
    below bigint := coalesce(before_id, 9223372036854775807);
    truncated bigint;
    renamed boolean;
    fix text := 'Take a snapshot: call audit.snapshot(' || quote_literal(target::text)
        || ') (op.enable_tracking(..., snapshot=True) in a migration); the trail rebuilds '
        || target::text || ' from its end on.';
begin
    if as_of is not null and before_id is not null then
        raise exception using
            errcode = 'invalid_parameter_value',
            message = 'audit.rebuilt_table: give as_of or before_id, not both';
    end if;
    if target is null or (as_of is null and before_id is null) then
        raise exception using
            errcode = 'null_value_not_allowed',
            message = caller || ': the table and '
                || case when before_id is null then 'the time' else 'the audit row id' end
                || ' must not be null';
    end if;
    if not audit.records_every_change(target) then
        raise exception using
            errcode = 'HA001',
            message = caller || ': table ' || target::text || ' is not tracked now, so '
                || 'its audit trail may have a gap',
            hint = 'Track it (op.enable_tracking()) and take a snapshot: call audit.snapshot('
                || quote_literal(target::text) || ').';
    end if;
    if before_id is not null then
        select v.ts into at from audit.record_version v
        where v.id = before_id and v.table_oid = target::oid;
        if not found then
            raise exception using
                errcode = 'invalid_parameter_value',
                message = caller || ': audit row ' || before_id || ' is not one of table '
                    || target::text;
        end if;
    end if;
    select * into mark from audit.trail_complete_since m where m.table_oid = target;
    if not found then
        raise exception using
            errcode = 'HA001',
            message = caller || ': the audit trail of ' || target::text
                || ' is not complete: it does not record the rows the table held when '
                || 'tracking began',
            hint = fix;
    end if;
    if at < mark.since or below <= mark.after_id then
        raise exception using
            errcode = 'HA001',
            message = caller || ': the audit trail of ' || target::text
                || ' is complete from ' || mark.since || ' on, not '
                || case when before_id is null then 'at ' || at
                    else 'before audit row ' || before_id || ' (at ' || at || ')' end,
            hint = case mark.how
                when 'snapshot' then 'Its snapshot finished then: ask for a later time. '
                else 'It was tracked empty then: ask for a later time. '
            end || 'Rows from before were not recorded, so an earlier state cannot be rebuilt.';
    end if;

    select max(v.id) into truncated
    from audit.record_version v
    where v.table_oid = target::oid and v.id > mark.after_id and v.id < below
        and v.ts <= upto and v.op = 'TRUNCATE';
    renamed := exists (select from audit.column_change c where c.table_oid = target::oid);

    return query
    with versions as (
        select v.id, v.record_id as rid, v.old_record_id as old_rid, v.record as rec
        from audit.record_version v
        where v.table_oid = target::oid
            and v.id > greatest(mark.after_id, coalesce(truncated, 0))
            and v.id < below
            and v.ts <= upto
    ),
    effects as (
        select x.rid, x.id, x.rec from versions x where x.rid is not null
        union all
        select x.old_rid, x.id, null from versions x
        where x.old_rid is not null and x.old_rid is distinct from x.rid
    ),
    latest as (
        select distinct on (e.rid) e.rid, e.id, e.rec
        from effects e
        order by e.rid, e.id desc
    )
    select l.rid, l.id, n.record, n.dropped
    from latest l
    cross join lateral (
        select c.record, c.dropped from audit.current_names(target::oid, l.rec, l.id) c
        where renamed
        union all
        select l.rec, null::jsonb where not renamed
    ) as n
    where l.rec is not null
    order by l.id;
end
$$;

revoke all on function audit.rebuilt_table(regclass, timestamptz, bigint) from public;

grant execute on function audit.rebuilt_table(regclass, timestamptz, bigint) to public;

create or replace function audit.table_as_of(target regclass, as_of timestamptz)
returns table (record_id uuid, version_id bigint, record jsonb, dropped jsonb)
language sql
stable
set search_path = pg_catalog, pg_temp
as $$
    select r.record_id, r.version_id, r.record, r.dropped
    from audit.rebuilt_table(target, as_of, null) as r
$$;

revoke all on function audit.table_as_of(regclass, timestamptz) from public;

grant execute on function audit.table_as_of(regclass, timestamptz) to public;

create or replace function audit.table_before(target regclass, before_id bigint)
returns table (record_id uuid, version_id bigint, record jsonb, dropped jsonb)
language sql
stable
set search_path = pg_catalog, pg_temp
as $$
    select r.record_id, r.version_id, r.record, r.dropped
    from audit.rebuilt_table(target, null, before_id) as r
$$;

revoke all on function audit.table_before(regclass, bigint) from public;

grant execute on function audit.table_before(regclass, bigint) to public;

COMMIT;

