BEGIN;

do $hyper_audit$
declare
    -- 'upgrade' or 'downgrade'
    direction constant text := 'downgrade';
    -- the version the step makes, and the version it starts from
    target constant integer := 5;
    expected constant integer := 6;
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

create schema if not exists audit;

revoke all on schema audit from public;

do $$
begin
    if to_regtype('audit.operation') is null then
        -- SNAPSHOT (version 4, steps/4.sql) and REDACT (version 5, steps/5.sql) are
        -- labels from the start in a fresh install:
        -- PostgreSQL refuses a label that ALTER TYPE ... ADD VALUE added until its
        -- transaction commits, and a new database's first migration may write SNAPSHOT
        -- rows (op.enable_tracking(..., snapshot=True)) in the transaction of the install.
        create type audit.operation as enum ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'SNAPSHOT', 'REDACT');
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
begin
    if not exists (
        select from pg_catalog.pg_enum e
        where e.enumtypid = 'audit.operation'::pg_catalog.regtype and e.enumlabel = 'REDACT'
    ) then
        alter type audit.operation add value 'REDACT';
    end if;
end
$$;

do $$
begin
    if not exists (
        select from pg_catalog.pg_constraint k
        where k.conrelid = 'audit.record_version'::pg_catalog.regclass
            and k.conname = 'record_version_record_id_when_new'
            and pg_catalog.strpos(pg_catalog.pg_get_constraintdef(k.oid), 'REDACT') > 0
    ) then
        alter table audit.record_version
            drop constraint if exists record_version_record_id_when_new,
            add constraint record_version_record_id_when_new
                check ((op in ('INSERT', 'UPDATE') or op::text in ('SNAPSHOT', 'REDACT'))
                    = (record_id is not null));
    end if;
end
$$;

create table if not exists audit.seal_log (
    link_id bigint primary key check (link_id > 0),
    kind text not null check (kind in ('seal', 'redaction', 'expiry')),
    made_at timestamptz not null,
    made_by text not null,
    body jsonb not null,
    chain_hash bytea not null,
    mac bytea
);

revoke all on audit.seal_log from public;

create table if not exists audit.seal_segment (
    segment_id bigint primary key,
    link_id bigint not null,
    ids int8range[] not null,
    row_count bigint not null,
    first_ts timestamptz not null,
    last_ts timestamptz not null,
    hash bytea not null
);

create index if not exists seal_segment_link_id on audit.seal_segment (link_id);

revoke all on audit.seal_segment from public;

create table if not exists audit.seal_salt (
    segment_id bigint primary key,
    salt bytea not null
);

revoke all on audit.seal_salt from public;

delete from audit.schema_version;

insert into audit.schema_version (version) values (5);

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
                    and v.op::text <> ''REDACT''
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
            -- A REDACT row (version 5) names a record but changes no row.
            and v.op::text <> 'REDACT'
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

create or replace function audit.canonical_row_sql(alias text)
returns text
language sql
stable
set search_path = pg_catalog, pg_temp
as $$
    with design (name, position) as (
        select x.name, x.position
        from pg_catalog.unnest(array[
            'id', 'record_id', 'old_record_id', 'op', 'ts', 'table_schema', 'table_name',
            'record', 'old_record', 'actor', 'context', 'transaction_id'
        ]) with ordinality as x (name, position)
    ),
    other as (
        select a.attname::text as name
        from pg_catalog.pg_attribute a
        where a.attrelid = 'audit.record_version'::pg_catalog.regclass
            and a.attnum > 0 and not a.attisdropped
            and a.attname::text not in (select d.name from design d)
            and a.attname <> 'table_oid'
    ),
    fixed as (
        select pg_catalog.string_agg(
            case when exists (
                select from pg_catalog.pg_attribute a
                where a.attrelid = 'audit.record_version'::pg_catalog.regclass
                    and a.attname = d.name and not a.attisdropped
            ) then pg_catalog.quote_ident(alias) || '.' || pg_catalog.quote_ident(d.name) else 'null' end,
            ', ' order by d.position) as list
        from design d
    ),
    extra as (
        select pg_catalog.string_agg(
            pg_catalog.quote_literal(o.name) || ', ' || pg_catalog.quote_ident(alias) || '.' || pg_catalog.quote_ident(o.name), ', ' order by o.name) as pairs
        from other o
    )
    select case
        when e.pairs is null then 'pg_catalog.json_build_array(' || f.list || ')'
        else 'case when pg_catalog.json_strip_nulls(pg_catalog.json_build_object(' || e.pairs
            || '))::text = ''{}'' then pg_catalog.json_build_array(' || f.list
            || ') else pg_catalog.json_build_array(' || f.list
            || ', pg_catalog.json_strip_nulls(pg_catalog.json_build_object(' || e.pairs || '))) end'
    end
    from fixed f, extra e
$$;

revoke all on function audit.canonical_row_sql(text) from public;

create or replace function audit.seal_link_text(link bigint)
returns text
language sql
stable
set search_path = pg_catalog, pg_temp
set TimeZone = 'UTC'
as $$
    select pg_catalog.jsonb_build_object(
        'link', l.link_id,
        'kind', l.kind,
        'made_at', l.made_at,
        'made_by', l.made_by,
        'body', l.body,
        'segments', coalesce((
            select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                'segment', s.segment_id,
                'ids', s.ids::text,
                'rows', s.row_count,
                'first_ts', s.first_ts,
                'last_ts', s.last_ts,
                'hash', pg_catalog.encode(s.hash, 'hex')
            ) order by s.segment_id)
            from audit.seal_segment s
            where s.link_id = l.link_id
        ), '[]'::jsonb)
    )::text
    from audit.seal_log l
    where l.link_id = link
$$;

revoke all on function audit.seal_link_text(bigint) from public;

create or replace function audit.lock_seal_chain()
returns bigint
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
    lock table audit.seal_log in exclusive mode;
    return coalesce((select max(l.link_id) from audit.seal_log l), 0) + 1;
end
$$;

revoke all on function audit.lock_seal_chain() from public;

create or replace function audit.append_seal_link(link bigint, link_kind text, link_body jsonb)
returns bytea
language plpgsql
set search_path = pg_catalog, pg_temp
set TimeZone = 'UTC'
as $$
declare
    previous bytea;
    chained bytea;
begin
    select l.chain_hash into previous from audit.seal_log l where l.link_id = link - 1;
    if previous is null and link > 1 then
        raise exception using
            errcode = 'data_corrupted',
            message = 'audit seal chain: link ' || (link - 1) || ' is missing; run audit.verify()';
    end if;
    insert into audit.seal_log (link_id, kind, made_at, made_by, body, chain_hash)
    values (
        link, link_kind, pg_catalog.now(),
        coalesce(
            nullif(pg_catalog.current_setting('hyper_audit.actor', true), ''),
            nullif(pg_catalog.current_setting('role'), 'none'),
            session_user::text
        ),
        link_body, ''::bytea
    );
    chained := pg_catalog.sha256(
        coalesce(previous, pg_catalog.decode(pg_catalog.repeat('00', 32), 'hex'))
        || pg_catalog.convert_to(audit.seal_link_text(link), 'UTF8')
    );
    update audit.seal_log set chain_hash = chained where link_id = link;
    return chained;
end
$$;

revoke all on function audit.append_seal_link(bigint, text, jsonb) from public;

create or replace function audit.segment_state(segment bigint, salt bytea)
returns table (row_count bigint, hash bytea)
language plpgsql
stable
set search_path = pg_catalog, pg_temp
set TimeZone = 'UTC'
as $$
begin
    return query execute pg_catalog.replace($state$
        select pg_catalog.count(*),
            pg_catalog.sha256($2 || pg_catalog.sha256(coalesce(
                pg_catalog.string_agg(x.leaf, ''::bytea order by x.id, x.leaf), ''::bytea)))
        from (
            select r.id, pg_catalog.sha256(pg_catalog.convert_to((CANONICAL_ROW)::text, 'UTF8')) as leaf
            from audit.seal_segment s
            cross join pg_catalog.unnest(s.ids) g
            join audit.record_version r
                on r.id >= pg_catalog.lower(g) and r.id < pg_catalog.upper(g)
                and r.ts >= s.first_ts and r.ts <= s.last_ts
            where s.segment_id = $1
        ) x
    $state$, 'CANONICAL_ROW', audit.canonical_row_sql('r'))
    using segment, salt;
end
$$;

revoke all on function audit.segment_state(bigint, bytea) from public;

create or replace function audit.seal()
returns table (link_id bigint, rows_sealed bigint, segments integer, chain_hash bytea)
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
set TimeZone = 'UTC'
set jit = off
set work_mem = '64MB'
as $$
declare
    link bigint;
    previous jsonb;
    max_id bigint := 0;
    pending xid8[] := '{}';
    scan_from timestamptz := '-infinity';
    bounds jsonb := '{}';
    read_at timestamptz;
    running jsonb;
    me xid8 := pg_catalog.pg_current_xact_id_if_assigned();
    first_segment bigint;
    sealed bigint;
    made integer;
    highest bigint;
    now_pending xid8[];
    chained bytea;
    sealed_segments jsonb;
begin
    link := audit.lock_seal_chain();
    select l.body into previous
    from audit.seal_log l where l.kind = 'seal' order by l.link_id desc limit 1;
    if previous is not null then
        max_id := (previous ->> 'max_id')::bigint;
        pending := array(select pg_catalog.jsonb_array_elements_text(previous -> 'pending'))::xid8[];
        bounds := previous -> 'running';
        scan_from := least(
            (previous ->> 'read_at')::timestamptz,
            (select min(b.value::timestamptz) from pg_catalog.jsonb_each_text(bounds) b)
        );
    end if;

    -- The transactions running now, read before the snapshot of the seal's statement.
    read_at := pg_catalog.clock_timestamp();
    select coalesce(pg_catalog.jsonb_object_agg(v.vxid, coalesce(
            bounds ->> v.vxid,
            coalesce(previous ->> 'read_at', '-infinity')
        )), '{}')
    into running
    from (
        select distinct lk.virtualxid::text as vxid
        from pg_catalog.pg_locks lk
        where lk.locktype = 'virtualxid' and lk.granted and lk.virtualxid is not null
    ) v;

    select coalesce(max(s.segment_id), 0) into first_segment from audit.seal_segment s;

    -- The rows to seal, hashed and grouped in one read-only statement (PostgreSQL may hash
    -- them in parallel workers: the subquery sorts them by segment after their hash is
    -- made), with the transactions running at its snapshot: the same snapshot chose them.
    -- A segment: the rows of one partition or chunk (tableoid) and one block of 100,000
    -- ids; its ids are listed as ranges of consecutive ids (islands).
    execute pg_catalog.replace($seal$
    select
        coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
            'ids', b.ids::text, 'rows', b.n, 'first_ts', b.first_ts, 'last_ts', b.last_ts,
            'last_id', b.last_id, 'inner', pg_catalog.encode(b.inner_hash, 'hex')
        ) order by b.first_id, b.rel), '[]'::jsonb),
        array(
            select x from pg_catalog.pg_snapshot_xip(pg_catalog.pg_current_snapshot()) x
            union
            select $3 where $3 is not null
        )
    from (
        select i.rel, i.block,
            pg_catalog.array_agg(pg_catalog.int8range(i.lo, i.hi, '[]') order by i.lo) as ids,
            sum(i.n)::bigint as n, min(i.first_ts) as first_ts, max(i.last_ts) as last_ts,
            min(i.lo) as first_id, max(i.hi) as last_id,
            pg_catalog.sha256(pg_catalog.string_agg(i.leaves, ''::bytea order by i.lo, i.leaves)) as inner_hash
        from (
            select g.rel, g.block, g.island, min(g.id) as lo, max(g.id) as hi,
                pg_catalog.count(*) as n, min(g.ts) as first_ts, max(g.ts) as last_ts,
                pg_catalog.string_agg(g.leaf, ''::bytea order by g.id, g.leaf) as leaves
            from (
                select c.rel, c.block, c.id, c.ts, c.leaf,
                    c.id - pg_catalog.row_number() over (
                        partition by c.rel, c.block order by c.id) as island
                from (
                    select r.tableoid as rel, r.id / 100000 as block, r.id, r.ts,
                        pg_catalog.sha256(pg_catalog.convert_to((CANONICAL_ROW)::text, 'UTF8')) as leaf
                    from audit.record_version r
                    where r.ts >= $1 and r.id > $2 and coalesce(r.transaction_id <> $3, true)
                    union all
                    select r.tableoid, r.id / 100000, r.id, r.ts,
                        pg_catalog.sha256(pg_catalog.convert_to((CANONICAL_ROW)::text, 'UTF8'))
                    from audit.record_version r
                    where r.transaction_id = any ($4)
                        and not (r.ts >= $1 and r.id > $2)
                        and coalesce(r.transaction_id <> $3, true)
                    order by 1, 2, 3
                ) c
            ) g
            group by g.rel, g.block, g.island
        ) i
        group by i.rel, i.block
    ) b
    $seal$, 'CANONICAL_ROW', audit.canonical_row_sql('r'))
    into sealed_segments, now_pending
    using scan_from, max_id, me, pending;

    -- Each segment's hash: sha256(a new random salt || the hash of its rows' hashes).
    with segments as materialized (
        select first_segment + e.ordinality as segment_id, e.value as facts,
            pg_catalog.uuid_send(pg_catalog.gen_random_uuid())
                || pg_catalog.uuid_send(pg_catalog.gen_random_uuid()) as salt
        from pg_catalog.jsonb_array_elements(sealed_segments) with ordinality as e
    ),
    new_segments as (
        insert into audit.seal_segment (segment_id, link_id, ids, row_count, first_ts, last_ts, hash)
        select s.segment_id, link, (s.facts ->> 'ids')::int8range[], (s.facts ->> 'rows')::bigint,
            (s.facts ->> 'first_ts')::timestamptz, (s.facts ->> 'last_ts')::timestamptz,
            pg_catalog.sha256(s.salt || pg_catalog.decode(s.facts ->> 'inner', 'hex'))
        from segments s
    )
    insert into audit.seal_salt (segment_id, salt)
    select s.segment_id, s.salt from segments s;

    select coalesce(sum((e.value ->> 'rows')::bigint), 0), pg_catalog.count(*),
        max((e.value ->> 'last_id')::bigint)
    into sealed, made, highest
    from pg_catalog.jsonb_array_elements(sealed_segments) e;

    if made = 0 then
        return;
    end if;

    chained := audit.append_seal_link(link, 'seal', pg_catalog.jsonb_build_object(
        'canonical', 1,
        'rows', sealed,
        'max_id', greatest(max_id, highest),
        'pending', (select coalesce(pg_catalog.jsonb_agg(p::text order by p), '[]')
                    from pg_catalog.unnest(now_pending) p),
        'read_at', read_at,
        'running', running
    ));
    return query select link, sealed, made, chained;
end
$$;

revoke all on function audit.seal() from public;

create or replace function audit.verify(from_link bigint default null, to_link bigint default null)
returns table (
    link_id bigint, kind text, status text, rows_verified bigint, chain_hash bytea, detail text
)
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
set TimeZone = 'UTC'
set jit = off
set work_mem = '64MB'
as $$
declare
    first_link bigint := coalesce(from_link, 1);
    last_link bigint;
    previous bytea;
    found_segments jsonb;
    final_hash jsonb := '{}';
    current_hash jsonb := '{}';
    expired jsonb := '{}';
    pending text[];
    max_sealed bigint;
    waiting bigint;
    added bigint;
    first_added bigint;
    next_from timestamptz;
    los bigint[];
    his bigint[];
    owners bigint[];
    checked boolean[];
    low bigint;
    high bigint;
    l record;
    seg record;
    expected_link bigint;
    after_gap boolean;
    link_text bytea;
    stored_previous bytea;
    recomputed bytea;
    verdict text;
    why text;
    counted bigint;
    found jsonb;
    want text;
    changed jsonb;
    last_seal jsonb := '{}';
begin
    select max(x.link_id) into last_link from audit.seal_log x;
    last_link := least(coalesce(to_link, last_link), last_link);
    if first_link < 1 then
        raise exception using
            errcode = 'invalid_parameter_value',
            message = 'audit.verify: from_link must be 1 or more, not ' || first_link;
    end if;
    if first_link > 1 then
        select x.chain_hash into previous from audit.seal_log x where x.link_id = first_link - 1;
        if previous is null then
            raise exception using
                errcode = 'invalid_parameter_value',
                message = 'audit.verify: there is no link ' || (first_link - 1)
                    || ' to start the chain from',
                hint = 'Start at link 1, or at a link after one that exists.';
        end if;
    else
        previous := pg_catalog.decode(pg_catalog.repeat('00', 32), 'hex');
    end if;

    -- The hash each segment must have now: as sealed, or as the last redaction of it left it.
    select coalesce(pg_catalog.jsonb_object_agg(x.segment, x.new_hash), '{}') into final_hash
    from (
        select distinct on (e.value ->> 'segment') e.value ->> 'segment' as segment,
            e.value ->> 'new_hash' as new_hash
        from audit.seal_log r, pg_catalog.jsonb_array_elements(r.body -> 'segments') e
        where r.kind = 'redaction'
        order by e.value ->> 'segment', r.link_id desc
    ) x;
    -- The rows of each segment that retention removed, as recorded.
    select coalesce(pg_catalog.jsonb_object_agg(x.segment, x.rows), '{}') into expired
    from (
        select e.value ->> 'segment' as segment, sum((e.value ->> 'rows')::bigint) as rows
        from audit.seal_log r, pg_catalog.jsonb_array_elements(r.body -> 'segments') e
        where r.kind = 'expiry'
        group by e.value ->> 'segment'
    ) x;

    select coalesce(x.body, '{}') into last_seal
    from audit.seal_log x where x.kind = 'seal' order by x.link_id desc limit 1;
    pending := array(select pg_catalog.jsonb_array_elements_text(last_seal -> 'pending'));
    max_sealed := coalesce((last_seal ->> 'max_id')::bigint, 0);
    -- Where the next seal will look for rows above max_sealed (as audit.seal() computes it):
    -- a row above it that begins before is one no seal will ever take: added.
    next_from := least(
        coalesce((last_seal ->> 'read_at')::timestamptz, '-infinity'),
        (select min(b.value::timestamptz) from pg_catalog.jsonb_each_text(last_seal -> 'running') b)
    );

    -- Every segment's id ranges, in order, for a binary search (width_bucket) per row.
    select pg_catalog.array_agg(pg_catalog.lower(g) order by pg_catalog.lower(g)),
        pg_catalog.array_agg(pg_catalog.upper(g) order by pg_catalog.lower(g)),
        pg_catalog.array_agg(s.segment_id order by pg_catalog.lower(g)),
        pg_catalog.array_agg(s.link_id between first_link and last_link order by pg_catalog.lower(g)),
        min(pg_catalog.lower(g)) filter (where s.link_id between first_link and last_link),
        max(pg_catalog.upper(g)) filter (where s.link_id between first_link and last_link)
    into los, his, owners, checked, low, high
    from audit.seal_segment s, pg_catalog.unnest(s.ids) g
    -- Segments of links after the last one (deleted from the end of the log: reported
    -- below) seal nothing: their rows read as not sealed yet.
    where s.link_id <= last_link;

    -- One pass over the rows: each row of a checked segment is hashed as audit.seal() did and
    -- counted with its segment; a row in no segment is not sealed yet, or was added where a
    -- seal covered the ids. When the check stops before the last link, only the ids of its
    -- segments are read. The arrays come as parameters (no CTE) and the rows are sorted by
    -- segment in a subquery: so PostgreSQL hashes the rows in parallel workers, before the
    -- sort, which then moves 80 bytes a row. (width_bucket of 0, an id below every range,
    -- makes a null array element: no segment.)
    execute pg_catalog.replace($verify$
    with per_segment as (
        select p.owner, pg_catalog.count(*) as n,
            pg_catalog.sha256(pg_catalog.string_agg(p.leaf, ''::bytea order by p.id, p.leaf)) as inner_hash,
            pg_catalog.count(*) filter (
                where (p.id > $4 and p.ts >= $12) or p.transaction_id::text = any ($5)) as waiting,
            min(p.id) filter (
                where not ((p.id > $4 and p.ts >= $12)
                    or coalesce(p.transaction_id::text = any ($5), false))) as first_added
        from (
            select r.id, r.ts, r.transaction_id,
                case when r.id < $7[pg_catalog.width_bucket(r.id, $6)]
                    then $8[pg_catalog.width_bucket(r.id, $6)] end as owner,
                coalesce(r.id < $7[pg_catalog.width_bucket(r.id, $6)]
                    and $9[pg_catalog.width_bucket(r.id, $6)], false) as checked,
                case when r.id < $7[pg_catalog.width_bucket(r.id, $6)]
                    and $9[pg_catalog.width_bucket(r.id, $6)]
                then pg_catalog.sha256(pg_catalog.convert_to((CANONICAL_ROW)::text, 'UTF8')) end as leaf
            from audit.record_version r
            where $3 is null or (r.id >= $10 and r.id < $11)
            order by 4, 1
        ) p
        where p.owner is null or p.checked
        group by p.owner
    )
    select
        coalesce(pg_catalog.jsonb_object_agg(ps.owner, pg_catalog.jsonb_build_array(
            ps.n, pg_catalog.encode(pg_catalog.sha256(coalesce(st.salt, ''::bytea) || ps.inner_hash), 'hex')
        )) filter (where ps.owner is not null), '{}'),
        coalesce(sum(ps.waiting) filter (where ps.owner is null), 0),
        coalesce(sum(ps.n - ps.waiting) filter (where ps.owner is null), 0),
        min(ps.first_added) filter (where ps.owner is null)
    from per_segment ps left join audit.seal_salt st on st.segment_id = ps.owner
    $verify$, 'CANONICAL_ROW', audit.canonical_row_sql('r'))
    into found_segments, waiting, added, first_added
    using first_link, last_link, to_link, max_sealed, pending, los, his, owners, checked, low,
        high, next_from;

    expected_link := first_link;
    stored_previous := previous;
    for l in
        select x.link_id, x.kind, x.body, x.chain_hash
        from audit.seal_log x
        where x.link_id between first_link and last_link
        order by x.link_id
    loop
        after_gap := l.link_id <> expected_link;
        if after_gap then
            return query select g, null::text, 'failed', 0::bigint, null::bytea,
                'link ' || g || ' is missing from the seal log'
            from pg_catalog.generate_series(expected_link, l.link_id - 1) g;
            expected_link := l.link_id;
        end if;
        expected_link := expected_link + 1;
        link_text := pg_catalog.convert_to(audit.seal_link_text(l.link_id), 'UTF8');
        recomputed := pg_catalog.sha256(previous || link_text);
        -- After a broken link (reported as such), a link that follows either its recomputed
        -- hash or its stored one is not broken too: a link whose content was edited keeps
        -- its stored hash, which the next link was made from; a stored hash edited leaves
        -- the content's. So a broken link fails alone; the links nobody touched stay 'ok'.
        if recomputed <> l.chain_hash and stored_previous <> previous
            and pg_catalog.sha256(stored_previous || link_text) = l.chain_hash
        then
            recomputed := l.chain_hash;
        end if;
        previous := recomputed;
        stored_previous := l.chain_hash;
        verdict := 'ok';
        why := null;
        counted := 0;
        if recomputed <> l.chain_hash then
            verdict := 'failed';
            why := case when after_gap
                then 'link ' || l.link_id || ' cannot be checked: the link before it is missing'
                else 'link ' || l.link_id || ' was edited: its stored chain hash is not the hash '
                    || 'of its content and the previous link''s' end;
        end if;

        if l.kind = 'seal' then
            for seg in
                select x.segment_id, x.ids, x.row_count, x.hash
                from audit.seal_segment x where x.link_id = l.link_id order by x.segment_id
            loop
                found := found_segments -> seg.segment_id::text;
                want := coalesce(final_hash ->> seg.segment_id::text, pg_catalog.encode(seg.hash, 'hex'));
                current_hash := current_hash
                    || pg_catalog.jsonb_build_object(seg.segment_id::text, pg_catalog.encode(seg.hash, 'hex'));
                if found is not null and (found ->> 0)::bigint = seg.row_count and found ->> 1 = want then
                    counted := counted + seg.row_count;
                    if final_hash ? seg.segment_id::text and verdict = 'ok' then
                        verdict := 'redacted';
                        why := coalesce(why || '; ', '') || 'segment ' || seg.segment_id
                            || ' redacted (see the redaction links)';
                    end if;
                elsif expired ? seg.segment_id::text
                    and coalesce((found ->> 0)::bigint, 0) + (expired ->> seg.segment_id::text)::bigint
                        = seg.row_count then
                    -- The rows left cannot be checked (the hash covers the whole segment):
                    -- not counted as verified.
                    if verdict <> 'failed' then
                        verdict := 'expired';
                        why := coalesce(why || '; ', '') || 'segment ' || seg.segment_id || ': '
                            || (expired ->> seg.segment_id::text) || ' rows removed by retention'
                            || case when found is null then ''
                                else ', ' || (found ->> 0) || ' rows left unverifiable' end;
                    end if;
                elsif verdict <> 'failed' then
                    verdict := 'failed';
                    why := 'segment ' || seg.segment_id || ' (ids ' || seg.ids::text || '): '
                        || case
                            when coalesce((found ->> 0)::bigint, 0) < seg.row_count then
                                (seg.row_count - coalesce((found ->> 0)::bigint, 0))
                                || ' rows missing (sealed ' || seg.row_count || ', found '
                                || coalesce((found ->> 0)::bigint, 0) || ')'
                            when (found ->> 0)::bigint > seg.row_count then
                                ((found ->> 0)::bigint - seg.row_count) || ' rows added (sealed '
                                || seg.row_count || ', found ' || (found ->> 0) || ')'
                            else 'rows changed (' || seg.row_count || ' rows, the hash differs)'
                        end;
                end if;
            end loop;
        elsif l.kind = 'redaction' then
            for changed in select e.value from pg_catalog.jsonb_array_elements(l.body -> 'segments') e loop
                if current_hash ? (changed ->> 'segment')
                    and current_hash ->> (changed ->> 'segment') <> changed ->> 'old_hash'
                    and verdict <> 'failed'
                then
                    verdict := 'failed';
                    why := 'redaction link ' || l.link_id || ' does not follow segment '
                        || (changed ->> 'segment') || '''s previous hash';
                end if;
                current_hash := current_hash
                    || pg_catalog.jsonb_build_object(changed ->> 'segment', changed ->> 'new_hash');
            end loop;
            counted := coalesce((l.body ->> 'rows')::bigint, 0);
            if verdict = 'ok' then
                verdict := 'redacted';
                why := (l.body ->> 'rows') || ' rows of ' || (l.body ->> 'table') || ' redacted ('
                    || coalesce((select pg_catalog.string_agg(c, ', ')
                        from pg_catalog.jsonb_array_elements_text(nullif(l.body -> 'columns', 'null'::jsonb)) c), 'the whole row')
                    || ')' || coalesce(': ' || (l.body ->> 'reason'), '');
            end if;
        elsif l.kind = 'expiry' then
            counted := 0;
            if verdict = 'ok' then
                verdict := 'expired';
                why := (l.body ->> 'rows') || ' rows of ' || (l.body ->> 'relation')
                    || ' (' || (l.body ->> 'first_ts') || ' to ' || (l.body ->> 'last_ts')
                    || ') removed by retention';
            end if;
        end if;
        return query select l.link_id, l.kind, verdict, counted, recomputed, why;
    end loop;

    -- Rows no seal covers: not sealed yet (their transaction ran at the last seal, or they
    -- came after it), or added where a seal should have covered them. Segments of links
    -- after the last one: those links were deleted from the end of the log.
    if to_link is null then
        return query select s.link_id, null::text, 'failed'::text, 0::bigint, null::bytea,
            'link ' || s.link_id || ' is missing from the seal log (its segments remain)'
        from audit.seal_segment s
        where s.link_id > coalesce(last_link, 0)
        group by s.link_id
        order by s.link_id;
        if added > 0 then
            return query select null::bigint, 'unsealed'::text, 'failed'::text, added,
                null::bytea, added || case when added = 1 then ' row' else ' rows' end
                    || ' in no seal that a seal should have covered '
                    || '(added; the first has id ' || first_added || ')';
        else
            return query select null::bigint, 'unsealed'::text, 'ok'::text, waiting,
                null::bytea, waiting || case when waiting = 1 then ' row' else ' rows' end
                    || ' not sealed yet';
        end if;
    end if;
end
$$;

revoke all on function audit.verify(bigint, bigint) from public;

create or replace function audit.set_seal_mac(link bigint, mac bytea)
returns void
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    if pg_catalog.length(mac) <> 32 then
        raise exception using
            errcode = 'invalid_parameter_value',
            message = 'audit.set_seal_mac: a mac is 32 bytes (HMAC-SHA256), not '
                || coalesce(pg_catalog.length(mac)::text, 'null');
    end if;
    update audit.seal_log l set mac = set_seal_mac.mac
    where l.link_id = link and l.kind = 'seal' and l.mac is null;
    if not found then
        raise exception using
            errcode = 'invalid_parameter_value',
            message = 'audit.set_seal_mac: link ' || link || ' is not a seal without a mac';
    end if;
end
$$;

revoke all on function audit.set_seal_mac(bigint, bytea) from public;

create or replace function audit.redact(
    target regclass, key jsonb, columns text[] default null, reason text default null
)
returns table (redaction_link bigint, rows_redacted bigint)
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
set TimeZone = 'UTC'
set quote_all_identifiers = off
set jit = off
as $$
declare
    link bigint;
    shown text;
    key_columns text[];
    record_key uuid;
    record_ids uuid[];
    version_ids bigint[];
    changed_ids bigint[];
    erased smallint[];
    missing text;
    changed bigint;
    audit_row bigint;
    segment record;
    state record;
    new_salt bytea;
    changes jsonb := '[]';
    context_text text;
    app_context jsonb;
    rel_schema name;
    rel_name name;
    oids oid[];
    old_oids oid[];
    shared_oids oid[];
    first_names text[];
begin
    select pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname), n.nspname, c.relname
    into shown, rel_schema, rel_name
    from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    where c.oid = target;
    if reason is null or pg_catalog.btrim(reason) = '' then
        raise exception using
            errcode = 'invalid_parameter_value',
            message = 'audit.redact(' || shown || '): say why (reason => ''...''): the REDACT '
                || 'audit row records it';
    end if;
    -- Each statement below reads the rows as committed when it starts (READ COMMITTED),
    -- after the chain's lock: with an older snapshot, rows of the record committed since
    -- would keep their values, and the chain's last link would be read stale.
    if pg_catalog.current_setting('transaction_isolation') <> 'read committed' then
        raise exception using
            errcode = 'invalid_transaction_state',
            message = 'audit.redact(' || shown || '): run it in a READ COMMITTED transaction, '
                || 'not ' || pg_catalog.current_setting('transaction_isolation') || ': rows '
                || 'committed after this transaction''s snapshot would keep their values';
    end if;
    -- The application's context, merged into the REDACT row's: read (as text, never run)
    -- before anything changes, so that a setting that is no JSON object stops the call
    -- with a clear error instead of dropping it or failing at the end.
    context_text := nullif(pg_catalog.current_setting('hyper_audit.context', true), '');
    if context_text is not null then
        begin
            app_context := context_text::jsonb;
        exception when invalid_text_representation then
            raise exception using
                errcode = 'invalid_parameter_value',
                message = 'audit.redact(' || shown || '): the setting hyper_audit.context is '
                    || 'not JSON; set it to a JSON object or leave it empty';
        end;
        if pg_catalog.jsonb_typeof(app_context) = 'null' then
            app_context := null;
        elsif pg_catalog.jsonb_typeof(app_context) <> 'object' then
            raise exception using
                errcode = 'invalid_parameter_value',
                message = 'audit.redact(' || shown || '): the setting hyper_audit.context is a '
                    || 'JSON ' || pg_catalog.jsonb_typeof(app_context) || ', not an object: the '
                    || 'REDACT audit row''s context is that object with its "redaction" added';
        end if;
    end if;
    key_columns := audit.primary_key_columns(target);
    if pg_catalog.cardinality(key_columns) = 0 then
        raise exception using
            errcode = 'invalid_parameter_value',
            message = 'audit.redact(' || shown || '): the table has no primary key, so its '
                || 'audit rows have no record ids to find a record by';
    end if;
    if key is null or pg_catalog.jsonb_typeof(key) <> 'object'
        or not key operator(pg_catalog.?&) key_columns
        or exists (select from pg_catalog.unnest(key_columns) k where key -> k = 'null'::jsonb)
    then
        raise exception using
            errcode = 'invalid_parameter_value',
            message = 'audit.redact(' || shown || '): the key is the primary-key columns ('
                || pg_catalog.array_to_string(key_columns, ', ') || ') as a JSON object, such as '
                || (select pg_catalog.jsonb_object_agg(k, 'value') from pg_catalog.unnest(key_columns) k)::text
                || ', not ' || coalesce(key::text, 'null');
    end if;

    -- Renames and drops made while the event trigger was not there are recorded now (as
    -- enable_tracking would): the audit rows written before them use the older names.
    if exists (select from audit.tracked_column t where t.table_oid = target) then
        perform audit.record_column_changes(target);
    end if;
    if columns is not null then
        if pg_catalog.cardinality(columns) = 0 or pg_catalog.array_position(columns, null) is not null then
            raise exception using
                errcode = 'invalid_parameter_value',
                message = 'audit.redact(' || shown || '): columns is a list of column names, '
                    || 'or null for the whole row';
        end if;
        -- A name is a column of the table, or else a column dropped under that name.
        select c into missing from pg_catalog.unnest(columns) c
        where not exists (
            select from pg_catalog.pg_attribute a
            where a.attrelid = target and a.attnum > 0 and not a.attisdropped and a.attname = c
        ) and not exists (
            select from audit.column_change h
            where h.table_oid = target and h.kind = 'drop' and h.old_name = c
        )
        limit 1;
        if missing is not null then
            raise exception using
                errcode = 'undefined_column',
                message = 'audit.redact(' || shown || '): the table has no column '
                    || pg_catalog.quote_ident(missing) || ' (columns are named as in the table)';
        end if;
        erased := array(
            select a.attnum from pg_catalog.pg_attribute a
            where a.attrelid = target and a.attnum > 0 and not a.attisdropped
                and a.attname = any (columns)
            union
            select h.attnum from audit.column_change h
            where h.table_oid = target and h.kind = 'drop' and h.old_name = any (columns)
                and not exists (
                    select from pg_catalog.pg_attribute a
                    where a.attrelid = target and a.attnum > 0 and not a.attisdropped
                        and a.attname = h.old_name
                )
        );
        -- Each erased column's name when the table's history (under this oid) begins: the
        -- name its rows have under the table's older oids.
        first_names := array(
            select coalesce(
                (select h.old_name::text from audit.column_change h
                 where h.table_oid = target and h.attnum = x
                 order by h.before_id, h.id limit 1),
                (select a.attname::text from pg_catalog.pg_attribute a
                 where a.attrelid = target and a.attnum = x))
            from pg_catalog.unnest(erased) x
        );
    end if;

    link := audit.lock_seal_chain();

    -- The oids the table's history is under: a pg_dump and restore (or any re-creation of
    -- the table) gives it a new oid, and its older rows keep the old one. As history() finds
    -- them: each oid of the audit table (one index probe per oid) whose first or last audit
    -- row names the table as it is named now; an old oid that is now another relation's
    -- counts only with its rows recorded under this table's name. The table's own rows
    -- recorded under the name of another relation that exists now are that relation's
    -- (an older table that had the same oid).
    with recursive found (table_oid) as (
        select min(r.table_oid) from audit.record_version r
        union all
        select (select min(r.table_oid) from audit.record_version r where r.table_oid > f.table_oid)
        from found f
        where f.table_oid is not null
    ),
    named as (
        select f.table_oid,
            exists (select from pg_catalog.pg_class c where c.oid = f.table_oid) as taken
        from found f
        cross join lateral (
            select r.table_schema, r.table_name from audit.record_version r
            where r.table_oid >= f.table_oid and r.table_oid <= f.table_oid
            order by r.table_oid limit 1
        ) first_row
        cross join lateral (
            select r.table_schema, r.table_name from audit.record_version r
            where r.table_oid >= f.table_oid and r.table_oid <= f.table_oid
            order by r.table_oid desc limit 1
        ) last_row
        where f.table_oid is not null and f.table_oid <> target
            and ((first_row.table_schema = rel_schema and first_row.table_name = rel_name)
                or (last_row.table_schema = rel_schema and last_row.table_name = rel_name))
    )
    select
        array(select x.table_oid from named x where not x.taken order by x.table_oid),
        array(select x.table_oid from named x where x.taken order by x.table_oid)
    into old_oids, shared_oids;
    oids := array[target::oid] || old_oids || shared_oids;

    -- The record's versions. Every audit row under the key's record id (every record that
    -- held the key), then each record followed through its key changes, in audit id order
    -- (one row's changes are serialised by its lock, so ids give their order): from a row
    -- where it left the key (an UPDATE to another key), the rows of the new key after it, up
    -- to and including the row where it left that one (or its DELETE), and before the next
    -- INSERT of that key; from a row where it arrived from another key, the rows of the old
    -- key before it, back to the row where it arrived there (its INSERT or an UPDATE from a
    -- third key) and after the last row where another record left it. A record that held
    -- one of those keys at another time is not touched. Each task: a record id and the
    -- audit ids (lo, hi), both excluded, of its rows taken.
    record_key := audit.to_record_id(target, key_columns, key);
    with recursive task (rid, lo, hi) as (
        select audit.to_record_id(o, key_columns, key), 0::bigint, 9223372036854775807::bigint
        from pg_catalog.unnest(oids) o
        union
        select n.rid, b.lo, b.hi
        from task t
        join audit.record_version v
            on v.table_oid = any (oids) and (v.record_id = t.rid or v.old_record_id = t.rid)
            and v.id > t.lo and v.id < t.hi
            and (v.table_oid = any (old_oids)
                or (v.table_schema = rel_schema and v.table_name = rel_name)
                or (v.table_oid = target and not exists (
                    select from pg_catalog.pg_class c
                    join pg_catalog.pg_namespace ns on ns.oid = c.relnamespace
                    where ns.nspname = v.table_schema and c.relname = v.table_name)))
        cross join lateral (
            select v.record_id as rid, 1 as direction
            where v.op::text = 'UPDATE' and v.old_record_id = t.rid and v.record_id <> t.rid
            union all
            select v.old_record_id, -1
            where v.op::text = 'UPDATE' and v.record_id = t.rid and v.old_record_id <> t.rid
        ) n
        cross join lateral (
            select
                case when n.direction > 0 then v.id else greatest(
                    (select max(w.id) - 1 from audit.record_version w
                     where w.table_oid = any (oids) and w.record_id = n.rid and w.id < v.id
                        and w.op::text in ('INSERT', 'UPDATE') and w.old_record_id is distinct from n.rid),
                    (select max(w.id) from audit.record_version w
                     where w.table_oid = any (oids) and w.old_record_id = n.rid and w.id < v.id
                        and w.op::text in ('UPDATE', 'DELETE') and w.record_id is distinct from n.rid),
                    0)
                end as lo,
                case when n.direction < 0 then v.id else least(
                    (select min(w.id) + 1 from audit.record_version w
                     where w.table_oid = any (oids) and w.old_record_id = n.rid and w.id > v.id
                        and w.op::text in ('UPDATE', 'DELETE') and w.record_id is distinct from n.rid),
                    (select min(w.id) from audit.record_version w
                     where w.table_oid = any (oids) and w.record_id = n.rid and w.id > v.id
                        and w.op::text in ('INSERT', 'UPDATE') and w.old_record_id is distinct from n.rid),
                    9223372036854775807)
                end as hi
        ) b
    ),
    versions as (
        select distinct v.id
        from task t
        join audit.record_version v
            on v.table_oid = any (oids) and (v.record_id = t.rid or v.old_record_id = t.rid)
            and v.id > t.lo and v.id < t.hi
            and (v.table_oid = any (old_oids)
                or (v.table_schema = rel_schema and v.table_name = rel_name)
                or (v.table_oid = target and not exists (
                    select from pg_catalog.pg_class c
                    join pg_catalog.pg_namespace ns on ns.oid = c.relnamespace
                    where ns.nspname = v.table_schema and c.relname = v.table_name)))
        where v.op::text <> 'REDACT'
    )
    select array(select distinct t.rid from task t order by t.rid),
        array(select x.id from versions x order by x.id)
    into record_ids, version_ids;
    if pg_catalog.cardinality(version_ids) = 0 then
        raise exception using
            errcode = 'no_data_found',
            message = 'audit.redact(' || shown || '): no audit row has the record of key '
                || key::text || '; nothing was redacted';
    end if;

    -- The sealed segments holding these rows must verify before anything changes.
    for segment in
        select distinct s.segment_id, s.link_id, s.row_count,
            coalesce((
                select e.value ->> 'new_hash'
                from audit.seal_log r, pg_catalog.jsonb_array_elements(r.body -> 'segments') e
                where r.kind = 'redaction' and e.value ->> 'segment' = s.segment_id::text
                order by r.link_id desc limit 1
            ), pg_catalog.encode(s.hash, 'hex')) as expected,
            st.salt
        from audit.record_version v
        join audit.seal_segment s on s.first_ts <= v.ts and s.last_ts >= v.ts
        join pg_catalog.unnest(s.ids) g on g @> v.id
        left join audit.seal_salt st on st.segment_id = s.segment_id
        where v.table_oid = any (oids)
            and (v.record_id = any (record_ids) or v.old_record_id = any (record_ids))
            and v.id = any (version_ids)
        order by s.segment_id
    loop
        select * into state from audit.segment_state(segment.segment_id, segment.salt);
        if segment.salt is null or state.row_count <> segment.row_count
            or pg_catalog.encode(state.hash, 'hex') <> segment.expected
        then
            raise exception using
                errcode = 'data_corrupted',
                message = 'audit.redact(' || shown || '): segment ' || segment.segment_id
                    || ' of seal link ' || segment.link_id || ' fails verification before '
                    || 'the redaction; nothing was redacted',
                hint = 'Run audit.verify() (or hyper-audit-alembic verify) to see what changed.';
        end if;
    end loop;

    -- The names each erased column had when each row was written: spans of audit ids
    -- (after_id, upto] per column and name (audit.column_change: rows up to before_id use
    -- old_name). A key of a row is the column whose span of that name holds the row; of
    -- two (a column dropped or renamed, then another one taking its name), the one whose
    -- span ends first: the older column's. A key no span holds was written after a change
    -- seen late (without the event trigger a change is dated when enable_tracking or
    -- redact sees it): it is the column that had the name next. Under an older oid (before
    -- a dump and restore) the columns are those last seen there (audit.tracked_column), and
    -- an erased column is the one with the name it had when this oid's history began (any
    -- key of that name, where nothing was seen).
    with spans as materialized (
        select x.rel, x.attnum, x.name, x.after_id, x.upto,
            case when x.rel = target then x.attnum = any (erased) else exists (
                -- a column of an older oid: erased if it had, when last seen, the name an
                -- erased column has at the start of this oid's history
                select from audit.tracked_column t
                where t.table_oid = x.rel and t.attnum = x.attnum and t.name = any (first_names)
            ) or exists (
                select from audit.column_change h
                where h.table_oid = x.rel and h.attnum = x.attnum and h.kind = 'drop'
                    and h.old_name = any (first_names)
            ) end as gone
        from (
            select h.table_oid as rel, h.attnum, h.old_name::text as name,
                pg_catalog.lag(h.before_id) over (
                    partition by h.table_oid, h.attnum order by h.before_id, h.id) as after_id,
                h.before_id as upto
            from audit.column_change h
            where h.table_oid = any (oids)
            union all
            select target, a.attnum, a.attname::text,
                (select max(h.before_id) from audit.column_change h
                 where h.table_oid = target and h.attnum = a.attnum),
                null
            from pg_catalog.pg_attribute a
            where a.attrelid = target and a.attnum > 0 and not a.attisdropped
            union all
            select t.table_oid, t.attnum, t.name::text,
                (select max(h.before_id) from audit.column_change h
                 where h.table_oid = t.table_oid and h.attnum = t.attnum),
                null
            from audit.tracked_column t
            where t.table_oid = any (old_oids || shared_oids)
        ) x
    ),
    erased_images as (
        select v.id, v.ts,
            case
                when v.record is null then null
                when erased is null then '{}'::jsonb
                else v.record operator(pg_catalog.-) array(
                    select e.key from pg_catalog.jsonb_object_keys(v.record) e (key)
                    where coalesce((
                        select sp.gone from spans sp
                        where sp.rel = v.table_oid and sp.name = e.key
                            and (sp.upto is null or v.id <= sp.upto)
                        order by sp.after_id is not null and v.id <= sp.after_id,
                            sp.upto nulls last, sp.after_id
                        limit 1
                    ), v.table_oid <> target and e.key = any (first_names)))
            end as record,
            case
                when v.old_record is null then null
                when erased is null then '{}'::jsonb
                else v.old_record operator(pg_catalog.-) array(
                    select e.key from pg_catalog.jsonb_object_keys(v.old_record) e (key)
                    where coalesce((
                        select sp.gone from spans sp
                        where sp.rel = v.table_oid and sp.name = e.key
                            and (sp.upto is null or v.id <= sp.upto)
                        order by sp.after_id is not null and v.id <= sp.after_id,
                            sp.upto nulls last, sp.after_id
                        limit 1
                    ), v.table_oid <> target and e.key = any (first_names)))
            end as old_record
        from audit.record_version v
        where v.table_oid = any (oids)
            and (v.record_id = any (record_ids) or v.old_record_id = any (record_ids))
            and v.id = any (version_ids)
    ),
    done as (
        update audit.record_version v set record = x.record, old_record = x.old_record
        from erased_images x
        where v.table_oid = any (oids)
            and (v.record_id = any (record_ids) or v.old_record_id = any (record_ids))
            and v.id = x.id and v.ts = x.ts
            and (v.record is distinct from x.record or v.old_record is distinct from x.old_record)
        returning v.id
    )
    select array(select d.id from done d order by d.id) into changed_ids;
    changed := pg_catalog.cardinality(changed_ids);

    -- Rehash each segment whose rows changed under a new salt; the old salt goes.
    for segment in
        select distinct s.segment_id,
            coalesce((
                select e.value ->> 'new_hash'
                from audit.seal_log r, pg_catalog.jsonb_array_elements(r.body -> 'segments') e
                where r.kind = 'redaction' and e.value ->> 'segment' = s.segment_id::text
                order by r.link_id desc limit 1
            ), pg_catalog.encode(s.hash, 'hex')) as old_hash
        from audit.record_version v
        join audit.seal_segment s on s.first_ts <= v.ts and s.last_ts >= v.ts
        join pg_catalog.unnest(s.ids) g on g @> v.id
        where v.table_oid = any (oids)
            and (v.record_id = any (record_ids) or v.old_record_id = any (record_ids))
            and v.id = any (changed_ids)
        order by s.segment_id
    loop
        new_salt := pg_catalog.uuid_send(pg_catalog.gen_random_uuid())
            || pg_catalog.uuid_send(pg_catalog.gen_random_uuid());
        select * into state from audit.segment_state(segment.segment_id, new_salt);
        update audit.seal_salt st set salt = new_salt where st.segment_id = segment.segment_id;
        changes := changes || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
            'segment', segment.segment_id,
            'old_hash', segment.old_hash,
            'new_hash', pg_catalog.encode(state.hash, 'hex')));
    end loop;

    insert into audit.record_version (record_id, op, table_oid, table_schema, table_name, context)
    select record_key, 'REDACT'::audit.operation, target, n.nspname, c.relname,
        coalesce(app_context, '{}'::jsonb)
        operator(pg_catalog.||) pg_catalog.jsonb_build_object('redaction', pg_catalog.jsonb_build_object(
            'columns', pg_catalog.to_jsonb(columns), 'reason', reason, 'link', link, 'rows', changed))
    from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    where c.oid = target
    returning id into audit_row;

    perform audit.append_seal_link(link, 'redaction', pg_catalog.jsonb_build_object(
        'table', shown,
        'record_ids', (select pg_catalog.jsonb_agg(x::text order by x::text) from pg_catalog.unnest(record_ids) x),
        'columns', pg_catalog.to_jsonb(columns),
        'reason', reason,
        'rows', changed,
        'audit_row', audit_row,
        'segments', changes
    ));
    return query select link, changed;
end
$$;

revoke all on function audit.redact(regclass, jsonb, text[], text) from public;

create or replace function audit.note_expiry(relation regclass)
returns bigint
language plpgsql
set search_path = pg_catalog, pg_temp
set TimeZone = 'UTC'
as $$
declare
    link bigint;
    facts record;
begin
    if not exists (
        select from pg_catalog.pg_inherits i
        where i.inhrelid = relation and i.inhparent = 'audit.record_version'::pg_catalog.regclass
    ) then
        raise exception using
            errcode = 'invalid_parameter_value',
            message = 'audit.note_expiry: ' || relation::text
                || ' is not a partition or chunk of audit.record_version';
    end if;
    link := audit.lock_seal_chain();
    -- The relation's name as regclass prints it (quoted, schema-qualified: the search_path
    -- is pg_catalog's), the one value put into the text.
    execute $q$
        with ranges as materialized (
            select pg_catalog.array_agg(pg_catalog.lower(g) order by pg_catalog.lower(g)) as los,
                pg_catalog.array_agg(pg_catalog.upper(g) order by pg_catalog.lower(g)) as his,
                pg_catalog.array_agg(s.segment_id order by pg_catalog.lower(g)) as owners
            from audit.seal_segment s, pg_catalog.unnest(s.ids) g
        ),
        placed as (
            select r.id, r.ts, k.owner
            from $q$ || relation::text || $q$ r
            cross join ranges m
            cross join lateral (
                select case when b.slot > 0 and r.id < m.his[b.slot] then m.owners[b.slot] end as owner
                from (select coalesce(pg_catalog.width_bucket(r.id, m.los), 0) as slot) b
            ) k
        ),
        per_segment as (
            select p.owner, pg_catalog.count(*) as n from placed p group by p.owner
        )
        select
            (select pg_catalog.count(*) from placed) as rows,
            (select min(p.ts) from placed p) as first_ts,
            (select max(p.ts) from placed p) as last_ts,
            (select coalesce(sum(ps.n), 0) from per_segment ps where ps.owner is null) as unsealed,
            (select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                'segment', ps.owner, 'rows', ps.n) order by ps.owner), '[]')
             from per_segment ps where ps.owner is not null) as segments
    $q$ into facts;
    perform audit.append_seal_link(link, 'expiry', pg_catalog.jsonb_build_object(
        'relation', relation::text,
        'rows', facts.rows,
        'first_ts', facts.first_ts,
        'last_ts', facts.last_ts,
        'unsealed_rows', facts.unsealed,
        'segments', facts.segments
    ));
    return link;
end
$$;

revoke all on function audit.note_expiry(regclass) from public;

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

drop function if exists audit.citus_row_change();

drop function if exists audit.citus_kind(regclass);

COMMIT;

