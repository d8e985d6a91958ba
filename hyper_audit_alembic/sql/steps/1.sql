-- Audit schema version 1, step 1 of every install: the audit schema, the history table
-- and its rules, and the version table. The functions come from functions/ (replayed by
-- every install and upgrade); the lookup indexes from indexes.sql.
--
-- Every statement is idempotent: install_audit() may run over an audit schema whose
-- functions were removed by uninstall_audit(keep_history=True), or over an install of the
-- reference design (adopt_prepare.sql), and must keep every recorded row. The text holds
-- no '%' and no ':name' so that Alembic's offline mode and SQLAlchemy's text() pass it
-- through unchanged.

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

-- The rules every audit row keeps, under these names. An install of the reference design
-- being taken over (adopt_prepare.sql) has the same conditions under generated names
-- (record_version_check, record_version_check1, ...): each takes its name here, found by
-- comparing definitions with those of a probe table. A rule found nowhere is added.
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

-- Which version of this file is installed; later releases upgrade from it.
create table if not exists audit.schema_version (
    version integer not null check (version > 0),
    installed_at timestamptz not null default now()
);

revoke all on audit.schema_version from public;

delete from audit.schema_version;

insert into audit.schema_version (version) values (1);
