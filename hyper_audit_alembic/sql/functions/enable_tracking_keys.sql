-- Tracks a table with its primary-key columns and these options (none: '{}') as the
-- trigger arguments: version 1's audit.enable_tracking(regclass), kept under this name
-- since version 2, whose enable_tracking (enable_tracking.sql) calls it with the options
-- a table keeps whatever re-creates its triggers.
--
-- An audit trigger is one that calls an audit trigger function (audit.is_tracking_function),
-- never one that only has an audit trigger's name; each is made by
-- audit.tracking_trigger_sql from catalog facts. A trigger of another role that holds a
-- name the table needs is refused (audit.refuse_squatted_trigger_names), not replaced.
-- The option 'on_replica' (op.enable_tracking(..., on_replica=True)) tracks the table row
-- by row with ENABLE ALWAYS triggers: a logical replication subscriber's apply worker
-- (session_replication_role = replica) fires only those, and only row-level ones.
-- Where audit.record_version is a Citus distributed table (op.distribute_audit()), every
-- table is tracked by audit.citus_row_change (citus_row_change.sql says why and how),
-- whose first arguments are the table's oid, schema and name; citus.enable_unsafe_triggers,
-- set while the triggers are made and put back after, lets Citus put them on the shards.
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
    target_kind text := audit.citus_kind(target);
    unsafe_triggers text := current_setting('citus.enable_unsafe_triggers', true);
    on_citus boolean := coalesce(
        audit.citus_kind('audit.record_version'::regclass) = 'distributed', false
    );
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
    -- Citus: a reference table's triggers fire on each of its copies (one audit row per
    -- node); a Citus table's triggers fire on its shards, which write only into a
    -- distributed audit table.
    if target_kind = 'reference' then
        raise exception using
            errcode = 'feature_not_supported',
            message = 'audit.enable_tracking: ' || target::text || ' is a Citus reference '
                || 'table, whose triggers fire on every node (one audit row per copy)',
            hint = 'Track a distributed or a local table; or undistribute_table('
                || quote_literal(target::text) || ') first.';
    end if;
    if target_kind is not null and not on_citus then
        raise exception using
            errcode = 'feature_not_supported',
            message = 'audit.enable_tracking: ' || target::text || ' is a Citus table, but '
                || 'audit.record_version is not distributed, so its shards cannot write '
                || 'audit rows',
            hint = 'Run op.distribute_audit() first (in this migration or an earlier one).';
    end if;
    if on_citus and on_replica then
        raise exception using
            errcode = 'feature_not_supported',
            message = 'audit.enable_tracking: on_replica cannot track ' || target::text
                || ': audit.record_version is a Citus distributed table',
            hint = 'Track ' || target::text || ' without on_replica.';
    end if;
    perform audit.record_column_changes(target);
    perform audit.note_trail_start(target);

    trigger_args := pkey_cols;
    if cardinality(options) > 0 then
        trigger_args := trigger_args || array[''] || options;
    end if;
    if on_citus then
        -- The table as the audit rows name it, whichever shard the trigger fires on.
        trigger_args := array[
            target::oid::text,
            (select n.nspname::text from pg_class c join pg_namespace n on n.oid = c.relnamespace
                where c.oid = target),
            (select c.relname::text from pg_class c where c.oid = target)
        ] || trigger_args;
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
    statement_level := not on_replica and not on_citus
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
    if on_citus then
        wanted := array[
            'audit_citus_delete/8/audit.citus_row_change/audit_old/',
            'audit_citus_insert/4/audit.citus_row_change//audit_new',
            'audit_citus_update/17/audit.citus_row_change//',
            'audit_truncate/32/audit.record_truncate//'
        ];
    elsif statement_level then
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
    if target_kind is not null then
        perform set_config('citus.enable_unsafe_triggers', 'on', true);
    end if;
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
    if target_kind is not null then
        perform set_config('citus.enable_unsafe_triggers', unsafe_triggers, true);
    end if;
end
$$;

revoke all on function audit.enable_tracking_keys(regclass, text[]) from public;

-- Without options (version 1's triggers).
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
