-- Audit schema version 1 -> 2: who made each change, and why.
--
-- Every audit row gets:
--   actor          the application's actor for the transaction (audit_context(actor=...)),
--                  else the database role the session acts as;
--   context        the application's free-form context for the transaction (request id,
--                  endpoint, reason ...) as jsonb, else null;
--   transaction_id the id of the writing transaction (pg_current_xact_id(), PostgreSQL 13+),
--                  so that one transaction's rows can be found together.
-- Column defaults fill them, so the trigger functions are unchanged, and any writer of
-- audit rows gets them. The application sets the transaction-local settings
-- hyper_audit.actor and hyper_audit.context with set_config(name, value, true): nothing is
-- left in the session, so pooled connections (PgBouncer transaction pooling too) never
-- carry one transaction's values into the next.
--
-- Idempotent, so that install.sql followed by this file and an upgraded version 1 end
-- with the same catalog. The text holds no '%' and no ':name'.

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

-- The columns first, without defaults: rows recorded before this upgrade keep nulls (a
-- default given with ADD COLUMN would be stamped on them: the migration's role as their
-- actor, the migration's transaction id, and a rewrite of the whole table for the
-- volatile pg_current_xact_id()). Adding nullable columns without a default touches only
-- the catalog, also on a TimescaleDB hypertable (compressed chunks included) or a
-- partitioned audit table.
alter table audit.record_version
    add column if not exists actor text,
    add column if not exists context jsonb,
    add column if not exists transaction_id xid8;

-- The defaults, for rows written from now on. Each is evaluated once per audit row, so
-- each is cheap: two reads of a setting, a jsonb parse of the (small) context text when
-- one is set, and the transaction's id, which it has already (it is writing a row).
--
-- The actor without an application context: the role the session acts as. Not
-- current_user: the audit triggers run SECURITY DEFINER, so inside them current_user is
-- the owner of the audit functions for every writer. session_user is the role that logged
-- in; when the session has switched roles with SET ROLE or SET LOCAL ROLE (as PostgREST /
-- Supabase do for each request: login role authenticator, request role authenticated or
-- anon) the setting "role" holds the role acted as, and SECURITY DEFINER does not change
-- it. So: the setting "role" unless it is 'none' (no SET ROLE; no role can be named none),
-- else session_user.
alter table audit.record_version
    alter column actor set default coalesce(
        nullif(pg_catalog.current_setting('hyper_audit.actor', true), ''),
        nullif(pg_catalog.current_setting('role'), 'none'),
        session_user::text
    ),
    alter column context set default
        nullif(pg_catalog.current_setting('hyper_audit.context', true), '')::jsonb,
    alter column transaction_id set default pg_catalog.pg_current_xact_id();

-- One transaction's rows. Partial: rows without a transaction id (those recorded before
-- this upgrade) are not indexed, so building it reads the table once and writes nothing
-- for them. The build blocks writes to the audit table while it reads; for a very large
-- audit table, create this index beforehand with CREATE INDEX CONCURRENTLY under the same
-- name and definition, and this statement leaves it as it is.
create index if not exists record_version_transaction_id
    on audit.record_version (transaction_id) where transaction_id is not null;

-- Per-table options (version 2): op.enable_tracking(..., exclude=[...], skip_unchanged=True).
-- They are stored as trigger arguments after the key columns and an empty separator
-- argument (no column name is empty): 'exclude=<column>' for each excluded column, in
-- name order, then 'skip_unchanged'. So they cost no lookup per statement or row, survive
-- pg_dump / restore with the triggers, and a table without options has exactly version 1's
-- triggers (and version 1's trigger path). catalog.py parses them back.

-- pg_trigger.tgargs as an array of its arguments.
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

-- The option arguments of a tracked table's triggers (after the separator), '{}' if none.
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

-- Puts these option arguments (none: '{}') on a tracked table's audit triggers, keeping
-- their key column arguments, by re-creating each trigger whose arguments differ.
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

-- Version 1's enable_tracking (install.sql) makes the triggers with the key columns as
-- arguments; version 2 keeps it under the name enable_tracking_keys and wraps it, so that
-- the options survive whatever re-creates the triggers.
drop function if exists audit.enable_tracking_keys(regclass);

alter function audit.enable_tracking(regclass) rename to enable_tracking_keys;

-- Tracks a table with these options (replacing its current ones). Idempotent.
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

-- Tracks a table, keeping the options it is tracked with (none for a new one). The event
-- trigger that follows primary-key changes calls this.
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

-- The trigger functions of version 2: version 1's, which stay the path of tables without
-- options, and the options path.
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
