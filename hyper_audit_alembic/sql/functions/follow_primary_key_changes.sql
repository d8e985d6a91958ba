-- Keeps a tracked table's triggers right when its primary key is changed or renamed, made
-- deferrable, or when it joins an inheritance hierarchy (then it is tracked row by row),
-- and refuses to leave a tracked table without a primary key. ALTER TABLE and CREATE
-- TABLE (INHERITS, PARTITION OF) name the table, its parent or its child.
-- Tables tracked by audit.citus_row_change (a Citus cluster) are not followed: at the end of
-- an ALTER TABLE of a distributed table, the workers have not seen it yet (a rename), so
-- the triggers could not be made anew there; op.enable_tracking() after the change does it.
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

-- Event triggers need a superuser. Without one, a changed primary key is picked up by
-- the next audit.enable_tracking() call (autogenerate proposes it). An event trigger of an
-- earlier version that listened to fewer commands is replaced.
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
